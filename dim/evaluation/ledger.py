"""The bill of one policy, slot by slot, from the shared cost model (solver.costs). Pure numpy over objects.

Per slot s (placements decided at its start, applied at once):
- transitions: each added replica costs `add_cost` (copy from the cheapest current replica: transfer + retrieval +
  GET + PUT), each dropped one `drop_cost` (early deletion by its age);
- storage: `hold_cost` over the slot (min billable size, per-object overhead), times the share of the slot the
  object exists;
- reads: each GET is served by the cheapest replica that meets the SLA (the cheapest of all if none does):
  `read_cost_per_read` = GET + retrieval + transfer to the client; reads served from a replica slower than the SLA
  are SLA-violating reads.
Managed products (S3 Intelligent-Tiering, GCS Autoclass) are billed by their own rules: tier changes, retrieval and
early deletion are free, GETs cost the frequent-tier price, and a monitoring fee per object above the size floor.
Object creation at the initial locations is the writer's cost and the same for every policy: not billed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from solver.catalogue import TIER_CLASSES, Catalogue
from solver.costs import (
    DAYS_PER_MONTH,
    GB,
    LocationArrays,
    add_cost,
    drop_cost,
    hold_cost,
    read_cost_per_read,
)

COMPONENTS = ("storage", "retrieval", "requests", "transfer", "early_deletion", "monitoring")
_AVOID = 1e30  # added to a replica's read cost when it misses the SLA: serve from it only if nothing else can


@dataclass(frozen=True)
class Managed:
    """Billing rules of an automatic-tiering product."""

    monitoring_usd_per_1k_month: float = 0.0025
    min_monitored_bytes: int = 128 * 1024


@dataclass
class Ledger:
    catalogue: Catalogue
    la: LocationArrays
    size: np.ndarray  # (N,) bytes
    birth: np.ndarray  # (N,) event time
    initial: np.ndarray  # (L,) bool: where every object is created
    slot_s: float
    sla_ms: float
    n_slots: int
    t0: float = 0.0  # event time of the start of slot 0
    managed: Managed | None = None
    where: np.ndarray = field(init=False)  # (N, L) bool current replicas
    since: np.ndarray = field(init=False)  # (N, L) event time each replica was created
    per_slot: dict = field(init=False)  # component -> (S,) dollars
    tier_bytes: np.ndarray = field(init=False)  # (S, len(TIER_CLASSES)) replica bytes per tier class
    reads_total: int = 0
    reads_violating: int = 0
    bytes_moved: float = 0.0
    moves: int = 0
    violating_per_slot: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.size)
        self.where = np.repeat(self.initial[None, :], n, axis=0)
        self.since = np.where(self.where, self.birth[:, None], 0.0)
        self.per_slot = {c: np.zeros(self.n_slots) for c in COMPONENTS}
        self.tier_bytes = np.zeros((self.n_slots, len(TIER_CLASSES)))
        self.violating_per_slot = np.zeros(self.n_slots)
        la = self.la
        days = self.slot_s / 86_400.0
        self._hold = hold_cost(self.size, la, days)  # (N, L) dollars per full slot
        self._gb = self.size.astype(float) / GB
        self._violates = la.latency_ms > self.sla_ms
        self._class_of = np.array([TIER_CLASSES.index(loc.tier_class) for loc in self.catalogue.locations])
        if self.managed is None:
            self._get = la.get
            self._retrieval = la.retrieval
        else:  # GETs at the frequent tier's price, no retrieval fees
            hot_get = {}
            for loc, g in zip(self.catalogue.locations, la.get):
                if loc.tier_class == "hot":
                    hot_get.setdefault(loc.provider, g)
            self._get = np.array([hot_get.get(loc.provider, g) for loc, g in zip(self.catalogue.locations, la.get)])
            self._retrieval = np.zeros(len(la))
        # read_cost_per_read is the shared model's price of a read; we split it into components for the
        # breakdown and check the split adds up to it.
        if self.managed is None and len(self.size):
            whole = read_cost_per_read(self.size[:1], la)[0]
            parts = self._get + self._gb[0] * (self._retrieval + la.internet)
            assert np.allclose(whole, parts), "read cost breakdown disagrees with solver.costs"

    # -- one slot ---------------------------------------------------------------------------------------------
    def apply(self, s: int, target: np.ndarray) -> None:
        """Move to placement `target` (N, L) bool at the start of slot s (objects not yet born keep theirs)."""
        t = self.slot_start(s)
        born = self.birth < t
        changed = born & (target != self.where).any(axis=1)
        rows = np.flatnonzero(changed)
        if rows.size == 0:
            return
        cur, new = self.where[rows], target[rows]
        added, dropped = new & ~cur, cur & ~new
        size = self.size[rows]
        self.moves += int(rows.size)
        self.bytes_moved += float((added * size[:, None]).sum())
        if self.managed is None:
            self._charge_copies(s, rows, cur, added)
            age = (t - self.since[rows]) / 86_400.0
            early = drop_cost(size, age, cur, self.la)
            self.per_slot["early_deletion"][s] += float((early * dropped).sum())
        self.where[rows] = new
        self.since[rows] = np.where(added, t, self.since[rows])

    def _charge_copies(self, s: int, rows: np.ndarray, cur: np.ndarray, added: np.ndarray) -> None:
        la, gb = self.la, self._gb[rows][:, None]
        total = add_cost(self.size[rows], cur, la)  # the shared model: cheapest source per target
        # Which source add_cost picked, to split its price into transfer / retrieval / requests.
        best = np.full(cur.shape, np.inf)
        src = np.zeros(cur.shape, dtype=np.int64)
        for l in range(len(la)):
            has = cur[:, l]
            if not has.any():
                continue
            via = gb[has] * (la.egress[l] + la.retrieval[l])[None, :] + la.get[l]
            better = via < best[has]
            b, sr = best[has], src[has]
            b[better], sr[better] = via[better], l
            best[has], src[has] = b, sr
        transfer = gb * la.egress[src, np.arange(len(la))[None, :]]
        retrieval = gb * la.retrieval[src]
        requests = la.get[src] + la.put[None, :]
        assert np.allclose(np.where(added, transfer + retrieval + requests, 0), np.where(added, total, 0)), \
            "copy cost breakdown disagrees with solver.costs.add_cost"
        self.per_slot["transfer"][s] += float((transfer * added).sum())
        self.per_slot["retrieval"][s] += float((retrieval * added).sum())
        self.per_slot["requests"][s] += float((requests * added).sum())

    def run_slot(self, s: int, reads: np.ndarray) -> None:
        """Storage, reads (reads (N,) GETs in slot s) and monitoring of slot s at the current placement."""
        alive = self._alive(s)
        where = self.where
        self.per_slot["storage"][s] += float(((self._hold * where).sum(axis=1) * alive).sum())
        replica_bytes = where * (self.size * alive)[:, None]
        self.tier_bytes[s] = np.bincount(self._class_of, weights=replica_bytes.sum(axis=0),
                                         minlength=len(TIER_CLASSES))
        r = np.flatnonzero(reads)
        if r.size:
            n_reads = reads[r].astype(float)
            gb = self._gb[r][:, None]
            per_read = self._get[None, :] + gb * (self._retrieval + self.la.internet)[None, :]
            choice = np.where(where[r], per_read + _AVOID * self._violates[None, :], np.inf).argmin(axis=1)
            self.per_slot["requests"][s] += float((n_reads * self._get[choice]).sum())
            self.per_slot["retrieval"][s] += float((n_reads * gb[:, 0] * self._retrieval[choice]).sum())
            self.per_slot["transfer"][s] += float((n_reads * gb[:, 0] * self.la.internet[choice]).sum())
            bad = float(n_reads[self._violates[choice]].sum())
            self.reads_total += int(n_reads.sum())
            self.reads_violating += int(bad)
            self.violating_per_slot[s] += bad
        if self.managed is not None:
            monitored = (self.size >= self.managed.min_monitored_bytes)
            objects = float((where.sum(axis=1) * monitored * alive).sum())
            months = self.slot_s / 86_400.0 / DAYS_PER_MONTH
            self.per_slot["monitoring"][s] += objects * self.managed.monitoring_usd_per_1k_month / 1000 * months

    # -- helpers ----------------------------------------------------------------------------------------------
    def slot_start(self, s: int) -> float:
        return self.t0 + s * self.slot_s

    def _alive(self, s: int) -> np.ndarray:
        start, end = self.slot_start(s), self.slot_start(s + 1)
        return np.clip((end - np.maximum(self.birth, start)) / self.slot_s, 0.0, 1.0)

    def cumulative(self) -> np.ndarray:
        return np.cumsum(sum(self.per_slot.values()))

    def result(self) -> dict:
        breakdown = {c: float(v.sum()) for c, v in self.per_slot.items()}
        return {
            "total_cost_usd": float(sum(breakdown.values())),
            "breakdown": breakdown,
            "sla_violating_read_fraction": self.reads_violating / self.reads_total if self.reads_total else 0.0,
            "sla_violating_reads": self.reads_violating,
            "reads": self.reads_total,
            "bytes_moved": self.bytes_moved,
            "moves": self.moves,
        }
