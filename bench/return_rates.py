"""How often idle objects come back, by size and span class: the hindsight statistics behind the state of
flows.horizon_reads (docs/evaluation.md quotes them). Reads the whole trace; looks at the future on purpose - it
describes the trace, it does not feed any policy.

    .venv/bin/python bench/return_rates.py ../shared/traces/twitter52_dev.csv.zst --time-scale 3600 --size-scale 10000

For every read after which the object stays idle for at least --idle-days (and whose idle + 30-day window ends
inside the trace): did it come back within 30 days after that? Grouped by the object's size class (the edges of
flows.horizon_reads) and by the span from its first read to this one. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from dim.traces import read_trace
from flows.horizon_reads import SECONDS_PER_DAY, SIZE_BUCKETS

# Span (first to this read) classes: reported, not a state dimension of flows.horizon_reads - tried as one, it
# scored ours $26.324 against $26.279 without (docs/evaluation.md).
SPAN_BUCKETS_S = (SECONDS_PER_DAY, 7 * SECONDS_PER_DAY)

HORIZON_DAYS = 30


def reads_frame(path: Path, time_scale: float, size_scale: float) -> pd.DataFrame:
    """The trace's reads as columns t (scaled seconds), object, size (scaled bytes), sorted by (object, t)."""
    rows = [(r.time_s, r.object, r.size) for r in read_trace(path) if r.op == "GET"]
    df = pd.DataFrame(rows, columns=["t", "object", "size"])
    df["t"] *= time_scale
    df["size"] *= size_scale
    return df.sort_values(["object", "t"], kind="stable").reset_index(drop=True)


def return_rates(path: Path, time_scale: float, size_scale: float, idle_days: float) -> dict:
    df = reads_frame(path, time_scale, size_scale)
    by_object = df.groupby("object")["t"]
    gap = by_object.shift(-1) - df["t"]
    span = df["t"] - by_object.transform("min")
    idle, horizon = idle_days * SECONDS_PER_DAY, HORIZON_DAYS * SECONDS_PER_DAY
    seen = (gap.isna() | (gap >= idle)) & (df["t"] + idle + horizon <= df["t"].max())
    obs = pd.DataFrame({
        "returned": (gap <= idle + horizon)[seen],
        "size_class": np.searchsorted(SIZE_BUCKETS, df["size"][seen], side="right"),
        "span_class": np.searchsorted(SPAN_BUCKETS_S, span[seen], side="right"),
    })

    def table(column: str) -> dict:
        g = obs.groupby(column)["returned"]
        return {int(k): {"returned": round(float(v), 3), "n": int(n)} for (k, v), n in zip(g.mean().items(), g.size())}

    return {"trace": path.name, "idle_days": idle_days, "horizon_days": HORIZON_DAYS, "observations": len(obs),
            "returned": round(float(obs["returned"].mean()), 3), "by_size_class": table("size_class"),
            "by_span_class": table("span_class"), "size_edges_bytes": list(SIZE_BUCKETS),
            "span_edges_days": [s / SECONDS_PER_DAY for s in SPAN_BUCKETS_S]}


def trace_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments of the idle-return studies: trace, scales, idle days."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("trace", type=Path)
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--size-scale", type=float, default=10000.0)
    ap.add_argument("--idle-days", type=float, default=7.0)
    return ap


def main() -> None:
    args = trace_arguments("return rates of idle objects by size and span class").parse_args()
    print(json.dumps(return_rates(args.trace, args.time_scale, args.size_scale, args.idle_days)))


if __name__ == "__main__":
    main()
