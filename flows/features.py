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
TWO_PI = 2 * math.pi


_KEYS: dict[tuple[str, ...], tuple[list[str], list[str], list[str]]] = {}


def _keys(labels: tuple[str, ...]):
    keys = _KEYS.get(labels)
    if keys is None:
        keys = _KEYS[labels] = (
            [f"read_heat_{lab}" for lab in labels],
            [f"write_heat_{lab}" for lab in labels],
            [f"read_ratio_{labels[i]}_{labels[i + 1]}" for i in range(len(labels) - 1)],
        )
    return keys


def object_features(params: HeatParams, rec: HeatState, at: float, read_heat: list[float] | None = None,
                    write_heat: list[float] | None = None) -> dict[str, float]:
    """The features of `rec` at event time `at` (pass its heats at `at` if already computed)."""
    if read_heat is None or write_heat is None:
        read_heat, write_heat = rec.heats(params, at)
    rh = read_heat
    read_keys, write_keys, ratio_keys = _keys(params.labels)
    log1p = math.log1p
    # Built with C-level zip/map: this runs for every evaluation (most events), so Python-level loops show.
    x: dict[str, float] = dict(zip(read_keys, map(log1p, rh)))
    x.update(zip(write_keys, map(log1p, write_heat)))
    # Ratios between consecutive half-lives: > 1 means accelerating, < 1 fading.
    for i, k in enumerate(ratio_keys):
        x[k] = (rh[i] + EPS) / (rh[i + 1] + EPS)
    x["log_size"] = log1p(rec.size)
    first = min(at, rec.first_seen)
    last = rec.last_access if rec.last_access > -math.inf else at
    x["log_age_s"] = log1p(at - first)
    x["log_idle_s"] = log1p(at - last if at > last else 0.0)
    day_phase = TWO_PI * (at % DAY) / DAY
    week_phase = TWO_PI * (((at / DAY) + EPOCH_WEEKDAY) % 7.0) / 7.0
    x["hour_sin"] = math.sin(day_phase)
    x["hour_cos"] = math.cos(day_phase)
    x["dow_sin"] = math.sin(week_phase)
    x["dow_cos"] = math.cos(week_phase)
    reads = rec.reads
    total = reads + rec.writes
    x["write_share"] = rec.writes / total if total else 0.0
    x["log_reads"] = log1p(reads)
    return x


def feature_names(params: HeatParams) -> list[str]:
    probe = HeatState(params)
    return list(object_features(params, probe, 0.0))
