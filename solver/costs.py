"""The cost model: what an object costs at a set of locations over the planning horizon, and what changing its
replica set costs once. Pure functions over numpy arrays (one row per object, one column per catalogue location);
the single-object helpers at the bottom call the same code with one row.

Per object i and location l, over a horizon of H days (H/30 months):
  hold[i,l]  = billable_GB(i,l) * storage(l) * H/30            billable = max(size, min_billable) + overhead
  serve[i,l] = reads_i * (GET(l)/1000 + GB_i * (retrieval(l) + internet_egress(provider(l))))
               + lambda * reads_i          if latency(l) > SLA and reads_i > sla_min_reads   (soft SLA penalty)
  add[i,l]   = cheapest copy into l from a current replica s:
               GB_i * (egress(s,l) + retrieval(s)) + GET(s)/1000  + PUT(l)/1000
  drop[i,l]  = early-deletion charge of removing a replica aged a days:
               billable_GB(i,l) * storage(l) * max(0, min_days(l) - a)/30
Reads are served by the replica with the cheapest serve cost, so an object's horizon cost at set T is
  sum_{l in T} hold[i,l] + min_{l in T} serve[i,l]
and moving from S to T costs  sum_{l in T\\S} add[i,l] + sum_{l in S\\T} drop[i,l]  (counted once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.catalogue import Catalogue

GB = float(1 << 30)  # the providers bill binary gigabytes
DAYS_PER_MONTH = 30.0


@dataclass(frozen=True)
class LocationArrays:
    """The catalogue as vectors over its locations (index = position in `catalogue.locations`)."""

    ids: tuple[str, ...]
    providers: tuple[str, ...]  # distinct providers, in first-seen order
    provider_of: np.ndarray  # (L,) index into providers
    storage: np.ndarray
    retrieval: np.ndarray
    get: np.ndarray  # $ per request
    put: np.ndarray
    min_days: np.ndarray
    min_bytes: np.ndarray
    overhead_bytes: np.ndarray
    latency_ms: np.ndarray
    archive: np.ndarray  # bool
    egress: np.ndarray  # (L, L) $/GB from row to column
    internet: np.ndarray  # (L,) $/GB to a client

    @classmethod
    def of(cls, cat: Catalogue) -> LocationArrays:
        locs = cat.locations
        providers = tuple(dict.fromkeys(loc.provider for loc in locs))
        arr = lambda f: np.array([f(loc) for loc in locs], dtype=float)
        return cls(
            ids=cat.ids,
            providers=providers,
            provider_of=np.array([providers.index(loc.provider) for loc in locs], dtype=np.int64),
            storage=arr(lambda x: x.storage_usd_gb_month),
            retrieval=arr(lambda x: x.retrieval_usd_gb),
            get=arr(lambda x: x.get_usd_per_1k / 1000.0),
            put=arr(lambda x: x.put_usd_per_1k / 1000.0),
            min_days=arr(lambda x: x.min_storage_days),
            min_bytes=arr(lambda x: x.min_billable_bytes),
            overhead_bytes=arr(lambda x: x.overhead_bytes),
            latency_ms=arr(lambda x: x.read_latency_ms),
            archive=np.array([loc.archive for loc in locs], dtype=bool),
            egress=np.array([[cat.egress_usd_gb(a.id, b.id) for b in locs] for a in locs], dtype=float),
            internet=arr(lambda x: cat.internet_egress_usd_gb(x.id)),
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CostParams:
    horizon_days: float = 30.0
    sla_ms: float = 100.0
    sla_penalty_usd: float = 0.001
    sla_min_reads: float = 1.0


@dataclass
class CostMatrices:
    """hold, serve, add, drop: (N, L) dollars over the horizon, as defined in the module docstring."""

    hold: np.ndarray
    serve: np.ndarray
    add: np.ndarray
    drop: np.ndarray
    sla_violation: np.ndarray  # (N, L) bool: reads served from l count as SLA violations


def billable_gb(size: np.ndarray, la: LocationArrays) -> np.ndarray:
    size = np.asarray(size, dtype=float)[:, None]
    return (np.maximum(size, la.min_bytes[None, :]) + la.overhead_bytes[None, :]) / GB


def hold_cost(size: np.ndarray, la: LocationArrays, horizon_days: float) -> np.ndarray:
    return billable_gb(size, la) * la.storage[None, :] * (horizon_days / DAYS_PER_MONTH)


def read_cost_per_read(size: np.ndarray, la: LocationArrays) -> np.ndarray:
    gb = np.asarray(size, dtype=float)[:, None] / GB
    return la.get[None, :] + gb * (la.retrieval + la.internet)[None, :]


def sla_violation(reads: np.ndarray, la: LocationArrays, p: CostParams) -> np.ndarray:
    reads = np.asarray(reads, dtype=float)[:, None]
    return (la.latency_ms[None, :] > p.sla_ms) & (reads > p.sla_min_reads)


def serve_cost(size: np.ndarray, reads: np.ndarray, la: LocationArrays, p: CostParams) -> np.ndarray:
    r = np.asarray(reads, dtype=float)[:, None]
    return r * read_cost_per_read(size, la) + p.sla_penalty_usd * r * sla_violation(reads, la, p)


def add_cost(size: np.ndarray, current: np.ndarray, la: LocationArrays) -> np.ndarray:
    """Cost of creating a replica at each location, copying from the cheapest current replica. 0 where one
    already is. Objects without any current replica pay only the PUT (the data comes from the writer)."""
    gb = np.asarray(size, dtype=float)[:, None] / GB
    best = np.full(current.shape, np.inf)
    for s in range(len(la)):  # one source location at a time keeps memory at N x L
        has = current[:, s]
        if not has.any():
            continue
        # whole arrays, masked: boolean-indexed row copies of (N, L) arrays cost twice as much at 1M objects
        via = np.where(has[:, None], gb * (la.egress[s] + la.retrieval[s])[None, :] + la.get[s], np.inf)
        np.minimum(best, via, out=best)
    best = np.where(np.isfinite(best), best, 0.0)
    return np.where(current, 0.0, best + la.put[None, :])


def drop_cost(size: np.ndarray, age_days: np.ndarray, current: np.ndarray, la: LocationArrays) -> np.ndarray:
    """Early-deletion charge of removing each current replica given its age (0 where there is none)."""
    remaining = np.maximum(0.0, la.min_days[None, :] - age_days)
    return np.where(current, billable_gb(size, la) * la.storage[None, :] * remaining / DAYS_PER_MONTH, 0.0)


def cost_matrices(size, reads, current, age_days, la: LocationArrays, p: CostParams) -> CostMatrices:
    size = np.asarray(size, dtype=float)
    current = np.asarray(current, dtype=bool)
    return CostMatrices(
        hold=hold_cost(size, la, p.horizon_days),
        serve=serve_cost(size, reads, la, p),
        add=add_cost(size, current, la),
        drop=drop_cost(size, np.asarray(age_days, dtype=float), current, la),
        sla_violation=sla_violation(reads, la, p),
    )


def set_cost(cm: CostMatrices, i: int, locs: list[int]) -> float:
    """Horizon cost (storage + reads + SLA penalty) of object i at location indices `locs`."""
    if not locs:
        return float("inf")
    return float(cm.hold[i, locs].sum() + cm.serve[i, locs].min())


def transition(cm: CostMatrices, i: int, from_locs: list[int], to_locs: list[int]) -> float:
    """One-off cost of changing object i's replica set (copies in, early deletions out)."""
    added = [loc for loc in to_locs if loc not in from_locs]
    dropped = [loc for loc in from_locs if loc not in to_locs]
    return float(cm.add[i, added].sum() + cm.drop[i, dropped].sum())


# ---- single-object helpers (same formulas, one row) -------------------------------------------------------------


def object_costs(
    cat: Catalogue,
    size: int,
    reads: float,
    current: dict[str, float],
    p: CostParams,
    la: LocationArrays | None = None,
) -> CostMatrices:
    """Cost matrices of one object; `current` maps its current location ids to replica ages in days."""
    la = la or LocationArrays.of(cat)
    cur = np.array([[lid in current for lid in la.ids]])
    age = np.array([[current.get(lid, 0.0) for lid in la.ids]])
    return cost_matrices(np.array([size]), np.array([reads]), cur, age, la, p)


def horizon_cost(cat: Catalogue, size: int, reads: float, locations: list[str], p: CostParams) -> float:
    cm = object_costs(cat, size, reads, {}, p)
    return set_cost(cm, 0, [cat.index(lid) for lid in locations])


def transition_cost(
    cat: Catalogue, size: int, current: dict[str, float], to: list[str], p: CostParams
) -> float:
    cm = object_costs(cat, size, 0.0, current, p)
    return transition(cm, 0, [cat.index(lid) for lid in current], [cat.index(lid) for lid in to])
