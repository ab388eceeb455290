"""`ours`: the live pipeline's cores replayed in simulated time - the flow's shard core (flows.shard: decayed heat,
the p_hot predictor of flows.predict, hysteresis, candidates) and the solver's planner (solver.plan) - with the
Kafka topics replaced by lists and the placement catalog by arrays. Nothing here decides anything itself.

Events are routed to shards as Kafka would route them (librdkafka's default partitioner: CRC32 of the message key
modulo the partition count), so each shard's model learns from the same events as in the live flow. At the start
of every slot, the candidates emitted since the previous one are planned in one cycle at `now` = the slot start,
and the plan's moves are applied at once (the mover is assumed to finish within the slot).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from dim.config import Settings
from dim.evaluation.policies import Policy, SlotContext
from dim.evaluation.workload import Workload
from dim.traces import OPS
from schemas import Candidate, Placement, Replica, topics
from solver.catalogue import Catalogue
from solver.plan import PlanResult, newest_per_object, plan_with_details


def plan_cycle(candidates: list[Candidate], current: dict[tuple[str, str], Placement], catalogue: Catalogue,
               settings: Settings, now: float) -> PlanResult:
    """One planning cycle of the simulator: the live solver's entry point, unchanged. The lead's live-vs-simulator
    consistency test can call this with the same batch the solver service saw."""
    return plan_with_details(candidates, current, catalogue, settings.solver, now)


def placements_of(rows: list[int], workload: Workload, where: np.ndarray, since: np.ndarray,
                  versions: np.ndarray, catalogue: Catalogue) -> dict[tuple[str, str], Placement]:
    """Catalog entries (schemas.Placement) of objects `rows` from the simulator's arrays."""
    ids = catalogue.ids
    out = {}
    rows = np.asarray(rows, dtype=np.int64)
    sub_where, sub_since = where[rows], since[rows]
    updated = sub_since.max(axis=1).tolist()
    sizes, vers = workload.size[rows].tolist(), versions[rows].tolist()
    # model_construct: the values come from the simulator's own arrays, already valid (validation was ~40% of a
    # planning cycle's time)
    for n, (i, (r, c)) in enumerate(zip(rows.tolist(), _by_row(sub_where, sub_since))):
        key = workload.keys[i]
        reps = [Replica.model_construct(location=ids[l], size=sizes[n], created_at=t, etag="", sha256="",
                                        verified_at=0.0) for l, t in zip(r, c)]
        out[(workload.bucket, key)] = Placement.model_construct(
            schema_version=1, bucket=workload.bucket, key=key, version=vers[n], replicas=reps,
            updated_at=updated[n], deleted=False)
    return out


def _by_row(where: np.ndarray, since: np.ndarray):
    """(location indices, creation times) of each row's replicas."""
    for w_row, s_row in zip(where, since):
        locs = np.flatnonzero(w_row)
        yield locs.tolist(), s_row[locs].tolist()


def kafka_partition(message_key: bytes, partitions: int) -> int:
    """librdkafka's default ("consistent_random") partitioner for non-empty keys."""
    return zlib.crc32(message_key) % partitions


def make_predictor(settings: Settings, shard_id: int):
    from flows.predict import make_predictor as flow_predictor

    return flow_predictor(settings, shard_id=shard_id)


class Ours(Policy):
    """Phase 1 runs the flow's shard core over the whole trace (the flow does not depend on the plans, so this
    equals interleaving it with planning) in up to `workers` processes, one group of shards each; phase 2 plans,
    at each slot start, the candidates emitted during the previous slot."""

    name = "ours"

    def __init__(self, settings: Settings, catalogue: Catalogue, workload: Workload, shards: int | None = None,
                 workers: int = 2, chunk: int | None = None, progress: bool = False):
        self.progress = progress
        # The Lagrangian method for every batch: exact without coupling constraints (per-object enumeration) and
        # fast; the live service picks the MILP for small batches, which has the same optimum.
        solver = settings.solver.model_copy(update={"milp_max_objects": 0})
        self.settings = settings.model_copy(update={"solver": solver})
        self.catalogue, self.w = catalogue, workload
        # Batches of the live service's batch_max unless told otherwise (planning is linear in the batch)
        self.chunk = max(1, min(chunk or settings.solver.batch_max, settings.solver.batch_max))
        n = shards or settings.kafka.partitions
        self.index = {k: i for i, k in enumerate(workload.keys)}
        self.versions = np.zeros(workload.n, dtype=np.int64)
        # The flow replay runs in worker processes while the simulator prepares the other policies (hindsight's
        # DP keeps the core that the smaller shard group leaves idle busy); `by_slot` waits for it.
        self._replay = self._start_replay(n, workers)
        self._by_slot: dict[int, list[Candidate]] | None = None
        self.shard_status: list[dict] = []  # each flow shard's ShardStatus at the end of the replay
        self.candidates_emitted = 0
        self.candidates_seen = 0
        self.plans: list[dict] = []
        self.skipped: dict[str, int] = {}

    @property
    def by_slot(self) -> dict[int, list[Candidate]]:
        if self._by_slot is None:
            results = self._replay()
            self._by_slot = self._candidates_by_slot([cands for cands, _ in results])
            self.shard_status = sorted((st for _, statuses in results for st in statuses), key=lambda st: st["shard"])
            self.candidates_emitted = sum(len(v) for v in self._by_slot.values())
        return self._by_slot

    def _start_replay(self, n_shards: int, workers: int):
        """Start the flow replay; returns a function that waits for its results (one list per shard group)."""
        w = self.w
        names = [f"{w.bucket}/{k}" for k in w.keys]
        shard_of = np.array([kafka_partition(topics.object_key(w.bucket, k), n_shards) for k in w.keys])
        # Shards to processes by event count (largest first, to the least loaded): hot objects make shards uneven.
        events = np.bincount(shard_of[w.ev_obj], minlength=n_shards)
        groups: list[list[int]] = [[] for _ in range(max(1, min(workers, n_shards)))]
        load = [0] * len(groups)
        for p in np.argsort(-events, kind="stable").tolist():
            k = load.index(min(load))
            groups[k].append(p)
            load[k] += int(events[p])
        groups = [sorted(g) for g in groups if g]
        shard_of = shard_of.tolist()
        jobs = [(self.settings, g, names, shard_of, w.size, w.ev_time, w.ev_obj, w.ev_op,
                 self.progress and k == 0) for k, g in enumerate(groups)]
        if len(jobs) == 1:
            return lambda: [shard_group(jobs[0])]
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(len(jobs))
        pending = pool.map_async(shard_group, jobs)
        pool.close()

        def wait() -> list[tuple[list[Candidate], list[dict]]]:
            try:
                return pending.get()
            finally:
                pool.join()

        return wait

    def _candidates_by_slot(self, results: list[list[Candidate]]) -> dict[int, list[Candidate]]:
        w = self.w
        by_slot: dict[int, list[Candidate]] = {}
        for emitted in results:
            for c in emitted:
                # emitted at event time as_of during slot k: planned at the start of slot k + 1
                s = int((c.as_of - w.t0) // w.slot_s) + 1
                by_slot.setdefault(s, []).append(c)
        for cands in by_slot.values():  # one order whatever the number of workers
            cands.sort(key=lambda c: (c.as_of, c.key))
        return by_slot

    def decide(self, ctx: SlotContext):
        w = self.w
        cands = self.by_slot.pop(ctx.s, [])
        self.candidates_seen += len(cands)
        # one cycle per slot: an object's newest candidate only (as the solver does within a batch), so each
        # object is in one batch and its placement there is the slot's starting one
        cands = sorted(newest_per_object(cands), key=lambda c: (c.as_of, c.key))
        if not cands:
            return None
        target = None
        col = {lid: l for l, lid in enumerate(self.catalogue.ids)}
        # Batches of at most `chunk` candidates, like the solver service's batch_max.
        for lo in range(0, len(cands), self.chunk):
            batch = cands[lo:lo + self.chunk]
            rows = sorted({self.index[c.key] for c in batch})
            current = placements_of(rows, w, ctx.where, ctx.since, self.versions, self.catalogue)
            result = plan_cycle(batch, current, self.catalogue, self.settings, ctx.now)
            for reason, count in result.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
            plan = result.plan
            self.plans.append({"slot": ctx.s, "candidates": len(batch), "moves": len(plan.moves),
                               "method": plan.method, "gap": plan.gap})
            for mv in plan.moves:
                if target is None:
                    target = ctx.where.copy()
                i = self.index[mv.key]
                target[i] = False
                target[i, [col[lid] for lid in mv.to_locations]] = True
                self.versions[i] += 1
        return target

    def extra_results(self) -> dict:
        self.by_slot  # noqa: B018 - the replay's figures exist once it has finished
        # candidates emitted during the last slot have no later planning cycle in the window
        return {"candidates": self.candidates_seen, "candidates_emitted": self.candidates_emitted,
                "plan_batches": len(self.plans),
                "planner_skipped": self.skipped,
                "plan_methods": sorted({p["method"] for p in self.plans}),
                # what served p_hot in each shard at the end, and how the model scored against the heat prior
                "flow_shards": [{k: st[k] for k in FLOW_SHARD_FIELDS} for st in self.shard_status]}


# Of each shard's final ShardStatus, what the evaluation reports.
FLOW_SHARD_FIELDS = ("shard", "events", "labels_learned", "p_hot_from", "labels_scored", "regression_logloss",
                     "prior_logloss", "reads_states_calibrated", "reads_states")


def shard_group(args) -> tuple[list[Candidate], list[dict]]:
    """Worker: run the events of the objects on shards `shard_ids` through fresh ShardStates (flows.shard with
    flows.predict's model, one per shard, seeded by shard id as in the live flow); the candidates, in order, and
    each shard's status at the end."""
    settings, shard_ids, names, shard_of, size, ev_time, ev_obj, ev_op, progress = args
    from flows.shard import FlowParams, ShardState

    # ObjectHeat snapshots and ShardStatus records feed dashboards, not the planner: skip them (interval 0 = never).
    params = dataclasses.replace(FlowParams.from_settings(settings), heat_interval_s=0.0, status_interval_s=0.0)
    shards = {p: ShardState(params, make_predictor(settings, p), shard_id=p) for p in shard_ids}
    mine = np.flatnonzero(np.isin(np.asarray(shard_of)[ev_obj], shard_ids))
    out: list = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), unit="ev", unit_scale=True, desc=f"flow replay (shards {shard_ids})")
    for n, (t, i, op) in enumerate(zip(ev_time[mine].tolist(), ev_obj[mine].tolist(), ev_op[mine].tolist())):
        if bar is not None and n % 20_000 == 0:
            bar.update(min(20_000, len(mine) - n))
        sz = int(size[i])
        nbytes = sz if op <= 1 else 0  # GET and PUT transfer the object (dim.producers.to_event)
        shards[shard_of[i]].on_event(names[i], t, OPS[op], nbytes, sz, out)
    if bar is not None:
        bar.close()
    statuses = [shards[p].status().model_dump() for p in shard_ids if shards[p].events]  # a status needs a clock
    return [c for c in out if isinstance(c, Candidate)], statuses
