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

import os
import time

import numpy as np

from solver.duals import Ascent, Infeasible, argmin_at, dual_ascent, dual_value, usage
from solver.enumeration import (
    Candidates,
    coupling_constraints,
    evaluate_more,
    evaluate_sets,
    full_pass,
    merge_sets,
    tables,
    to_assignment,
)
from solver.problem import Problem, Solution

_DEBUG = bool(os.environ.get("DIM_SOLVER_DEBUG"))
M_CANDIDATES = 6  # candidate sets kept per object for the dual iterations


def _repair(c: Candidates, pick: np.ndarray, rhs: np.ndarray, rounds: int = 20) -> np.ndarray:
    """Move objects to alternatives that lower each violated constraint at the least cost per unit."""
    pick = pick.copy()
    rows = np.arange(c.cost.shape[0])
    for _ in range(rounds):
        excess = usage(c, pick) - rhs
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
        ratio = np.where(
            (d_use > 0) & ~worse & np.isfinite(d_cost),
            np.maximum(d_cost, 0) / np.where(d_use > 0, d_use, 1),
            np.inf,
        )
        alt = ratio.argmin(axis=1)
        best = ratio[rows, alt]
        order = np.argsort(best)
        order = order[np.isfinite(best[order])]
        gain = np.cumsum(d_use[order, alt[order]])
        take = order[: int(np.searchsorted(gain, excess[j])) + 1]
        if take.size == 0:
            break
        pick[take] = alt[take]
    if (usage(c, pick) - rhs > 1e-9 * np.maximum(np.abs(rhs), 1.0)).any():
        raise Infeasible("repair could not satisfy the coupling constraints")
    return pick


def _fill(c: Candidates, pick: np.ndarray, rhs: np.ndarray, mu: np.ndarray, passes: int = 3) -> np.ndarray:
    """Greedy improvement with the room the constraints have left: (object, cheaper candidate) pairs that fit,
    best gain per dollar of resource at the dual prices first (per unit of scarce room where no constraint has a
    price), accepted in vectorised prefixes."""
    rows = np.arange(c.cost.shape[0])
    pick = pick.copy()
    tol = 1e-9 * np.maximum(np.abs(rhs), 1.0)
    for _ in range(passes):
        room = rhs - usage(c, pick)
        delta = c.use - c.use[:, rows, pick][:, :, None]  # (J, N, M)
        gain = c.cost[rows, pick][:, None] - c.cost
        ii, mm = np.nonzero((gain > 1e-12) & (delta <= (room + tol)[:, None, None]).all(axis=0))
        if ii.size == 0:
            break
        d = delta[:, ii, mm]
        if (mu > 0).any():
            weight = (np.maximum(d, 0) * mu[:, None]).sum(axis=0)
        else:
            weight = (np.maximum(d, 0) / np.maximum(room, tol)[:, None]).sum(axis=0)
        ratio = gain[ii, mm] / np.maximum(weight, 1e-300)
        order = np.lexsort((-gain[ii, mm], -ratio))
        _, first = np.unique(ii[order], return_index=True)  # each object's best pair
        order = order[np.sort(first)]
        ii, mm, d = ii[order], mm[order], d[:, order]
        changed = False
        for _ in range(100):
            if ii.size == 0:
                break
            cum = np.cumsum(d, axis=1)
            fits = (cum <= (room + tol)[:, None]).all(axis=0)
            stop = int(np.argmin(fits)) if not fits.all() else ii.size
            if stop:
                pick[ii[:stop]] = mm[:stop]
                room = room - cum[:, stop - 1]
                changed = True
            keep = np.arange(stop + 1, ii.size)
            keep = keep[(d[:, keep] <= (room + tol)[:, None]).all(axis=0)]
            ii, mm, d = ii[keep], mm[keep], d[:, keep]
        if not changed:
            break
    return pick


def _best_primal(
    c: Candidates, rhs: np.ndarray, mu: np.ndarray, pick: np.ndarray, ascent: Ascent
) -> np.ndarray:
    """Also round the fractional primal of the cutting-plane model (object i takes evaluated assignment t with
    probability weight_t, by a fixed low-discrepancy sequence), repair and fill it; keep the cheaper plan.
    At the dual optimum many objects are indifferent between sets, and the LP's mix of them is what uses every
    priced constraint fully; the argmin alone picks one side of each tie for everybody."""
    if not ascent.picks or not (ascent.weights > 0).any():
        return pick
    n = c.cost.shape[0]
    rows = np.arange(n)
    u = (rows * 0.6180339887498949) % 1.0
    which = np.searchsorted(np.cumsum(ascent.weights), u, side="right").clip(0, len(ascent.picks) - 1)
    mixed = np.choose(which, ascent.picks) if len(ascent.picks) <= 32 else np.stack(ascent.picks)[which, rows]
    try:
        mixed = _fill(c, _repair(c, mixed.astype(np.int64), rhs), rhs, mu)
    except Infeasible:
        return pick
    return mixed if c.cost[rows, mixed].sum() < c.cost[rows, pick].sum() else pick


def solve_lagrangian(
    pb: Problem, m_candidates: int = M_CANDIDATES, max_rounds: int = 3, target_gap: float = 1e-4
) -> Solution:
    """Solve `pb` by enumeration + Lagrangian prices; the Solution carries the certified lower bound.

    First the objects no price can move leave the problem: those whose cheapest replica set (over the full
    enumeration) also uses the least of every coupling constraint. For them min_k (cost_k + mu . use_k) =
    cost_best + mu . use_best at every mu >= 0, so the dual function splits exactly into their fixed part and
    the rest's, and the rest (typically a third of the batch, fewer when the budgets are tight) is solved as a
    problem of its own with what the fixed objects leave of each constraint. Any feasible plan stays feasible
    with the fixed objects at their choice (it uses no more of anything), so nothing is lost."""
    t0 = time.perf_counter()
    N, L = pb.n, pb.n_locations
    cons = coupling_constraints(pb)
    binaries = int(pb.allowed.sum())
    tb = tables(pb, cons, weights=False)  # zero prices only
    val0, best0, _ = full_pass(pb, tb, np.zeros(len(cons)))
    if N == 0 or not np.isfinite(val0).all():
        return _infeasible(pb, t0, binaries, "an object has no feasible replica set")
    x0 = to_assignment(best0, L)
    if not cons:  # separable: the per-object enumeration is the exact optimum and its own bound
        return Solution(
            chosen=x0,
            objective=pb.objective(x0),
            lower_bound=float(val0.sum()),
            method="lagrangian",
            status="optimal",
            seconds=time.perf_counter() - t0,
            binaries=binaries,
            info={"rounds": 0, "prices": {}},
        )
    use0 = set_usage(pb, cons, best0)  # (J, N)
    fixed = (use0 <= least_usage(pb, cons)).all(axis=0)
    act = np.flatnonzero(~fixed)
    left = np.array([c.rhs for c in cons]) - use0[:, fixed].sum(axis=1)
    if act.size == 0:
        if (left < -1e-9 * np.maximum(np.abs([c.rhs for c in cons]), 1.0)).any():
            return _infeasible(pb, t0, binaries, "the coupling constraints cannot be met")
        sol_bound = float(val0.sum())
        obj = pb.objective(x0)
        return Solution(
            x0,
            obj,
            min(sol_bound, obj),
            "lagrangian",
            "optimal",
            time.perf_counter() - t0,
            binaries,
            {"rounds": 0, "active_objects": 0, "prices": {c.name: 0.0 for c in cons}},
        )
    sub = pb.subset(act, **_remaining(pb, cons, left, act))
    del tb
    if _DEBUG:
        print(f"lagrangian presolve: {act.size} of {N} objects active, t={time.perf_counter() - t0:.2f}s")
    part = _solve_coupled(sub, m_candidates, max_rounds, target_gap)
    if part.status == "infeasible":
        return _infeasible(pb, t0, binaries, part.info.get("error", "infeasible"))
    x = x0
    x[act] = part.chosen
    bound = float(val0[fixed].sum()) + part.lower_bound
    info = {**part.info, "active_objects": int(act.size), "fixed_objects": int(N - act.size)}
    return _solution(pb, x, bound, t0, binaries, info)


def set_usage(pb: Problem, cons, locs: np.ndarray) -> np.ndarray:
    """(J, N): what each object's replica set `locs` (N, R, padded with L) uses of each coupling constraint."""
    L = pb.n_locations
    rows = np.arange(pb.n)[:, None]
    valid = locs < L
    at = np.minimum(locs, L - 1)
    out = np.zeros((len(cons), pb.n))
    for j, c in enumerate(cons):
        if c.kind == "cap":
            out[j] = pb.size * ((locs == c.loc).any(axis=1))
        elif c.kind == "bytes":
            out[j] = pb.size * (valid & ~pb.current[rows, at]).sum(axis=1)
        else:
            out[j] = np.where(valid, pb.transition_linear[rows, at], 0.0).sum(axis=1)
    return out


def least_usage(pb: Problem, cons) -> np.ndarray:
    """(J, N): a lower bound on the least each object can use of each constraint with any feasible set. Zero
    for capacity and bytes copied (non-negative weights); for transition dollars (a kept replica's weight is
    minus its early-deletion charge) the sum of the rf smallest allowed weights."""
    out = np.zeros((len(cons), pb.n))
    for j, c in enumerate(cons):
        if c.kind != "usd" or (pb.transition_linear >= 0).all():
            continue
        w = np.sort(np.where(pb.allowed, pb.transition_linear, np.inf), axis=1)
        csum = np.cumsum(np.where(np.isfinite(w), w, 0.0), axis=1)
        out[j] = csum[np.arange(pb.n), pb.rf - 1]
    return out


def _remaining(pb: Problem, cons, left: np.ndarray, act: np.ndarray) -> dict:
    """Right-hand sides of the active objects' problem: what the fixed objects leave of each constraint."""
    capacity = pb.capacity.copy()
    out: dict = {"capacity": capacity}
    for c, rest in zip(cons, left):
        if c.kind == "cap":
            capacity[c.loc] = rest
        elif c.kind == "bytes":
            out["budget_bytes"] = float(rest)
        else:  # the usd row's rhs excludes the batch's constant part; the sub-problem's excludes its own
            out["budget_usd"] = float(rest + pb.const[act].sum())
    return out


def _infeasible(pb: Problem, t0: float, binaries: int, why: str) -> Solution:
    return Solution(
        chosen=pb.current.copy(),
        objective=float("inf"),
        lower_bound=None,
        method="lagrangian",
        status="infeasible",
        seconds=time.perf_counter() - t0,
        binaries=binaries,
        info={"error": why},
    )


def _solve_coupled(pb: Problem, m_candidates: int, max_rounds: int, target_gap: float) -> Solution:
    """The decomposition proper, on objects that prices can move."""
    t0 = time.perf_counter()
    N, L = pb.n, pb.n_locations
    cons = coupling_constraints(pb)
    rhs = np.array([c.rhs for c in cons])
    mu = np.zeros(len(cons))
    binaries = int(pb.allowed.sum())

    def infeasible(why: str) -> Solution:
        return _infeasible(pb, t0, binaries, why)

    tb = tables(pb, cons)
    val0, best0, tops = full_pass(pb, tb, mu, top=m_candidates)
    if not cons:  # every coupling constraint was left unlimited: separable
        x = to_assignment(best0, L)
        return Solution(x, pb.objective(x), float(val0.sum()), "lagrangian", "optimal", 0.0, binaries, {})

    R = tops.shape[2]
    keep = np.sort(np.where(pb.current, np.arange(L)[None, :], L), axis=1)[:, :R]
    keep[~pb.keep_feasible()] = L
    locs = merge_sets(tops, keep, L)
    cost, use = evaluate_sets(pb, tb, locs)
    # Seed the lists with the sets preferred at a first guess of the prices (one sweep of exact coordinate
    # prices): partial moves that keep one replica, for instance, only win once moving has a price.
    try:
        guess = _price_guess(Candidates(locs, cost, use), rhs)
    except Infeasible:  # the lists cannot meet a constraint: the first round widens them (below)
        guess = np.zeros(len(rhs))
    if (guess > 0).any():
        _, _, tops_guess = full_pass(pb, tb, guess, top=2)
        for t in range(tops_guess.shape[1]):
            locs = merge_sets(locs, tops_guess[:, t], L)

    bound, best_x, best_obj, info = -np.inf, None, np.inf, {}
    for rnd in range(1, max_rounds + 1):
        cost, use = evaluate_more(pb, tb, locs, cost, use)
        try:
            pick, mu, n_active = _round(Candidates(locs, cost, use), rhs, mu, target_gap)
        except Infeasible as exc:
            if best_x is not None:
                break
            # No combination in the lists meets the constraints: each object's cheapest sets may all use a
            # location that is full. Add the set each object prefers when any use of a constrained resource costs
            # more than every object's cost together: the cheapest set that avoids them where one can.
            before = locs.shape[1]
            _, far_best, _ = full_pass(pb, tb, _prohibitive_prices(cost, use))
            locs = merge_sets(locs, far_best, L)
            if locs.shape[1] == before or rnd == max_rounds:
                return infeasible(str(exc))
            mu = np.zeros(len(rhs))
            continue
        full_val, full_best, _ = full_pass(pb, tb, mu)
        bound = max(bound, float(full_val.sum() - mu @ rhs))
        primal = float(cost[np.arange(N), pick].sum())
        if primal < best_obj:
            best_obj, best_x = primal, to_assignment(locs[np.arange(N), pick], L)
        info = {
            "rounds": rnd,
            "active_objects": n_active,
            "prices": {c.name: float(m) for c, m in zip(cons, mu)},
        }
        if _DEBUG:
            print(
                f"lagrangian round {rnd}: primal {primal:.6f} bound {bound:.6f} "
                f"t={time.perf_counter() - t0:.2f}s",
                flush=True,
            )
        if best_obj - bound <= target_gap * abs(best_obj):
            break
        # sets the full enumeration prefers at these prices but the candidate lists lack: add them, go again
        before = locs.shape[1]
        locs = merge_sets(locs, full_best, L)
        if locs.shape[1] == before:
            break
    return _solution(pb, best_x, bound, t0, binaries, info)


def _solution(pb: Problem, x: np.ndarray, bound: float, t0: float, binaries: int, info: dict) -> Solution:
    """The decomposition's answer: its plan x with the certified bound (never above x's own cost)."""
    obj = pb.objective(x)
    sol = Solution(
        chosen=x,
        objective=obj,
        lower_bound=min(bound, obj),
        method="lagrangian",
        status="feasible",
        seconds=time.perf_counter() - t0,
        binaries=binaries,
        info=info,
    )
    if sol.gap is not None and sol.gap <= 1e-9:
        sol.status = "optimal"
    return sol


def _prohibitive_prices(cost: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per constraint, a price at which its smallest positive use outweighs the total of all finite costs a
    thousand times, so sets that use none of it win and among them the cheapest (their priced value is their cost)."""
    total = float(np.abs(cost[np.isfinite(cost)]).sum()) + 1e-9
    mu = np.empty(use.shape[0])
    for j in range(use.shape[0]):
        positive = use[j][use[j] > 0]
        mu[j] = 1e3 * total / float(positive.min()) if positive.size else 0.0
    return mu


def _price_guess(c: Candidates, rhs: np.ndarray) -> np.ndarray:
    return dual_ascent(c, rhs, np.zeros(len(rhs)), max_iter=0).mu


def _round(c: Candidates, rhs: np.ndarray, mu: np.ndarray, target_gap: float):
    """Prices on the candidate lists, then the primal: argmin at the prices, repaired, filled; and when that is
    not within target_gap of the lists' dual value, the rounded fractional solution as well. (The objects no
    price can move already left in solve_lagrangian's presolve.)"""
    ascent = dual_ascent(c, rhs, mu)
    plan = _fill(c, _repair(c, argmin_at(c, ascent.mu, rhs), rhs), rhs, ascent.mu)
    rows = np.arange(c.cost.shape[0])
    if c.cost[rows, plan].sum() - dual_value(c, ascent.mu, rhs) > target_gap * float(
        np.abs(c.cost[rows, plan]).sum()
    ):
        plan = _best_primal(c, rhs, ascent.mu, plan, ascent)
    return plan, ascent.mu, int(c.cost.shape[0])
