"""One entry point for every solver: the exact MILP for small and medium batches, the Lagrangian decomposition
for large ones (and for any batch without coupling constraints, where per-object enumeration is already exact)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from dim.config import SolverSettings
from solver.lagrangian import solve_lagrangian
from solver.milp import solve_milp  # imported here, not lazily: see below
from solver.problem import Problem, Solution

# PuLP's first import, when it happens inside a call, keeps that call's whole stack alive (seen with a 4-line
# script): a lazy import in solve() kept run_solver's Kafka producer from ever closing.

log = logging.getLogger(__name__)


def choose_method(pb: Problem, settings: SolverSettings) -> str:
    return "milp" if pb.n <= settings.milp_max_objects else "lagrangian"


def solve(pb: Problem, settings: SolverSettings, method: str | None = None) -> Solution:
    method = method or choose_method(pb, settings)
    if method == "lagrangian":
        sol = solve_lagrangian(pb)
        if sol.status == "infeasible":
            sol = _confirm_infeasible(pb, settings, sol)
        return _no_worse_than_keeping(pb, _exact_limits(pb, sol))
    try:
        sol = _milp_with_fallback(pb, settings)
    except Exception as exc:  # noqa: BLE001 - whatever broke the solvers, the batch is planned
        # Neither MILP backend could run (a broken or missing binary). An exception here stops the solver service,
        # and the redelivered batch would stop it again: plan with the decomposition, which needs no solver binary
        # and certifies its own gap.
        log.error("no MILP solver could run (%s); planning this batch with the Lagrangian decomposition", exc)
        sol = solve_lagrangian(pb)
        sol = replace(sol, info={**sol.info, "milp_failed": str(exc)[:200]})
    return _no_worse_than_keeping(pb, _exact_limits(pb, sol))


def _confirm_infeasible(pb: Problem, settings: SolverSettings, sol: Solution) -> Solution:
    """The decomposition's "infeasible" is not a proof: it means no combination of the sets it listed met the
    coupling constraints (seen on ~1.5 % of small random batches with two capacities, a byte budget and forced
    repairs, which the MILP solved). An infeasible batch plans nothing - its repairs wait for a later cycle - so
    ask the time-limited MILP before giving it up; it is rare, so its cost is too."""
    try:
        exact = _milp_with_fallback(pb, settings)
    except Exception as exc:  # noqa: BLE001 - no MILP solver runs: keep the decomposition's answer
        log.warning("could not check the decomposition's 'infeasible' with a MILP (%s)", exc)
        return sol
    if exact.status in ("optimal", "feasible") and np.isfinite(exact.objective):
        log.info("the decomposition found no feasible plan; the MILP did (%s)", exact.status)
        return replace(exact, info={**exact.info, "lagrangian_infeasible": sol.info.get("error", True)})
    return sol


def _milp_with_fallback(pb: Problem, settings: SolverSettings) -> Solution:
    try:
        sol = solve_milp(pb, settings.milp_backend, settings.milp_time_limit_s, settings.milp_rel_gap)
    except Exception as exc:  # a broken solver binary must not stop the pipeline: try the other one
        if settings.milp_backend != "highs":
            raise
        log.warning("HiGHS failed (%s); falling back to CBC", exc)
        sol = solve_milp(pb, "cbc", settings.milp_time_limit_s, settings.milp_rel_gap)
    if sol.status == "error" and sol.method == "milp-highs":  # it ran, but neither solved nor proved infeasible
        log.warning("HiGHS gave no answer (status error); falling back to CBC")
        sol = solve_milp(pb, "cbc", settings.milp_time_limit_s, settings.milp_rel_gap)
    return sol


def _exact_limits(pb: Problem, sol: Solution) -> Solution:
    """Capacities and the byte budget, to the byte. The solvers check rows to a relative tolerance (HiGHS' MIP
    feasibility tolerance is 1e-6), so a plan could put a few bytes more on a location than it may hold (seen:
    999,999,942 bytes where 999,999,941 were allowed; a forced repair copying 1,071,805,433 bytes on a budget of
    1,071,804,615). Bytes are integers: send the objects that cost least to keep where they are back to their
    current replicas until every limit holds exactly (keeping everything does: the capacities never ask a location
    to shrink, and keeping copies nothing). Where what is left over comes from objects that must move (repairs), the
    batch is infeasible to the byte: say so, and the planner leaves those objects for a later cycle
    (`repair_over_budget`)."""
    caps, budget = pb.capacity, pb.budget_bytes
    if not np.isfinite(sol.objective) or not (np.isfinite(caps).any() or np.isfinite(budget)):
        return sol
    x, cur = sol.chosen.copy(), pb.current
    size = np.rint(pb.size).astype(np.int64)[:, None]
    limit = np.floor(caps)  # whole bytes; unlimited locations stay inf
    revertible, loss = None, None
    reverted = 0
    while True:
        added = x & ~cur
        over = (x * size).sum(axis=0) > limit
        copied_over = (added * size).sum() > budget
        if not over.any() and not copied_over:
            break
        if loss is None:  # only now: most plans hold exactly, and these cost two passes over the batch
            revertible = pb.keep_feasible()
            loss = pb.object_costs(cur) - pb.object_costs(x)  # what keeping each object costs the plan
        # objects adding bytes where a limit is broken (any added byte, if the budget is)
        culprits = revertible & (added & over[None, :]).any(axis=1)
        if copied_over:
            culprits |= revertible & added.any(axis=1)
        if not culprits.any():
            log.info("only repairs exceed a byte limit (by the solver's tolerance): infeasible to the byte")
            return replace(sol, chosen=cur.copy(), objective=float("inf"), lower_bound=None, status="infeasible",
                           info={**sol.info, "over_byte_limit_by_repairs": True})
        i = int(np.flatnonzero(culprits)[np.argmin(loss[culprits])])
        x[i], revertible[i] = cur[i], False
        reverted += 1
    if not reverted:
        return sol
    objective = pb.objective(x)
    # the solver's bound is of the problem it saw, with its tolerance; clipped as solve_milp clips its own
    bound = None if sol.lower_bound is None else min(sol.lower_bound, objective)
    return replace(sol, chosen=x, objective=objective, lower_bound=bound, status="feasible",
                   info={**sol.info, "reverted_for_exact_limits": reverted})


def _no_worse_than_keeping(pb: Problem, sol: Solution) -> Solution:
    """A heuristic primal (or a MILP stopped by its time limit) may be worse than staying put; then stay put."""
    if not pb.keep_feasible().all() or pb.violations(pb.current):
        return sol
    keep = pb.objective(pb.current)
    if sol.objective <= keep:
        return sol
    # A MILP's bound can exceed the keep cost by its gap tolerance (seen: 4e-5 on $42.94): clipped, as solve_milp
    # clips its own.
    bound = None if sol.lower_bound is None else min(sol.lower_bound, keep)
    return Solution(
        chosen=pb.current.copy(),
        objective=keep,
        lower_bound=bound,
        method=sol.method,
        status="optimal" if bound is not None and keep - bound <= 1e-12 else "feasible",
        seconds=sol.seconds,
        binaries=sol.binaries,
        info={**sol.info, "kept_current": True},
    )
