"""Delayed labels. Pure; shared by the flow and the offline evaluators.

A prediction made at event time `at` for object o asks: will o get >= k reads in [at, at + H]? Its label is known
only once the stream has moved past at + H (plus the allowed lateness), and only then is it released for
learning - the model never learns from the future. Reads are counted if they come *after* the prediction in
stream order with event time in [at, at + H]; "after in stream order" matters for traces with coarse timestamps
(many reads share one second): those that follow the prediction are the future, those before were features.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(slots=True, eq=False)  # eq=False: list.remove by identity, never by (costly) value
class Pending:
    key: str
    at: float
    x: dict[str, float]
    p: float  # the p_hot served when the prediction was made (for honest prequential evaluation)
    reads: int = 0
    basis: dict[str, float] | None = None  # the model's transform of x, when the predictor computed it already
    prior: float | None = None  # the heat prior's p_hot at `at`, which the model must beat to serve (flows/model.py)


@dataclass(slots=True)
class Labelled:
    key: str
    at: float
    x: dict[str, float]
    p: float
    y: bool
    basis: dict[str, float] | None = None
    prior: float | None = None


class DelayedLabels:
    def __init__(self, horizon_s: float, hot_reads: int):
        self.horizon_s = horizon_s
        self.hot_reads = hot_reads
        self._heap: list[tuple[float, int, Pending]] = []
        self._by_key: dict[str, list[Pending]] = {}
        self._seq = 0  # tie-break for equal deadlines: insertion order, never object identity

    def __len__(self) -> int:
        return len(self._heap)

    def pending(self) -> list[Pending]:
        """The predictions waiting for their label, in no particular order."""
        return [entry for _, _, entry in self._heap]

    def add(self, key: str, at: float, x: dict[str, float], p: float,
            basis: dict[str, float] | None = None, prior: float | None = None) -> None:
        entry = Pending(key, at, x, p, basis=basis, prior=prior)
        heapq.heappush(self._heap, (at + self.horizon_s, self._seq, entry))
        self._seq += 1
        self._by_key.setdefault(key, []).append(entry)

    def on_read(self, key: str, t: float) -> None:
        entries = self._by_key.get(key)
        if entries:
            h, k = self.horizon_s, self.hot_reads
            settled = False
            for e in entries:
                if e.at <= t <= e.at + h:
                    e.reads += 1
                    settled = settled or e.reads >= k
            if settled:
                # A prediction with k reads is labelled positive whatever follows: stop counting for it, so a hot
                # object's reads do not each walk all its pending predictions.
                entries[:] = [e for e in entries if e.reads < k]
                if not entries:
                    del self._by_key[key]

    def due(self, watermark: float) -> bool:
        """Is any prediction's horizon over at `watermark`?"""
        heap = self._heap
        return bool(heap) and heap[0][0] <= watermark

    def pop_due(self, watermark: float) -> list[Labelled]:
        """Predictions whose horizon ended at or before `watermark`, labelled, oldest first."""
        out: list[Labelled] = []
        heap = self._heap
        while heap and heap[0][0] <= watermark:
            _, _, e = heapq.heappop(heap)
            if e.reads < self.hot_reads:  # still counted (settled ones left the per-key list already)
                entries = self._by_key[e.key]
                entries.remove(e)
                if not entries:
                    del self._by_key[e.key]
            out.append(Labelled(e.key, e.at, e.x, e.p, e.reads >= self.hot_reads, e.basis, e.prior))
        return out
