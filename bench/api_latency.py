"""API latency on a large analytics store: 1,000,000 objects in chDB, 20 concurrent HTTP clients.

The store is filled server-side (INSERT ... SELECT FROM numbers()) with the real schema: one placement per object
(plus its version history), two heat snapshots per object, three hours of access rollups per object, and moves
with events for 1% of the objects (the materialized views fill object_timeline as ingestion would); then every
table is merged (OPTIMIZE FINAL: the store at rest). The API runs under uvicorn in this process (a chDB
directory belongs to one process).

The load generator runs in a separate process: `--clients` keep-alive HTTP/1.1 connections on one asyncio loop,
each sending its next request when the previous answer has been read (closed loop), with no HTTP library, so
it costs little of the 2 cores it shares with the server (its CPU per request is in the JSON line). Half the
requests page /objects from random cursors (100 objects a page), half read /objects/{bucket}/{key} of random
objects; every answer must be a 200.

Baseline, same run and same clients: GET /health (HTTP + FastAPI, one trivial store query).
Prints one JSON line last: objects, p50_ms, p99_ms, rps (over /objects pages and object details), the same per
kind (`by_kind`), the client's CPU per request, and the baseline's. Target: p99_ms <= 100.

    .venv/bin/python bench/api_latency.py [--objects 1000000] [--clients 20] [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.queries import encode_cursor
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import tables as t

BUCKET = "bench"
HOT = ["aws:us-east-1:standard", "gcp:us-east1:standard"]
COLD = ["aws:us-east-1:glacier-ir", "gcp:us-east1:nearline"]


def key_of(i: int) -> str:
    return f"obj/{i:07d}"


def fill(store: AnalyticsStore, n: int) -> None:
    key = "concat('obj/', leftPad(toString(number), 7, '0'))"
    now = time.time()
    q = {"n": n, "now": now}
    store.command(
        f"""INSERT INTO {store.table(t.PLACEMENTS)}
            (bucket, key, version, size, locations, replicas, updated_at, deleted, _partition, _offset)
        SELECT '{BUCKET}', {key}, 1, 1000 + number % 100000,
               if(number % 3 = 0, {COLD!r}, {HOT!r}), '[]', {{now:Float64}} - number % 86400, false,
               number % 4, number
        FROM numbers({{n:UInt64}})""", q)
    for snap in (0, 1):
        store.command(
            f"""INSERT INTO {store.table(t.OBJECT_HEAT)}
                (as_of, bucket, key, read_heat, write_heat, reads, writes, bytes_read, size, first_seen,
                 last_access, growing, p_hot, late_events, _partition, _offset)
            SELECT {{now:Float64}} - 3600 * (2 - {snap}), '{BUCKET}', {key},
                   map('1h', (number % 10) / 3.0, '1d', (number % 50) / 7.0), map('1h', 0.0),
                   number % 20, 0, (number % 20) * 1000, 1000 + number % 100000,
                   {{now:Float64}} - 86400, {{now:Float64}} - 600, false, (number % 1000) / 1000.0, 0,
                   number % 4, {snap} * {{n:UInt64}} + number
            FROM numbers({{n:UInt64}})""", q)
    for h in range(3):
        store.command(
            f"""INSERT INTO {store.table(t.ACCESS_HOURLY)}
            SELECT toStartOfHour(toDateTime({{now:Float64}} - 3600 * {h + 1})), '{BUCKET}', {key},
                   number % 7, number % 2, 0, 0, (number % 7) * 1000, (number % 2) * 1000, 1000 + number % 100000,
                   now64(6)
            FROM numbers({{n:UInt64}})""", q)
    store.command(
        f"""INSERT INTO {store.table(t.MOVES)}
            (move_id, plan_id, bucket, key, size, from_locations, to_locations, expected_saving_usd,
             transition_cost_usd, reason, expected_version, _partition, _offset)
        SELECT concat('m', toString(number)), 'bench-plan', '{BUCKET}', {key}, 1000, {HOT!r}, {COLD!r},
               0.001, 0.0001, 'cold', 1, 0, number
        FROM numbers({{n:UInt64}}) WHERE number % 100 = 0""", q)
    store.command(
        f"""INSERT INTO {store.table(t.MOVE_EVENTS)}
            (ts, move_id, plan_id, bucket, key, state, location, bytes, sha256, attempt, reason,
             _partition, _offset)
        SELECT {{now:Float64}} - 100 + s, concat('m', toString(number)), 'bench-plan', '{BUCKET}', {key},
               ['copying', 'copied', 'committed', 'deleted'][s + 1], '', 0, '', 0, '', 0, number * 4 + s
        FROM numbers({{n:UInt64}}) ARRAY JOIN [0, 1, 2, 3] AS s WHERE number % 100 = 0""", q)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _client(host: str, port: int, work: list[tuple[int, bytes]], latencies: list[tuple[int, float]],
                  statuses: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection sending its requests one after another (a closed loop)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while work:
            index, request = work.pop()
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)  # the API always sends Content-Length (no chunked bodies)
            latencies.append((index, time.perf_counter() - t0))
            statuses.append(status)
    finally:
        writer.close()


def client_process(host: str, port: int, paths: list[str], clients: int, out: mp.Queue) -> None:
    """A lean load generator: `clients` concurrent keep-alive connections on one asyncio loop in one process.
    It shares the 2 cores with the server, so it must cost little per request (no HTTP library, no threads)."""
    work = [(i, f"GET {p} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
            for i, p in enumerate(paths)]
    work.reverse()
    latencies: list[tuple[int, float]] = []
    statuses: list[int] = []

    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(host, port, work, latencies, statuses) for _ in range(clients)))
        return time.perf_counter() - t0

    cpu0 = time.process_time()
    wall_s = asyncio.run(run())
    cpu_s = time.process_time() - cpu0
    out.put({"latencies": latencies, "errors": sum(s != 200 for s in statuses), "wall_s": wall_s,
             "client_cpu_s": cpu_s})


def _percentiles(latencies: list[float]) -> dict:
    lat = sorted(latencies)

    def pct(x: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(x * len(lat)))], 2)

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def measure(host: str, port: int, paths: list[str], clients: int) -> dict:
    """Latency percentiles over all requests and per kind of path (the first path segment)."""
    q: mp.Queue = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=client_process, args=(host, port, paths, clients, q))
    p.start()
    res = q.get()
    p.join()
    lat = res["latencies"]
    kinds: dict[str, list[float]] = {}
    for i, dt in lat:
        kinds.setdefault("detail" if paths[i].count("/") > 1 else paths[i].split("?")[0].strip("/"), []).append(dt)
    return {**_percentiles([dt for _, dt in lat]), "rps": round(len(lat) / res["wall_s"], 1),
            "errors": res["errors"], "requests": len(lat),
            "client_cpu_ms_per_request": round(1000 * res["client_cpu_s"] / max(1, len(lat)), 3),
            "by_kind": {k: _percentiles(v) for k, v in sorted(kinds.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=4000)
    args = ap.parse_args()

    import uvicorn

    from api.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(stack={"data_dir": tmp})
        store = AnalyticsStore.open(settings)
        store.migrate()
        t0 = time.perf_counter()
        fill(store, args.objects)
        load_s = time.perf_counter() - t0
        # The store at rest: each bulk INSERT above leaves a few parts per table, which background merges
        # would fold together; a point lookup pays per part it opens, so merge them now.
        for table in (t.PLACEMENTS, t.OBJECT_HEAT, t.OBJECT_HEAT_LATEST, t.ACCESS_HOURLY, t.MOVES,
                      t.MOVE_EVENTS, t.OBJECT_TIMELINE, t.OBJECT_PAGE):
            store.command(f"OPTIMIZE TABLE {store.table(table)} FINAL")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.05)
        rng = random.Random(7)
        paths = []
        for i in range(args.requests):
            k = rng.randrange(args.objects)
            if i % 2:
                paths.append(f"/objects/{BUCKET}/{key_of(k)}")
            else:
                paths.append(f"/objects?bucket={BUCKET}&limit=100&cursor={encode_cursor([BUCKET, key_of(k)])}")
        try:
            measure("127.0.0.1", port, paths[:200], args.clients)  # warm-up
            baseline = measure("127.0.0.1", port, ["/health"] * (args.requests // 2), args.clients)
            main_run = measure("127.0.0.1", port, paths, args.clients)
        finally:
            server.should_exit = True
            th.join(30)
            store.close()
    result = {"objects": args.objects, "clients": args.clients, **main_run, "load_s": round(load_s, 1),
              "baseline_health_p50_ms": baseline["p50_ms"], "baseline_health_p99_ms": baseline["p99_ms"],
              "baseline_health_rps": baseline["rps"], "target_p99_ms": 100,
              "client": "1 process, asyncio, raw HTTP/1.1 keep-alive, closed loop"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
