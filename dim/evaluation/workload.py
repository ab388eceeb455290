"""A request trace as numpy arrays in simulated (event) time, cut into planning slots. Pure apart from reading the
trace file through `dim.traces.read_trace`.

Scaling is the producers' (`dim.producers.ReplayOptions` / `to_event`): event time = start + time_s * time_scale,
size = round(size_bytes * size_scale). `load_workload` checks its vectorised scaling against `to_event` on the
first record, so the simulator and `dim replay` can never disagree on what a trace means.

An object exists from its first request on (a cache trace: the miss that fills it is its write) until the end of
the simulated window; it is created at the initial locations, like the producers do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dim.producers import ReplayOptions, to_event
from dim.traces import OPS, TraceRecord, read_trace

OP_CODE = {op: i for i, op in enumerate(OPS)}  # GET=0, PUT=1, HEAD=2, DELETE=3
GET = OP_CODE["GET"]
SECONDS_PER_DAY = 86_400.0


@dataclass
class Workload:
    """Events sorted by event time; objects indexed 0..N-1 in order of first appearance."""

    keys: list[str]  # object key (the trace's object id)
    bucket: str
    size: np.ndarray  # (N,) scaled bytes
    birth: np.ndarray  # (N,) event time of the first request
    ev_time: np.ndarray  # (E,) event time
    ev_obj: np.ndarray  # (E,) object index
    ev_op: np.ndarray  # (E,) OP_CODE
    t0: float  # start of slot 0
    slot_s: float
    n_slots: int
    reads: np.ndarray  # (N, S) int32 GETs per object per slot
    slot_event_bounds: np.ndarray  # (S+1,) index of the first event of each slot
    time_scale: float = 1.0
    size_scale: float = 1.0

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def slot_days(self) -> float:
        return self.slot_s / SECONDS_PER_DAY

    def slot_start(self, s: int) -> float:
        return self.t0 + s * self.slot_s

    def alive_fraction(self, s: int) -> np.ndarray:
        """(N,) share of slot s during which each object exists."""
        start, end = self.slot_start(s), self.slot_start(s + 1)
        return np.clip((end - np.maximum(self.birth, start)) / self.slot_s, 0.0, 1.0)

    def born_by(self, t: float) -> np.ndarray:
        return self.birth < t


def from_records(records, opt: ReplayOptions, slot_s: float = SECONDS_PER_DAY) -> Workload:
    """Arrays from TraceRecords (any iterable), scaled as `opt` says."""
    index: dict[str, int] = {}
    times: list[float] = []
    objs: list[int] = []
    ops: list[int] = []
    sizes: list[int] = []
    first: TraceRecord | None = None
    for rec in records:
        if first is None:
            first = rec
        i = index.get(rec.object)
        if i is None:
            i = index[rec.object] = len(index)
            sizes.append(rec.size)
        elif rec.size > sizes[i]:
            sizes[i] = rec.size  # sizes are constant per object in our traces; if not, bill the largest
        times.append(rec.time_s)
        objs.append(i)
        ops.append(OP_CODE[rec.op])
    if first is None:
        raise ValueError("the trace has no requests")
    t = np.asarray(times, dtype=float)
    ev_time = opt.start + t * opt.time_scale
    size = np.rint(np.asarray(sizes, dtype=float) * opt.size_scale).astype(np.int64)
    ev = to_event(first, opt)  # the producers' scaling is the reference: ours must agree with it
    if not (math.isclose(ev.event_time, ev_time[0]) and ev.object_size == size[0]):
        raise AssertionError("vectorised trace scaling disagrees with dim.producers.to_event")
    order = np.argsort(ev_time, kind="stable")  # traces are time-sorted; be safe if one is not
    ev_time, ev_obj, ev_op = ev_time[order], np.asarray(objs, dtype=np.int64)[order], np.asarray(ops, np.int8)[order]
    n = len(index)
    birth = np.full(n, np.inf)
    np.minimum.at(birth, ev_obj, ev_time)
    t0 = float(ev_time[0])
    n_slots = max(1, math.floor((ev_time[-1] - t0) / slot_s) + 1)
    slot_of = np.minimum(((ev_time - t0) // slot_s).astype(np.int64), n_slots - 1)
    reads = np.zeros((n, n_slots), dtype=np.int32)
    is_get = ev_op == GET
    np.add.at(reads, (ev_obj[is_get], slot_of[is_get]), 1)
    bounds = np.searchsorted(slot_of, np.arange(n_slots + 1), side="left")
    return Workload(keys=list(index), bucket=opt.bucket, size=size, birth=birth, ev_time=ev_time, ev_obj=ev_obj,
                    ev_op=ev_op, t0=t0, slot_s=slot_s, n_slots=n_slots, reads=reads, slot_event_bounds=bounds,
                    time_scale=opt.time_scale, size_scale=opt.size_scale)


def load_workload(path: Path, opt: ReplayOptions, slot_s: float = SECONDS_PER_DAY, fmt: str | None = None,
                  limit: int | None = None) -> Workload:
    return from_records(read_trace(Path(path), fmt=fmt, limit=limit), opt, slot_s)
