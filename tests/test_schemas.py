"""Contracts: every model round-trips through JSON, rejects what it must, exports JSON Schema and valid DDL."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import (
    ALL_MODELS,
    AUDIT_INFO_KINDS,
    AUDIT_INTEGRITY_KINDS,
    AUDIT_WASTE_KINDS,
    MAX_OBJECT_SIZE,
    AccessEvent,
    AuditFinding,
    AuditRecord,
    Candidate,
    DeadLetter,
    Move,
    MoveEvent,
    MoveState,
    ObjectHeat,
    Placement,
    PlacementPlan,
    Replica,
    ShardStatus,
    topics,
)
from schemas.export import export

SAMPLES = {
    "AccessEvent": AccessEvent(event_time=1.5, bucket="b", key="k/1", op="GET", bytes=10, object_size=10,
                               client_region="us-east-1", request_id="r1"),
    "ObjectHeat": ObjectHeat(bucket="b", key="k", as_of=10.0, read_heat={"1h": 0.5}, write_heat={"1h": 0.0},
                             first_seen=1.0, last_access=2.0, p_hot=0.3),
    "Candidate": Candidate(bucket="b", key="k", as_of=10.0, size=5, read_heat={"1h": 1.0}, write_heat={},
                           p_hot=0.9, expected_reads=3.0, horizon_s=86400, first_seen=1.0, last_access=9.0,
                           outlook="hot", current_locations=["aws:us-east-1:standard"]),
    "Replica": Replica(location="aws:us-east-1:standard", etag='"e"', sha256="ab" * 32, size=5),
    "Placement": Placement(bucket="b", key="k", version=3, updated_at=5.0,
                           replicas=[Replica(location="aws:us-east-1:standard", size=5)]),
    "Move": Move(move_id="m1", plan_id="p1", bucket="b", key="k", size=5,
                 from_locations=["a:r:x", "b:r:y"], to_locations=["a:r:x", "c:r:z"], expected_version=3),
    "PlacementPlan": PlacementPlan(plan_id="p1", created_at=1.0, method="milp-highs", candidates=1,
                                   objective_usd=1.5, moves=[]),
    "MoveEvent": MoveEvent(move_id="m1", plan_id="p1", bucket="b", key="k", state=MoveState.VERIFIED, ts=1.0),
    "DeadLetter": DeadLetter(ts=1.0, source_topic=topics.ACCESS, reason="bad json", payload="{"),
    "AuditFinding": AuditFinding(kind="orphan", location="aws:us-east-1:standard", key="b/k", size=5, age_s=9.0),
    "AuditRecord": AuditRecord(audit_id="a1", started_at=1.0, finished_at=2.0, scope="b/", grace_s=60.0, ok=True,
                               entries=1, replicas=2, replica_bytes=10, stored_objects=3, unnamed_in_grace=0,
                               orphan_bytes=5, counts={"orphan": 1}, findings_total=1,
                               findings=[AuditFinding(kind="orphan", location="aws:us-east-1:standard", key="b/k",
                                                      size=5)]),
    "ShardStatus": ShardStatus(shard=3, as_of=10.0, events=9, late_events=1, repeats=0, dead_letters=1, objects=4,
                               objects_hot=2, labels_pending=5, labels_learned=3,
                               p_hot_from="logreg_binned", labels_scored=3, regression_logloss=0.4,
                               prior_logloss=0.6, reads_states_calibrated=2, reads_states=20),
}


def test_audit_kinds_are_the_contracts_literal():
    from typing import get_args

    from schemas.models import AuditKind

    assert set(get_args(AuditKind)) == {*AUDIT_INTEGRITY_KINDS, *AUDIT_WASTE_KINDS, *AUDIT_INFO_KINDS}
    with pytest.raises(ValidationError):
        AuditFinding(kind="lost", location="x", key="k")


def test_every_model_has_a_sample():
    assert set(SAMPLES) == set(ALL_MODELS)


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_round_trip(name):
    model = ALL_MODELS[name]
    sample = SAMPLES[name]
    again = model.model_validate_json(sample.model_dump_json())
    assert again == sample


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"bucket": "b", "key": "k", "op": "GET", "bytes": 1, "object_size": 1}, "event_time"),
        ({"event_time": 1, "bucket": "b", "key": "k", "op": "COPY", "bytes": 1, "object_size": 1}, "op"),
        ({"event_time": 1, "bucket": "b", "key": "k", "op": "GET", "bytes": -1, "object_size": 1}, "bytes"),
        ({"event_time": 1, "bucket": "b", "key": "k", "op": "GET", "bytes": "x", "object_size": 1}, "bytes"),
        ({"event_time": 1, "bucket": "b", "key": "é" * 600, "op": "GET", "bytes": 1, "object_size": 1}, "key"),
        ({"event_time": 1, "bucket": "", "key": "k", "op": "GET", "bytes": 1, "object_size": 1}, "bucket"),
        # one object name for two objects: bucket "a/b" + key "k" and bucket "a" + key "b/k"
        ({"event_time": 1, "bucket": "a/b", "key": "k", "op": "GET", "bytes": 1, "object_size": 1}, "bucket"),
        # milliseconds for seconds: ~50,000 years ahead
        ({"event_time": 1_767_225_600_000, "bucket": "b", "key": "k", "op": "GET", "bytes": 1, "object_size": 1},
         "event_time"),
        # larger than any provider stores (1 PiB + 1 byte); 2^63 wrapped negative in the solver's capacity check
        ({"event_time": 1, "bucket": "b", "key": "k", "op": "PUT", "bytes": 0, "object_size": 2**50 + 1},
         "object_size"),
    ],
)
def test_access_event_rejects_bad_input(payload, field):
    with pytest.raises(ValidationError) as err:
        AccessEvent.model_validate(payload)
    assert field in str(err.value)


@pytest.mark.parametrize("field, value", [("expected_reads", "Infinity"), ("read_heat", '{"1d": Infinity}'),
                                          ("as_of", "-Infinity")])
def test_a_candidate_with_infinite_numbers_is_refused(field, value):
    sample = json.loads(Candidate(bucket="b", key="k", as_of=1.0, size=1, read_heat={}, write_heat={}, p_hot=0.5,
                                  expected_reads=1.0, horizon_s=60.0, first_seen=1.0,
                                  last_access=1.0).model_dump_json())
    raw = json.dumps({k: v for k, v in sample.items() if k != field})[:-1] + f', "{field}": {value}}}'
    with pytest.raises(ValidationError, match="finite"):
        Candidate.model_validate_json(raw)


@pytest.mark.parametrize("model", ["Candidate", "Replica", "Move"])
def test_sizes_beyond_the_object_size_limit_are_refused(model):
    sample = SAMPLES[model].model_dump()
    assert type(SAMPLES[model]).model_validate({**sample, "size": MAX_OBJECT_SIZE}).size == MAX_OBJECT_SIZE
    with pytest.raises(ValidationError, match="size"):
        type(SAMPLES[model]).model_validate({**sample, "size": MAX_OBJECT_SIZE + 1})


def test_move_added_and_dropped():
    m = SAMPLES["Move"]
    assert m.added == ["c:r:z"] and m.dropped == ["b:r:y"]


def test_topic_names_unique_and_versioned():
    assert len(set(topics.ALL_TOPICS)) == len(topics.ALL_TOPICS)
    assert all(t.startswith("dim.") and t.endswith(".v1") for t in topics.ALL_TOPICS)


def test_export_writes_json_schema_and_ddl(tmp_path):
    written = export(tmp_path, "dim")
    names = {p.name for p in written}
    assert {f"{n}.schema.json" for n in ALL_MODELS} <= names
    schema = json.loads((tmp_path / "AccessEvent.schema.json").read_text())
    assert set(schema["required"]) >= {"event_time", "bucket", "key", "op", "bytes", "object_size"}
    ddl = (tmp_path / "clickhouse.sql").read_text()
    assert "CREATE TABLE IF NOT EXISTS dim.access_events" in ddl


def test_ddl_applies_on_real_chdb(tmp_path):
    """The DDL is valid ClickHouse: apply every statement on embedded chDB, twice (idempotent)."""
    from chdb import session

    from schemas.tables import bootstrap_statements, migration_statements

    sess = session.Session(str(tmp_path / "chdb"))
    try:
        for _ in range(2):
            for stmt in bootstrap_statements("dimtest"):
                sess.query(stmt)
            for _v, _d, stmts in migration_statements("dimtest"):
                for stmt in stmts:
                    sess.query(stmt)
        tables = sess.query("SELECT name FROM system.tables WHERE database = 'dimtest'", "CSV").bytes()
        assert b"placements" in tables and b"access_events" in tables
    finally:
        sess.close()


def test_a_dead_letter_keeps_the_first_4_kib_of_the_record_as_text():
    from schemas import dead_letter_payload

    assert dead_letter_payload(None) == ""
    assert dead_letter_payload(b"x" * 5000) == "x" * 4096
    assert dead_letter_payload(b"ok \xff") == "ok \ufffd"  # not UTF-8: replaced, never an error
    assert dead_letter_payload(("é" * 3000).encode()) == "é" * 2048  # bytes, not characters
