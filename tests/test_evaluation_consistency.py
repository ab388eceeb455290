"""The offline evaluator and the live system make the same decisions on the same trace (issue 7, item 4).

Live: a slice of the shipped trace sample is replayed for real (objects created in SeaweedFS, events on Tansu),
then the Bytewax flow, the solver service and the mover in dry run (MoverSettings.dry_run: it announces each move
it would make as a `planned` MoveEvent and touches no store) run bounded by the run's end markers. Offline: the
same events go through the evaluator's cores (flows.offline.run_offline for the flow, dim.evaluation.ours.plan_cycle
for the planner) with the placements the live solver read from the catalog and the live plan's `now`. The
candidates, the plans and the moves the mover would make must be identical, move for move.

The test runs its own embedded stack rather than the session's: the live flow reads the access topic from the
start and every shard's p_hot model learns from all events of its partition, and the live solver plans every
candidate on its topic, so on the shared stack both would see (and the solver would re-plan) other tests'
objects, which the simulator never sees.
"""

from __future__ import annotations

import gc

import pytest

# PuLP's first import keeps the importing call stack alive (found with gc.get_referrers); imported lazily by the
# solver's first solve, it would keep run_solver's producer, and its connection to the stopped broker, alive.
import solver.milp  # noqa: F401
from dim.demo import SAMPLE
from dim.evaluation.ours import plan_cycle
from dim.kafka import publish_end_markers
from dim.producers import ReplayOptions, replay, to_event
from dim.testing import running_stack, scratch_settings, valid_records
from dim.traces import read_trace
from flows.offline import run_offline
from flows.run import run_flow
from mover.catalog import PlacementCatalog
from mover.service import run_mover
from schemas import Candidate, Move, MoveEvent, MoveState, PlacementPlan, topics
from solver.catalogue import load_catalogue
from solver.plan import newest_per_object
from solver.service import run_solver

RUN = "consistency-run"
BUCKET = "consistency"
LIMIT = 1500  # requests of the sample: enough for the p_hot models to warm up and for moves in both directions
OPT = ReplayOptions(bucket=BUCKET, time_scale=3600.0, size_scale=10_000.0, source=SAMPLE.stem)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Replay, flow and solver on a private stack; what each published, and the placements the solver read."""
    root = tmp_path_factory.mktemp("consistency")
    settings = scratch_settings(
        root / "stack",
        flow={"recovery_dir": root / "recovery", "workers": 1},
        mover={"journal_dir": root / "journal"},
        clickhouse={"chdb_path": root / "chdb"},
    )
    with running_stack(settings):
        replay(settings, SAMPLE, OPT, limit=LIMIT, end_run=RUN)
        # the catalog as the solver will read it: nothing moves objects before the solver runs
        catalog = PlacementCatalog(settings)
        keys = sorted({rec.object for rec in read_trace(SAMPLE, limit=LIMIT)})
        initial = {(BUCKET, k): catalog.get(BUCKET, k)[0] for k in keys}
        run_flow(settings, workers=1, until_run=RUN, recovery=False)
        candidates = valid_records(settings, topics.CANDIDATES, Candidate, f"{RUN}-read-candidates", RUN)
        # The solver plans the whole topic as one batch (its consume returns once it holds every candidate and
        # end marker, well within the window), so the simulator can plan the same batch at the same `now`.
        whole_topic = len(candidates) + settings.kafka.partitions
        solver = settings.solver.model_copy(update={"batch_max": whole_topic, "batch_interval_s": 60.0})
        plans = run_solver(settings.model_copy(update={"solver": solver}), until_run=RUN)
        published = valid_records(settings, topics.PLANS, PlacementPlan, f"{RUN}-read-plans", RUN)
        moves = valid_records(settings, topics.MOVES, Move, f"{RUN}-read-moves", RUN)
        dry = settings.model_copy(update={"mover": settings.mover.model_copy(update={"dry_run": True})})
        mover_summary = run_mover(dry, until_run=RUN)
        for t in (topics.MOVE_EVENTS, topics.PLACEMENTS):  # the run is closed on every topic
            publish_end_markers(settings, t, RUN)
        announced = valid_records(settings, topics.MOVE_EVENTS, MoveEvent, f"{RUN}-read-move-events", RUN)
        after = {(BUCKET, k): catalog.get(BUCKET, k)[0] for k in keys}
        gc.collect()  # close the stages' Kafka clients before their broker goes away
    return {"settings": settings, "initial": initial, "plans": plans, "candidates": candidates,
            "published": published, "moves": moves, "mover_summary": mover_summary, "announced": announced,
            "after": after}


def offline_candidates(settings) -> list[Candidate]:
    events = []
    for rec in read_trace(SAMPLE, limit=LIMIT):
        ev = to_event(rec, OPT)
        events.append((f"{ev.bucket}/{ev.key}", ev.event_time, ev.op.value, ev.bytes, ev.object_size))
    run = run_offline(settings, events, shards=settings.kafka.partitions, record=False)
    return [c for c in run.outputs if isinstance(c, Candidate)]


def _order(cands: list[Candidate]) -> list[dict]:
    return sorted((c.model_dump() for c in cands), key=lambda d: (d["key"], d["as_of"], d["outlook"]))


def test_flow_and_simulator_emit_the_same_candidates(live):
    sim = offline_candidates(live["settings"])
    assert len(sim) > 50, "too few candidates for a meaningful comparison"
    assert _order(live["candidates"]) == _order(sim)


def _live_plan(live) -> PlacementPlan:
    plans = [p for p in live["plans"] if p.candidates]
    assert len(plans) == 1, f"the live solver split the candidates into {len(plans)} batches"
    return plans[0]


def _simulated_plan(live, plan: PlacementPlan) -> PlacementPlan:
    settings = live["settings"]
    catalogue = load_catalogue(settings.solver.catalogue_path)
    # the service keeps each object's newest candidate of a batch before planning (solver/service.py)
    batch = newest_per_object(offline_candidates(settings))
    return plan_cycle(batch, live["initial"], catalogue, settings, plan.created_at).plan


def test_solver_and_simulator_make_the_same_plans(live):
    plan = _live_plan(live)
    assert [p.plan_id for p in live["published"]] == [plan.plan_id]  # what it returned is what it published
    sim = _simulated_plan(live, plan)

    def moves(p: PlacementPlan) -> list[tuple]:
        return sorted((m.key, tuple(m.from_locations), tuple(m.to_locations), m.expected_version) for m in p.moves)

    def full_moves(p: PlacementPlan) -> list[dict]:
        # move ids too: the planner numbers moves in key order, whatever order the broker delivered candidates in
        return sorted((m.model_dump() for m in p.moves), key=lambda d: d["key"])

    assert len(plan.moves) >= 10, "too few moves for a meaningful comparison"
    assert moves(sim) == moves(plan)
    assert full_moves(sim) == full_moves(plan)  # reasons, sizes, plan id too
    assert sim.model_dump(exclude={"moves"}) == plan.model_dump(exclude={"moves"})  # method, objective, count


def test_dry_run_mover_would_make_the_simulators_moves(live):
    """broker -> flow -> solver -> mover (dry run): the moves the mover announces are the simulator's, and the
    dry run changed no placement."""
    plan = _live_plan(live)
    sim = _simulated_plan(live, plan)
    # what the solver published on the moves topic is its plan's moves
    assert sorted(m.model_dump_json() for m in live["moves"]) == sorted(m.model_dump_json() for m in plan.moves)
    announced = [e for e in live["announced"] if e.reason == "dry_run"]
    assert all(e.state == MoveState.PLANNED for e in announced)
    assert live["mover_summary"]["moves_dry_run"] == len(announced) == len(sim.moves) >= 10
    assert sorted((e.move_id, e.plan_id, e.bucket, e.key, e.bytes) for e in announced) == sorted(
        (m.move_id, m.plan_id, m.bucket, m.key, m.size) for m in sim.moves)
    assert live["after"] == live["initial"], "a dry run must not change any placement"
