"""The solver stage against the real broker and the real placement catalog on SeaweedFS."""

from __future__ import annotations

import time
import uuid

from dim import kafka
from dim.testing import start_group_at_log_end, valid_records
from mover.catalog import PlacementCatalog, new_placement
from schemas import Candidate, DeadLetter, Move, PlacementPlan, Replica, topics
from solver.service import GROUP, run_solver

DAY = 86_400.0


def _candidate(bucket, key, reads, size=1 << 30, now=None):
    now = now or time.time()
    return Candidate(
        bucket=bucket,
        key=key,
        as_of=now,
        size=size,
        read_heat={"1d": reads},
        write_heat={},
        p_hot=0.9 if reads > 1 else 0.02,
        expected_reads=reads,
        horizon_s=DAY,
        first_seen=now - 200 * DAY,
        last_access=now - (0 if reads > 1 else 60 * DAY),
    )


def test_candidates_to_plans_and_moves(stack_settings):
    run = f"solver-{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(
        update={
            "kafka": stack_settings.kafka.model_copy(update={"group_prefix": run}),
            "solver": stack_settings.solver.model_copy(update={"batch_interval_s": 0.5}),
        }
    )
    bucket = f"svc-{uuid.uuid4().hex[:8]}"
    catalog = PlacementCatalog(settings)
    now = time.time()
    replicas = [
        Replica(location=loc, size=1 << 30, created_at=now - 200 * DAY)
        for loc in settings.solver.initial_locations
    ]
    for key in ("cold", "hot"):
        catalog.create(new_placement(bucket, key, replicas, now=now))

    start_group_at_log_end(settings, GROUP, [topics.CANDIDATES])  # plan this test's candidates, not the session's
    prod = kafka.producer(settings)
    older_hot = _candidate(bucket, "cold", 500.0, now=now - 60)  # superseded by the newer candidate below
    for c in (
        older_hot,
        _candidate(bucket, "cold", 0.0),
        _candidate(bucket, "hot", 500.0),
        _candidate(bucket, "uncatalogued", 0.0),
    ):
        prod.produce(
            topics.CANDIDATES, key=topics.object_key(c.bucket, c.key), value=c.model_dump_json().encode()
        )
    prod.produce(topics.CANDIDATES, key=b"junk", value=b'{"bucket": "x", "size": -1}')
    kafka.publish_end_markers(settings, topics.CANDIDATES, run, prod)
    del prod

    plans = run_solver(settings, until_run=run)
    mine = [p for p in plans if any(m.bucket == bucket for m in p.moves)]
    assert mine, "no plan moved our objects"
    moves = {m.key: m for p in mine for m in p.moves if m.bucket == bucket}
    assert set(moves) <= {"cold", "hot"}  # the uncatalogued object is skipped
    cold = moves["cold"]
    if (
        "hot" in moves
    ):  # the hot object may move, but always keeps a replica that serves reads in milliseconds
        assert any(loc.split(":")[2] in ("standard", "hot") for loc in moves["hot"].to_locations)
    assert cold.expected_version == 1 and cold.from_locations == settings.solver.initial_locations
    assert all(loc.split(":")[2] not in ("standard", "hot") for loc in cold.to_locations)
    assert "p_hot 0.02" in cold.reason

    # the same plans and moves are on the topics, followed by this run's end markers
    published = valid_records(settings, topics.MOVES, Move, f"{run}-read-moves", run)
    assert sorted(m.move_id for m in published if m.bucket == bucket) == sorted(
        m.move_id for m in moves.values()
    )
    plan_ids = {p.plan_id for p in valid_records(settings, topics.PLANS, PlacementPlan, f"{run}-read-plans", run)}
    assert {p.plan_id for p in mine} <= plan_ids

    # the malformed candidate went to the dead-letter topic with its reason (the solver flushed it before
    # committing, so it precedes the markers we append now)
    kafka.publish_end_markers(settings, topics.DEAD_LETTERS, run)
    dead = valid_records(settings, topics.DEAD_LETTERS, DeadLetter, f"{run}-read-dead", run)
    assert any(
        d.source_topic == topics.CANDIDATES and '"size": -1' in d.payload and "invalid Candidate" in d.reason
        for d in dead
    )
