"""A small, fully known data set of every model, published to the real topics: for the API's tests, the
Grafana panel test and the report. Everything is about one fresh bucket, so counts stay exact even when other
producers share the topics."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from dim import kafka
from dim.config import Settings
from schemas import (
    AccessEvent,
    AuditFinding,
    AuditRecord,
    Candidate,
    DeadLetter,
    Move,
    MoveEvent,
    ObjectHeat,
    Placement,
    PlacementPlan,
    Replica,
    ShardStatus,
    topics,
)
from schemas import tables as t

HOT = ["aws:us-east-1:standard", "gcp:us-east1:standard"]
ARCHIVE = ["aws:us-east-1:glacier-flexible", "azure:eastus:archive"]
SAMPLE_CATALOGUE = "sample-catalogue-1"
KEYS = ["plain.txt", "dir/sub/file with space.bin", "quote'key", "back\\slash", "ключ/данные"]


@dataclass
class ApiDataset:
    bucket: str
    run_id: str
    plan_id: str
    keys: list[str]
    start: float
    expected: dict[str, int] = field(default_factory=dict)
    gets: int = 0
    puts: int = 0
    bytes_read: int = 0
    archive_reads: int = 0
    archive_location: str = ARCHIVE[0]
    copied_bytes: int = 0
    bad_records: int = 0
    moved_key: str = KEYS[0]
    failed_key: str = KEYS[1]
    audit_id: str = ""
    shard: int = 0  # the data set's own flow shard (derived from its bucket, so data sets do not collide)


def build_records(bucket: str, plan_id: str, start: float,
                  extra_gets: int = 0) -> tuple[list[tuple[str, bytes, bytes]], ApiDataset]:
    """(topic, key, value) records and what they must add up to. `start` should be on an hour boundary."""
    ds = ApiDataset(bucket=bucket, run_id="", plan_id=plan_id, keys=list(KEYS), start=start)
    out: list[tuple[str, bytes, bytes]] = []

    def emit(topic: str, key: str, model) -> None:
        out.append((topic, topics.object_key(bucket, key), model.model_dump_json().encode()))

    sizes = {k: 1_000_000 * (i + 1) for i, k in enumerate(KEYS)}
    for k in KEYS:
        emit(topics.PLACEMENTS, k, Placement(
            bucket=bucket, key=k, version=1, updated_at=start - 100,
            replicas=[Replica(location=loc, size=sizes[k], created_at=start - 100) for loc in HOT]))
        emit(topics.ACCESS, k, AccessEvent(event_time=start + 30, bucket=bucket, key=k, op="PUT",
                                           bytes=sizes[k], object_size=sizes[k], request_id=f"{k}-put"))
        ds.puts += 1
        for j in range(6):
            emit(topics.ACCESS, k, AccessEvent(event_time=start + 60 * (j + 1), bucket=bucket, key=k, op="GET",
                                               bytes=sizes[k], object_size=sizes[k]))
            ds.gets += 1
            ds.bytes_read += sizes[k]
        for n, as_of in enumerate((start + 1000, start + 4000)):
            emit(topics.HEAT, k, ObjectHeat(
                bucket=bucket, key=k, as_of=as_of, read_heat={"1h": 6.0 - n, "1d": 6.0}, write_heat={"1h": 1.0},
                reads=6, writes=1, bytes_read=6 * sizes[k], size=sizes[k], first_seen=start + 30,
                last_access=start + 360, p_hot=round(0.1 * KEYS.index(k) + 0.05 * n, 3)))
        emit(topics.CANDIDATES, k, Candidate(
            bucket=bucket, key=k, as_of=start + 1000, size=sizes[k], read_heat={"1h": 6.0}, write_heat={},
            p_hot=0.5, expected_reads=3.0, horizon_s=86400, first_seen=start + 30, last_access=start + 360,
            outlook="cold", current_locations=HOT))
    moved, failed = KEYS[0], KEYS[1]
    m1 = Move(move_id=f"{plan_id}-m1", plan_id=plan_id, bucket=bucket, key=moved, size=sizes[moved],
              from_locations=HOT, to_locations=ARCHIVE, expected_saving_usd=0.01, reason="cold")
    m2 = Move(move_id=f"{plan_id}-m2", plan_id=plan_id, bucket=bucket, key=failed, size=sizes[failed],
              from_locations=HOT, to_locations=[HOT[0], "azure:eastus:hot"], reason="diversity")
    out.append((topics.PLANS, plan_id.encode(), PlacementPlan(
        plan_id=plan_id, created_at=start + 1500, method="milp-highs", catalogue_version=SAMPLE_CATALOGUE,
        candidates=5, objective_usd=1.5, cost_before_usd_month=2.0, cost_after_usd_month=1.5,
        moves=[m1, m2]).model_dump_json().encode()))
    for m in (m1, m2):  # the moves topic repeats the plan's moves: still one row per move
        emit(topics.MOVES, m.key, m)
    ts = start + 2000
    steps = [("copying", "", 0), ("copied", ARCHIVE[0], sizes[moved]), ("copied", ARCHIVE[1], sizes[moved]),
             ("verified", "", 0), ("committed", "", 0), ("deleted", "", 0)]
    for n, (state, loc, nbytes) in enumerate(steps):
        emit(topics.MOVE_EVENTS, moved, MoveEvent(move_id=m1.move_id, plan_id=plan_id, bucket=bucket, key=moved,
                                                  state=state, ts=ts + n, location=loc, bytes=nbytes))
    ds.copied_bytes = 2 * sizes[moved]
    emit(topics.MOVE_EVENTS, failed, MoveEvent(move_id=m2.move_id, plan_id=plan_id, bucket=bucket, key=failed,
                                               state="copying", ts=ts))
    emit(topics.MOVE_EVENTS, failed, MoveEvent(move_id=m2.move_id, plan_id=plan_id, bucket=bucket, key=failed,
                                               state="failed", ts=ts + 1, reason="checksum mismatch"))
    # The moved object's new placement (just after the first hour), then reads served from the archive.
    emit(topics.PLACEMENTS, moved, Placement(
        bucket=bucket, key=moved, version=2, updated_at=start + 3601,
        replicas=[Replica(location=loc, size=sizes[moved], created_at=start + 2001) for loc in ARCHIVE]))
    for j in range(4):
        emit(topics.ACCESS, moved, AccessEvent(event_time=start + 4200 + j, bucket=bucket, key=moved, op="GET",
                                               bytes=sizes[moved], object_size=sizes[moved]))
        ds.gets += 1
        ds.archive_reads += 1
        ds.bytes_read += sizes[moved]
    for j in range(extra_gets):  # a backlog, for tests that need the ingester busy for a while
        emit(topics.ACCESS, KEYS[2], AccessEvent(event_time=start + 400 + j % 3000, bucket=bucket, key=KEYS[2],
                                                 op="GET", bytes=sizes[KEYS[2]], object_size=sizes[KEYS[2]]))
        ds.gets += 1
        ds.bytes_read += sizes[KEYS[2]]
    out.append((topics.DEAD_LETTERS, topics.ACCESS.encode(), DeadLetter(
        ts=start, source_topic=topics.ACCESS, reason="upstream: bad op",
        payload=json.dumps({"bucket": bucket, "op": "FETCH"})).model_dump_json().encode()))
    good = AccessEvent(event_time=start, bucket=bucket, key="bad", op="GET", bytes=1, object_size=1)
    bad_values = [
        ('{"bucket": "' + bucket + '", "key": "x", not json').encode(),
        json.dumps({**good.model_dump(mode="json"), "op": "FETCH"}).encode(),
        json.dumps({**good.model_dump(mode="json"), "bytes": -5}).encode(),
    ]
    for v in bad_values:
        out.append((topics.ACCESS, b"bad", v))
    out.append((topics.PLACEMENTS, b"bad", json.dumps({"bucket": bucket, "key": "k", "replicas": []}).encode()))
    ds.bad_records = len(bad_values) + 1
    # An audit of the bucket that found one catalogued replica missing and one orphan.
    ds.audit_id = f"audit-{bucket}"
    findings = [AuditFinding(kind="missing", location=HOT[1], key=f"{bucket}/{KEYS[3]}", size=sizes[KEYS[3]],
                             detail="catalogued, not stored"),
                AuditFinding(kind="orphan", location=ARCHIVE[1], key=f"{bucket}/{KEYS[4]}", size=sizes[KEYS[4]],
                             age_s=9 * 86400.0, detail="not named by its catalog entry")]
    out.append((topics.AUDITS, ds.audit_id.encode(), AuditRecord(
        audit_id=ds.audit_id, started_at=start + 7000, finished_at=start + 7002, scope=f"{bucket}/",
        grace_s=7 * 86400.0, verified_checksums=True, archive_replicas_unread=1, ok=False, entries=len(KEYS), replicas=2 * len(KEYS),
        replica_bytes=2 * sum(sizes.values()), stored_objects=2 * len(KEYS), unnamed_in_grace=0,
        orphan_bytes=sizes[KEYS[4]], counts={"missing": 1, "orphan": 1}, findings_total=2,
        findings=findings).model_dump_json().encode()))
    ds.expected = {
        t.ACCESS_EVENTS: ds.gets + ds.puts, t.OBJECT_HEAT: 2 * len(KEYS), t.OBJECT_HEAT_LATEST: len(KEYS),
        t.CANDIDATES: len(KEYS), t.PLANS: 1, t.MOVES: 2, t.MOVE_EVENTS: len(steps) + 2,
        t.PLACEMENTS: len(KEYS), t.PLACEMENT_VERSIONS: len(KEYS) + 1, t.DEAD_LETTERS: ds.bad_records + 1,
        t.AUDITS: 1, t.AUDIT_FINDINGS: 2, t.FLOW_STATUS: 2,
    }
    # The flow shard's status an hour apart: the prior served, then the regression beat it.
    ds.shard = 1000 + int.from_bytes(bucket.encode()[-4:], "little") % 60000
    for n, (learned, p_hot_from, loss) in enumerate(((0, "prior", None), (150, "logreg_binned", 0.41))):
        out.append((topics.FLOW_STATUS, str(ds.shard).encode(), ShardStatus(
            shard=ds.shard, as_of=start + 3600 * (n + 1), events=ds.gets + ds.puts, late_events=n, repeats=0,
            dead_letters=ds.bad_records, objects=len(KEYS), objects_hot=2 - n,
            labels_pending=20, labels_learned=learned, p_hot_from=p_hot_from, labels_scored=learned,
            regression_logloss=loss, prior_logloss=0.62 if loss else None, reads_states_calibrated=3 * n,
            reads_states=20).model_dump_json().encode()))
    return out, ds


def publish_dataset(settings: Settings, start: float | None = None, extra_gets: int = 0) -> ApiDataset:
    """Publish a fresh data set and this run's end markers on every ingested topic."""
    import time

    start = start if start is not None else (time.time() // 3600 - 5) * 3600
    tag = uuid.uuid4().hex[:10]
    records, ds = build_records(f"t{tag}", f"plan-{tag}", start, extra_gets)
    ds.run_id = f"api-sample-{tag}"
    prod = kafka.producer(settings)
    for topic, key, value in records:
        prod.produce(topic, key=key, value=value)
    prod.flush(30)
    for topic in t.TABLE_OF_TOPIC:
        kafka.publish_end_markers(settings, topic, ds.run_id, prod)
    return ds


def counts_for(store, ds: ApiDataset) -> dict[str, int]:
    """Deduplicated row counts of the data set's rows in every table it touches."""
    by_bucket = [t.ACCESS_EVENTS, t.OBJECT_HEAT, t.OBJECT_HEAT_LATEST, t.CANDIDATES, t.MOVES, t.MOVE_EVENTS,
                 t.PLACEMENTS, t.PLACEMENT_VERSIONS]
    out = {}
    for table in by_bucket:
        out[table] = store.query(f"SELECT count() AS n FROM {store.table(table)} FINAL WHERE bucket = {{b:String}}",
                                 {"b": ds.bucket})[0]["n"]
    out[t.PLANS] = store.query(f"SELECT count() AS n FROM {store.table(t.PLANS)} FINAL WHERE plan_id = {{p:String}}",
                               {"p": ds.plan_id})[0]["n"]
    out[t.FLOW_STATUS] = store.query(
        f"SELECT count() AS n FROM {store.table(t.FLOW_STATUS)} FINAL WHERE shard = {{s:UInt16}}",
        {"s": ds.shard})[0]["n"]
    for table in (t.AUDITS, t.AUDIT_FINDINGS):
        out[table] = store.query(f"SELECT count() AS n FROM {store.table(table)} FINAL WHERE audit_id = {{a:String}}",
                                 {"a": ds.audit_id})[0]["n"]
    out[t.DEAD_LETTERS] = store.query(
        f"SELECT count() AS n FROM {store.table(t.DEAD_LETTERS)} FINAL WHERE position(payload, {{b:String}}) > 0",
        {"b": ds.bucket})[0]["n"]
    return out
