"""One entry point for every solver: the exact MILP for small and medium batches, the Lagrangian decomposition
for large ones (and for any batch without coupling constraints, where per-object enumeration is already exact)."""

from __future__ import annotations

import logging

from dim.config import SolverSettings
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
        from solver.lagrangian import solve_lagrangian

        return _no_worse_than_keeping(pb, solve_lagrangian(pb))
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
    return _no_worse_than_keeping(pb, sol)


def _no_worse_than_keeping(pb: Problem, sol: Solution) -> Solution:
    """A heuristic primal (or a MILP stopped by its time limit) may be worse than staying put; then stay put."""
    if not pb.keep_feasible().all() or pb.violations(pb.current):
        return sol
    keep = pb.objective(pb.current)
    if sol.objective <= keep:
        return sol
    bound = sol.lower_bound
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
