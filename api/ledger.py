"""The cost ledger per location per day (pure: no I/O).

Inputs are aggregates the store computes from the deduplicated raw tables; prices come from the solver's
catalogue (`solver.catalogue`), the same one the placement decisions are made with.

The formulas are solver.costs' (binary GB, 30-day months), applied to what happened instead of a forecast:
- storage: billable GB-days (each replica max(size, min billable) + per-object overhead) x $/GB-month / 30;
- requests: GETs are charged at the replica that serves them (where a read is cheapest: GET + size x
  (retrieval + internet egress), as the solver assumes), PUTs at every replica;
- retrieval: bytes read from the serving replica x $/GB retrieval;
- egress: bytes read, leaving the serving replica's provider to the client (internet egress), plus bytes
  copied by moves, charged to the source location (catalogue egress matrix);
- early deletion: a replica dropped before the location's minimum storage duration pays the remaining days;
- monitoring: per-object monitoring fee, when the catalogue has one (`monitoring_usd_per_1k_objects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from solver.catalogue import Catalogue
from solver.costs import DAYS_PER_MONTH, GB  # the same units as the solver's cost model (binary GB)


@dataclass
class LocationDay:
    objects: int = 0
    gb_days: float = 0.0
    get_requests: int = 0
    put_requests: int = 0
    retrieval_gb: float = 0.0
    read_egress_gb: float = 0.0  # bytes read, to clients over the internet
    egress_gb: float = 0.0
    egress_usd: float = 0.0
    early_deletion_usd: float = 0.0
    copy_retrieval_usd: float = 0.0  # moves' copies: retrieval at their source
    copy_request_usd: float = 0.0  # moves' copies: a GET at the source, a PUT at the target


@dataclass(frozen=True)
class Copy:
    """Bytes copied from `src` to `dst` by moves (egress and retrieval are billed by the source, as in
    solver.costs.add_cost: size x (egress + retrieval) + a GET at the source and a PUT at the target)."""

    day: int  # days since epoch
    src: str
    dst: str
    bytes: int
    copies: int = 1


@dataclass(frozen=True)
class DroppedReplica:
    day: int
    location: str
    bytes: int
    days_held: float


@dataclass
class LedgerInput:
    # (day, location) -> usage
    usage: dict[tuple[int, str], LocationDay] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    dropped: list[DroppedReplica] = field(default_factory=list)


def monitoring_usd_per_1k(loc) -> float:
    return float(getattr(loc, "monitoring_usd_per_1k_objects", 0.0) or 0.0)


def ledger_rows(inp: LedgerInput, catalogue: Catalogue) -> list[dict]:
    """One row per (day, location) with usage; unknown locations are skipped (they cannot be priced)."""
    known = {loc.id: loc for loc in catalogue.locations}
    usage = {k: LocationDay(**vars(v)) for k, v in inp.usage.items()}
    for c in inp.copies:
        if c.src not in known or c.dst not in known:
            continue
        u = usage.setdefault((c.day, c.src), LocationDay())
        u.egress_gb += c.bytes / GB
        u.egress_usd += c.bytes / GB * catalogue.egress_usd_gb(c.src, c.dst)
        # Priced into the retrieval and request dollars, not the volumes: those columns are the clients' reads
        # and writes (`/savings` prices them at the all-hot tiers).
        src, dst = known[c.src], known[c.dst]
        u.copy_retrieval_usd += c.bytes / GB * src.retrieval_usd_gb
        u.copy_request_usd += c.copies / 1000 * src.get_usd_per_1k
        usage.setdefault((c.day, c.dst), LocationDay()).copy_request_usd += c.copies / 1000 * dst.put_usd_per_1k
    for d in inp.dropped:
        loc = known.get(d.location)
        if loc is None:
            continue
        remaining = max(0.0, loc.min_storage_days - d.days_held)
        billable = (max(d.bytes, loc.min_billable_bytes) + loc.overhead_bytes) / GB
        usage.setdefault((d.day, d.location), LocationDay()).early_deletion_usd += (
            billable * loc.storage_usd_gb_month / DAYS_PER_MONTH * remaining)
    rows = []
    for (day, location), u in sorted(usage.items()):
        loc = known.get(location)
        if loc is None:
            continue
        u.egress_gb += u.read_egress_gb
        u.egress_usd += u.read_egress_gb * catalogue.internet_egress_usd_gb(location)
        storage = u.gb_days * loc.storage_usd_gb_month / DAYS_PER_MONTH
        request = (u.get_requests / 1000 * loc.get_usd_per_1k + u.put_requests / 1000 * loc.put_usd_per_1k
                   + u.copy_request_usd)
        retrieval = u.retrieval_gb * loc.retrieval_usd_gb + u.copy_retrieval_usd
        monitoring = u.objects / 1000 * monitoring_usd_per_1k(loc) / DAYS_PER_MONTH
        rows.append({
            "day": day, "location": location, "provider": loc.provider, "tier": loc.tier,
            "objects": u.objects, "gb_days": u.gb_days, "get_requests": u.get_requests,
            "put_requests": u.put_requests, "retrieval_gb": u.retrieval_gb, "egress_gb": u.egress_gb,
            "storage_usd": storage, "request_usd": request, "retrieval_usd": retrieval,
            "egress_usd": u.egress_usd, "early_deletion_usd": u.early_deletion_usd,
            "monitoring_usd": monitoring,
            "total_usd": storage + request + retrieval + u.egress_usd + u.early_deletion_usd + monitoring,
        })
    return rows


def all_hot_location(catalogue: Catalogue, location_id: str):
    """The hot tier standing in for `location_id` in the all-hot baseline: same provider and region, no
    restore, no minimum storage duration; the most expensive such tier (the default a user would pick)."""
    loc = catalogue.location(location_id)
    hot = [c for c in catalogue.locations if c.provider == loc.provider and c.region == loc.region
           and not c.archive and c.min_storage_days == 0]
    return max(hot, key=lambda c: c.storage_usd_gb_month) if hot else loc


@dataclass(frozen=True)
class LocationUsage:
    """Monthly usage of one location: stored bytes now and request volume per month."""

    location: str
    objects: int
    billable_bytes: float
    gets_month: float
    puts_month: float
    retrieval_gb_month: float
    # the same objects' billable bytes at the location's all-hot stand-in (its own minimum size and per-object
    # overhead: an archive tier's 40 KB of metadata per object is not part of the baseline); None: as above
    baseline_bytes: float | None = None


def monthly_cost(u: LocationUsage, loc, catalogue: Catalogue) -> float:
    return (u.billable_bytes / GB * loc.storage_usd_gb_month
            + u.gets_month / 1000 * loc.get_usd_per_1k + u.puts_month / 1000 * loc.put_usd_per_1k
            + u.retrieval_gb_month * (loc.retrieval_usd_gb + catalogue.internet_egress_usd_gb(loc.id))
            + u.objects / 1000 * monitoring_usd_per_1k(loc))


def all_hot_comparison(usage: list[LocationUsage], catalogue: Catalogue) -> tuple[float, float]:
    """(current $/month, all-hot baseline $/month) for the same objects and request volume."""
    current = baseline = 0.0
    known = {loc.id for loc in catalogue.locations}
    for u in usage:
        if u.location not in known:
            continue
        current += monthly_cost(u, catalogue.location(u.location), catalogue)
        hot_usage = u if u.baseline_bytes is None else replace(u, billable_bytes=u.baseline_bytes)
        baseline += monthly_cost(hot_usage, all_hot_location(catalogue, u.location), catalogue)
    return current, baseline
