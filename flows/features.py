"""Features of one object at one event time, for p_hot. Pure; shared by the flow and the offline evaluators.

Logs compress the heavy tails (heat and size span many orders of magnitude); hour of day and day of week are
encoded on the circle so 23:00 is next to 00:00 for a linear model too."""

from __future__ import annotations

import math

from flows.heat import HeatParams, HeatState

DAY = 86400.0
WEEK = 7 * DAY
# The Unix epoch was a Thursday: shift so that day-of-week 0 is Monday.
EPOCH_WEEKDAY = 3.0
EPS = 1e-6


def object_features(params: HeatParams, rec: HeatState, at: float) -> dict[str, float]:
    labels = params.labels
    rh = rec.read_heat(params, at)
    wh = rec.write_heat(params, at)
    x: dict[str, float] = {}
    for label, r, w in zip(labels, rh, wh):
        x[f"read_heat_{label}"] = math.log1p(r)
        x[f"write_heat_{label}"] = math.log1p(w)
    # Ratios between consecutive half-lives: > 1 means accelerating, < 1 fading.
    for i in range(len(labels) - 1):
        x[f"read_ratio_{labels[i]}_{labels[i + 1]}"] = (rh[i] + EPS) / (rh[i + 1] + EPS)
    x["log_size"] = math.log1p(rec.size)
    first = rec.first_seen if math.isfinite(rec.first_seen) else at
    last = rec.last_access if math.isfinite(rec.last_access) else at
    x["log_age_s"] = math.log1p(max(0.0, at - first))
    x["log_idle_s"] = math.log1p(max(0.0, at - last))
    day_phase = 2 * math.pi * (at % DAY) / DAY
    week_phase = 2 * math.pi * (((at / DAY) + EPOCH_WEEKDAY) % 7.0) / 7.0
    x["hour_sin"], x["hour_cos"] = math.sin(day_phase), math.cos(day_phase)
    x["dow_sin"], x["dow_cos"] = math.sin(week_phase), math.cos(week_phase)
    total = rec.reads + rec.writes
    x["write_share"] = rec.writes / total if total else 0.0
    x["log_reads"] = math.log1p(rec.reads)
    return x


def feature_names(params: HeatParams) -> list[str]:
    probe = HeatState(params)
    return list(object_features(params, probe, 0.0))
