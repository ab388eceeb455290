"""A seeded synthetic workload: the access patterns tiering must cope with. Pure: yields `TraceRecord`s.

- Zipf popularity across objects (a few objects get most reads),
- a diurnal cycle (traffic peaks in the afternoon, dips at night),
- viral bursts (a random object becomes very hot for a few hours),
- fading interest (an object's popularity decays exponentially with its age),
- new uploads (objects appear over time, each with a PUT first).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dim.traces import TraceRecord


@dataclass(frozen=True)
class WorkloadSpec:
    objects: int = 2_000
    events: int = 50_000
    duration_s: float = 14 * 86400.0
    zipf_alpha: float = 1.1
    diurnal_amplitude: float = 0.6  # 0: flat, 1: no traffic at the night trough
    bursts: int = 5
    burst_duration_s: float = 6 * 3600.0
    burst_share: float = 0.1  # fraction of all reads that go to bursts
    fade_half_life_s: float = 3 * 86400.0
    initial_objects_share: float = 0.5  # the rest is uploaded during the run
    size_median_bytes: int = 64 * 1024
    size_sigma: float = 1.5
    write_share: float = 0.02
    seed: int = 42


def generate(spec: WorkloadSpec) -> Iterator[TraceRecord]:
    rng = np.random.default_rng(spec.seed)
    n = spec.objects
    sizes = np.maximum(1, rng.lognormal(math.log(spec.size_median_bytes), spec.size_sigma, n)).astype(np.int64)
    # Upload times: a share exists at t=0, the rest arrives uniformly over the run.
    n_initial = int(n * spec.initial_objects_share)
    upload = np.concatenate([np.zeros(n_initial), np.sort(rng.uniform(0, spec.duration_s, n - n_initial))])
    weight = 1.0 / np.arange(1, n + 1) ** spec.zipf_alpha
    weight = weight[rng.permutation(n)]  # popularity independent of upload order

    records: list[tuple[float, int, str]] = [(0.0 if i < n_initial else float(upload[i]), i, "PUT")
                                             for i in range(n)]
    n_burst = int(spec.events * spec.burst_share) if spec.bursts else 0
    n_regular = max(0, spec.events - n - n_burst)

    # Regular reads: draw times from the diurnal rate, then objects by popularity x fading interest at that time.
    times = _diurnal_times(rng, n_regular, spec.duration_s, spec.diurnal_amplitude)
    decay = math.log(2) / spec.fade_half_life_s
    # Popularity is re-weighted once per hour of event time (vectorised draw per hour); an object uploaded during
    # an hour becomes readable from the next one, so no read ever precedes its upload.
    hours = np.floor(times / 3600.0)
    for hour in np.unique(hours):
        t_hour = times[hours == hour]
        start = hour * 3600.0
        age = start - upload
        w = np.where(age >= 0, weight * np.exp(-decay * np.maximum(age, 0)), 0.0)
        total = w.sum()
        if total <= 0:
            continue
        objs = rng.choice(n, size=len(t_hour), p=w / total)
        u = rng.random(len(t_hour))
        for t, obj, x in zip(t_hour, objs, u):
            op = "PUT" if x < spec.write_share else ("HEAD" if x < spec.write_share + 0.03 else "GET")
            records.append((float(max(t, upload[obj])), int(obj), op))

    # Viral bursts: a random object (already uploaded) gets a dense run of reads.
    burst_s = min(spec.burst_duration_s, spec.duration_s)  # a workload shorter than a burst: one burst fills it
    for b in range(spec.bursts):
        start = float(rng.uniform(0, spec.duration_s - burst_s))
        eligible = np.flatnonzero(upload <= start)
        obj = int(rng.choice(eligible)) if len(eligible) else 0
        k = n_burst // spec.bursts
        for t in np.sort(rng.uniform(start, start + burst_s, k)):
            records.append((float(t), obj, "GET"))

    records.sort(key=lambda r: (r[0], r[1]))
    for line, (t, obj, op) in enumerate(records, start=1):
        yield TraceRecord(t, f"obj-{obj:07d}", int(sizes[obj]), op, line)


def _diurnal_times(rng: np.random.Generator, k: int, duration: float, amplitude: float) -> np.ndarray:
    """k event times in [0, duration) from a rate proportional to 1 + a*sin(2*pi*(t/day - 0.375))
    (peak mid-afternoon), by rejection sampling."""
    out = np.empty(0)
    while len(out) < k:
        t = rng.uniform(0, duration, 2 * (k - len(out)) + 16)
        rate = 1 + amplitude * np.sin(2 * np.pi * (t / 86400.0 - 0.375))
        keep = rng.uniform(0, 1 + amplitude, len(t)) < rate
        out = np.concatenate([out, t[keep]])
    return np.sort(out[:k])
