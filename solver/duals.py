"""Lagrangian prices for the coupling constraints: exact one-dimensional prices from envelope breakpoints and a
trust-region cutting-plane (bundle) ascent on the dual function, over candidate lists. Pure numpy plus a tiny LP
(J+1 variables) solved by HiGHS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.enumeration import Candidates
from solver.highs import new_highs


def argmin_at(c: Candidates, mu: np.ndarray, rhs: np.ndarray | None = None) -> np.ndarray:
    """Each object's cheapest candidate at prices mu; ties go to the one using the least of the constraints
    (the feasible side of a breakpoint)."""
    val = priced(c, mu)
    best = val.min(axis=1, keepdims=True)
    tied = val <= best + 1e-12 * np.maximum(np.abs(best), 1e-300)
    if not len(mu):
        return tied.argmax(axis=1)
    scale = 1.0 / np.maximum(np.abs(rhs), 1.0) if rhs is not None else np.ones(len(mu))
    load = priced(Candidates(c.locs, np.zeros_like(c.cost), c.use), scale)
    return np.where(tied, load, np.inf).argmin(axis=1)


def priced(c: Candidates, mu: np.ndarray, skip: int = -1) -> np.ndarray:
    """cost + sum_j mu_j use_j (leaving out constraint `skip`)."""
    val = c.cost.copy()
    for j, m in enumerate(mu):
        if m and j != skip:
            val += m * c.use[j]
    return val


def usage(c: Candidates, pick: np.ndarray) -> np.ndarray:
    rows = np.arange(c.cost.shape[0])
    return c.use[:, rows, pick].sum(axis=1) if c.use.shape[0] else np.zeros(0)


def exact_price(base: np.ndarray, b: np.ndarray, rhs: float) -> float:
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
    # Walk each object's lower envelope from its current piece towards less use. Only objects with a piece
    # using less take part; an object leaves the walk at its last breakpoint (most leave after one or two).
    live = np.flatnonzero((np.isfinite(base) & (b < b[rows, k][:, None])).any(axis=1))
    base, b, k = base[live], b[live], k[live]
    at = np.zeros(live.size)
    mus: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    for _ in range(M - 1):
        if not live.size:
            break
        r = np.arange(live.size)
        bk, ak = b[r, k], base[r, k]
        lower = np.isfinite(base) & (b < bk[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(lower, (base - ak[:, None]) / (bk[:, None] - b), np.inf)
        t = np.maximum(t, at[:, None])
        tmin = t.min(axis=1)
        ok = np.isfinite(tmin)
        if not ok.any():
            break
        nxt = np.where(lower & (t <= tmin[:, None] * (1 + 1e-12)), b, np.inf).argmin(axis=1)
        mus.append(tmin[ok])
        deltas.append(b[r[ok], nxt[ok]] - bk[ok])
        keep = np.flatnonzero(ok)
        live, base, b, k, at = live[keep], base[keep], b[keep], nxt[keep], tmin[keep]
    if not mus:
        raise Infeasible("a coupling constraint cannot be met at any price")
    mu_e, d_e = np.concatenate(mus), np.concatenate(deltas)
    order = np.argsort(mu_e, kind="stable")
    level = used + np.cumsum(d_e[order])
    hit = np.flatnonzero(level <= rhs + tol)
    if hit.size == 0:
        raise Infeasible("a coupling constraint cannot be met at any price")
    return float(mu_e[order[hit[0]]])


def dual_value(c: Candidates, mu: np.ndarray, rhs: np.ndarray) -> float:
    return float(priced(c, mu).min(axis=1).sum() - mu @ rhs)


@dataclass
class Ascent:
    mu: np.ndarray
    picks: list  # the argmin assignment of each bundle evaluation
    weights: (
        np.ndarray
    )  # convex weights of those assignments in the final cutting-plane model (the LP primal)


def dual_ascent(
    c: Candidates, rhs: np.ndarray, mu: np.ndarray, max_iter: int = 150, tol: float = 1e-9
) -> Ascent:
    """Maximise g(mu) over mu >= 0: one sweep of exact coordinate prices as a start, then a trust-region
    cutting-plane (bundle) method. Each step evaluates g and its supergradient (usage - rhs) at one price
    vector and solves a tiny LP over the cuts so far, in prices scaled to dollars (nu_j = mu_j * scale_j).
    The duals of that LP weight the evaluated assignments into a fractional primal solution."""
    J = len(rhs)
    mu = mu.copy()
    for j in range(J):
        mu[j] = exact_price(priced(c, mu, skip=j), c.use[j], rhs[j])
    if J == 1 or max_iter == 0:
        return Ascent(mu, [], np.zeros(0))
    scale = np.maximum(np.abs(rhs), np.abs(c.use).max(axis=(1, 2), initial=0.0) * 1e-3)
    scale = np.where(scale > 0, scale, 1.0)

    rows = np.arange(c.cost.shape[0])

    picks: list[np.ndarray] = []

    def evaluate(m: np.ndarray) -> tuple[float, np.ndarray]:
        val = priced(c, m)
        pick = val.argmin(axis=1)
        picks.append(pick.astype(np.int16))
        return float(val[rows, pick].sum() - m @ rhs), (usage(c, pick) - rhs) / scale  # supergradient in nu

    nu_c = mu * scale
    g_c, s_c = evaluate(mu)
    cuts = [(nu_c.copy(), g_c, s_c)]
    radius = np.maximum(np.abs(nu_c), abs(g_c) * 1e-3 + 1e-12)
    for _ in range(max_iter):
        master = _master(cuts, np.maximum(nu_c - radius, 0.0), nu_c + radius)
        if master is None:  # prices beyond any float the LP takes: g is unbounded, see _master
            break
        nu, theta, _ = master
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
    master = _master(cuts, np.maximum(nu_c - radius, 0.0), nu_c + radius)
    weights = np.abs(master[2]) if master is not None else np.zeros(0)
    weights = weights / weights.sum() if weights.sum() > 0 else weights
    return Ascent(nu_c / scale, picks, weights)


def _master(cuts, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, float, np.ndarray] | None:
    """max theta s.t. theta <= g_t + s_t . (nu - nu_t) for every cut, lower <= nu <= upper. Returns nu, theta
    and the cuts' duals, or None when HiGHS has no optimum. That happens when the ascent's serious steps kept
    widening the region until its bounds passed HiGHS's infinity (1e20): the dual function grows without bound,
    i.e. the coupling constraints cannot all be met over the candidate lists. The caller keeps the last
    centre; rounding and repair then find a plan or raise Infeasible."""
    import highspy

    J = len(lower)
    inf = highspy.kHighsInf
    h = new_highs()
    h.addVars(J + 1, np.concatenate([[-inf], lower]), np.concatenate([[inf], upper]))
    h.changeColsCost(1, np.array([0], dtype=np.int32), np.array([-1.0]))
    nnz_index, starts, values, ub = [], [], [], []
    for nu_t, g_t, s_t in cuts:  # theta - s_t . nu <= g_t - s_t . nu_t
        starts.append(len(values))
        nnz_index.extend(range(J + 1))
        values.extend([1.0, *(-s_t)])
        ub.append(g_t - float(s_t @ nu_t))
    h.addRows(
        len(cuts),
        np.full(len(cuts), -inf),
        np.array(ub),
        len(values),
        np.array(starts, dtype=np.int32),
        np.array(nnz_index, dtype=np.int32),
        np.array(values),
    )
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = h.getSolution()
    x = np.array(sol.col_value)
    return x[1:], float(x[0]), np.array(sol.row_dual)


class Infeasible(RuntimeError):
    pass
