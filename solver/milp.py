"""The exact MILP of a placement problem in PuLP, solved by HiGHS (highspy) or CBC. Pure apart from the solver.

Variables: x[i,l] binary (replica of i at l) for allowed (i,l); s[i,l] in [0,1] (reads of i served from l), only
for objects whose serve cost differs between locations. Since s <= x and sum_l s = 1, a minimising solution
serves reads from the cheapest chosen replica, which is exactly `min_{l in T} serve` of the cost model.

    min  sum a[i,l] x[i,l] + sum serve[i,l] s[i,l] + const
    s.t. sum_l x[i,l] = rf_i ;  sum_{l in provider p} x[i,l] <= max_per_provider_i ;  sum_l s[i,l] = 1 ;
         s[i,l] <= x[i,l] ;  sum_i size_i x[i,l] <= capacity_l ;  sum_i size_i sum_{l not current} x[i,l] <= B ;
         sum_i sum_l t[i,l] x[i,l] <= U - sum_i const_i

Built in bulk: every expression is an LpAffineExpression made from (variable, coefficient) pairs in one go,
never an `lpSum` chain (which is quadratic in PuLP for long sums).
"""

from __future__ import annotations

import time

import numpy as np
import pulp

from solver.problem import Problem, Solution


def _affine(pairs) -> pulp.LpAffineExpression:
    return pulp.LpAffineExpression(pairs)


def build_model(pb: Problem) -> tuple[pulp.LpProblem, dict, float]:
    """The PuLP model, its x variables by (object, location), and the objective's constant part."""
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    linear, serve, allowed = pb.linear, pb.cm.serve, pb.allowed
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    objective: list[tuple[pulp.LpVariable, float]] = []
    constraints: list[pulp.LpConstraint] = []
    offset = float(pb.const.sum())
    cap_rows: dict[int, list] = {int(l): [] for l in np.flatnonzero(np.isfinite(pb.capacity))}
    bytes_row: list = []
    usd_row: list = []
    eq, le = pulp.LpConstraintEQ, pulp.LpConstraintLE
    for i in range(pb.n):
        locs = np.flatnonzero(allowed[i])
        xi = [model.add_variable(f"x_{i}_{l}", 0, 1, pulp.LpBinary) for l in locs]
        x.update(zip(((i, int(l)) for l in locs), xi))
        objective.extend(zip(xi, linear[i, locs].tolist()))
        constraints.append(pulp.LpConstraint(_affine([(v, 1) for v in xi]), eq, rhs=int(pb.rf[i])))
        provs = pb.la.provider_of[locs]
        for p in np.unique(provs):
            members = [v for v, q in zip(xi, provs) if q == p]
            if len(members) > pb.max_per_provider[i]:
                constraints.append(
                    pulp.LpConstraint(_affine([(v, 1) for v in members]), le, rhs=int(pb.max_per_provider[i]))
                )
        sv = serve[i, locs]
        if len(locs) and np.ptp(sv) > 0:
            si = [model.add_variable(f"s_{i}_{l}", 0, 1) for l in locs]
            objective.extend(zip(si, sv.tolist()))
            constraints.append(pulp.LpConstraint(_affine([(v, 1) for v in si]), eq, rhs=1))
            constraints.extend(
                pulp.LpConstraint(_affine([(vs, 1), (vx, -1)]), le, rhs=0) for vs, vx in zip(si, xi)
            )
        elif len(locs):
            offset += float(sv[0])  # every allowed location serves at the same cost
        size = float(pb.size[i])
        for l, v in zip(locs.tolist(), xi):
            if l in cap_rows:
                cap_rows[l].append((v, size))
        if np.isfinite(pb.budget_bytes):
            bytes_row.extend((v, size) for l, v in zip(locs, xi) if not pb.current[i, l])
        if np.isfinite(pb.budget_usd):
            usd_row.extend(zip(xi, pb.transition_linear[i, locs].tolist()))
    for l, row in cap_rows.items():
        constraints.append(pulp.LpConstraint(_affine(row), le, rhs=float(pb.capacity[l])))
    if np.isfinite(pb.budget_bytes):
        constraints.append(pulp.LpConstraint(_affine(bytes_row), le, rhs=float(pb.budget_bytes)))
    if np.isfinite(pb.budget_usd):
        constraints.append(pulp.LpConstraint(_affine(usd_row), le, rhs=float(pb.budget_usd - pb.const.sum())))
    model.setObjective(_affine(objective))
    for c in constraints:
        model.addConstraint(c)
    return model, x, offset


def solve_milp(
    pb: Problem, backend: str = "highs", time_limit_s: float | None = None, rel_gap: float = 1e-6
) -> Solution:
    """Solve exactly (up to rel_gap). HiGHS by default; CBC if asked or if highspy is missing."""
    t0 = time.perf_counter()
    model, x, offset = build_model(pb)
    build_s = time.perf_counter() - t0
    solver, method = _solver(backend, time_limit_s, rel_gap)
    status_code = model.solve(solver)
    status = pulp.LpStatus[status_code]
    chosen = np.zeros((pb.n, pb.n_locations), dtype=bool)
    for (i, l), v in x.items():
        if v.varValue is not None and v.varValue > 0.5:
            chosen[i, l] = True
    seconds = time.perf_counter() - t0
    binaries = len(x)
    if status not in ("Optimal",) or (chosen.sum(axis=1) != pb.rf).any():
        return Solution(
            chosen=pb.current.copy(),
            objective=float("inf"),
            lower_bound=None,
            method=method,
            status="infeasible" if status == "Infeasible" else status.lower(),
            seconds=seconds,
            binaries=binaries,
            info={"build_s": build_s, "pulp_status": status},
        )
    objective = pb.objective(chosen)
    bound = _dual_bound(model, method, offset, objective, rel_gap)
    hit_limit = bound is not None and objective - bound > rel_gap * abs(objective) + 1e-9
    return Solution(
        chosen=chosen,
        objective=objective,
        lower_bound=bound,
        method=method,
        status="feasible" if hit_limit else "optimal",
        seconds=seconds,
        binaries=binaries,
        info={"build_s": build_s, "pulp_status": status},
    )


def _solver(backend: str, time_limit_s: float | None, rel_gap: float):
    if backend == "highs":
        try:
            import highspy  # noqa: F401

            return pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=rel_gap, threads=1), "milp-highs"
        except ImportError:
            pass
    return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=rel_gap), "milp-cbc"


def _dual_bound(model: pulp.LpProblem, method: str, offset: float, objective: float, rel_gap: float) -> float:
    """HiGHS reports its MIP dual bound; CBC through PuLP does not, so an optimal CBC solve is credited with
    the relative gap it was asked to close."""
    if method == "milp-highs":
        info = model.solverModel.getInfo()
        bound = float(info.mip_dual_bound)
        if np.isfinite(bound):
            return min(bound + offset, objective)
    return objective - rel_gap * abs(objective)
