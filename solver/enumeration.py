"""Replica-set enumeration for the Lagrangian decomposition: the problem as location-major tables, the full
enumeration of every object's feasible replica sets at given prices (in blocks), and short candidate lists per
object with their true cost and resource use. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from solver.problem import Problem, replica_sets

CHUNK = 65_536  # objects per block of the full enumeration (bounds memory at ~CHUNK x K x RF)


@dataclass
class Constraint:
    name: str
    rhs: float
    kind: str  # "cap", "bytes", "usd"
    loc: int = -1


@dataclass
class Candidates:
    """M candidate replica sets per object: their locations, true cost and resource use per constraint."""

    locs: np.ndarray  # (N, M, R) int location indices, R = max rf; padded with L (a dummy column)
    cost: np.ndarray  # (N, M) true objective contribution (inf = padding)
    use: np.ndarray  # (J, N, M)


def coupling_constraints(pb: Problem) -> list[Constraint]:
    out = [
        Constraint(f"capacity:{pb.la.ids[l]}", float(pb.capacity[l]), "cap", int(l))
        for l in np.flatnonzero(np.isfinite(pb.capacity))
    ]
    if np.isfinite(pb.budget_bytes):
        out.append(Constraint("move_bytes", float(pb.budget_bytes), "bytes"))
    if np.isfinite(pb.budget_usd):
        out.append(Constraint("move_usd", float(pb.budget_usd - pb.const.sum()), "usd"))
    return out


@dataclass
class Tables:
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


def tables(pb: Problem, cons: list[Constraint], weights: bool = True) -> Tables:
    """The location-major tables; without `weights` (for passes at zero prices only) the (J, L+1, N) weight
    array, 336 MB at a million objects, is not built."""
    N, L = pb.n, pb.n_locations

    def padded(a: np.ndarray, pad) -> np.ndarray:
        out = np.empty((L + 1, N), dtype=np.result_type(a.dtype, np.asarray(pad).dtype))
        out[:L] = a.T
        out[L] = pad
        return out

    weight = np.zeros((len(cons), L + 1, N) if weights else (len(cons), 0, N))
    for j, c in enumerate(cons if weights else []):
        if c.kind == "cap":
            weight[j, c.loc] = pb.size
        elif c.kind == "bytes":
            weight[j, :L] = (pb.size[:, None] * ~pb.current).T
        else:
            weight[j, :L] = pb.transition_linear.T
    return Tables(
        lin=padded(pb.linear, 0.0),
        serve=padded(pb.cm.serve, np.inf),
        allowed=padded(pb.allowed, True),
        weight=weight,
        const=pb.const,
    )


def groups(pb: Problem) -> dict[tuple[int, int], np.ndarray]:
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


def full_pass(pb: Problem, tb: Tables, mu: np.ndarray, top: int = 0, pairs: bool = True):
    """Relaxed min over every feasible set of every object at prices mu. Returns (relaxed min per object incl.
    its constant, argmin locations (N, R) padded with L, top-`top` sets per object (N, top, R) or None).
    Pairs (rf 2) take a shortcut when no top list is asked for (`pairs=False` forces the plain enumeration)."""
    N, L = pb.n, pb.n_locations
    R = int(pb.rf.max()) if N else 1
    best_val = np.full(N, np.inf)
    best_locs = np.full((N, R), L, dtype=np.int64)
    tops = np.full((N, top, R), L, dtype=np.int64) if top else None
    for (rf, mpp), members in groups(pb).items():
        all_sets = replica_sets(pb.la, rf, mpp)  # (K, rf)
        if not len(all_sets):
            continue
        contiguous = members[-1] - members[0] + 1 == len(members)
        for start in range(0, len(members), CHUNK):
            idx = (
                slice(members[start], members[min(start + CHUNK, len(members)) - 1] + 1)
                if contiguous
                else members[start : start + CHUNK]
            )
            n = len(members[start : start + CHUNK])
            adj = tb.lin[:, idx].copy()
            for j, m in enumerate(mu):
                if m:
                    adj += m * tb.weight[j][:, idx]
            if rf == 2 and not top and pairs:
                val2, locs2 = _best_pairs(
                    adj[:L], tb.serve[:L, idx], tb.allowed[:L, idx], pb.la.provider_of, mpp
                )
                best_val[idx] = val2 + tb.const[idx]
                best_locs[idx, :2] = locs2
                continue
            serve, allowed = tb.serve[:, idx], tb.allowed[:, idx]
            # sets no object of the block may use (a location barred for all of them: archive tiers for read
            # objects, a policy's providers) are not evaluated: 23 of 56 pairs in the benchmark
            sets = all_sets[allowed.any(axis=1)[all_sets].all(axis=1)]
            if not len(sets):
                continue
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
                part = (
                    np.argpartition(val, t - 1, axis=0)[:t]
                    if t < sets.shape[0]
                    else np.tile(np.arange(t)[:, None], (1, n))
                )
                chosen = sets[part.T]  # (n, t, rf)
                chosen[~np.isfinite(val[part, cols[None, :]].T)] = L
                tops[idx, :t, :rf] = chosen
    return best_val, best_locs, tops


def _best_pairs(adj, serve, allowed, provider_of, mpp):
    """Cheapest pair of every object without enumerating the pairs. A pair's cost is adj_l + adj_m +
    min(serve_l, serve_m) = min over its serving replica s of (adj_s + serve_s + adj_other); so the cheapest pair
    is the best over serving locations s of adj_s + serve_s + the cheapest partner allowed next to s (another
    provider when at most one replica per provider, any other location otherwise): O(L) per object instead of
    O(pairs). adj, serve, allowed: (L, n). Returns (value (n,), sorted locations (n, 2))."""
    L, n = adj.shape
    cols = np.arange(n)
    adj = np.where(allowed, adj, np.inf)
    if mpp >= 2:  # partner: the best location other than s
        first = adj.argmin(axis=0)
        a1 = adj[first, cols]
        adj[first, cols] = np.inf
        second = adj.argmin(axis=0)
        a2 = adj[second, cols]
        adj[first, cols] = a1
        is_first = np.arange(L)[:, None] == first[None, :]
        partner = np.where(is_first, a2[None, :], a1[None, :])
        partner_loc = np.where(is_first, second[None, :], first[None, :])
    else:  # partner: the best location of the best provider other than s's
        P = int(provider_of.max()) + 1
        best_of = np.empty((P, n))
        arg_of = np.empty((P, n), dtype=np.int64)
        for p in range(P):
            locs_p = np.flatnonzero(provider_of == p)
            k = adj[locs_p].argmin(axis=0)
            arg_of[p] = locs_p[k]
            best_of[p] = adj[arg_of[p], cols]
        p1 = best_of.argmin(axis=0)
        b1 = best_of[p1, cols]
        best_of[p1, cols] = np.inf
        p2 = best_of.argmin(axis=0)
        b2 = best_of[p2, cols]
        same = provider_of[:, None] == p1[None, :]
        partner = np.where(same, b2[None, :], b1[None, :])
        partner_loc = np.where(same, arg_of[p2, cols][None, :], arg_of[p1, cols][None, :])
    val = adj + serve + partner  # (L, n): s serves
    s = val.argmin(axis=0)
    best = val[s, cols]
    m = partner_loc[s, cols]
    locs = np.sort(np.stack([s, m], axis=1), axis=1)
    return best, locs


def evaluate_sets(pb: Problem, tb: Tables, locs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True cost (N, M) and resource use (J, N, M) of candidate sets locs (N, M, R)."""
    N, L = pb.n, pb.n_locations
    # object-major gather: an object's locations sit next to each other in memory
    flat = locs + (np.arange(N) * (L + 1))[:, None, None]
    valid = (locs < L).any(axis=2)
    cost = _gather(tb.lin_om, flat).sum(axis=2)
    cost += _gather(tb.serve_om, flat).min(axis=2) + tb.const[:, None]
    cost[~valid] = np.inf
    use = (
        np.stack([_gather(w, flat).sum(axis=2) for w in tb.weight_om])
        if len(tb.weight_om)
        else np.zeros((0, N, locs.shape[1]))
    )
    return cost, use


def _gather(table_om: np.ndarray, flat: np.ndarray) -> np.ndarray:
    return table_om.ravel()[flat]


def evaluate_more(pb: Problem, tb: Tables, locs: np.ndarray, cost: np.ndarray, use: np.ndarray):
    """Extend cost/use of the first columns of locs to all of its columns."""
    m = cost.shape[1]
    if locs.shape[1] == m:
        return cost, use
    c2, u2 = evaluate_sets(pb, tb, locs[:, m:])
    return np.concatenate([cost, c2], axis=1), np.concatenate([use, u2], axis=2)


def merge_sets(cands_locs: np.ndarray, extra: np.ndarray, L: int) -> np.ndarray:
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


def to_assignment(locs: np.ndarray, L: int) -> np.ndarray:
    x = np.zeros((locs.shape[0], L + 1), dtype=bool)
    x[np.arange(locs.shape[0])[:, None], locs] = True
    return x[:, :L]
