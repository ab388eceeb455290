"""River p_hot (online, delayed labels) vs the seeds' offline scikit-learn RandomForest, on a real trace.

Both see the same features and labels (flows/features.py, flows/labels.py), produced by the flow's own core
(flows/offline.py). The RandomForest is trained on the labelled predictions made in the early part of the trace
(`--train-share` of its event time) and scored on the rest; River is scored on the same later predictions with
the p_hot it actually served when each prediction was made (before the label existed: prequential, honest).

    .venv/bin/python bench/prediction_quality.py ../shared/traces/twitter52_dev.csv.zst --time-scale 3600

Prints one JSON line last; writes a calibration table (--calibration).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import log_loss, roc_auc_score

from dim.config import Settings
from flows.features import feature_names
from flows.heat import HeatParams
from flows.model import DERIVED_RATIOS
from flows.offline import run_offline

START = 1767225600.0  # event time of trace second 0 (as dim replay)


def load_events(path: Path, time_scale: float, limit: int | None, bucket: str = "trace"):
    df = pd.read_csv(path, nrows=limit)
    ops = df["op"].astype(str) if "op" in df.columns else None
    keys = (bucket + "/" + df["object"].astype(str)).tolist()
    times = (START + df["time_s"].astype(float) * time_scale).tolist()
    sizes = df["size_bytes"].astype(int).tolist()
    if ops is None:
        return len(keys), ((k, t, "GET", s, s) for k, t, s in zip(keys, times, sizes))
    return len(keys), ((k, t, o, s if o in ("GET", "PUT") else 0, s) for k, t, o, s in
                       zip(keys, times, ops.tolist(), sizes))


def calibration(name: str, p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    rows = []
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        m = idx == b
        rows.append({"model": name, "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(m.sum()),
                     "mean_p": float(p[m].mean()) if m.any() else math.nan,
                     "observed": float(y[m].mean()) if m.any() else math.nan})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", type=Path)
    ap.add_argument("--time-scale", type=float, default=3600.0, help="event seconds per trace second")
    ap.add_argument("--limit", type=int, default=None, help="only the first N requests")
    ap.add_argument("--train-share", type=float, default=0.3, help="early share of event time that trains the RF")
    ap.add_argument("--shards", type=int, default=4, help="flow shards (= access-topic partitions)")
    ap.add_argument("--rf-max-train", type=int, default=300_000)
    ap.add_argument("--label-fraction", type=float, default=None, help="override flow.label_fraction")
    ap.add_argument("--forest-fraction", type=float, default=None, help="override flow.forest_fraction")
    ap.add_argument("--calibration", type=Path, default=Path("bench/results/prediction_calibration.csv"))
    args = ap.parse_args()

    settings = Settings()
    if args.label_fraction is not None:
        settings.flow.label_fraction = args.label_fraction
    if args.forest_fraction is not None:
        settings.flow.forest_fraction = args.forest_fraction
    t0 = time.perf_counter()
    n_events, events = load_events(args.trace, args.time_scale, args.limit)
    run = run_offline(settings, events, shards=args.shards, record=True, finish=False)
    flow_s = time.perf_counter() - t0
    labelled = run.labelled
    names = feature_names(HeatParams.from_flow_settings(settings.flow))
    at = np.array([lab.at for lab in labelled])
    y = np.array([lab.y for lab in labelled], dtype=bool)
    p_river = np.array([lab.p for lab in labelled])
    X = np.array([lab.x for lab in labelled])  # feature values in `names` order
    assert X.shape[1] == len(names)
    split = at.min() + args.train_share * (at.max() - at.min())
    train, test = at < split, at >= split

    rng = np.random.default_rng(0)
    train_idx = np.flatnonzero(train)
    if len(train_idx) > args.rf_max_train:
        train_idx = rng.choice(train_idx, args.rf_max_train, replace=False)
    t1 = time.perf_counter()
    rf = RandomForestClassifier(n_estimators=100, min_samples_leaf=20, n_jobs=-1, random_state=0)
    rf.fit(X[train_idx], y[train_idx])
    p_rf = rf.predict_proba(X[test])[:, list(rf.classes_).index(True)]
    rf_s = time.perf_counter() - t1

    # The same forest given the log-ratios the River pipeline derives (flows.model.DERIVED_RATIOS): whether
    # River's lead holds when the baseline sees every input the River model sees.
    derived = np.column_stack([X[:, names.index(a)] - c * X[:, names.index(b)] for _, a, b, c, _ in DERIVED_RATIOS])
    X_derived = np.hstack([X, derived])
    rf_derived = RandomForestClassifier(n_estimators=100, min_samples_leaf=20, n_jobs=-1, random_state=0)
    rf_derived.fit(X_derived[train_idx], y[train_idx])
    p_rf_derived = rf_derived.predict_proba(X_derived[test])[:, list(rf_derived.classes_).index(True)]

    yt = y[test]
    eps = 1e-6
    result = {
        "river_auc": float(roc_auc_score(yt, p_river[test])),
        "rf_auc": float(roc_auc_score(yt, p_rf)),
        "rf_derived_auc": float(roc_auc_score(yt, p_rf_derived)),
        "river_logloss": float(log_loss(yt, np.clip(p_river[test], eps, 1 - eps), labels=[False, True])),
        "rf_logloss": float(log_loss(yt, np.clip(p_rf, eps, 1 - eps), labels=[False, True])),
        "events": n_events,
        "labels": len(labelled),
        "test_labels": int(test.sum()),
        "train_labels": len(train_idx),
        "positive_rate": float(yt.mean()),
        "time_scale": args.time_scale,
        "horizon_s": settings.flow.horizon_s,
        "hot_reads": settings.flow.hot_reads,
        "label_fraction": settings.flow.label_fraction,
        "forest_fraction": settings.flow.forest_fraction,
        "forest_kind": settings.flow.forest_kind,
        "shards": args.shards,
        "river_models": [s.predictor.model.summary() for s in run.shards],
        "flow_core_s": round(flow_s, 1),
        "rf_fit_s": round(rf_s, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.calibration.parent.mkdir(parents=True, exist_ok=True)
    rows = calibration("river", p_river[test], yt) + calibration("rf", p_rf, yt)
    pd.DataFrame(rows).to_csv(args.calibration, index=False)
    print(pd.DataFrame(rows).to_string(index=False), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
