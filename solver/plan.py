"""From candidates and their current placements to a PlacementPlan. Pure: no I/O, the caller passes `now`.

The offline evaluator and the live service both call `plan_placements`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dim.config import SolverPolicy, SolverSettings
from schemas import Candidate, Move, Placement, PlacementPlan
from solver.catalogue import Catalogue
from solver.costs import CostParams, LocationArrays, cost_matrices
from solver.problem import Problem, Solution, effective_max_per_provider
from solver.solve import solve

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0


@dataclass
class PlanResult:
    plan: PlacementPlan
    skipped: Counter = field(default_factory=Counter)  # reason -> objects not planned
    solution: Solution | None = None
    problem: Problem | None = None
    keys: list[tuple[str, str]] = field(default_factory=list)  # the objects of `problem`, in its row order


def plan_placements(
    candidates: list[Candidate],
    current: dict[tuple[str, str], Placement],
    catalogue: Catalogue,
    settings: SolverSettings,
    now: float,
) -> PlacementPlan:
    """Plan replica changes for `candidates`; `current` maps (bucket, key) to the catalog entry."""
    return plan_with_details(candidates, current, catalogue, settings, now).plan


def cost_params(settings: SolverSettings) -> CostParams:
    return CostParams(
        horizon_days=settings.planning_horizon_days,
        sla_ms=settings.sla_ms,
        sla_penalty_usd=settings.sla_penalty_usd,
        sla_min_reads=settings.sla_min_reads,
    )


def newest_per_object(candidates: list[Candidate]) -> list[Candidate]:
    newest: dict[tuple[str, str], Candidate] = {}
    for c in candidates:
        k = (c.bucket, c.key)
        if k not in newest or c.as_of >= newest[k].as_of:
            newest[k] = c
    return list(newest.values())


def expected_reads_over_horizon(c: Candidate, horizon_days: float) -> float:
    return c.expected_reads * horizon_days * SECONDS_PER_DAY / c.horizon_s


def policy_for(path: str, policies: list[SolverPolicy]) -> SolverPolicy | None:
    best = None
    for p in policies:
        if path.startswith(p.prefix) and (best is None or len(p.prefix) > len(best.prefix)):
            best = p
    return best


def policy_mask(catalogue: Catalogue, policy: SolverPolicy | None) -> np.ndarray:
    if policy is None:
        return np.ones(len(catalogue.locations), dtype=bool)
    ok = []
    for loc in catalogue.locations:
        allowed = True
        if policy.allowed_providers is not None:
            allowed &= loc.provider in policy.allowed_providers
        if policy.allowed_regions is not None:
            allowed &= loc.site in policy.allowed_regions or loc.region in policy.allowed_regions
        if policy.pinned_tier is not None:
            allowed &= policy.pinned_tier in (loc.tier, loc.tier_class)
        if not policy.allow_archive:
            allowed &= not loc.archive
        ok.append(allowed)
    return np.array(ok, dtype=bool)


def _can_hold(allowed: np.ndarray, la: LocationArrays, rf: int, max_pp: int) -> bool:
    per_provider = np.bincount(la.provider_of[allowed], minlength=len(la.providers))
    return int(np.minimum(per_provider, max_pp).sum()) >= rf


def plan_with_details(
    candidates: list[Candidate],
    current: dict[tuple[str, str], Placement],
    catalogue: Catalogue,
    settings: SolverSettings,
    now: float,
) -> PlanResult:
    la = LocationArrays.of(catalogue)
    params = cost_params(settings)
    skipped: Counter = Counter()
    rows: list[tuple[Candidate, Placement, int, int, np.ndarray]] = []
    masks: dict[int, np.ndarray] = {}
    # Rows in key order: the plan is a function of the candidate set, not of the order the broker delivered it in
    # (near-equal alternatives of the MILP otherwise depend on the row order; the simulator must match the service).
    for c in sorted(newest_per_object(candidates), key=lambda c: (c.bucket, c.key)):
        placement = current.get((c.bucket, c.key))
        reason = _skip_reason(c, placement, catalogue)
        if reason:
            skipped[reason] += 1
            continue
        policy = policy_for(f"{c.bucket}/{c.key}", settings.policies)
        mask = masks.setdefault(id(policy), policy_mask(catalogue, policy))
        backups_only = False  # archive locations may hold this object's backups, never its serving replica
        if expected_reads_over_horizon(c, params.horizon_days) > settings.archive_max_reads:
            servable = mask & ~la.archive
            # Only while a current replica can go on serving: an object that sits wholly in archive tiers and
            # is now expected to be read is moved out as before (its current set has no replica to serve from).
            if settings.archive_backups and servable.any() and any(
                servable[catalogue.index(loc)] for loc in placement.locations
            ):
                backups_only = True
            else:
                mask = servable
        rf = max(settings.replication_factor, (policy.min_replication_factor or 0) if policy else 0)
        n_prov = len(set(la.provider_of[mask].tolist()))
        max_pp = effective_max_per_provider(
            n_prov, rf, settings.provider_diversity, settings.max_replicas_per_provider
        )
        if not _can_hold(mask, la, rf, max_pp):
            skipped["policy_infeasible"] += 1
            continue
        rows.append((c, placement, rf, max_pp, mask, backups_only))
    for reason, count in skipped.items():
        log.info("solver skipped %d candidates: %s", count, reason)
    plan_id = _plan_id(catalogue.version, now, [(c.bucket, c.key, c.as_of) for c, *_ in rows])
    if not rows:
        return PlanResult(_empty_plan(plan_id, catalogue.version, now, len(candidates)), skipped)

    pb = _problem(rows, la, params, settings, catalogue, now)
    absurd = _cost_out_of_range(pb)
    if absurd.any():
        # Reads or sizes no real object has (1e300 reads, an exabyte read a billion times) overflow the costs or
        # drown every other object's in the solver's tolerances: those objects wait, the batch is planned.
        skipped["cost_out_of_range"] += int(absurd.sum())
        log.warning("solver skipped %d candidates whose costs are out of range (over $%.0e or not finite)",
                    int(absurd.sum()), MAX_OBJECT_COST_USD)
        rows = [r for r, bad in zip(rows, absurd) if not bad]
        if not rows:
            return PlanResult(_empty_plan(plan_id, catalogue.version, now, len(candidates)), skipped)
        pb = _problem(rows, la, params, settings, catalogue, now)
    sol = solve(pb, settings)
    if not np.isfinite(sol.objective) and not pb.keep_feasible().all():
        # Repairs (objects below RF or against their policy) that the budgets cannot pay for: leave those
        # objects as they are this cycle and plan the others, for which staying put is always feasible.
        forced = ~pb.keep_feasible()
        skipped["repair_over_budget"] += int(forced.sum())
        rows = [r for r, f in zip(rows, forced) if not f]
        if not rows:  # no problem left to describe: the one solved named only the objects now skipped
            return PlanResult(
                _empty_plan(plan_id, catalogue.version, now, len(candidates), method=sol.method), skipped, sol
            )
        pb = _problem(rows, la, params, settings, catalogue, now)
        sol = solve(pb, settings)
    if sol.status == "infeasible" or not np.isfinite(sol.objective):
        skipped["infeasible_batch"] += len(rows)
        log.warning("solver found no feasible plan for %d objects (%s)", len(rows), sol.status)
        return PlanResult(
            _empty_plan(plan_id, catalogue.version, now, len(candidates), method=sol.method),
            skipped,
            sol,
            pb,
            [(c.bucket, c.key) for c, *_ in rows],
        )

    keep = pb.keep_feasible()
    month = 30.0 / params.horizon_days
    horizon_before = _horizon_costs(pb, pb.current)
    horizon_after = _horizon_costs(pb, sol.chosen)
    # per-object figures for the whole batch at once (one pass over the arrays, not one per move)
    savings = horizon_before - horizon_after
    transitions = (pb.transition_linear * sol.chosen).sum(axis=1) + pb.const
    changed = np.flatnonzero((sol.chosen != pb.current).any(axis=1))
    moves: list[Move] = []
    for i in changed.tolist():
        c, placement, rf, *_ = rows[i]
        from_ids = placement.locations
        to_ids = _ordered(from_ids, [la.ids[l] for l in np.flatnonzero(sol.chosen[i])])
        saving = float(savings[i])
        trans = float(transitions[i])
        reason = _reason(c, now, catalogue, from_ids, to_ids, saving * month, trans, keep[i], rf, params)
        moves.append(
            Move(
                move_id=f"{plan_id}-{i}",
                plan_id=plan_id,
                bucket=c.bucket,
                key=c.key,
                size=c.size,
                from_locations=from_ids,
                to_locations=to_ids,
                expected_saving_usd=saving,
                transition_cost_usd=trans,
                reason=reason,
                expected_version=placement.version,
            )
        )
    plan = PlacementPlan(
        plan_id=plan_id,
        created_at=now,
        method=sol.method,
        catalogue_version=catalogue.version,
        candidates=len(candidates),
        objective_usd=sol.objective,
        lower_bound_usd=sol.lower_bound,
        gap=sol.gap,
        cost_before_usd_month=math.fsum(horizon_before.tolist())
        * month,  # exact sums: row order must not matter
        cost_after_usd_month=math.fsum(horizon_after.tolist()) * month,
        moves=moves,
    )
    return PlanResult(plan, skipped, sol, pb, [(c.bucket, c.key) for c, *_ in rows])


def _skip_reason(c: Candidate, placement: Placement | None, catalogue: Catalogue) -> str | None:
    if c.growing:
        return "growing"
    if c.outlook == "gone":
        return "gone"
    if placement is None:
        return "no_catalog_entry"
    if placement.deleted:
        return "deleted"
    if not placement.replicas:
        return "no_replicas"
    if any(not catalogue.has(loc) for loc in placement.locations):
        return "unknown_location"
    return None


def _problem(
    rows, la: LocationArrays, params: CostParams, settings: SolverSettings, catalogue: Catalogue, now: float
) -> Problem:
    n, L = len(rows), len(la)
    size = np.array(
        [max(c.size, max((r.size for r in p.replicas), default=0)) for c, p, *_ in rows], dtype=float
    )
    reads = np.array([expected_reads_over_horizon(c, params.horizon_days) for c, *_ in rows])
    cur = np.zeros((n, L), dtype=bool)
    age = np.zeros((n, L))
    for i, (_, p, *_) in enumerate(rows):
        for r in p.replicas:
            l = catalogue.index(r.location)
            cur[i, l] = True
            age[i, l] = max(0.0, now - (r.created_at or now)) / SECONDS_PER_DAY
    # A location already over its capacity must not grow, but the batch need not empty it to be feasible.
    capacity = np.array([float(settings.capacity_bytes.get(lid, np.inf)) for lid in la.ids])
    capacity = np.maximum(capacity, (cur * size[:, None]).sum(axis=0))
    with np.errstate(over="ignore", invalid="ignore"):  # absurd inputs overflow: _cost_out_of_range sorts them out
        cm = cost_matrices(size, reads, cur, age, la, params)
    backups_only = np.array([r[5] for r in rows], dtype=bool)
    if backups_only.any():
        # Reads are served by the replica with the cheapest serve cost (the `min` of the objective): priced out
        # of serving, an archive replica can only be a backup. The set must then hold a servable replica, which
        # every feasible set of such an object can (the mask allows one): the penalty never reaches a plan.
        cm.serve[backups_only[:, None] & la.archive[None, :]] += ARCHIVE_SERVE_PENALTY_USD
    return Problem(
        la=la,
        cm=cm,
        size=size,
        current=cur,
        allowed=np.stack([r[4] for r in rows]),
        rf=np.array([r[2] for r in rows]),
        max_per_provider=np.array([r[3] for r in rows]),
        capacity=capacity,
        budget_bytes=float(settings.move_budget_bytes) if settings.move_budget_bytes is not None else np.inf,
        budget_usd=float(settings.move_budget_usd) if settings.move_budget_usd is not None else np.inf,
        move_fee=settings.min_net_saving_usd,
    )


# Far above any object's cost over the horizon, far below float precision trouble.
ARCHIVE_SERVE_PENALTY_USD = 1e3
# An object whose cost of some allowed placement over the horizon exceeds this is not planned (cost_out_of_range).
MAX_OBJECT_COST_USD = 1e12


def _cost_out_of_range(pb: Problem) -> np.ndarray:
    """(N,) bool: objects with a cost that is not finite or above MAX_OBJECT_COST_USD at a location they may use."""
    cm = pb.cm
    worst = np.zeros(pb.n)
    with np.errstate(invalid="ignore", over="ignore"):
        for part in (cm.hold, cm.serve, cm.add, cm.drop):
            values = np.where(pb.allowed | pb.current, np.abs(part), 0.0)
            values = np.where(np.isnan(values), np.inf, values)
            worst = np.maximum(worst, values.max(axis=1))
    return ~(worst <= MAX_OBJECT_COST_USD)


def _horizon_costs(pb: Problem, x: np.ndarray) -> np.ndarray:
    """Storage + reads + SLA penalty over the horizon of each object at assignment x (no transition)."""
    return (pb.cm.hold * x).sum(axis=1) + np.where(x, pb.cm.serve, np.inf).min(axis=1)


def _ordered(from_ids: list[str], to_ids: list[str]) -> list[str]:
    """Kept replicas first (in their old order), then the new ones: readable and stable. Each location once, even
    where a (hand-edited) catalog entry names one twice."""
    kept = [loc for loc in dict.fromkeys(from_ids) if loc in to_ids]
    return kept + sorted(loc for loc in to_ids if loc not in from_ids)


def _reason(
    c: Candidate,
    now: float,
    cat: Catalogue,
    from_ids: list[str],
    to_ids: list[str],
    saving_month: float,
    transition_usd: float,
    keep_feasible: bool,
    rf: int,
    params: CostParams,
) -> str:
    idle_days = max(0.0, now - c.last_access) / SECONDS_PER_DAY
    reads = expected_reads_over_horizon(c, params.horizon_days)
    added = [cat.location(loc).label for loc in to_ids if loc not in from_ids]
    dropped = [cat.location(loc).label for loc in from_ids if loc not in to_ids]
    what = " + ".join(added) if added else "fewer replicas"
    if dropped:
        what += f" (instead of {' + '.join(dropped)})"
    head = (
        f"p_hot {c.p_hot:.2f}, {idle_days:.0f} days since last read, {reads:.2f} reads expected in "
        f"{params.horizon_days:.0f} d"
    )
    if not keep_feasible:
        return f"{head}; current replicas break RF {rf} or policy → {what}, changes cost by {_usd(-saving_month)}/month"
    verb = "saves" if saving_month >= 0 else "costs"
    return f"{head} → {what} {verb} {_usd(abs(saving_month))}/month after {_usd(transition_usd)} transition"


def _usd(amount: float) -> str:
    """Dollars readable at any scale: $0.41, $0.0023, $1.2e-06."""
    if abs(amount) >= 0.01 or amount == 0:
        return f"${amount:,.2f}"
    return f"${amount:.2g}" if abs(amount) >= 1e-4 else f"${amount:.1e}"


def _plan_id(version: str, now: float, keys: list) -> str:
    digest = hashlib.sha256(repr((version, now, sorted(keys))).encode()).hexdigest()[:16]
    return f"plan-{int(now)}-{digest}"


def _empty_plan(
    plan_id: str, version: str, now: float, candidates: int, method: str = "none"
) -> PlacementPlan:
    return PlacementPlan(
        plan_id=plan_id,
        created_at=now,
        method=method,
        catalogue_version=version,
        candidates=candidates,
        objective_usd=0.0,
        moves=[],
    )
