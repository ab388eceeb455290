"""How much of the idle-object tier decision could a better predictor win? An upper-bound study for docs/evaluation.md.

    .venv/bin/python bench/return_predictability.py ../shared/traces/twitter52_dev.csv.zst --idle-days 7   # ~1.5 min

The decision: an object has been idle for --idle-days after a read; keep its serving replica in Standard-IA for the
next 30 days, or put it in Glacier Instant Retrieval (cheaper to store, dearer to read)? (`--tiers` asks it of
another pair, e.g. aws:us-east-1:standard,aws:us-east-1:standard-ia.) Prices come from solver/catalogue.toml.
Each observation is billed for the 30 days with the reads that really followed (hindsight).
Three predictors of those reads are trained on the observations before --split-day and used on the later ones:
- `cells`: the mean per (activity bucket, size class), the state flows.horizon_reads keeps (its idle bucket is fixed
  here);
- `gbm`: scikit-learn gradient boosting (Poisson loss) over everything the access history offers: reads so far,
  activity, age, last, mean and longest gap between reads, earlier returns after a long idle, size;
- `oracle`: the true reads (perfect foresight).
`closed_<p>` = (cost of the better fixed tier - cost of p's choices) / (that - oracle's cost); `best_closed_<p>` is the
best over a sweep of decision thresholds, picked on the test set itself. Both are optimistic: the training labels
look up to 30 days past --split-day (the trace is too short to keep them apart), which helps both predictors alike.
Looks at the future on purpose: it describes what the trace allows, it feeds no policy. Prints one JSON line last.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score

from bench.return_rates import HORIZON_DAYS, reads_frame, trace_arguments
from flows.horizon_reads import ACTIVITY_BUCKETS, SECONDS_PER_DAY, SIZE_BUCKETS
from solver.catalogue import load_catalogue

ACTIVITY_HALF_LIFE_DAYS = 7.0  # the flow's longest half-life, as flows.horizon_reads' activity
GBM_FEATURES = ["reads", "activity", "age", "last_gap", "max_gap", "long_returns", "mean_gap", "size"]
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)  # expected reads below which the colder tier is chosen
DEFAULT_TIERS = ("aws:us-east-1:standard-ia", "aws:us-east-1:glacier-ir")


def observations(df: pd.DataFrame, idle_days: float) -> pd.DataFrame:
    """One row per read followed by >= idle_days without reads (and whose 30 days after that end in the trace):
    what the flow knows then, and the reads of the next 30 days. `df`: reads sorted by (object, t), t in days."""
    obj = df["object"]
    g = df.groupby("object", sort=False)["t"]
    t = df["t"].to_numpy()
    first = g.transform("min").to_numpy()
    last_gap = (df["t"] - g.shift(1)).to_numpy()
    next_gap = (g.shift(-1) - df["t"]).to_numpy()
    n = g.cumcount().to_numpy() + 1
    long_returns = pd.Series(last_gap >= idle_days).groupby(obj.to_numpy()).cumsum().to_numpy()
    max_gap = pd.Series(np.nan_to_num(last_gap, nan=0.0)).groupby(obj.to_numpy()).cummax().to_numpy()
    decay = math.log(2) / ACTIVITY_HALF_LIFE_DAYS
    activity = np.empty(len(t))
    a = 0.0
    for k, (nk, gap) in enumerate(zip(n.tolist(), last_gap.tolist())):
        a = 1.0 if nk == 1 else a * math.exp(-decay * gap) + 1.0
        activity[k] = a
    check = t + idle_days
    keep = (np.isnan(next_gap) | (next_gap >= idle_days)) & (check + HORIZON_DAYS <= t.max())
    # Reads in (check, check + 30 d] of the same object: one sorted key (object code, time) for all rows.
    code = pd.factorize(obj, sort=False)[0].astype(np.float64)
    span = t.max() + idle_days + HORIZON_DAYS + 1.0
    key = code * span + t
    future = (np.searchsorted(key, key + idle_days + HORIZON_DAYS, side="right")
              - np.searchsorted(key, key + idle_days, side="right"))
    age = t - first
    out = pd.DataFrame({
        "check": check, "future_reads": future, "reads": n, "activity": activity, "age": age,
        "last_gap": np.nan_to_num(last_gap, nan=-1.0), "max_gap": max_gap, "long_returns": long_returns,
        "mean_gap": np.where(n > 1, age / np.maximum(n - 1, 1), -1.0), "size": df["size"].to_numpy(),
    })[keep]
    out["size_class"] = np.searchsorted(SIZE_BUCKETS, out["size"], side="right")
    out["activity_bucket"] = np.searchsorted(ACTIVITY_BUCKETS, out["activity"], side="right")
    return out


def study(path: Path, time_scale: float, size_scale: float, idle_days: float, split_day: float,
          tiers: tuple[str, str] = DEFAULT_TIERS) -> dict:
    started = time.monotonic()
    df = reads_frame(path, time_scale, size_scale)
    df["t"] /= SECONDS_PER_DAY
    obs = observations(df, idle_days)
    train, test = obs[obs["check"] < split_day], obs[obs["check"] >= split_day]
    cells = train.groupby(["activity_bucket", "size_class"])["future_reads"].mean()
    pooled = train.groupby("activity_bucket")["future_reads"].mean()
    overall = float(train["future_reads"].mean())
    mu = {"cells": np.array([cells.get((a, s), pooled.get(a, overall))
                             for a, s in zip(test["activity_bucket"], test["size_class"])])}
    gbm = HistGradientBoostingRegressor(loss="poisson", max_iter=300, learning_rate=0.05, min_samples_leaf=50,
                                        random_state=0)
    gbm.fit(train[GBM_FEATURES], train["future_reads"])
    mu["gbm"] = gbm.predict(test[GBM_FEATURES])

    cat = {loc.id: loc for loc in load_catalogue().locations}
    warm, cold = cat[tiers[0]], cat[tiers[1]]
    gb = test["size"].to_numpy() / 1e9
    reads = test["future_reads"].to_numpy()
    months = HORIZON_DAYS / 30.0

    def bill(loc, rows):
        return gb[rows] * loc.storage_usd_gb_month * months + reads[rows] * (
            gb[rows] * loc.retrieval_usd_gb + loc.get_usd_per_1k / 1000)

    def cost(choose_cold: np.ndarray) -> float:
        return float(bill(cold, choose_cold).sum() + bill(warm, ~choose_cold).sum())

    n = len(test)
    fixed = min(cost(np.zeros(n, bool)), cost(np.ones(n, bool)))
    oracle_cost = float(np.minimum(bill(warm, np.ones(n, bool)), bill(cold, np.ones(n, bool))).sum())
    # The break-even expected reads of a 1 GB object (requests are negligible at these sizes).
    break_even = (warm.storage_usd_gb_month - cold.storage_usd_gb_month) * months / (
        cold.retrieval_usd_gb - warm.retrieval_usd_gb)
    returned = reads > 0
    result = {"trace": path.name, "tiers": list(tiers), "idle_days": idle_days, "split_day": split_day,
              "train": len(train), "test": n,
              "test_returned": round(float(returned.mean()), 3), "break_even_reads": round(break_even, 3),
              "cost_fixed_tier": round(fixed, 4), "cost_oracle": round(oracle_cost, 4)}
    for name, m in mu.items():
        result[f"auc_{name}"] = round(float(roc_auc_score(returned, m)), 4)
        result[f"auc_bytes_{name}"] = round(float(roc_auc_score(returned, m, sample_weight=gb)), 4)
        at_break_even = cost(m < break_even)
        result[f"cost_{name}"] = round(at_break_even, 4)
        result[f"closed_{name}"] = round((fixed - at_break_even) / (fixed - oracle_cost), 3)
        closed, q = max(((fixed - cost(m < q)) / (fixed - oracle_cost), q) for q in THRESHOLDS)
        result[f"best_closed_{name}"], result[f"best_threshold_{name}"] = round(closed, 3), q
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    ap = trace_arguments("how much of the idle-object tier decision a better predictor could win")
    ap.add_argument("--split-day", type=float, default=20.0, help="train on checks before this day, test after")
    ap.add_argument("--tiers", default=",".join(DEFAULT_TIERS), help="the warmer and the colder location id")
    args = ap.parse_args()
    tiers = tuple(args.tiers.split(","))
    if len(tiers) != 2:
        ap.error("--tiers takes two location ids, warmer first")
    print(json.dumps(study(args.trace, args.time_scale, args.size_scale, args.idle_days, args.split_day, tiers)))


if __name__ == "__main__":
    main()
