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
from dim.evaluation.workload import GET, Workload
from dim.traces import OPS
from schemas import Candidate, Placement, Replica, topics
from solver.catalogue import Catalogue
from solver.plan import PlanResult, plan_with_details


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
    for i in rows:
        key = workload.keys[i]
        size = int(workload.size[i])
        reps = [Replica(location=ids[l], size=size, created_at=float(since[i, l])) for l in np.flatnonzero(where[i])]
        out[(workload.bucket, key)] = Placement(bucket=workload.bucket, key=key, version=int(versions[i]),
                                                replicas=reps, updated_at=float(since[i].max()))
    return out


def kafka_partition(message_key: bytes, partitions: int) -> int:
    """librdkafka's default ("consistent_random") partitioner for non-empty keys."""
    return zlib.crc32(message_key) % partitions


def make_predictor(settings: Settings, shard_id: int):
    from flows import predict

    try:
        return predict.make_predictor(settings, shard_id=shard_id)
    except TypeError:  # older signature without shard_id
        return predict.make_predictor(settings)


class Ours(Policy):
    name = "ours"

    def __init__(self, settings: Settings, catalogue: Catalogue, workload: Workload, shards: int | None = None):
        from flows.shard import FlowParams, ShardState

        self.settings, self.catalogue, self.w = settings, catalogue, workload
        # ObjectHeat snapshots feed dashboards, not the planner: skip them (heat_interval 0 = never).
        params = dataclasses.replace(FlowParams.from_settings(settings), heat_interval_s=0.0)
        n = shards or settings.kafka.partitions
        self.shards = [ShardState(params, make_predictor(settings, p)) for p in range(n)]
        self.index = {k: i for i, k in enumerate(workload.keys)}
        names = [f"{workload.bucket}/{k}" for k in workload.keys]
        self.names = names
        self.shard_of = np.array([kafka_partition(topics.object_key(workload.bucket, k), n) for k in workload.keys])
        self.next_event = 0
        self.versions = np.zeros(workload.n, dtype=np.int64)
        self.candidates_seen = 0
        self.plans: list[dict] = []
        self.skipped: dict[str, int] = {}

    def feed(self, until_event: int) -> list[Candidate]:
        """Run events [next_event, until_event) through their shards; the candidates they emit."""
        w = self.w
        lo, hi = self.next_event, until_event
        out: list = []
        times = w.ev_time[lo:hi].tolist()
        objs = w.ev_obj[lo:hi].tolist()
        ops = w.ev_op[lo:hi].tolist()
        size = w.size
        names, shard_of, shards = self.names, self.shard_of, self.shards
        for t, i, op in zip(times, objs, ops):
            sz = int(size[i])
            nbytes = sz if op <= 1 else 0  # GET and PUT transfer the object (dim.producers.to_event)
            shards[shard_of[i]].on_event(names[i], t, OPS[op], nbytes, sz, out)
        self.next_event = hi
        return [c for c in out if isinstance(c, Candidate)]

    def decide(self, ctx: SlotContext):
        w = self.w
        cands = self.feed(int(w.slot_event_bounds[ctx.s]))
        self.candidates_seen += len(cands)
        if not cands:
            return None
        rows = sorted({self.index[c.key] for c in cands})
        current = placements_of(rows, w, ctx.where, ctx.since, self.versions, self.catalogue)
        result = plan_cycle(cands, current, self.catalogue, self.settings, ctx.now)
        for reason, count in result.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        plan = result.plan
        self.plans.append({"slot": ctx.s, "candidates": len(cands), "moves": len(plan.moves), "method": plan.method,
                           "objective_usd": plan.objective_usd, "gap": plan.gap})
        if not plan.moves:
            return None
        target = ctx.where.copy()
        col = {lid: l for l, lid in enumerate(self.catalogue.ids)}
        for mv in plan.moves:
            i = self.index[mv.key]
            target[i] = False
            target[i, [col[lid] for lid in mv.to_locations]] = True
            self.versions[i] += 1
        return target
