"""`dim api` as users run it: one process serving HTTP and ingesting the topics in a background thread."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx

from api.sample import publish_dataset
from dim.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def test_dim_api_serves_and_ingests_in_one_process(stack_settings, tmp_path):
    port = _free_port()
    settings = Settings(**{
        **stack_settings.model_dump(), "clickhouse": {"chdb_path": tmp_path / "chdb"},
        "kafka": {**stack_settings.kafka.model_dump(), "group_prefix": f"serve-{uuid.uuid4().hex[:8]}"},
    })
    proc = subprocess.Popen([sys.executable, "-m", "dim.cli", "api", "--port", str(port)],
                            env={**os.environ, **settings.to_env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 200, 60, "/health")
        ds = publish_dataset(stack_settings)
        items = _wait(lambda: len(httpx.get(f"{base}/objects", params={"bucket": ds.bucket}, timeout=5)
                                  .json()["items"]) == len(ds.keys), 90, "the published objects")
        assert items
        detail = httpx.get(f"{base}/objects/{ds.bucket}/{ds.moved_key}", timeout=5).json()
        assert detail["placement"]["version"] == 2
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        records = [line for line in metrics.splitlines() if line.startswith("dim_ingest_records_total")]
        assert records and float(records[0].split()[-1]) > 0
        health = httpx.get(f"{base}/health", timeout=5).json()
        assert health["status"] == "ok" and health["ingest"]["batches"] >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    # `dim report` on the same store, once the API process has let go of it.
    out = tmp_path / "report"
    rep = subprocess.run([sys.executable, "-m", "dim.cli", "report", "--out", str(out)],
                         env={**os.environ, **settings.to_env()}, capture_output=True, timeout=120, check=False)
    assert rep.returncode == 0, rep.stderr.decode()[-2000:]
    assert rep.stdout.decode().strip() == str(out / "index.html")
    assert ds.plan_id in (out / "index.html").read_text() and list(out.glob("*.png"))


def test_a_chdb_directory_held_by_another_process_is_named_not_a_traceback(tmp_path):
    """chDB says only "Error initializing EmbeddedServer: . (BAD_ARGUMENTS)" when another process holds the
    directory; `dim report` next to a running `dim api` printed that as a traceback."""
    env = {**os.environ, "DIM_CLICKHOUSE__CHDB_PATH": str(tmp_path / "chdb"),
           "DIM_STACK__DATA_DIR": str(tmp_path / "data")}
    hold = ("import sys\nfrom api.store import AnalyticsStore\nfrom dim.config import Settings\n"
            "store = AnalyticsStore.open(Settings())\nprint('open', flush=True)\nsys.stdin.read()")
    holder = subprocess.Popen(
        [sys.executable, "-c", hold],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        rep = subprocess.run([sys.executable, "-m", "dim.cli", "report", "--out", str(tmp_path / "r")],
                             check=False, env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert f"cannot open the chDB data directory {tmp_path / 'chdb'}" in rep.stderr
    assert "open in one process only" in rep.stderr and "Traceback" not in rep.stderr
