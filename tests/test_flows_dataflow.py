"""The Bytewax flow against the real broker: candidates, heat snapshots, dead letters, bounded runs."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest

from dim.kafka import iter_records, partitions_of, producer, publish_end_markers
from flows.run import run_flow
from schemas import AccessEvent, Candidate, DeadLetter, ObjectHeat, ShardStatus, topics

T0 = 1_893_456_000.0  # 2030-01-01
HOUR = 3600.0
BUSY_READS = 8 * 24 * 2


@pytest.fixture
def flow_settings(private_stack_settings, tmp_path):
    # The module's own stack: a flow with a fresh recovery store reads the access topic from its start.
    s = private_stack_settings.model_copy(deep=True)
    s.flow.recovery_dir = tmp_path / "recovery"
    s.flow.snapshot_interval_s = 1.0
    # A handful of objects: every one sampled, and one observation calibrates a state, so a shard can estimate
    # reads over the planning horizon (and offer cold candidates, flows/shard.py) within these small streams.
    s.flow.reads_sample_every, s.flow.reads_min_count = 1, 1
    return s


def access(bucket: str, key: str, t: float, op: str = "GET", size: int = 1000) -> AccessEvent:
    return AccessEvent(event_time=t, bucket=bucket, key=key, op=op, bytes=size if op == "GET" else 0,
                       object_size=size)


def publish(settings, events: list[AccessEvent], raw: list[bytes] = (), partition_of=None) -> str:
    """Produce events (keyed by object) and raw records, then this run's end markers; returns the run id."""
    prod = producer(settings)
    for ev in events:
        kwargs = {"partition": partition_of(ev)} if partition_of and partition_of(ev) is not None else {}
        prod.produce(topics.ACCESS, ev.model_dump_json().encode(), key=topics.object_key(ev.bucket, ev.key),
                     **kwargs)
    for r in raw:
        prod.produce(topics.ACCESS, r, key=b"bad")
    run = uuid.uuid4().hex
    publish_end_markers(settings, topics.ACCESS, run, prod)
    return run


def read(settings, topic: str, run: str, model):
    return [model.model_validate_json(m.value()) for m in
            iter_records(settings, topic, f"test-{uuid.uuid4().hex[:8]}", run)]


def test_replay_gives_candidates_and_heat_snapshots(flow_settings):
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    parts = partitions_of(flow_settings, topics.ACCESS)
    events = []
    # "busy": read every 30 minutes for the whole 8 days -> hot and stays hot.
    events += [access(bucket, "busy", T0 + i * 1800) for i in range(BUSY_READS)]
    # "faded": 30 reads in its first hour, then nothing for ~8 days -> hot first, cold by the end of the run.
    events += [access(bucket, "faded", T0 + i * 120) for i in range(30)]
    # "once": a single read -> never hot.
    events += [access(bucket, "once", T0 + 5)]
    # A clock on every partition, so every shard's event time reaches the end of the 8 days.
    events += [access(bucket, f"clock-{p}", T0 + i * 12 * HOUR) for p in parts for i in range(17)]
    events.sort(key=lambda ev: ev.event_time)  # as a live producer would send them (lateness is tested elsewhere)
    run = publish(flow_settings, events,
                  partition_of=lambda ev: int(ev.key.split("-")[1]) if ev.key.startswith("clock-") else None)

    run_flow(flow_settings, until_run=run)

    cands = [c for c in read(flow_settings, topics.CANDIDATES, run, Candidate) if c.bucket == bucket]
    by_key: dict[str, list[Candidate]] = {}
    for c in cands:
        by_key.setdefault(c.key, []).append(c)
    outlooks = {k: [c.outlook for c in v] for k, v in by_key.items()}
    assert outlooks["busy"][-1] == "hot"
    assert "hot" in outlooks["faded"] and outlooks["faded"][-1] == "cold"
    assert "hot" not in outlooks["once"]
    # Hysteresis: consecutive candidates of one object always change outlook (no flood while it hovers).
    for seq in outlooks.values():
        assert all(a != b for a, b in itertools.pairwise(seq)), seq
    faded_cold = by_key["faded"][-1]
    # Cooled while idle: found by a sweep of hot objects (no event of its own), days after its last access.
    assert faded_cold.as_of - faded_cold.last_access > 2 * 24 * HOUR
    assert faded_cold.read_heat["1h"] < 1e-6 and faded_cold.current_locations == []
    assert faded_cold.p_hot <= flow_settings.flow.cold_threshold
    busy = by_key["busy"][-1]
    assert busy.expected_reads > 1 and busy.size == 1000 and busy.horizon_s == flow_settings.flow.horizon_s

    heat = [h for h in read(flow_settings, topics.HEAT, run, ObjectHeat) if h.bucket == bucket]
    last = {}
    for h in heat:
        if h.key not in last or h.as_of >= last[h.key].as_of:
            last[h.key] = h
    assert last["busy"].reads == BUSY_READS and last["faded"].reads == 30 and last["once"].reads == 1
    assert last["busy"].bytes_read == BUSY_READS * 1000
    assert len([h for h in heat if h.key == "busy"]) >= 8  # daily over 8 days, not only at the end

    # Every shard reports its status when its clock crosses an hour (here at each 12-hourly clock event, at least),
    # keyed by its partition, and once more at the end.
    statuses = [(m.key(), ShardStatus.model_validate_json(m.value())) for m in
                iter_records(flow_settings, topics.FLOW_STATUS, f"test-{uuid.uuid4().hex[:8]}", run)]
    assert {s.shard for _, s in statuses} == set(parts) and all(k == str(s.shard).encode() for k, s in statuses)
    for p in parts:
        mine = [s for _, s in statuses if s.shard == p]
        assert len(mine) >= 17 and mine[-1].as_of >= T0 + 8 * 24 * HOUR
        assert mine[-1].events >= 17 and mine[-1].labels_learned > 0 and mine[-1].prior_logloss is not None


def test_bad_input_goes_to_dead_letters_and_the_flow_finishes(flow_settings):
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    good = {"event_time": T0, "bucket": bucket, "key": "k", "op": "GET", "bytes": 1, "object_size": 1}
    tag = uuid.uuid4().hex

    def bad(**changes):
        d = {**good, "request_id": tag, **changes}
        return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()

    raw = {
        "bad json": b'{"event_time": 1, "bucket": ' + tag.encode(),
        "missing field": bad(bucket=...),
        "wrong type": bad(event_time="yesterday"),
        "negative size": bad(object_size=-5),
        "oversized key": bad(key="k" * 2000),
        "unknown op": bad(op="POST"),
        "not an object": json.dumps([tag]).encode(),
    }
    run = publish(flow_settings, [access(bucket, "k", T0), access(bucket, "k", T0 + 1, op="PUT")],
                  raw=list(raw.values()))

    run_flow(flow_settings, until_run=run)

    letters = [d for d in read(flow_settings, topics.DEAD_LETTERS, run, DeadLetter) if tag in d.payload]
    assert len(letters) == len(raw)
    by_payload = {d.payload: d for d in letters}
    reasons = {name: by_payload[r.decode()].reason for name, r in raw.items()}
    assert "invalid JSON" in reasons["bad json"]
    assert "bucket" in reasons["missing field"] and "required" in reasons["missing field"].lower()
    assert "event_time" in reasons["wrong type"]
    assert "object_size" in reasons["negative size"]
    assert "key" in reasons["oversized key"]
    assert "op" in reasons["unknown op"]
    for d in letters:
        assert d.source_topic == topics.ACCESS and d.partition >= 0 and d.offset >= 0
    # The valid events around the bad ones were processed.
    heat = [h for h in read(flow_settings, topics.HEAT, run, ObjectHeat) if h.bucket == bucket]
    assert heat and heat[-1].reads == 1 and heat[-1].writes == 1


def test_a_repeated_access_is_counted_once_and_reported_as_a_dead_letter(flow_settings):
    # At-least-once producers (a log shipper re-sending the file it was shipping when it crashed) deliver some
    # accesses twice: same request id, op, object and time. The flow counts each once and says which it dropped.
    # (The flow re-reads the module's earlier events, whose shard clocks are days ahead of these times: a window
    # that long keeps these within it.)
    settings = flow_settings.model_copy(deep=True)
    settings.flow.dedup_window_s = 365 * 86400.0
    bucket = f"t-{uuid.uuid4().hex[:8]}"

    def req(key, t, rid, op="GET"):
        ev = access(bucket, key, t, op=op)
        return ev.model_copy(update={"request_id": rid})

    first = [req("k", T0 + i, f"R{i}") for i in range(5)] + [req("k1", T0 + 5, "MULTI", "DELETE"),
                                                             req("k2", T0 + 5, "MULTI", "DELETE")]
    again = first[1:3] + [first[5]] + [req("k", T0 + 7, "R1")]  # the last: same id, another time - a new access
    run = publish(settings, first + again)

    run_flow(settings, until_run=run)

    letters = [d for d in read(settings, topics.DEAD_LETTERS, run, DeadLetter) if bucket in d.payload]
    assert sorted(json.loads(d.payload)["request_id"] for d in letters) == ["MULTI", "R1", "R2"], letters
    assert all("repeat of an access already counted" in d.reason for d in letters)
    heat = [h for h in read(settings, topics.HEAT, run, ObjectHeat) if h.bucket == bucket and h.key == "k"]
    assert heat and heat[-1].reads == 6

    # `dim flow-state` reads the shards' counters from the recovery store
    from click.testing import CliRunner

    from flows.cli import flow_state_cmd

    result = CliRunner().invoke(flow_state_cmd, ["--recovery-dir", str(settings.recovery_dir)])
    assert result.exit_code == 0, result.output
    shards = [json.loads(line) for line in result.output.splitlines()]
    # one line per shard that has seen events (a partition without any has no shard yet)
    ids = [s["shard"] for s in shards]
    assert ids == sorted(ids) and set(ids) <= set(partitions_of(settings, topics.ACCESS))
    assert sum(s["repeats"] for s in shards) == 3 and sum(s["events"] for s in shards) >= len(first) + 1
    from flows.shard import STATE_FORMAT

    assert all(s["state_format"] == STATE_FORMAT and s["model"]["selected"] for s in shards)
    assert {s["p_hot_from"] for s in shards} == {"prior"}  # a few events: the model is still warming up


def test_a_log_file_shipped_again_after_a_lost_state_is_counted_once(flow_settings, tmp_path):
    # `dim ship-logs` is at-least-once per file: a crash between the broker's flush and its state write ships the
    # file again. Simulated by losing the state file: the flow (resuming from its recovery store) counts nothing
    # twice and dead-letters the repeats.
    from dim.logship import LocalSource, ShipState, ship
    from tests.test_s3logs import T0 as LOG_T0
    from tests.test_s3logs import record

    settings = flow_settings.model_copy(deep=True)
    settings.flow.dedup_window_s = 20 * 365 * 86400.0  # these 2026 times are years behind the module's clocks (2030)
    mine = f"logs{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "2026-01-01-00-00-00-AAAA").write_text(
        record(bucket=mine, key="a.bin", request_id="REQ1") + record(bucket=mine, key="a.bin", request_id="REQ2",
                                                                     when=LOG_T0 + 60))
    for attempt in range(2):
        run = uuid.uuid4().hex
        summary = ship(settings, [LocalSource(logs)], ShipState(tmp_path / f"state-{attempt}.json"), end_run=run)
        assert summary.events == 2
        run_flow(settings, until_run=run)

    letters = [d for d in read(settings, topics.DEAD_LETTERS, run, DeadLetter) if mine in d.payload]
    assert sorted(json.loads(d.payload)["request_id"] for d in letters) == ["REQ1", "REQ2"]
    heat = [h for h in read(settings, topics.HEAT, run, ObjectHeat) if h.bucket == mine]
    assert heat and heat[-1].reads == 2


def test_an_event_far_ahead_of_its_record_timestamp_is_a_dead_letter(flow_settings):
    # With flow.max_event_lead_s an event is judged against the timestamp Kafka stores with its record (here the
    # producer's, T0 in 2030), not against the wall clock: a re-run decides the same.
    settings = flow_settings.model_copy(deep=True)
    settings.flow.max_event_lead_s = 3600.0
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    prod = producer(settings)
    stamp = int(T0 * 1000)
    events = [access(bucket, "k", T0 + i) for i in range(3)] + [access(bucket, "k", T0 + 30 * 86400)]
    for ev in events:
        prod.produce(topics.ACCESS, ev.model_dump_json().encode(), key=topics.object_key(bucket, "k"), timestamp=stamp)
    run = uuid.uuid4().hex
    publish_end_markers(settings, topics.ACCESS, run, prod)

    run_flow(settings, until_run=run)

    letters = [d for d in read(settings, topics.DEAD_LETTERS, run, DeadLetter) if bucket in d.payload]
    assert len(letters) == 1 and "ahead of its record's timestamp" in letters[0].reason, letters
    assert json.loads(letters[0].payload)["event_time"] == T0 + 30 * 86400
    heat = [h for h in read(settings, topics.HEAT, run, ObjectHeat) if h.bucket == bucket]
    assert heat and heat[-1].reads == 3 and heat[-1].as_of < T0 + 86400


def test_recovery_resumes_where_the_last_run_stopped(flow_settings):
    """Two bounded runs on one recovery store: the second sees only new records, state carries over."""
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    run1 = publish(flow_settings, [access(bucket, "k", T0 + i) for i in range(5)])
    run_flow(flow_settings, until_run=run1)
    run2 = publish(flow_settings, [access(bucket, "k", T0 + 10 + i) for i in range(3)])
    run_flow(flow_settings, until_run=run2)
    heat2 = [h for h in read(flow_settings, topics.HEAT, run2, ObjectHeat) if h.bucket == bucket]
    # run2's heat topic section starts after run1's markers; the last snapshot counts all 8 reads once.
    assert heat2 and max(h.reads for h in heat2) == 8


def test_a_recovery_store_of_another_state_format_stops_the_flow_with_a_clear_error(flow_settings):
    """Snapshots written by a shard state of an older layout (here: format 1, before the field existed) are
    refused by name, by the flow and by the inspection helper, instead of failing somewhere inside the core."""
    import pickle
    import re
    import sqlite3

    from flows.run import load_shard_states
    from flows.shard import STATE_FORMAT, StateFormatError

    bucket = f"t-{uuid.uuid4().hex[:8]}"
    run1 = publish(flow_settings, [access(bucket, "k", T0 + i) for i in range(5)])
    run_flow(flow_settings, until_run=run1)
    recovery_dir = flow_settings.recovery_dir
    assert load_shard_states(recovery_dir)
    for part in recovery_dir.glob("part-*.sqlite3"):
        con = sqlite3.connect(part)
        rows = con.execute("SELECT rowid, ser_change FROM snaps WHERE ser_change IS NOT NULL").fetchall()
        for rowid, blob in rows:
            inner = pickle.loads(blob)
            if not isinstance(inner, bytes):
                continue  # another step's state (source offsets)
            shard = pickle.loads(inner)
            del shard.state_format
            con.execute("UPDATE snaps SET ser_change = ? WHERE rowid = ?",
                        (pickle.dumps(pickle.dumps(shard)), rowid))
        con.commit()
        con.close()
    with pytest.raises(StateFormatError, match="shard state format 1"):
        load_shard_states(recovery_dir)
    run2 = publish(flow_settings, [access(bucket, "k", T0 + 10)])
    expected = f"recovery store {recovery_dir} holds shard state format 1, this flow reads format"
    with pytest.raises(Exception, match=re.escape(f"{expected} {STATE_FORMAT}")):
        run_flow(flow_settings, until_run=run2)
