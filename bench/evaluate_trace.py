"""Speed of the offline evaluation (target: the 3M-request trace in <= 10 minutes on 2 cores).

Baseline measured in the same run: one plain pass of dim.traces.read_trace over the same requests (the floor any
evaluation pays). Prints one JSON line last.

    .venv/bin/python bench/evaluate_trace.py ../shared/traces/twitter52_dev.csv.zst --limit 300000
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@click.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--time-scale", default=3600.0, show_default=True)
@click.option("--size-scale", default=10000.0, show_default=True)
@click.option("--limit", type=int, default=None)
@click.option("--workers", default=2, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(trace, time_scale, size_scale, limit, workers, json_out):
    from dim.evaluation.simulator import evaluate
    from dim.traces import read_trace

    t = time.perf_counter()
    n = sum(1 for _ in read_trace(trace, limit=limit))
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluate(trace, time_scale, size_scale, limit=limit, workers=workers)
    wall = time.perf_counter() - t
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
    pol = result["policies"]
    print(json.dumps({
        "bench": "evaluate_trace", "requests": n, "objects": result["objects"], "slots": result["slots"],
        "wall_s": round(wall, 1), "baseline_read_trace_s": round(read_s, 1),
        "per_policy_s": {k: v["seconds"] for k, v in pol.items()}, "prepare_s": result.get("prepare_seconds"),
        "target_s": 600, "meets_target": wall <= 600 if limit is None else None,
        "total_cost_usd": {k: round(v["total_cost_usd"], 4) for k, v in pol.items()},
        "gap_closed": result["gap_closed"],
    }))


if __name__ == "__main__":
    main()
