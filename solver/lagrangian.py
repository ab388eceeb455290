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
from functools import cached_property

import numpy as np

from solver.problem import Problem, Solution, replica_sets

_DEBUG = bool(__import__('os').environ.get('DIM_SOLVER_DEBUG'))
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


@dataclass
class _Tables:
    """The problem in location-major layout ((L+1) x N, row L = padding), where gathering whole rows by replica
    set is several times faster than gathering columns of the object-major arrays."""

    lin: np.ndarray  # (L+1, N) linear cost of choosing l; padding 0
    serve: np.ndarray  # (L+1, N); padding inf
    allowed: np.ndarray  # (L+1, N) bool; padding True
    weight: np.ndarray  # (J, L+1, N): what choosing l adds to constraint j
    const: np.ndarray  # (N,)

    # object-major copies (N, L+1) for gathering a few sets per object
    @cached_property
    def lin_om(self) -> np.ndarray:
        return np.ascontiguousarray(self.lin.T)

    @cached_property
    def serve_om(self) -> np.ndarray:
        return np.ascontiguousarray(self.serve.T)

    @cached_property
    def weight_om(self) -> list[np.ndarray]:
        return [np.ascontiguousarray(w.T) for w in self.weight]


def _tables(pb: Problem, cons: list[_Constraint]) -> _Tables:
    N, L = pb.n, pb.n_locations

    def padded(a: np.ndarray, pad) -> np.ndarray:
        out = np.empty((L + 1, N), dtype=np.result_type(a.dtype, np.asarray(pad).dtype))
        out[:L] = a.T
        out[L] = pad
        return out

    weight = np.zeros((len(cons), L + 1, N))
    for j, c in enumerate(cons):
        if c.kind == "cap":
            weight[j, c.loc] = pb.size
        elif c.kind == "bytes":
            weight[j, :L] = (pb.size[:, None] * ~pb.current).T
        else:
            weight[j, :L] = pb.transition_linear.T
    return _Tables(lin=padded(pb.linear, 0.0), serve=padded(pb.cm.serve, np.inf),
                   allowed=padded(pb.allowed, True), weight=weight, const=pb.const)


def _groups(pb: Problem) -> dict[tuple[int, int], np.ndarray]:
    """Objects by (rf, max per provider): each group shares one list of replica sets."""
    cached = pb.__dict__.get("_lagrangian_groups")
    if cached is not None:
        return cached
    if (pb.rf == pb.rf[0]).all() and (pb.max_per_provider == pb.max_per_provider[0]).all():
        groups = {(int(pb.rf[0]), int(pb.max_per_provider[0])): np.arange(pb.n)}
    else:
        keys = pb.rf.astype(np.int64) * 1024 + pb.max_per_provider
        groups = {(int(k) // 1024, int(k) % 1024): np.flatnonzero(keys == k) for k in np.unique(keys)}
    pb.__dict__["_lagrangian_groups"] = groups
    return groups


def _full_pass(pb: Problem, tb: _Tables, mu: np.ndarray, top: int = 0):
    """Relaxed min over every feasible set of every object at prices mu. Returns (relaxed min per object incl.
    its constant, argmin locations (N, R) padded with L, top-`top` sets per object (N, top, R) or None)."""
    N, L = pb.n, pb.n_locations
    R = int(pb.rf.max()) if N else 1
    best_val = np.full(N, np.inf)
    best_locs = np.full((N, R), L, dtype=np.int64)
    tops = np.full((N, top, R), L, dtype=np.int64) if top else None
    for (rf, mpp), members in _groups(pb).items():
        sets = replica_sets(pb.la, rf, mpp)  # (K, rf)
        if not len(sets):
            continue
        contiguous = members[-1] - members[0] + 1 == len(members)
        for start in range(0, len(members), CHUNK):
            idx = slice(members[start], members[min(start + CHUNK, len(members)) - 1] + 1) if contiguous \
                else members[start:start + CHUNK]
            n = len(members[start:start + CHUNK])
            adj = tb.lin[:, idx].copy()
            for j, m in enumerate(mu):
                if m:
                    adj += m * tb.weight[j][:, idx]
            serve, allowed = tb.serve[:, idx], tb.allowed[:, idx]
            val = adj[sets[:, 0]]
            best_serve = serve[sets[:, 0]]
            ok = allowed[sets[:, 0]]
            for r in range(1, rf):
                val += adj[sets[:, r]]
                np.minimum(best_serve, serve[sets[:, r]], out=best_serve)
                ok &= allowed[sets[:, r]]
            val += best_serve
            val[~ok] = np.inf  # (K, n)
            k = val.argmin(axis=0)
            cols = np.arange(n)
            best_val[idx] = val[k, cols] + tb.const[idx]
            best_locs[idx, :rf] = sets[k]
            if top:
                t = min(top, sets.shape[0])
                part = np.argpartition(val, t - 1, axis=0)[:t] if t < sets.shape[0] else \
                    np.tile(np.arange(t)[:, None], (1, n))
                chosen = sets[part.T]  # (n, t, rf)
                chosen[~np.isfinite(val[part, cols[None, :]].T)] = L
                tops[idx, :t, :rf] = chosen
    return best_val, best_locs, tops


def _evaluate_sets(pb: Problem, tb: _Tables, locs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True cost (N, M) and resource use (J, N, M) of candidate sets locs (N, M, R)."""
    N, L = pb.n, pb.n_locations
    # object-major gather: an object's locations sit next to each other in memory
    flat = locs + (np.arange(N) * (L + 1))[:, None, None]
    valid = (locs < L).any(axis=2)
    cost = _gather(tb.lin_om, flat).sum(axis=2)
    cost += _gather(tb.serve_om, flat).min(axis=2) + tb.const[:, None]
    cost[~valid] = np.inf
    use = np.stack([_gather(w, flat).sum(axis=2) for w in tb.weight_om]) if len(tb.weight_om) else \
        np.zeros((0, N, locs.shape[1]))
    return cost, use


def _gather(table_om: np.ndarray, flat: np.ndarray) -> np.ndarray:
    return table_om.ravel()[flat]


def _evaluate_more(pb: Problem, tb: _Tables, locs: np.ndarray, cost: np.ndarray, use: np.ndarray):
    """Extend cost/use of the first columns of locs to all of its columns."""
    m = cost.shape[1]
    if locs.shape[1] == m:
        return cost, use
    c2, u2 = _evaluate_sets(pb, tb, locs[:, m:])
    return np.concatenate([cost, c2], axis=1), np.concatenate([use, u2], axis=2)


def _merge(cands_locs: np.ndarray, extra: np.ndarray, L: int) -> np.ndarray:
    """Add set `extra` (N, R) to each object's candidates where it is not already there (replacing padding or
    the last slot, which never holds the keep set or the best-at-zero set)."""
    # every set is kept sorted (combinations, sorted keep sets, padding L last), so equal sets compare equal
    same = (cands_locs == extra[:, None, :]).all(axis=2).any(axis=1)
    need = np.flatnonzero(~same)
    if need.size == 0:
        return cands_locs
    M = cands_locs.shape[1]
    out = np.concatenate([cands_locs, np.full((cands_locs.shape[0], 1, cands_locs.shape[2]), L)], axis=1)
    out[need, M] = extra[need]
    return out


def _argmin_at(c: _Candidates, mu: np.ndarray, rhs: np.ndarray | None = None) -> np.ndarray:
    """Each object's cheapest candidate at prices mu; ties go to the one using the least of the constraints
    (the feasible side of a breakpoint)."""
    val = _priced(c, mu)
    best = val.min(axis=1, keepdims=True)
    tied = val <= best + 1e-12 * np.maximum(np.abs(best), 1e-300)
    if not len(mu):
        return tied.argmax(axis=1)
    scale = 1.0 / np.maximum(np.abs(rhs), 1.0) if rhs is not None else np.ones(len(mu))
    load = _priced(_Candidates(c.locs, np.zeros_like(c.cost), c.use), scale)
    return np.where(tied, load, np.inf).argmin(axis=1)


def _priced(c: _Candidates, mu: np.ndarray, skip: int = -1) -> np.ndarray:
    """cost + sum_j mu_j use_j (leaving out constraint `skip`)."""
    val = c.cost.copy()
    for j, m in enumerate(mu):
        if m and j != skip:
            val += m * c.use[j]
    return val


def _usage(c: _Candidates, pick: np.ndarray) -> np.ndarray:
    rows = np.arange(c.cost.shape[0])
    return c.use[:, rows, pick].sum(axis=1) if c.use.shape[0] else np.zeros(0)


def _exact_price(base: np.ndarray, b: np.ndarray, rhs: float) -> float:
    """The smallest mu >= 0 at which sum_i b[i, argmin_m(base + mu b)] <= rhs, found exactly from the
    breakpoints of each object's lower envelope (at most M-1 per object) instead of by bisection."""
    n, M = base.shape
    rows = np.arange(n)
    tol = 1e-9 * max(abs(rhs), 1.0)
    best = base.min(axis=1, keepdims=True)
    k = np.where(base <= best + 1e-12 * np.maximum(np.abs(best), 1e-300), b, np.inf).argmin(axis=1)
    used = float(b[rows, k].sum())
    if used <= rhs + tol:
        return 0.0
    at = np.zeros(n)
    mus: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    finite = np.isfinite(base)
    for _ in range(M - 1):
        bk, ak = b[rows, k], base[rows, k]
        lower = finite & (b < bk[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(lower, (base - ak[:, None]) / (bk[:, None] - b), np.inf)
        t = np.maximum(t, at[:, None])
        tmin = t.min(axis=1)
        ok = np.isfinite(tmin)
        if not ok.any():
            break
        nxt = np.where(lower & (t <= tmin[:, None] * (1 + 1e-12)), b, np.inf).argmin(axis=1)
        idx = np.flatnonzero(ok)
        mus.append(tmin[idx])
        deltas.append(b[idx, nxt[idx]] - bk[idx])
        k = np.where(ok, nxt, k)
        at = np.where(ok, tmin, at)
    if not mus:
        raise _Infeasible("a coupling constraint cannot be met at any price")
    mu_e, d_e = np.concatenate(mus), np.concatenate(deltas)
    order = np.argsort(mu_e, kind="stable")
    level = used + np.cumsum(d_e[order])
    hit = np.flatnonzero(level <= rhs + tol)
    if hit.size == 0:
        raise _Infeasible("a coupling constraint cannot be met at any price")
    return float(mu_e[order[hit[0]]])


def _dual_value(c: _Candidates, mu: np.ndarray, rhs: np.ndarray) -> float:
    return float(_priced(c, mu).min(axis=1).sum() - mu @ rhs)


@dataclass
class _Ascent:
    mu: np.ndarray
    picks: list  # the argmin assignment of each bundle evaluation
    weights: np.ndarray  # convex weights of those assignments in the final cutting-plane model (the LP primal)


def _dual_ascent(c: _Candidates, rhs: np.ndarray, mu: np.ndarray, max_iter: int = 150,
                 tol: float = 1e-9) -> _Ascent:
    """Maximise g(mu) over mu >= 0: one sweep of exact coordinate prices as a start, then a trust-region
    cutting-plane (bundle) method. Each step evaluates g and its supergradient (usage - rhs) at one price
    vector and solves a tiny LP over the cuts so far, in prices scaled to dollars (nu_j = mu_j * scale_j).
    The duals of that LP weight the evaluated assignments into a fractional primal solution."""
    J = len(rhs)
    mu = mu.copy()
    for j in range(J):
        mu[j] = _exact_price(_priced(c, mu, skip=j), c.use[j], rhs[j])
    if J == 1 or max_iter == 0:
        return _Ascent(mu, [], np.zeros(0))
    scale = np.maximum(np.abs(rhs), np.abs(c.use).max(axis=(1, 2), initial=0.0) * 1e-3)
    scale = np.where(scale > 0, scale, 1.0)

    rows = np.arange(c.cost.shape[0])

    picks: list[np.ndarray] = []

    def evaluate(m: np.ndarray) -> tuple[float, np.ndarray]:
        val = _priced(c, m)
        pick = val.argmin(axis=1)
        picks.append(pick.astype(np.int16))
        return float(val[rows, pick].sum() - m @ rhs), (_usage(c, pick) - rhs) / scale  # supergradient in nu

    nu_c = mu * scale
    g_c, s_c = evaluate(mu)
    cuts = [(nu_c.copy(), g_c, s_c)]
    radius = np.maximum(np.abs(nu_c), abs(g_c) * 1e-3 + 1e-12)
    for _ in range(max_iter):
        nu, theta, _ = _master(cuts, np.maximum(nu_c - radius, 0.0), nu_c + radius)
        predicted = theta - g_c
        if predicted <= tol * max(abs(g_c), 1e-12):
            break
        g, sg = evaluate(nu / scale)
        cuts.append((nu, g, sg))
        if g - g_c >= 0.1 * predicted:  # serious step: move the centre; widen the region if we hit its edge
            at_edge = np.isclose(np.abs(nu - nu_c), radius, rtol=1e-6)
            nu_c, g_c = nu, g
            radius = np.where(at_edge, radius * 4, radius)
        else:  # null step: the new cut sharpens the model near the centre
            radius = np.maximum(radius * 0.7, 1e-12)
    _, _, duals = _master(cuts, np.maximum(nu_c - radius, 0.0), nu_c + radius)
    weights = np.abs(duals)
    weights = weights / weights.sum() if weights.sum() > 0 else weights
    return _Ascent(nu_c / scale, picks, weights)


def _master(cuts, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """max theta s.t. theta <= g_t + s_t . (nu - nu_t) for every cut, lower <= nu <= upper. Returns nu, theta
    and the cuts' duals."""
    import highspy

    J = len(lower)
    inf = highspy.kHighsInf
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(J + 1, np.concatenate([[-inf], lower]), np.concatenate([[inf], upper]))
    h.changeColsCost(1, np.array([0], dtype=np.int32), np.array([-1.0]))
    nnz_index, starts, values, ub = [], [], [], []
    for nu_t, g_t, s_t in cuts:  # theta - s_t . nu <= g_t - s_t . nu_t
        starts.append(len(values))
        nnz_index.extend(range(J + 1))
        values.extend([1.0, *(-s_t)])
        ub.append(g_t - float(s_t @ nu_t))
    h.addRows(len(cuts), np.full(len(cuts), -inf), np.array(ub), len(values), np.array(starts, dtype=np.int32),
              np.array(nnz_index, dtype=np.int32), np.array(values))
    h.run()
    sol = h.getSolution()
    x = np.array(sol.col_value)
    return x[1:], float(x[0]), np.array(sol.row_dual)


def _fixed_objects(c: _Candidates) -> np.ndarray:
    """(N,) bool: objects whose best candidate at zero prices also uses least of every constraint, so that no
    price can change their choice. They leave the dual iterations (usually the large majority)."""
    pick = _argmin_at(c, np.zeros(c.use.shape[0]), None)
    rows = np.arange(c.cost.shape[0])
    chosen = c.use[:, rows, pick][:, :, None]
    ok = np.isfinite(c.cost)[None, :, :]
    return ((chosen <= c.use + 1e-12) | ~ok).all(axis=(0, 2))


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


def _fill(c: _Candidates, pick: np.ndarray, rhs: np.ndarray, mu: np.ndarray, passes: int = 3) -> np.ndarray:
    """Greedy improvement with the room the constraints have left: (object, cheaper candidate) pairs that fit,
    best gain per dollar of resource at the dual prices first (per unit of scarce room where no constraint has a
    price), accepted in vectorised prefixes."""
    rows = np.arange(c.cost.shape[0])
    pick = pick.copy()
    tol = 1e-9 * np.maximum(np.abs(rhs), 1.0)
    for _ in range(passes):
        room = rhs - _usage(c, pick)
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


def _best_primal(c: _Candidates, rhs: np.ndarray, mu: np.ndarray, pick: np.ndarray, ascent: _Ascent) -> np.ndarray:
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
    mixed = np.choose(which, ascent.picks) if len(ascent.picks) <= 32 else \
        np.stack(ascent.picks)[which, rows]
    try:
        mixed = _fill(c, _repair(c, mixed.astype(np.int64), rhs), rhs, mu)
    except _Infeasible:
        return pick
    return mixed if c.cost[rows, mixed].sum() < c.cost[rows, pick].sum() else pick


def solve_lagrangian(pb: Problem, m_candidates: int = M_CANDIDATES, max_rounds: int = 3,
                     target_gap: float = 1e-4) -> Solution:
    t0 = time.perf_counter()
    N, L = pb.n, pb.n_locations
    cons = _constraints(pb)
    rhs = np.array([c.rhs for c in cons])
    mu = np.zeros(len(cons))
    R = int(pb.rf.max()) if N else 1
    binaries = int(pb.allowed.sum())

    tb = _tables(pb, cons)
    val0, best0, tops = _full_pass(pb, tb, mu, top=m_candidates if cons else 0)
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
    # Seed the lists with the sets preferred at a first guess of the prices (one sweep of exact coordinate
    # prices on the zero-price lists): partial moves that keep one replica only win once moving has a price.
    cost = use = None
    try:
        cost, use = _evaluate_sets(pb, tb, locs)
        first = _Candidates(locs, cost, use)
        fixed = _fixed_objects(first)
        act = np.flatnonzero(~fixed)
        sub = _Candidates(locs[act], cost[act], use[:, act])
        base = _argmin_at(first, mu, rhs)
        rhs_act = rhs - _usage(first, base) + _usage(sub, base[act])
        guess = _dual_ascent(sub, rhs_act, mu, max_iter=0).mu
    except _Infeasible:
        guess = None
    if guess is not None and (guess > 0).any():
        _, _, tops_guess = _full_pass(pb, tb, guess, top=2)
        for t in range(tops_guess.shape[1]):
            locs = _merge(locs, tops_guess[:, t], L)
    else:
        cost = use = None
    bound = -np.inf
    pick = None
    best_x, best_obj, info = None, np.inf, {}
    status = "feasible"
    for rnd in range(1, max_rounds + 1):
        cost, use = _evaluate_sets(pb, tb, locs) if cost is None else _evaluate_more(pb, tb, locs, cost, use)
        cands = _Candidates(locs, cost, use)
        try:
            fixed = _fixed_objects(cands)
            pick = _argmin_at(cands, np.zeros_like(mu), rhs)
            act = np.flatnonzero(~fixed)
            sub = _Candidates(locs[act], cost[act], use[:, act])
            rhs_act = rhs - _usage(cands, pick) + _usage(sub, pick[act])
            ascent = _dual_ascent(sub, rhs_act, mu)
            mu = ascent.mu
            p0 = _argmin_at(sub, mu, rhs_act)
            p1 = _repair(sub, p0, rhs_act)
            p2 = _fill(sub, p1, rhs_act, mu)
            dual_sub = _dual_value(sub, mu, rhs_act)
            rr = np.arange(act.size)
            if sub.cost[rr, p2].sum() - dual_sub > target_gap * abs(float(cost[np.arange(N), pick].sum())):
                p2 = _best_primal(sub, rhs_act, mu, p2, ascent)
            pick[act] = p2
            if _DEBUG:
                rr = np.arange(act.size)
                fixed_cost = float(cost[np.flatnonzero(fixed), pick[fixed]].sum())
                print(f"round {rnd}: active {act.size} M {locs.shape[1]} dual(sub) {fixed_cost + _dual_value(sub, mu, rhs_act):.6f} "
                      f"argmin {fixed_cost + sub.cost[rr, p0].sum():.6f} viol {np.round((_usage(sub, p0) - rhs_act) / np.maximum(np.abs(rhs_act), 1), 6)} "
                      f"repaired {fixed_cost + sub.cost[rr, p1].sum():.6f} filled {fixed_cost + sub.cost[rr, pick[act]].sum():.6f} t={time.perf_counter() - t0:.2f}")
        except _Infeasible as exc:
            return Solution(chosen=pb.current.copy(), objective=float("inf"), lower_bound=None,
                            method="lagrangian", status="infeasible", seconds=time.perf_counter() - t0,
                            binaries=binaries, info={"error": str(exc)})
        full_val, full_best, _ = _full_pass(pb, tb, mu)
        bound = max(bound, float(full_val.sum() - mu @ rhs))
        if _DEBUG:
            print(f"round {rnd}: full bound {float(full_val.sum() - mu @ rhs):.6f} t={time.perf_counter() - t0:.2f}")
        info = {"rounds": rnd, "active_objects": int(act.size),
                "prices": {c.name: float(m) for c, m in zip(cons, mu)}}
        primal = float(cost[np.arange(N), pick].sum())
        if primal < best_obj:
            best_obj, best_x = primal, _to_assignment(locs[np.arange(N), pick], L)
        if best_obj - bound <= target_gap * abs(best_obj):
            break
        # sets the full enumeration prefers at these prices but the candidate lists lack: add them, go again
        before = locs.shape[1]
        locs = _merge(locs, full_best, L)
        if locs.shape[1] == before:
            break
    x = best_x
    obj = pb.objective(x)
    sol = Solution(chosen=x, objective=obj, lower_bound=min(bound, obj), method="lagrangian", status=status,
                   seconds=time.perf_counter() - t0, binaries=binaries, info=info)
    if sol.gap is not None and sol.gap <= 1e-9:
        sol.status = "optimal"
    return sol


def _to_assignment(locs: np.ndarray, L: int) -> np.ndarray:
    x = np.zeros((locs.shape[0], L + 1), dtype=bool)
    x[np.arange(locs.shape[0])[:, None], locs] = True
    return x[:, :L]
