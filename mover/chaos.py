"""A fault-injecting HTTP proxy between the mover and an S3 endpoint (`dim chaos`).

Every request is either forwarded unchanged (the Host header too, so SigV4 signatures stay valid) or hit by one
fault, drawn with the configured probabilities:

* `rate_429`, `rate_503`, `rate_500` (and `rate_403`, permanent): answer with that S3 error, not forwarded;
* `drop_rate`: close the connection without an answer, half the time *before* forwarding and half *after* the
  upstream executed the request (the nasty case: a write landed but the client saw an error);
* `truncate_rate`: forward, then cut the response body short and close (GET with a body only);
* `latency_ms` (+ `latency_jitter_ms`): added to every request;
* `archive_buckets`: objects there behave like an archive tier whose restore completes after `restore_polls`
  HEADs (mover/chaos_archive.py), so the mover's restore-and-poll path runs against a slow restore.

One proxy fronts one upstream endpoint; run one per endpoint to configure them differently. `GET /__chaos/stats`
returns counters, `POST /__chaos/config` replaces the fault configuration at run time (bucket names cannot
contain underscores, so these paths never collide with S3 requests).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mover.chaos_archive import ArchiveModel

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length"}
_ERRORS = {"429": (429, "TooManyRequests"), "503": (503, "SlowDown"), "500": (500, "InternalError"),
           "403": (403, "AccessDenied")}


class ChaosConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt rate would otherwise inject nothing, silently

    rate_429: float = Field(0.0, ge=0, le=1)
    rate_503: float = Field(0.0, ge=0, le=1)
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_403: float = Field(0.0, ge=0, le=1)  # a permanent error, for testing that it is not retried
    drop_rate: float = Field(0.0, ge=0, le=1)
    truncate_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)
    archive_buckets: list[str] = Field(default_factory=list)
    restore_polls: int = Field(0, ge=0)
    seed: int | None = None

    @property
    def fault_rate(self) -> float:
        return self.rate_429 + self.rate_503 + self.rate_500 + self.rate_403 + self.drop_rate + self.truncate_rate

    @model_validator(mode="after")
    def _rates_fit(self) -> ChaosConfig:
        if self.fault_rate > 1:
            raise ValueError(f"the fault rates add up to {self.fault_rate:g}, more than 1")
        return self


def pick_fault(cfg: ChaosConfig, u: float, method: str) -> str | None:
    """The fault for one request given a uniform draw `u` in [0, 1): pure, so it is testable."""
    table = [("429", cfg.rate_429), ("503", cfg.rate_503), ("500", cfg.rate_500), ("403", cfg.rate_403),
             ("drop", cfg.drop_rate), ("truncate", cfg.truncate_rate if method == "GET" else 0.0)]
    acc = 0.0
    for name, rate in table:
        acc += rate
        if u < acc:
            return name
    return None


class ChaosProxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, listen: tuple[str, int], upstream: str, cfg: ChaosConfig):
        super().__init__(listen, _Handler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.cfg = cfg
        self.archive = ArchiveModel(cfg.archive_buckets, cfg.restore_polls)
        self.rng = random.Random(cfg.seed)
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.local = threading.local()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def draw(self, method: str) -> tuple[str | None, float]:
        with self.lock:
            cfg = self.cfg
            fault = pick_fault(cfg, self.rng.random(), method)
            delay = (cfg.latency_ms + self.rng.uniform(0, cfg.latency_jitter_ms)) / 1000.0
            self.stats["requests"] += 1
            if fault:
                self.stats[fault] += 1
        return fault, delay


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChaosProxy

    def log_message(self, *args) -> None:  # quiet: the counters tell the story
        pass

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self.server.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.server.upstream, timeout=120)
            self.server.local.conn = conn
        return conn

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a kept-alive upstream connection may have been closed meanwhile
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self.server.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _control(self, body: bytes) -> None:
        if self.path.startswith("/__chaos/config") and self.command == "POST":
            with self.server.lock:
                self.server.cfg = ChaosConfig.model_validate_json(body)
                self.server.archive = ArchiveModel(self.server.cfg.archive_buckets, self.server.cfg.restore_polls)
            out = self.server.cfg.model_dump_json().encode()
        else:
            with self.server.lock:
                out = json.dumps({**self.server.stats, "config": self.server.cfg.model_dump()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def _answer(self, status: int, code: str) -> None:
        """Answer without forwarding: an S3 error document (`code`), or an empty success."""
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
               f"<Message>injected by dim chaos</Message><RequestId>chaos</RequestId></Error>").encode() if code else b""
        self.send_response(status)
        if xml:
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(xml)))
        self.end_headers()
        if self.command != "HEAD" and xml:
            self.wfile.write(xml)

    def _handle(self) -> None:
        body = self._read_body()
        if self.path.startswith("/__chaos/"):
            self._control(body)
            return
        fault, delay = self.server.draw(self.command)
        if delay:
            time.sleep(delay)
        if fault in _ERRORS:
            self._answer(*_ERRORS[fault])
            return
        verdict = self.server.archive.decide(self.command, self.path)
        if verdict.status is not None:
            with self.server.lock:
                self.server.stats[f"archive_{verdict.status}"] += 1
            self._answer(verdict.status, verdict.code)
            return
        if any(k == "x-amz-restore" and "true" in v for k, v in verdict.headers):
            with self.server.lock:
                self.server.stats["restore_ongoing_heads"] += 1
        drop_after = False
        if fault == "drop":
            with self.server.lock:
                drop_after = self.server.rng.random() < 0.5
            if not drop_after:
                self._drop()
                return
        try:
            status, reason, headers, data = self._forward(body)
        except (OSError, http.client.HTTPException):
            self.server.stats["upstream_errors"] += 1
            self._drop()
            return
        if drop_after:
            self._drop()
            return
        self.send_response(status, reason)
        added = {k for k, _ in verdict.headers} if status < 300 else set()
        for k, v in headers:
            if k.lower() not in _HOP_BY_HOP and k.lower() not in added:
                self.send_header(k, v)
        for k, v in verdict.headers if status < 300 else ():
            self.send_header(k, v)
        if self.command == "HEAD":  # no body: the upstream's Content-Length describes the object
            length = next((v for k, v in headers if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate" and data:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            return
        self.wfile.write(data)


def serve_forever(host: str, port: int, upstream: str, cfg: ChaosConfig) -> None:
    proxy = ChaosProxy((host, port), upstream, cfg)
    print(f"dim chaos listening on {proxy.url} -> {upstream}", flush=True)
    try:
        proxy.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()


def start_process(upstream: str, cfg: ChaosConfig, env: dict | None = None, timeout: float = 20.0):
    """Start `dim chaos` as a real child process on a free port; returns (Popen, url). The caller stops it."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "dim.cli", "chaos", "--upstream", upstream,
                             "--config", cfg.model_dump_json()], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split(" ->")[0].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"dim chaos did not start: {line!r}")


def set_config(url: str, cfg: ChaosConfig) -> None:
    import urllib.request

    req = urllib.request.Request(f"{url}/__chaos/config", data=cfg.model_dump_json().encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def stats(url: str) -> dict:
    import urllib.request

    return json.loads(urllib.request.urlopen(f"{url}/__chaos/stats", timeout=10).read())
