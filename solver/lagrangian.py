"""The scalable solver: per-object enumeration of feasible replica sets, Lagrangian prices on the coupling
constraints, a repair step, and a certified lower bound. Pure numpy.

Why it is exact enough: without the coupling constraints (capacity per location, move budgets) the problem
separates into one tiny choice per object, solved by enumerating its feasible replica sets (56 for RF 2 over 13
locations with provider diversity). Pricing each coupling constraint j at mu_j >= 0 keeps that separability:
    g(mu) = sum_i min_k [ cost_ik + sum_j mu_j use_jik ] - sum_j mu_j rhs_j
is a lower bound on the optimum for every mu >= 0 (weak duality), so the bound we report is certified whatever
mu we end at. We maximise g by coordinate-wise bisection on each violated constraint (its supergradient is
usage - rhs), working on a short list of M candidate sets per object, then evaluate g on the *full* enumeration
(adding to the lists any set the full pass prefers, and repeating if there were any). The primal plan is the
per-object argmin at the feasible side of each bisection, repaired greedily if constraints interact, and filled
greedily with the moves that still fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from solver.problem import Problem, Solution, replica_sets

CHUNK = 65_536  # objects per block of the full enumeration (bounds memory at ~CHUNK x K x RF)
M_CANDIDATES = 6  # candidate sets kept per object for the dual iterations


@dataclass
class _Constraint:
    name: str
    rhs: float
    kind: str  # "cap", "bytes", "usd"
    loc: int = -1


@dataclass
class _Candidates:
    """M candidate replica sets per object: their locations, true cost and resource use per constraint."""

    locs: np.ndarray  # (N, M, R) int location indices, R = max rf; padded with L (a dummy column)
    cost: np.ndarray  # (N, M) true objective contribution (inf = padding)
    use: np.ndarray  # (J, N, M)


def _constraints(pb: Problem) -> list[_Constraint]:
    out = [_Constraint(f"capacity:{pb.la.ids[l]}", float(pb.capacity[l]), "cap", int(l))
           for l in np.flatnonzero(np.isfinite(pb.capacity))]
    if np.isfinite(pb.budget_bytes):
        out.append(_Constraint("move_bytes", float(pb.budget_bytes), "bytes"))
    if np.isfinite(pb.budget_usd):
        out.append(_Constraint("move_usd", float(pb.budget_usd - pb.const.sum()), "usd"))
    return out


def _location_weights(pb: Problem, cons: list[_Constraint], idx: np.ndarray) -> np.ndarray:
    """(J, n, L+1): what choosing location l adds to constraint j's left-hand side, for objects idx."""
    L = pb.n_locations
    w = np.zeros((len(cons), len(idx), L + 1))
    size = pb.size[idx]
    for j, c in enumerate(cons):
        if c.kind == "cap":
            w[j, :, c.loc] = size
        elif c.kind == "bytes":
            w[j, :, :L] = size[:, None] * ~pb.current[idx]
        else:
            w[j, :, :L] = pb.transition_linear[idx]
    return w


def _groups(pb: Problem) -> dict[tuple[int, int], np.ndarray]:
    keys = np.stack([pb.rf, pb.max_per_provider], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return {(int(r), int(m)): np.flatnonzero(inverse.ravel() == g) for g, (r, m) in enumerate(uniq)}


def _full_pass(pb: Problem, cons: list[_Constraint], mu: np.ndarray, top: int = 0):
    """Relaxed min over every feasible set of every object at prices mu. Returns (relaxed min per object,
    argmin locations (N, R) padded with L, top-`top` sets per object as (N, top, R) or None)."""
    N, L = pb.n, pb.n_locations
    R = int(pb.rf.max()) if N else 1
    lin = np.concatenate([pb.linear, np.zeros((N, 1))], axis=1)
    serve = pb.cm.serve
    best_val = np.full(N, np.inf)
    best_locs = np.full((N, R), L, dtype=np.int64)
    tops = np.full((N, top, R), L, dtype=np.int64) if top else None
    for (rf, mpp), members in _groups(pb).items():
        sets = replica_sets(pb.la, rf, mpp)  # (K, rf)
        if not len(sets):
            continue
        for start in range(0, len(members), CHUNK):
            idx = members[start:start + CHUNK]
            adj = lin[idx]
            if len(cons):
                adj = adj + np.tensordot(mu, _location_weights(pb, cons, idx), axes=1)
            val = adj[:, sets].sum(axis=2) + serve[idx][:, sets].min(axis=2)  # (n, K)
            val[~pb.allowed[idx][:, sets].all(axis=2)] = np.inf
            k = val.argmin(axis=1)
            best_val[idx] = val[np.arange(len(idx)), k] + pb.const[idx]
            best_locs[idx, :rf] = sets[k]
            if top:
                t = min(top, sets.shape[0])
                part = np.argpartition(val, t - 1, axis=1)[:, :t] if t < sets.shape[0] else \
                    np.tile(np.arange(t), (len(idx), 1))
                chosen = sets[part]  # (n, t, rf)
                chosen[~np.isfinite(np.take_along_axis(val, part, axis=1))] = L
                tops[idx, :t, :rf] = chosen
    return best_val, best_locs, tops


def _evaluate_sets(pb: Problem, cons: list[_Constraint], locs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True cost (N, M) and resource use (J, N, M) of candidate sets locs (N, M, R)."""
    N, L = pb.n, pb.n_locations
    lin = np.concatenate([pb.linear, np.zeros((N, 1))], axis=1)
    serve = np.concatenate([pb.cm.serve, np.full((N, 1), np.inf)], axis=1)
    rows = np.arange(N)[:, None, None]
    valid = (locs < L).any(axis=2)
    cost = lin[rows, locs].sum(axis=2) + serve[rows, locs].min(axis=2) + pb.const[:, None]
    cost[~valid] = np.inf
    use = np.zeros((len(cons), N, locs.shape[1]))
    if len(cons):
        w = _location_weights(pb, cons, np.arange(N))
        for j in range(len(cons)):
            use[j] = w[j][rows, locs].sum(axis=2)
    return cost, use


def _merge(cands_locs: np.ndarray, extra: np.ndarray, L: int) -> np.ndarray:
    """Add set `extra` (N, R) to each object's candidates where it is not already there (replacing padding or
    the last slot, which never holds the keep set or the best-at-zero set)."""
    same = (np.sort(cands_locs, axis=2) == np.sort(extra, axis=1)[:, None, :]).all(axis=2).any(axis=1)
    need = np.flatnonzero(~same)
    if need.size == 0:
        return cands_locs
    M = cands_locs.shape[1]
    out = np.concatenate([cands_locs, np.full((cands_locs.shape[0], 1, cands_locs.shape[2]), L)], axis=1)
    out[need, M] = extra[need]
    return out


def _argmin_at(c: _Candidates, mu: np.ndarray) -> np.ndarray:
    val = c.cost + np.tensordot(mu, c.use, axes=1) if len(mu) else c.cost
    return val.argmin(axis=1)


def _usage(c: _Candidates, pick: np.ndarray) -> np.ndarray:
    rows = np.arange(c.cost.shape[0])
    return c.use[:, rows, pick].sum(axis=1) if c.use.shape[0] else np.zeros(0)


def _dual_ascent(c: _Candidates, rhs: np.ndarray, mu: np.ndarray, sweeps: int = 30, steps: int = 60):
    """Coordinate-wise bisection: for each constraint, the smallest price at which it holds (others fixed).
    Returns mu (the feasible side of each bisection) and mu_lo (the infeasible side, used by the fill step)."""
    mu = mu.copy()
    mu_lo = mu.copy()
    J = len(rhs)
    rows = np.arange(c.cost.shape[0])
    tol = 1e-9 * np.maximum(np.abs(rhs), 1.0)
    for _ in range(sweeps):
        changed = False
        for j in range(J):
            others = np.delete(np.arange(J), j)
            base = c.cost + (np.tensordot(mu[others], c.use[others], axes=1) if len(others) else 0.0)

            def holds(m: float) -> bool:
                return float(c.use[j, rows, (base + m * c.use[j]).argmin(axis=1)].sum()) <= rhs[j] + tol[j]

            if holds(0.0):
                changed |= mu[j] != 0.0
                mu[j] = mu_lo[j] = 0.0
                continue
            lo, hi = 0.0, mu[j]
            if hi <= 0.0 or not holds(hi):
                lo, hi = max(hi, 0.0), max(hi * 2, 1e-18)
                while not holds(hi):
                    lo, hi = hi, hi * 4
                    if hi > 1e30:
                        raise _Infeasible(f"coupling constraint {j} cannot be met at any price")
            for _ in range(steps):
                if hi - lo <= 1e-10 * hi:
                    break
                mid = np.sqrt(lo * hi) if lo > 0 and hi / lo > 4 else (lo + hi) / 2
                if holds(mid):
                    hi = mid
                else:
                    lo = mid
            changed |= abs(hi - mu[j]) > 1e-6 * hi
            mu[j], mu_lo[j] = hi, lo
        if not changed:
            break
    return mu, mu_lo


class _Infeasible(RuntimeError):
    pass


def _repair(c: _Candidates, pick: np.ndarray, rhs: np.ndarray, rounds: int = 20) -> np.ndarray:
    """Move objects to alternatives that lower each violated constraint at the least cost per unit."""
    pick = pick.copy()
    rows = np.arange(c.cost.shape[0])
    for _ in range(rounds):
        excess = _usage(c, pick) - rhs
        bad = np.flatnonzero(excess > 1e-9 * np.maximum(np.abs(rhs), 1.0))
        if bad.size == 0:
            return pick
        j = bad[0]
        cur_use = c.use[:, rows, pick]  # (J, N)
        cur_cost = c.cost[rows, pick]
        d_use = cur_use[j][:, None] - c.use[j]  # reduction of constraint j by switching to each candidate
        d_cost = c.cost - cur_cost[:, None]
        # switching must not push another violated-or-tight constraint up
        worse = np.zeros_like(d_cost, dtype=bool)
        for o in range(c.use.shape[0]):
            if o != j:
                worse |= c.use[o] > cur_use[o][:, None] + 1e-12
        ratio = np.where((d_use > 0) & ~worse & np.isfinite(d_cost), np.maximum(d_cost, 0) / np.where(d_use > 0, d_use, 1), np.inf)
        alt = ratio.argmin(axis=1)
        best = ratio[rows, alt]
        order = np.argsort(best)
        order = order[np.isfinite(best[order])]
        gain = np.cumsum(d_use[order, alt[order]])
        take = order[: int(np.searchsorted(gain, excess[j])) + 1]
        if take.size == 0:
            break
        pick[take] = alt[take]
    if (_usage(c, pick) - rhs > 1e-9 * np.maximum(np.abs(rhs), 1.0)).any():
        raise _Infeasible("repair could not satisfy the coupling constraints")
    return pick


def _fill(c: _Candidates, pick: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Greedy improvement with the room the constraints have left: every (object, cheaper candidate) pair that
    fits, best gain per unit of scarce resource first; an object switches at most once per pass."""
    rows = np.arange(c.cost.shape[0])
    pick = pick.copy()
    tol = 1e-9 * np.maximum(np.abs(rhs), 1.0)
    for _ in range(2):
        room = rhs - _usage(c, pick)
        cur_cost = c.cost[rows, pick]
        delta = c.use - c.use[:, rows, pick][:, :, None]  # (J, N, M)
        gain = cur_cost[:, None] - c.cost
        ok = (gain > 1e-12) & (delta <= (room + tol)[:, None, None]).all(axis=0)
        ii, mm = np.nonzero(ok)
        if ii.size == 0:
            break
        d = delta[:, ii, mm]
        scarce = np.where(room > 0, 1.0 / np.maximum(room, 1e-300), 0.0)
        weight = (np.maximum(d, 0) * scarce[:, None]).sum(axis=0)
        order = np.lexsort((-gain[ii, mm], -gain[ii, mm] / np.maximum(weight, 1e-12)))
        switched = np.zeros(c.cost.shape[0], dtype=bool)
        changed = False
        for t in order:
            i = ii[t]
            if switched[i] or not (d[:, t] <= room + tol).all():
                continue
            room -= d[:, t]
            pick[i] = mm[t]
            switched[i] = changed = True
        if not changed:
            break
    return pick


def solve_lagrangian(pb: Problem, m_candidates: int = M_CANDIDATES, max_rounds: int = 3) -> Solution:
    t0 = time.perf_counter()
    N, L = pb.n, pb.n_locations
    cons = _constraints(pb)
    rhs = np.array([c.rhs for c in cons])
    mu = np.zeros(len(cons))
    R = int(pb.rf.max()) if N else 1
    binaries = int(pb.allowed.sum())

    val0, best0, tops = _full_pass(pb, cons, mu, top=m_candidates if cons else 0)
    if N == 0 or not np.isfinite(val0).all():
        return Solution(chosen=pb.current.copy(), objective=float("inf"), lower_bound=None, method="lagrangian",
                        status="infeasible", seconds=time.perf_counter() - t0, binaries=binaries)
    if not cons:  # separable: the per-object enumeration is the exact optimum and its own bound
        x = _to_assignment(best0, L)
        obj = pb.objective(x)
        return Solution(chosen=x, objective=obj, lower_bound=float(val0.sum()), method="lagrangian",
                        status="optimal", seconds=time.perf_counter() - t0, binaries=binaries,
                        info={"rounds": 0, "prices": {}})

    keep = np.where(pb.current, np.arange(L)[None, :], L)
    keep = np.sort(keep, axis=1)[:, :R]
    keep[~pb.keep_feasible()] = L
    locs = _merge(tops, keep, L)
    bound = -np.inf
    pick = None
    status = "feasible"
    for rnd in range(1, max_rounds + 1):
        cost, use = _evaluate_sets(pb, cons, locs)
        cands = _Candidates(locs, cost, use)
        try:
            mu, mu_lo = _dual_ascent(cands, rhs, mu)
            pick = _argmin_at(cands, mu)
            pick = _repair(cands, pick, rhs)
        except _Infeasible as exc:
            return Solution(chosen=pb.current.copy(), objective=float("inf"), lower_bound=None,
                            method="lagrangian", status="infeasible", seconds=time.perf_counter() - t0,
                            binaries=binaries, info={"error": str(exc)})
        pick = _fill(cands, pick, rhs)
        full_val, full_best, _ = _full_pass(pb, cons, mu)
        bound = max(bound, float(full_val.sum() - mu @ rhs))
        # sets the full enumeration prefers at these prices but the candidate lists lack: add them, go again
        before = locs.shape[1]
        locs = _merge(locs, full_best, L)
        if locs.shape[1] == before:
            break
    x = _to_assignment(locs[np.arange(N), pick], L)
    obj = pb.objective(x)
    sol = Solution(chosen=x, objective=obj, lower_bound=min(bound, obj), method="lagrangian", status=status,
                   seconds=time.perf_counter() - t0, binaries=binaries,
                   info={"rounds": rnd, "prices": {c.name: float(m) for c, m in zip(cons, mu)}})
    if sol.gap is not None and sol.gap <= 1e-9:
        sol.status = "optimal"
    return sol


def _to_assignment(locs: np.ndarray, L: int) -> np.ndarray:
    x = np.zeros((locs.shape[0], L + 1), dtype=bool)
    x[np.arange(locs.shape[0])[:, None], locs] = True
    return x[:, :L]
