"""Flow throughput vs a plain consumer, on the real broker, measured in the same run.

    .venv/bin/python bench/flow_throughput.py --events 300000 --workers 1

Starts a scratch embedded stack (SeaweedFS + Tansu) on free ports in a temp dir (or uses the configured one with
--use-configured-stack), produces N access events from a real trace (or a synthetic Zipf workload if the trace
is missing) with an end marker, then measures
  (a) raw: a plain confluent-kafka consumer reading the same records (no parsing), and
  (b) flow: the full dataflow (parse, validate, heat, predict and learn, candidates, heat snapshots, recovery on)
      until the end markers, wall time of `run_flow` including its start-up.
Prints one JSON line last: events, workers, raw_eps, flow_eps, ratio, peak_rss_mb (+ details).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dim.config import Settings, get_settings, kafka_consumer_config
from dim.kafka import END_MARKER_HEADER, partitions_of, producer, publish_end_markers
from schemas import AccessEvent, topics

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "twitter52_dev.csv.zst"
START = 1767225600.0


def trace_events(path: Path, n: int, time_scale: float):
    import pandas as pd

    df = pd.read_csv(path, nrows=n)
    for i, (t, obj, size) in enumerate(zip(df["time_s"].tolist(), df["object"].astype(str).tolist(),
                                           df["size_bytes"].tolist())):
        # with a request id, as `dim replay` and `dim ship-logs` send them: the flow checks each for a repeat
        yield AccessEvent(event_time=START + t * time_scale, bucket="bench", key=obj, op="GET", bytes=int(size),
                          object_size=int(size), request_id=f"bench-{i}")


def synthetic_events(n: int, seed: int = 0):
    rng = random.Random(seed)
    objects = max(1000, n // 10)
    for i in range(n):
        k = min(objects - 1, int(rng.paretovariate(1.1)) - 1)
        op = "PUT" if rng.random() < 0.05 else "GET"
        yield AccessEvent(event_time=START + i * 2.0, bucket="bench", key=f"o{k}", op=op, bytes=1000,
                          object_size=1000, request_id=f"bench-{i}")


def produce(settings: Settings, events, run: str) -> int:
    prod = producer(settings)
    n = 0
    for ev in events:
        while True:
            try:
                prod.produce(topics.ACCESS, ev.model_dump_json().encode(), key=topics.object_key(ev.bucket, ev.key))
                break
            except BufferError:
                prod.poll(0.1)
        n += 1
        if n % 10000 == 0:
            prod.poll(0)
    publish_end_markers(settings, topics.ACCESS, run, prod)
    return n


def raw_consume(settings: Settings, run: str) -> tuple[int, float]:
    """Records read by a plain consumer (all partitions, from the start) until `run`'s markers; wall seconds."""
    parts = partitions_of(settings, topics.ACCESS)
    cons = Consumer(kafka_consumer_config(settings, f"bench-raw-{uuid.uuid4().hex[:6]}"))
    t0 = time.perf_counter()
    cons.assign([TopicPartition(topics.ACCESS, p, OFFSET_BEGINNING) for p in parts])
    done: set[int] = set()
    n = 0
    marker = run.encode()
    while len(done) < len(parts):
        for m in cons.consume(10000, 0.5):
            if m.error() or m.partition() in done:
                continue
            h = m.headers()
            if h and any(k == END_MARKER_HEADER for k, _ in h):
                if any(k == END_MARKER_HEADER and v == marker for k, v in h):
                    done.add(m.partition())
                continue
            n += 1
    elapsed = time.perf_counter() - t0
    cons.close()
    return n, elapsed


def measure(settings: Settings, args) -> dict:
    from flows.run import run_flow

    run = uuid.uuid4().hex
    events = (trace_events(args.trace, args.events, args.time_scale) if args.trace.exists()
              else synthetic_events(args.events))
    t0 = time.perf_counter()
    n = produce(settings, events, run)
    produce_s = time.perf_counter() - t0
    raw_n, raw_s = raw_consume(settings, run)
    rss_before_flow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Module imports (River pulls in SciPy: seconds on a loaded machine) are process start-up, not throughput.
    import flows.dataflow
    import flows.predict  # noqa: F401

    t1 = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    run_flow(settings, workers=args.workers, until_run=run, recovery=True)
    flow_s = time.perf_counter() - t1
    if args.profile:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    raw_eps = raw_n / raw_s
    flow_eps = raw_n / flow_s
    return {
        "events": n,
        "workers": args.workers,
        "raw_eps": round(raw_eps),
        "flow_eps": round(flow_eps),
        "ratio": round(flow_eps / raw_eps, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_flow_mb": round(rss_before_flow, 1),
        "flow_eps_per_worker": round(flow_eps / args.workers),
        "raw_s": round(raw_s, 2),
        "flow_s": round(flow_s, 2),
        "produce_s": round(produce_s, 2),
        "source": str(args.trace.name) if args.trace.exists() else "synthetic",
        "time_scale": args.time_scale,
        "partitions": len(partitions_of(settings, topics.ACCESS)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="flow throughput vs a plain consumer")
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--use-configured-stack", action="store_true",
                    help="use the stack of the current configuration (dim up) instead of a scratch one")
    ap.add_argument("--profile", action="store_true", help="cProfile the flow (in-process) to stderr")
    args = ap.parse_args()

    if args.use_configured_stack:
        settings = get_settings().model_copy(deep=True)
        settings.flow.recovery_dir = Path(tempfile.mkdtemp(prefix="dim-bench-recovery-"))
        result = measure(settings, args)
    else:
        from dim.testing import running_stack, scratch_settings

        with tempfile.TemporaryDirectory(prefix="dim-bench-") as tmp:
            settings = scratch_settings(Path(tmp))
            with running_stack(settings):
                result = measure(settings, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
