"""Mover throughput vs a plain boto3 download-then-upload of the same data, measured in the same run.

(a) large: N x M MB objects, (b) small: K x S KB objects, each moved from location A (endpoint 1) to location C
(endpoint 2). The two endpoints are the one embedded SeaweedFS reached through two URLs (127.0.0.1 / localhost),
so the mover cannot copy server-side: every byte is streamed through it, exactly as through the baseline.

The mover runs the full protocol (journal with fsync, conditional GETs, SHA-256 + ETag verification, catalog
compare-and-set, deletion of the dropped replica, events to Kafka); the baseline only copies bytes
(download_file to a temporary file, upload_file; sequential get_object/put_object for the small objects).
Each side runs in its own child process so `peak_rss_mb` is the mover's alone.

    .venv/bin/python bench/mover_throughput.py            # issue sizes: 8 x 128 MB and 5,000 x 16 KB
    .venv/bin/python bench/mover_throughput.py --quick    # 8 x 16 MB and 500 x 16 KB

Prints one JSON line last: large_mb_s, large_ratio, small_obj_s, small_ratio, peak_rss_mb (+ details).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

A, B, C = "aws:us-east-1:standard", "gcp:us-east1:standard", "azure:eastus:hot"


def _settings(env: dict):
    os.environ.update(env)
    from dim.config import Settings

    return Settings()


def seed(env: dict, prefix: str, count: int, size: int) -> None:
    """Child: create `count` objects of `size` random bytes at [A, B] with catalog entries."""
    from mover.objects import seed_objects

    settings = _settings(env)
    block = os.urandom(size)
    batch = max(1, min(count, (256 * 1024 * 1024) // max(size, 1)))  # bound the seeding child's memory
    for start in range(0, count, batch):
        items = [("bench", f"{prefix}/{i}", i.to_bytes(8, "big") + block[8:]) for i in range(start, min(count, start + batch))]
        seed_objects(settings, items, [A, B], concurrency=8 if size < 1024 * 1024 else 2)


def baseline(env: dict, prefix: str, count: int, size: int, out) -> None:
    """Child: plain boto3 download-then-upload of the same objects, endpoint 1 -> endpoint 2."""
    from dim.config import s3_client
    from mover.catalog import replica_key
    from solver.catalogue import load_catalogue

    settings = _settings(env)
    cat = load_catalogue(settings.solver.catalogue_path)
    src_bucket, dst_bucket = cat.location(A).bucket, cat.location(C).bucket
    c1 = s3_client(settings)
    c2 = s3_client(settings, endpoint=settings.mover.endpoints[C])
    start = time.perf_counter()
    if size > 1024 * 1024:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "obj")
            for i in range(count):
                key = replica_key("bench", f"{prefix}/{i}")
                c1.download_file(src_bucket, key, path)
                c2.upload_file(path, dst_bucket, f"baseline/{key}")
    else:
        for i in range(count):
            key = replica_key("bench", f"{prefix}/{i}")
            data = c1.get_object(Bucket=src_bucket, Key=key)["Body"].read()
            c2.put_object(Bucket=dst_bucket, Key=f"baseline/{key}", Body=data)
    out.put({"seconds": time.perf_counter() - start,
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def move(env: dict, prefix: str, count: int, size: int, out) -> None:
    """Child: the mover executes one plan moving every object from [A, B] to [B, C]."""
    from mover.service import Mover
    from schemas import Move

    settings = _settings(env)
    moves = [Move(move_id=f"{prefix}-{i}", plan_id=prefix, bucket="bench", key=f"{prefix}/{i}", size=size,
                  from_locations=[A, B], to_locations=[B, C], expected_version=1) for i in range(count)]
    mover = Mover(settings)
    start = time.perf_counter()
    outcomes = mover.execute(moves)
    seconds = time.perf_counter() - start
    mover.close()
    bad = [o.reason for o in outcomes if o.state.value != "deleted"]
    out.put({"seconds": seconds, "done": len(outcomes) - len(bad), "failed": bad[:3],
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "s3": dict(mover.store.stats)})


def _child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _run(target, *args) -> None:
    p = mp.get_context("spawn").Process(target=target, args=args)
    p.start()
    p.join()
    if p.exitcode:
        raise SystemExit(f"{target.__name__} failed with exit code {p.exitcode}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large-count", type=int, default=8)
    ap.add_argument("--large-mb", type=int, default=128)
    ap.add_argument("--small-count", type=int, default=5000)
    ap.add_argument("--small-kb", type=int, default=16)
    args = ap.parse_args()
    if args.quick:
        args.large_mb, args.small_count = 16, 500

    from dim.testing import running_stack, scratch_settings

    with tempfile.TemporaryDirectory(prefix="dim-bench-") as tmp:
        base = scratch_settings(Path(tmp) / "stack")
        with running_stack(base):
            other = base.s3.endpoint.replace("127.0.0.1", "localhost")
            settings = base.model_copy(update={"mover": base.mover.model_copy(update={
                "endpoints": {C: other}, "journal_dir": Path(tmp) / "journal", "group": f"bench-{uuid.uuid4().hex}"})})
            env = settings.to_env()
            large, small = f"large-{uuid.uuid4().hex[:6]}", f"small-{uuid.uuid4().hex[:6]}"
            lsize, ssize = args.large_mb * 1024 * 1024, args.small_kb * 1024
            print(f"seeding {args.large_count} x {args.large_mb} MB and {args.small_count} x {args.small_kb} KB",
                  file=sys.stderr)
            _run(seed, env, large, args.large_count, lsize)
            _run(seed, env, small, args.small_count, ssize)
            base_large = _child(baseline, env, large, args.large_count, lsize)
            move_large = _child(move, env, large, args.large_count, lsize)
            base_small = _child(baseline, env, small, args.small_count, ssize)
            move_small = _child(move, env, small, args.small_count, ssize)

    total_mb = args.large_count * args.large_mb
    large_mb_s = total_mb / move_large["seconds"]
    base_mb_s = total_mb / base_large["seconds"]
    small_obj_s = args.small_count / move_small["seconds"]
    base_obj_s = args.small_count / base_small["seconds"]
    result = {
        "large_mb_s": round(large_mb_s, 1),
        "large_ratio": round(large_mb_s / base_mb_s, 3),
        "small_obj_s": round(small_obj_s, 1),
        "small_ratio": round(small_obj_s / base_obj_s, 3),
        "peak_rss_mb": round(max(move_large["peak_rss_mb"], move_small["peak_rss_mb"]), 1),
        "baseline_large_mb_s": round(base_mb_s, 1),
        "baseline_small_obj_s": round(base_obj_s, 1),
        "baseline_peak_rss_mb": round(max(base_large["peak_rss_mb"], base_small["peak_rss_mb"]), 1),
        "large": f"{args.large_count}x{args.large_mb}MB", "small": f"{args.small_count}x{args.small_kb}KB",
        # Store requests per small move (the baseline makes 2: one GET, one PUT); the catalog's read and
        # compare-and-set are two of the mover's.
        "small_requests_per_move": round(move_small["s3"].get("requests", 0) / args.small_count, 2),
        "moves_done": move_large["done"] + move_small["done"],
        "moves_failed": move_large["failed"] + move_small["failed"],
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
