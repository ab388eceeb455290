"""The mover service through the real Tansu broker: moves topic in, move events and placements out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from dim import kafka
from dim.testing import start_group_at_log_end, valid_records
from mover.catalog import PlacementCatalog
from mover.objects import seed_objects
from mover.service import run_mover
from schemas import Move, MoveEvent, Placement, PlacementPlan, topics
from tests.test_mover_moves import A, B, C, mover_settings


def test_run_mover_drains_topic_until_run_and_publishes_events(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    run = f"run-{uuid.uuid4().hex[:8]}"
    items = [("svc", f"k{i}-{run}", os.urandom(1000 + i)) for i in range(6)]
    seed_objects(settings, items, [A, B])
    # Drain this test's moves, not those other tests of the session left on the topic (run after the solver's
    # service test, the mover also ran - and failed - its plan's moves)
    start_group_at_log_end(settings, settings.mover.group, [topics.MOVES])
    prod = kafka.producer(settings)
    moves = [Move(move_id=f"{run}-{i}", plan_id=run, bucket=b, key=k, size=len(d), from_locations=[A, B],
                  to_locations=[B, C], expected_version=1) for i, (b, k, d) in enumerate(items)]
    for m in moves:
        prod.produce(topics.MOVES, key=topics.object_key(m.bucket, m.key), value=m.model_dump_json().encode())
    prod.produce(topics.MOVES, key=b"svc/bad", value=b'{"move_id": "no other fields"}')
    kafka.publish_end_markers(settings, topics.MOVES, run, prod)

    summary = run_mover(settings, until_run=run)
    assert summary["moves_done"] == 6 and summary["moves_failed"] == 0, summary
    assert summary["bytes_moved"] == sum(len(d) for _, _, d in items)
    assert summary["dead_letters"] == 1
    catalog = PlacementCatalog(settings)
    assert all(catalog.get(b, k)[0].locations == [B, C] for b, k, _ in items)

    kafka.publish_end_markers(settings, topics.MOVE_EVENTS, run)
    kafka.publish_end_markers(settings, topics.PLACEMENTS, run)
    events = valid_records(settings, topics.MOVE_EVENTS, MoveEvent, f"t-{run}", run)
    mine = [e for e in events if e.plan_id == run]
    assert sum(e.state.value == "deleted" for e in mine) == 6
    placements = valid_records(settings, topics.PLACEMENTS, Placement, f"tp-{run}", run)
    assert {p.key for p in placements if p.bucket == "svc" and run in p.key} == {k for _, k, _ in items}


def test_move_cli_runs_a_plan_file(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key = f"cli-{uuid.uuid4().hex[:8]}"
    seed_objects(settings, [("svc", key, b"cli bytes" * 500)], [A, B])
    plan = PlacementPlan(plan_id="cli", created_at=0, method="test", candidates=1, objective_usd=0,
                         moves=[Move(move_id=f"m-{key}", plan_id="cli", bucket="svc", key=key, size=4500,
                                     from_locations=[A, B], to_locations=[A, C], expected_version=1)])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.model_dump_json())
    env = {**os.environ, **settings.to_env()}
    out = subprocess.run([sys.executable, "-m", "dim.cli", "move", "--plan-file", str(plan_file)],
                         check=False, capture_output=True, text=True, env=env, timeout=120, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["moves_done"] == 1 and summary["bytes_moved"] == 4500
    assert PlacementCatalog(settings).get("svc", key)[0].locations == [A, C]


def test_dry_run_announces_moves_and_touches_nothing(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    settings.mover.dry_run = True
    run = f"dry-{uuid.uuid4().hex[:8]}"
    items = [("svc", f"dry{i}-{run}", os.urandom(500 + i)) for i in range(3)]
    seed_objects(settings, items, [A, B])
    prod = kafka.producer(settings)
    for i, (b, k, d) in enumerate(items):
        mv = Move(move_id=f"{run}-{i}", plan_id=run, bucket=b, key=k, size=len(d), from_locations=[A, B],
                  to_locations=[B, C], expected_version=1)
        prod.produce(topics.MOVES, key=topics.object_key(b, k), value=mv.model_dump_json().encode())
    kafka.publish_end_markers(settings, topics.MOVES, run, prod)

    summary = run_mover(settings, until_run=run)
    # (the dry-run group starts at the beginning of the shared topic: earlier tests' moves are announced too)
    assert summary["moves_dry_run"] >= 3 and summary["moves_done"] == 0, summary
    catalog = PlacementCatalog(settings)
    for b, k, _ in items:
        placement, _etag = catalog.get(b, k)
        assert placement.version == 1 and placement.locations == [A, B]
    kafka.publish_end_markers(settings, topics.MOVE_EVENTS, run)
    events = [e for e in valid_records(settings, topics.MOVE_EVENTS, MoveEvent, f"t-{run}", run) if e.plan_id == run]
    assert sorted(e.move_id for e in events) == sorted(f"{run}-{i}" for i in range(3))
    assert all(e.state.value == "planned" and e.reason == "dry_run" for e in events)

    # The real mover still gets the moves afterwards: the dry run did not consume them for it.
    settings.mover.dry_run = False
    summary = run_mover(settings, until_run=run)
    assert summary["moves_done"] >= 3, summary
