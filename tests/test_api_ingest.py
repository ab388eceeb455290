"""Ingestion into real chDB from the real broker: every model lands in its table, bad records become dead
letters, and redelivery (a second consumer group, or a crash between insert and commit) keeps counts exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from api.ingest import run_ingest
from api.ledger import GB
from api.sample import ApiDataset, counts_for, publish_dataset
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import tables as t
from schemas import topics


def _store(settings: Settings, tmp_path) -> tuple[Settings, AnalyticsStore]:
    s = Settings(**{**settings.model_dump(), "clickhouse": {"chdb_path": tmp_path / "chdb"}})
    return s, AnalyticsStore.open(s)


@pytest.fixture(scope="module")
def dataset(stack_settings) -> ApiDataset:
    return publish_dataset(stack_settings)


def test_every_topic_lands_exactly_once_even_when_redelivered(stack_settings, dataset, tmp_path):
    settings, store = _store(stack_settings, tmp_path)
    with store:
        group = f"test-{uuid.uuid4().hex[:8]}"
        first = run_ingest(settings, store, until_run=dataset.run_id, group=group)
        assert first.get(t.ACCESS_EVENTS, 0) >= dataset.expected[t.ACCESS_EVENTS]
        after_one = counts_for(store, dataset)
        assert after_one == dataset.expected
        # A second group re-reads everything: the same records arrive again, counts must not change.
        run_ingest(settings, store, until_run=dataset.run_id, group=f"{group}-again")
        assert counts_for(store, dataset) == dataset.expected
        # The same group and run again: offsets were committed after the insert, nothing is re-read, and the
        # run's end markers (committed past) are remembered in the store, so it ends at once instead of waiting.
        t0 = time.monotonic()
        again = run_ingest(settings, store, until_run=dataset.run_id, group=group, idle_timeout_s=30)
        assert again.get(t.ACCESS_EVENTS, 0) == 0
        assert time.monotonic() - t0 < 20, "waited for end markers it had already seen"


def test_bad_records_become_dead_letters_with_reasons(stack_settings, dataset, tmp_path):
    settings, store = _store(stack_settings, tmp_path)
    with store:
        run_ingest(settings, store, until_run=dataset.run_id, group=f"test-{uuid.uuid4().hex[:8]}")
        rows = store.query(
            f"SELECT source_topic, reason, payload FROM {store.table(t.DEAD_LETTERS)} FINAL "
            "WHERE position(payload, {b:String}) > 0 ORDER BY source_topic, reason", {"b": dataset.bucket})
        reasons = " | ".join(r["reason"] for r in rows)
        assert len(rows) == dataset.bad_records + 1, reasons  # + the DeadLetter published upstream
        assert "Invalid JSON" in reasons or "json_invalid" in reasons
        assert "op" in reasons and "bytes" in reasons and "version" in reasons
        assert any(r["source_topic"] == topics.ACCESS for r in rows)
        assert any(r["source_topic"] == topics.PLACEMENTS for r in rows)


def test_derived_tables_match_the_raw_events(stack_settings, dataset, tmp_path):
    settings, store = _store(stack_settings, tmp_path)
    with store:
        run_ingest(settings, store, until_run=dataset.run_id, group=f"test-{uuid.uuid4().hex[:8]}")
        hourly = store.query(
            f"SELECT sum(gets) AS g, sum(puts) AS p, sum(bytes_read) AS br FROM {store.table(t.ACCESS_HOURLY)} "
            "FINAL WHERE bucket = {b:String}", {"b": dataset.bucket})[0]
        assert (hourly["g"], hourly["p"], hourly["br"]) == (dataset.gets, dataset.puts, dataset.bytes_read)
        # The moved object's reads after the move are served from the archive location: SLA events.
        sla = store.query(f"SELECT sum(reads) AS r, any(location) AS loc FROM {store.table(t.SLA_EVENTS)} FINAL "
                          "WHERE bucket = {b:String}", {"b": dataset.bucket})[0]
        assert sla["r"] == dataset.archive_reads and sla["loc"] == dataset.archive_location
        ledger = store.query(
            f"SELECT sum(gb_days) AS gbd, sum(egress_gb) AS eg, sum(retrieval_gb) AS rg, sum(total_usd) AS usd "
            f"FROM {store.table(t.COST_LEDGER)} FINAL")[0]
        assert ledger["gbd"] > 0 and ledger["usd"] > 0
        # Other tests' data may share the topics: compare with the copies in the raw tables, which include ours.
        copied = store.query(
            f"SELECT sum(e.bytes) AS b FROM (SELECT * FROM {store.table(t.MOVE_EVENTS)} FINAL WHERE state = 'copied') "
            f"AS e INNER JOIN (SELECT move_id FROM {store.table(t.MOVES)} FINAL) AS m ON m.move_id = e.move_id")[0]["b"]
        assert copied >= dataset.copied_bytes
        # Egress = bytes copied by moves + bytes read (served to clients); every read of ours has a replica.
        assert ledger["rg"] * GB >= dataset.bytes_read
        assert ledger["eg"] == pytest.approx(copied / GB + ledger["rg"])


KILLER = textwrap.dedent("""
    import os, sys
    from dim.config import Settings
    from api import ingest
    from api.store import AnalyticsStore

    settings = Settings(**{**Settings().model_dump(), "clickhouse": {"chdb_path": sys.argv[1]}})
    real_insert = ingest.insert_rows
    def insert_then_die(store, rows):
        counts = real_insert(store, rows)
        os._exit(9)  # the insert is durable, the offsets are not committed: a crash mid-batch
    ingest.insert_rows = insert_then_die
    with AnalyticsStore.open(settings) as store:
        ingest.run_ingest(settings, store, until_run=sys.argv[2], group=sys.argv[3], max_batch=int(sys.argv[4]))
""")


def test_crash_between_insert_and_commit_then_restart_is_exact(stack_settings, dataset, tmp_path):
    settings, store = _store(stack_settings, tmp_path)
    store.close()
    group = f"test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(settings.chdb_path), dataset.run_id, group, "7"],
                          env={**os.environ, **settings.to_env()}, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    with AnalyticsStore.open(settings) as store:
        run_ingest(settings, store, until_run=dataset.run_id, group=group)
        assert counts_for(store, dataset) == dataset.expected


def test_sigkill_at_any_moment_then_restart_is_exact(stack_settings, tmp_path):
    """`dim ingest` killed with SIGKILL while it works through a backlog; a restart in the same consumer group
    ends with exact counts."""
    big = publish_dataset(stack_settings, extra_gets=20_000)
    settings, store = _store(stack_settings, tmp_path)
    store.close()
    group = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(**{**settings.model_dump(), "kafka": {**settings.kafka.model_dump(), "group_prefix": group}})
    proc = subprocess.Popen([sys.executable, "-m", "dim.cli", "ingest", "--until-run", big.run_id],
                            env={**os.environ, **settings.to_env()}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first_batch = threading.Event()

    def watch() -> None:
        for line in proc.stderr:
            if b"ingested batch" in line:
                first_batch.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        # Kill once the first batch is in the store, i.e. in the middle of the run.
        first_batch.wait(120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the ingester finished before it could be killed"
    with AnalyticsStore.open(settings) as store:
        run_ingest(settings, store, until_run=big.run_id)
        assert counts_for(store, big) == big.expected


def test_store_escapes_parameters_and_migrates_idempotently(tmp_path):
    s = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    with AnalyticsStore.open(s) as store:
        assert store.migrate() == [v for v, _, _ in t.MIGRATIONS] == [1, 2, 3, 4, 5, 6, 7]
        assert store.migrate() == []
        for value in ["a\\nb", "a\nb", "tab\there", "x\\", "it's", "é€😀", "{b:String}", "\0z"]:
            got = store.query("SELECT {v:String} AS v", {"v": value})
            assert got == [{"v": value}], value


def test_object_timeline_is_backfilled_when_an_older_store_migrates(tmp_path):
    """A store written at schema version 1 gets migration 3's serving table filled from what it already holds,
    and the views keep it current afterwards: the object detail is the same before and after."""
    from api.ingest import insert_rows
    from api.queries import object_detail
    from api.rows import rows_of_record
    from api.sample import build_records

    s = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    records, ds = build_records("old-store", "old-plan", 1_700_000_000.0)
    half = len(records) // 2
    with AnalyticsStore.open(s) as store:
        for stmt in t.bootstrap_statements(store.database):
            store.command(stmt)
        (_, desc, stmts), *_ = t.migration_statements(store.database)
        for stmt in stmts:
            store.command(stmt)
        store.insert(t.SCHEMA_MIGRATIONS, [{"version": 1, "description": desc}])

        def ingest(batch, first_offset):
            rows: dict = {}
            for i, (topic, _, value) in enumerate(batch):
                for table, rs in rows_of_record(topic, 0, first_offset + i, value).items():
                    rows.setdefault(table, []).extend(rs)
            insert_rows(store, rows)

        ingest(records[:half], 0)  # stored before the serving table existed
        assert store.migrate() == [2, 3, 4, 5, 6, 7]
        ingest(records[half:], half)  # stored through the views
        ingest(records, 0)  # and everything redelivered
        for key in ds.keys:
            got = object_detail(store, ds.bucket, key, 100, 500)
            placement = store.query(f"SELECT version FROM {store.table(t.PLACEMENTS)} FINAL "
                                    "WHERE bucket = {b:String} AND key = {k:String}", {"b": ds.bucket, "k": key})
            assert placement, key
            assert got["placement"]["version"] == placement[0]["version"]
            heat = store.query(
                f"SELECT DISTINCT toFloat64(as_of) AS a FROM {store.table(t.OBJECT_HEAT)} "
                "WHERE bucket = {b:String} AND key = {k:String} ORDER BY a", {"b": ds.bucket, "k": key})
            assert [h["as_of"] for h in got["heat"]] == [h["a"] for h in heat]
        moved = object_detail(store, ds.bucket, ds.moved_key, 100, 500)["moves"]
        assert [(m["move_id"], m["status"]) for m in moved] == [("old-plan-m1", "deleted")]
        failed = object_detail(store, ds.bucket, ds.failed_key, 100, 500)["moves"]
        assert [(m["status"], m["last_reason"]) for m in failed] == [("failed", "checksum mismatch")]


def test_sla_is_rejudged_when_the_placement_arrives_after_the_reads(tmp_path):
    """Topics are consumed in no particular order across each other: reads ingested first, the placement that
    moved the object to an archive tier later; the SLA events must follow the placement."""
    from api import derive
    from api.ingest import insert_rows
    from api.rows import rows_of_record
    from api.sample import ARCHIVE
    from schemas import AccessEvent, Placement, Replica

    s = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    start = 1767225600.0
    with AnalyticsStore.open(s) as store:
        store.migrate()
        derive.load_prices(store, s)

        def ingest(topic, offset, model):
            rows = rows_of_record(topic, 0, offset, model.model_dump_json().encode())
            insert_rows(store, rows)
            derive.refresh(store, s, rows)

        ingest(topics.PLACEMENTS, 1, Placement(bucket="b", key="k", version=1, updated_at=start - 10,
                                               replicas=[Replica(location="aws:us-east-1:standard")]))
        for i in range(3):
            ingest(topics.ACCESS, 10 + i, AccessEvent(event_time=start + 600 + i, bucket="b", key="k", op="GET",
                                                      bytes=1, object_size=1))
        sla = f"SELECT sum(reads) AS r FROM {store.table(t.SLA_EVENTS)} FINAL"
        assert store.query(sla)[0]["r"] == 0
        ingest(topics.PLACEMENTS, 2, Placement(bucket="b", key="k", version=2, updated_at=start + 1,
                                               replicas=[Replica(location=loc) for loc in ARCHIVE]))
        assert store.query(sla)[0]["r"] == 3


def test_an_access_delivered_twice_is_counted_once_by_the_derived_tables(tmp_path):
    """The flow dead-letters a repeat (same request id, op, object and time); the hourly rollup, and so the SLA
    events and the cost ledger built on it, count it once too. Accesses without a request id, or differing in any
    part of the identity, stay apart."""
    from api import derive
    from api.ingest import insert_rows
    from api.rows import rows_of_record
    from schemas import AccessEvent

    s = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    start = 1767225600.0

    def get(rid, t=start + 60, key="k", op="GET"):
        return AccessEvent(event_time=t, bucket="b", key=key, op=op, bytes=100 if op == "GET" else 0,
                           object_size=100, request_id=rid)

    records = [get("R1"), get("R1"),             # a repeat: one access
               get(""), get(""),                 # no request id: two accesses
               get("R2"), get("R2", t=start + 61),  # another time: two
               get("M", key="k1", op="DELETE"), get("M", key="k2", op="DELETE"),  # one request, two keys
               get("R1", op="HEAD")]             # another op of the same request: its own access
    with AnalyticsStore.open(s) as store:
        store.migrate()
        for offset, ev in enumerate(records):
            rows = rows_of_record(topics.ACCESS, 0, offset, ev.model_dump_json().encode())
            insert_rows(store, rows)
            derive.refresh(store, s, rows)
        hourly = store.query(f"SELECT key, gets, heads, deletes, bytes_read FROM {store.table(t.ACCESS_HOURLY)} "
                             "FINAL WHERE bucket = 'b' ORDER BY key")
        assert [(r["key"], r["gets"], r["heads"], r["deletes"], r["bytes_read"]) for r in hourly] == [
            ("k", 5, 1, 0, 500), ("k1", 0, 0, 1, 0), ("k2", 0, 0, 1, 0)]


def test_values_the_columns_cannot_hold_become_dead_letters(tmp_path):
    """Valid by the contract, impossible for the column: ClickHouse would silently read 2**70 as 0 in a UInt64
    and clamp a year-33000 date. Such records are dead letters with the reason; the batch's other rows land."""
    import json

    from api.ingest import insert_rows
    from api.rows import rows_of_record
    from schemas import Placement, Replica

    ok = Placement(bucket="b", key="ok", version=1, updated_at=1767225600.0, replicas=[Replica(location="x")])
    good = json.loads(ok.model_dump_json())
    records = [
        (topics.PLACEMENTS, good),
        (topics.PLACEMENTS, good | {"key": "huge", "version": 2**70}),
        (topics.PLACEMENTS, good | {"key": "far", "updated_at": 1e12}),
        (topics.HEAT, {"bucket": "b", "key": "neg", "as_of": 1767225600, "read_heat": {}, "write_heat": {},
                       "reads": -1, "first_seen": 0, "last_access": 0}),
    ]
    rows: dict[str, list] = {}
    for offset, (topic, value) in enumerate(records):
        for table, rs in rows_of_record(topic, 0, offset, json.dumps(value).encode()).items():
            rows.setdefault(table, []).extend(rs)
    nan = rows_of_record(topics.HEAT, 0, 9, b'{"bucket": "b", "key": "n", "as_of": 1, "read_heat": {"1h": NaN}, '
                                            b'"write_heat": {}, "first_seen": 0, "last_access": 0}')
    assert [r["reason"] for r in nan[t.DEAD_LETTERS]] == ["non-finite number"]
    reasons = sorted(r["reason"] for r in rows[t.DEAD_LETTERS])
    assert reasons == ["reads out of range: -1", "updated_at out of range: 1000000000000.0",
                       f"version out of range: {2**70}"]
    # And a row the store itself refuses (not from a contract) is retried alone and dead-lettered.
    refused = dict(rows[t.PLACEMENTS][0], key="typed-wrong", version="not a number", _offset=99)
    rows[t.PLACEMENTS].append(refused)
    s = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    with AnalyticsStore.open(s) as store:
        store.migrate()
        counts = insert_rows(store, rows)
        assert counts[t.PLACEMENTS] == 1 and counts[t.DEAD_LETTERS] == 4
        assert store.query(f"SELECT key, version FROM {store.table(t.PLACEMENTS)} FINAL") == [
            {"key": "ok", "version": 1}]
        refused_rows = store.query(f"SELECT reason FROM {store.table(t.DEAD_LETTERS)} FINAL WHERE _offset = 99")
        assert len(refused_rows) == 1 and "refused" in refused_rows[0]["reason"]
