"""The exact MILP of a placement problem, built in bulk as arrays, solved by HiGHS (highspy) or CBC (PuLP).

One binary per (object, feasible replica set): x[i,T] = 1 when object i ends with replica set T, where T runs
over the sets of exactly rf_i allowed locations with at most max_per_provider_i per provider (33 per object for
RF 2 over the 9 online locations of 3 providers). Each column carries its exact cost
    sum_{l in T} linear[i,l] + min_{l in T} serve[i,l]
so the model needs no auxiliary variables at all (the "min" of the serve cost is what would otherwise need a
continuous read-assignment variable per object x location), and:

    min  sum c[i,T] x[i,T] + sum_i const_i
    s.t. sum_T x[i,T] = 1                                                  (one replica set per object)
         sum_{i,T: l in T} size_i x[i,T] <= capacity_l                    (capacity per location)
         sum_{i,T} size_i |T \\ current_i| x[i,T] <= budget_bytes          (move budget, bytes copied)
         sum_{i,T} (sum_{l in T} transition[i,l]) x[i,T] <= budget_usd - sum_i const_i

It is the same model as the decomposition's (solver.lagrangian), and its LP relaxation is as tight as a
formulation can be per object (each object's polytope is a simplex), so its LP bound equals the Lagrangian dual.
The object-by-location formulation (x binary per (i,l), plus a continuous y[i,l] <= x[i,l] choosing the serving
replica) has 1.5x the rows and took HiGHS 27 s at 10,000 objects against 2.6 s for this one.

HiGHS receives the constraint matrix in one call (highspy passModel); CBC gets a PuLP model built from the same
arrays, every row an LpAffineExpression made in one go (no `lpSum` chains, which are quadratic in PuLP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pulp  # at import time, never inside a call: see solver/solve.py
import scipy.sparse as sp

from solver.enumeration import groups
from solver.highs import new_highs
from solver.problem import Problem, Solution, replica_sets


@dataclass
class MilpArrays:
    """min cost @ x + offset  s.t.  row_lower <= A x <= row_upper,  x binary."""

    cost: np.ndarray  # (C,)
    offset: float
    matrix: sp.csr_matrix  # (rows, C)
    row_lower: np.ndarray
    row_upper: np.ndarray
    obj: np.ndarray  # (C,) object of each column
    locs: np.ndarray  # (C, R) locations of each column's replica set, padded with L

    @property
    def n_cols(self) -> int:
        return len(self.cost)


def formulate(pb: Problem) -> MilpArrays:
    """The MILP of `pb` as arrays, one column per (object, feasible replica set). Pure numpy."""
    L = pb.n_locations
    R = int(pb.rf.max()) if pb.n else 1
    lin = np.concatenate([pb.linear, np.zeros((pb.n, 1))], axis=1)  # column L: padding
    serve = np.concatenate([pb.cm.serve, np.full((pb.n, 1), np.inf)], axis=1)
    allowed = np.concatenate([pb.allowed, np.ones((pb.n, 1), dtype=bool)], axis=1)
    trans = np.concatenate([pb.transition_linear, np.zeros((pb.n, 1))], axis=1)
    new = np.concatenate([~pb.current, np.zeros((pb.n, 1), dtype=bool)], axis=1)
    parts: list[tuple[np.ndarray, ...]] = []
    for (rf, mpp), members in groups(pb).items():
        sets = replica_sets(pb.la, rf, mpp)
        if not len(sets):
            continue
        sets = np.concatenate([sets, np.full((len(sets), R - rf), L, dtype=np.int64)], axis=1)
        ok = allowed[members[:, None, None], sets[None]].all(axis=2)  # (n, K)
        ii, kk = np.nonzero(ok)
        obj = members[ii]
        locs = sets[kk]  # (C, R)
        rows = obj[:, None]
        cost = lin[rows, locs].sum(axis=1) + serve[rows, locs].min(axis=1)
        copied = new[rows, locs].sum(axis=1) * pb.size[obj]
        usd = trans[rows, locs].sum(axis=1)
        parts.append((obj, locs, cost, copied, usd))
    if parts:
        obj, locs, cost, copied, usd = (np.concatenate(p) for p in zip(*parts))
    else:
        obj, locs = np.zeros(0, dtype=np.int64), np.zeros((0, R), dtype=np.int64)
        cost = copied = usd = np.zeros(0)
    order = np.argsort(obj, kind="stable")  # columns of one object together: a readable model
    obj, locs, cost, copied, usd = obj[order], locs[order], cost[order], copied[order], usd[order]
    C = len(obj)
    cols = np.arange(C)
    r_idx, c_idx, vals = [obj], [cols], [np.ones(C)]
    lower, upper = [np.ones(pb.n)], [np.ones(pb.n)]
    coupling: list[tuple[np.ndarray, np.ndarray, float]] = []
    for l in np.flatnonzero(np.isfinite(pb.capacity)):
        has = (locs == l).any(axis=1)
        coupling.append((cols[has], pb.size[obj[has]], float(pb.capacity[l])))
    if np.isfinite(pb.budget_bytes):
        coupling.append((cols[copied > 0], copied[copied > 0], float(pb.budget_bytes)))
    if np.isfinite(pb.budget_usd):
        coupling.append((cols[usd != 0], usd[usd != 0], float(pb.budget_usd - pb.const.sum())))
    for k, (cc, vv, rhs) in enumerate(coupling):
        # rows in units of their right-hand side: bytes rows have coefficients up to 1e10, dollars 1e-6
        scale = max(abs(rhs), float(np.abs(vv).max(initial=0.0)), 1e-12)
        r_idx.append(np.full(len(cc), pb.n + k))
        c_idx.append(cc)
        vals.append(vv / scale)
        lower.append(np.array([-np.inf]))
        upper.append(np.array([rhs / scale]))
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))),
        shape=(pb.n + len(coupling), C),
    )
    return MilpArrays(
        cost=cost,
        offset=float(pb.const.sum()),
        matrix=matrix,
        row_lower=np.concatenate(lower),
        row_upper=np.concatenate(upper),
        obj=obj,
        locs=locs,
    )


def solve_milp(
    pb: Problem,
    backend: str = "highs",
    time_limit_s: float | None = None,
    rel_gap: float = 1e-6,
    presolve: bool = False,
) -> Solution:
    """Solve exactly (up to rel_gap, within time_limit_s). HiGHS by default; CBC if asked or if highspy is
    missing. HiGHS presolve is off by default: on this model its dominated-column pass is all it finds (the
    decomposition's "fixed objects") and it grows superlinearly (245 s of 264 s at 100,000 objects)."""
    t0 = time.perf_counter()
    arrays = formulate(pb)
    build_s = time.perf_counter() - t0
    method = "milp-highs" if backend == "highs" and _has_highspy() else "milp-cbc"
    if method == "milp-highs":
        x, status, bound = _run_highs(arrays, time_limit_s, rel_gap, presolve)
    else:
        x, status, bound = _run_cbc(arrays, time_limit_s, rel_gap)
    seconds = time.perf_counter() - t0
    info = {"build_s": build_s, "columns": arrays.n_cols, "rows": int(arrays.matrix.shape[0])}
    chosen = np.zeros((pb.n, pb.n_locations + 1), dtype=bool)
    if x is not None:
        pick = x > 0.5
        chosen[arrays.obj[pick][:, None], arrays.locs[pick]] = True
    chosen = chosen[:, : pb.n_locations]
    if x is None or (chosen.sum(axis=1) != pb.rf).any():
        return Solution(
            chosen=pb.current.copy(),
            objective=float("inf"),
            lower_bound=None,
            method=method,
            status=status if status in ("infeasible", "time_limit") else "error",
            seconds=seconds,
            binaries=arrays.n_cols,
            info=info,
        )
    objective = pb.objective(chosen)
    if bound is not None:
        bound = min(bound, objective)
    return Solution(
        chosen=chosen,
        objective=objective,
        lower_bound=bound,
        method=method,
        status=status,
        seconds=seconds,
        binaries=arrays.n_cols,
        info=info,
    )


def _has_highspy() -> bool:
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


def _run_highs(a: MilpArrays, time_limit_s: float | None, rel_gap: float, presolve: bool):
    """(column values or None, status, dual bound or None) from HiGHS, the model passed in one call."""
    import highspy

    h = new_highs()
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("presolve", "on" if presolve else "off")
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    # Dollars per object are ~1e-4 and differences between sets ~1e-8: far below HiGHS' absolute tolerances
    # (dual feasibility 1e-7). Solve in units of a typical column cost, report in dollars.
    unit = _cost_unit(a)
    lp = highspy.HighsLp()
    csc = a.matrix.tocsc()
    lp.num_col_, lp.num_row_ = csc.shape[1], csc.shape[0]
    lp.col_cost_ = a.cost / unit
    lp.col_lower_ = np.zeros(a.n_cols)
    lp.col_upper_ = np.ones(a.n_cols)
    lp.row_lower_ = a.row_lower
    lp.row_upper_ = a.row_upper
    lp.offset_ = a.offset / unit
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.integrality_ = np.full(a.n_cols, highspy.HighsVarType.kInteger)
    h.passModel(lp)
    h.run()
    ms = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    status = {
        highspy.HighsModelStatus.kOptimal: "optimal",
        highspy.HighsModelStatus.kInfeasible: "infeasible",
        highspy.HighsModelStatus.kTimeLimit: "time_limit",
    }.get(ms, "error")
    if a.n_cols == 0 and a.matrix.shape[0] == 0:
        return np.zeros(0), "optimal", a.offset
    x = np.array(h.getSolution().col_value) if has_solution and status != "infeasible" else None
    bound = float(info.mip_dual_bound) * unit
    return x, status, bound if np.isfinite(bound) else None


def _cost_unit(a: MilpArrays) -> float:
    """A typical column cost (the median): the largest one made 1 still left HiGHS' presolve wrong by 2e-6
    relative on a 40-object test, the median made it agree with CBC and with presolve off."""
    c = np.abs(a.cost[np.isfinite(a.cost)])
    c = c[c > 0]
    return float(np.median(c)) if c.size else 1.0


def _run_cbc(a: MilpArrays, time_limit_s: float | None, rel_gap: float):
    """(column values or None, status, bound) from CBC through PuLP. CBC's dual bound is not exposed by PuLP, so
    an optimal solve is credited with the relative gap it was asked to close."""
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    xs = [model.add_variable(f"x_{c}", 0, 1, pulp.LpBinary) for c in range(a.n_cols)]
    unit = _cost_unit(a)  # as for HiGHS: CBC's tolerances are absolute too
    model.setObjective(
        pulp.LpAffineExpression(list(zip(xs, (a.cost / unit).tolist())), constant=a.offset / unit)
    )
    m = a.matrix
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        expr = pulp.LpAffineExpression([(xs[c], v) for c, v in zip(m.indices[lo:hi], m.data[lo:hi].tolist())])
        if a.row_lower[r] == a.row_upper[r]:
            model.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=float(a.row_upper[r])))
        else:
            model.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=float(a.row_upper[r])))
    status = pulp.LpStatus[model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=rel_gap))]
    if status != "Optimal":
        return None, "infeasible" if status == "Infeasible" else "error", None
    x = np.array([v.varValue or 0.0 for v in xs])
    objective = float(a.cost @ (x > 0.5)) + a.offset
    return x, "optimal", objective - rel_gap * abs(objective)
