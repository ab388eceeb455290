"""`hindsight`: per-object dynamic programming over the slots with perfect knowledge of every future read, priced
by the same cost model and billed by the same ledger as every other policy. Pure numpy, vectorised over objects.

State space. Each replica stays at its initial site (provider:region) and may change tier at any slot start; one
replica (the "server") serves the reads, the other only has to exist. Given which initial replica serves, the
object's cost separates into one chain per replica, each solved exactly by a DP over (slot, location at the site):
    V[s, k] = min_j ( V[s-1, j] + move(j -> k) ) + hold(k) * alive(s) + [server] reads(s) * (read(k) + lam * slow(k))
with move = the copy from j (transfer + retrieval + GET + PUT, solver.costs) plus j's early-deletion charge at the
age it has on that state's best path (exact for the path, like the ledger bills it). Reads from a replica slower
than the SLA cost an extra `lam` each, so the optimum keeps the SLA whenever it can. The cheaper of the two
server choices wins per object.

What it is: the cost of the best per-object schedule within that space - an offline policy no online one can
know. It is a lower bound on policies that keep replicas at their initial sites and never pay early deletion;
moving a replica to another provider (which `ours` may do) or to a path-dependent early deletion can in principle
beat it. `dp_usd` in the results is the DP's own total; the ledger's bill of the same schedule is the policy total
(equal unless the ledger finds a cheaper copy source in the other replica).
"""

from __future__ import annotations

import numpy as np

from dim.config import Settings
from dim.evaluation.policies import Policy, SlotContext
from dim.evaluation.workload import Workload
from solver.catalogue import Catalogue
from solver.costs import DAYS_PER_MONTH, GB, LocationArrays, hold_cost

SLA_PENALTY_USD = 1.0  # per read slower than the SLA: far above any read's price, so it is only paid if forced
CHUNK = 50_000


def chain_dp(workload: Workload, la: LocationArrays, locs: np.ndarray, start: int, serve: bool, sla_ms: float,
             objects: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best schedule of one replica over locations `locs` (indices into la), starting at locs[start] at birth.
    Returns (total cost (n,), state index per slot (S, n) int8) for `objects` (default: all)."""
    w = workload
    idx = np.arange(w.n) if objects is None else objects
    S, k = w.n_slots, len(locs)
    size = w.size[idx].astype(float)
    gb = size / GB
    hold = hold_cost(size, la, w.slot_days)[:, locs]  # (n, k) per full slot
    rate_month = hold_cost(size, la, DAYS_PER_MONTH)[:, locs]  # (n, k) per 30 days, for early deletion
    min_days = la.min_days[locs]
    # move[j, k] for every object: copy from j (same site: no transfer unless the catalogue says so) + PUT at k
    move = (gb[:, None, None] * (la.egress[np.ix_(locs, locs)] + la.retrieval[locs][:, None])[None]
            + (la.get[locs][:, None] + la.put[locs][None, :])[None])
    diag = np.eye(k, dtype=bool)
    move[:, diag] = 0.0
    read = (la.get[locs][None, :] + gb[:, None] * (la.retrieval[locs] + la.internet[locs])[None, :]
            + SLA_PENALTY_USD * (la.latency_ms[locs] > sla_ms)[None, :])
    n = len(idx)
    V = np.full((n, k), np.inf)
    V[:, start] = 0.0
    entry = np.zeros((n, k), dtype=np.int64)  # slot each state's current stay began (on its best path)
    birth_slot = np.clip((w.birth[idx] - w.t0) // w.slot_s, 0, S - 1).astype(np.int64)
    entry[:, start] = birth_slot
    back = np.zeros((S, n, k), dtype=np.int8)
    rows = np.arange(n)
    birth = w.birth[idx]
    for s in range(S):
        t = w.slot_start(s)
        if s > 0:
            age_days = (s - entry) * w.slot_days  # (n, k) age of the stay at each state
            early = rate_month * np.maximum(0.0, min_days[None, :] - age_days) / DAYS_PER_MONTH
            cost = V[:, :, None] + move + np.where(diag[None], 0.0, early[:, :, None])
            j = cost.argmin(axis=1)  # (n, k) best predecessor of each state
            can_move = birth < t
            j = np.where(can_move[:, None], j, np.arange(k)[None, :])
            V = cost[rows[:, None], j, np.arange(k)[None, :]]
            entry = np.where(j == np.arange(k)[None, :], entry[rows[:, None], j], s)
            back[s] = j
        alive = np.clip((w.slot_start(s + 1) - np.maximum(birth, t)) / w.slot_s, 0.0, 1.0)
        V = V + hold * alive[:, None]
        if serve:
            V = V + w.reads[idx, s][:, None] * read
    best = V.argmin(axis=1)
    total = V[rows, best]
    path = np.zeros((S, n), dtype=np.int8)
    state = best
    for s in range(S - 1, -1, -1):
        path[s] = state
        state = back[s, rows, state] if s > 0 else state
    return total, path


class Hindsight(Policy):
    name = "hindsight"

    def __init__(self, settings: Settings, catalogue: Catalogue, workload: Workload):
        self.w = workload
        la = LocationArrays.of(catalogue)
        initial = list(settings.solver.initial_locations)
        sites = [catalogue.location(i).site for i in initial]
        site_locs = [np.array([l for l, loc in enumerate(catalogue.locations) if loc.site == site]) for site in sites]
        starts = [int(np.flatnonzero(locs == catalogue.index(i))[0]) for locs, i in zip(site_locs, initial)]
        sla = settings.solver.sla_ms
        n, S = workload.n, workload.n_slots
        self.paths = np.zeros((len(sites), S, n), dtype=np.int16)  # location index per replica per slot
        self.dp_usd = 0.0
        for lo in range(0, n, CHUNK):
            objs = np.arange(lo, min(n, lo + CHUNK))
            runs = {}
            for r, (locs, st) in enumerate(zip(site_locs, starts)):
                for serve in (True, False):
                    runs[r, serve] = chain_dp(workload, la, locs, st, serve, sla, objs)
            best_total = np.full(len(objs), np.inf)
            best_server = np.zeros(len(objs), dtype=np.int64)
            for server in range(len(sites)):
                total = sum(runs[r, r == server][0] for r in range(len(sites)))
                better = total < best_total
                best_total[better], best_server[better] = total[better], server
            self.dp_usd += float(best_total.sum())
            for r, locs in enumerate(site_locs):
                path = np.where(best_server[None, :] == r, runs[r, True][1], runs[r, False][1])
                self.paths[r][:, objs] = locs[path]
        self.L = len(la)

    def decide(self, ctx: SlotContext):
        where = np.zeros((self.w.n, self.L), dtype=bool)
        rows = np.arange(self.w.n)
        for r in range(self.paths.shape[0]):
            where[rows, self.paths[r, ctx.s]] = True
        return where

    def extra_results(self) -> dict:
        return {"dp_usd": self.dp_usd}
