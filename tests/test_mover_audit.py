"""`dim audit`: the estate checked against the placement catalog - the pure core, then the real SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dim import kafka
from mover.audit import INTEGRITY, OpenUpload, StoredReplica, audit, repairs
from mover.catalog import PlacementCatalog, replica_key
from mover.objects import seed_objects
from mover.reconcile import repair, run_audit
from mover.s3ops import ReplicaStore, SourceChanged
from schemas import AuditRecord, Placement, Replica, topics

A, B, C = "aws:us-east-1:standard", "gcp:us-east1:standard", "azure:eastus:hot"
NOW = 1_800_000_000.0
DAY = 86400.0


def _entry(key: str, locations: list[str], size: int = 10, etag: str = "e", sha: str = "s",
           deleted: bool = False) -> Placement:
    return Placement(bucket="b", key=key, version=1, updated_at=NOW - DAY, deleted=deleted,
                     replicas=[Replica(location=loc, etag=etag, sha256=sha, size=size) for loc in locations])


def _stored(*items: tuple[str, str, int, str, float]) -> dict[str, dict[str, StoredReplica]]:
    out: dict[str, dict[str, StoredReplica]] = {A: {}, B: {}, C: {}}
    for loc, key, size, etag, modified in items:
        out[loc][f"b/{key}"] = StoredReplica(loc, f"b/{key}", size, etag, modified)
    return out


def _kinds(report) -> list[tuple[str, str, str]]:
    return sorted((f.kind, f.location, f.key) for f in report.findings)


# ------------------------------------------------------------------------------------------------ pure core

def test_a_consistent_estate_has_no_finding():
    old = NOW - 30 * DAY
    report = audit([_entry("k", [A, B])], _stored((A, "k", 10, "e", old), (B, "k", 10, "e", old)), 2, NOW, DAY)
    assert report.ok and report.findings == []
    assert (report.entries, report.replicas, report.replica_bytes, report.stored_objects) == (1, 2, 20, 2)


def test_each_integrity_fault_is_named():
    old = NOW - 30 * DAY
    entries = [_entry("missing", [A, B]), _entry("size", [A, B]), _entry("changed", [A, B]), _entry("sum", [A, B]),
               _entry("under", [A])]
    stored = _stored((B, "missing", 10, "e", old),
                     (A, "size", 9, "e", old), (B, "size", 10, "e", old),
                     (A, "changed", 10, "other", old), (B, "changed", 10, "e", old),
                     (A, "sum", 10, "e", old), (B, "sum", 10, "e", old),
                     (A, "under", 10, "e", old))
    digests = {(A, "b/sum"): "s", (B, "b/sum"): "not-s"}
    report = audit(entries, stored, 2, NOW, DAY, digests=digests)
    assert not report.ok
    assert _kinds(report) == [("changed", A, "b/changed"), ("checksum_mismatch", B, "b/sum"),
                              ("missing", A, "b/missing"), ("size_mismatch", A, "b/size"),
                              ("under_replicated", A, "b/under")]
    # without digests the checksum is not judged
    assert audit(entries, stored, 2, NOW, DAY).counts()["checksum_mismatch"] == 0


def test_unnamed_replicas_are_orphans_only_after_the_grace_period():
    old, young = NOW - 30 * DAY, NOW - 60.0
    entries = [_entry("k", [A, B]), _entry("gone", [A, B], deleted=True)]
    stored = _stored((A, "k", 10, "e", old), (B, "k", 10, "e", old),
                     (C, "k", 10, "e", old),  # left by a move cut short: the entry names A and B only
                     (C, "young", 10, "e", young),  # no entry at all (seeding in progress, or not ours)
                     (A, "gone", 10, "e", old))  # the object was deleted: its entry names nothing
    report = audit(entries, stored, 2, NOW, DAY)
    assert report.ok
    assert _kinds(report) == [("orphan", A, "b/gone"), ("orphan", C, "b/k"), ("uncatalogued", C, "b/young")]
    assert report.waste_bytes() == 20
    in_flight = audit(entries, _stored((A, "k", 10, "e", old), (B, "k", 10, "e", old), (C, "k", 10, "e", young)),
                      2, NOW, DAY)
    assert in_flight.findings == [] and in_flight.unnamed_in_grace == 1


def test_repairs_never_include_named_or_uncatalogued_objects():
    old = NOW - 30 * DAY
    uploads = [OpenUpload(C, "b/k", "u-old", NOW - 2 * DAY), OpenUpload(C, "b/k", "u-new", NOW - 10.0)]
    report = audit([_entry("k", [A, B])],
                   _stored((A, "k", 10, "e", old), (C, "k", 10, "e", old), (C, "stray", 5, "e", old)),
                   2, NOW, DAY, uploads, upload_grace_s=3600.0)
    assert {f.kind for f in report.findings} == {"missing", "orphan", "uncatalogued", "stale_upload"}
    todo = repairs(report)
    assert sorted((f.kind, f.location, f.key, f.upload_id) for f in todo) == [
        ("orphan", C, "b/k", ""), ("stale_upload", C, "b/k", "u-old")]
    assert all(f.kind not in INTEGRITY for f in todo)
    record = report.record()
    assert record.ok is False and record.findings[0].kind == "missing"  # integrity findings first
    assert record.counts["orphan"] == 1 and record.orphan_bytes == 10 and record.findings_total == 4
    assert record.started_at == NOW and record.grace_s == DAY
    assert [f.kind for f in report.record(max_findings=1).findings] == ["missing"]
    assert AuditRecord.model_validate_json(record.model_dump_json()) == record  # the contract round-trips


LOCS = (A, B, C)


@st.composite
def estates(draw):
    """Random catalog entries and listings over a few keys and locations: every way a replica can be right,
    missing, resized, rewritten, young or old, named or not, catalogued or not."""
    keys = [f"k{i}" for i in range(draw(st.integers(0, 6)))]
    entries, stored = [], {loc: {} for loc in LOCS}
    for k in keys:
        if draw(st.booleans()):
            named = draw(st.lists(st.sampled_from(LOCS), unique=True, max_size=3))
            entries.append(_entry(k, named, deleted=draw(st.booleans()) and draw(st.booleans())))
        for loc in LOCS:
            if draw(st.booleans()):
                size = draw(st.sampled_from([10, 9]))
                etag = draw(st.sampled_from(["e", "other"]))
                age = draw(st.sampled_from([10.0, 30 * DAY]))
                stored[loc][f"b/{k}"] = StoredReplica(loc, f"b/{k}", size, etag, NOW - age)
    return entries, stored


@settings(max_examples=300, deadline=None)
@given(estates())
def test_every_stored_replica_is_accounted_once_and_repairs_never_touch_a_named_one(estate):
    entries, stored = estate
    listed = {(loc, k): s for loc, listing in stored.items() for k, s in listing.items()}
    named = {(r.location, f"b/{e.key}") for e in entries if not e.deleted for r in e.replicas}
    catalogued = {f"b/{e.key}" for e in entries}
    report = audit(entries, {loc: dict(listing) for loc, listing in stored.items()}, 2, NOW, DAY)
    by_kind: dict[str, set] = {}
    for f in report.findings:
        by_kind.setdefault(f.kind, set()).add((f.location, f.key))
    # what is named and not stored is missing; what is named and stored differently is resized or rewritten
    assert by_kind.get("missing", set()) == named - set(listed)
    assert by_kind.get("size_mismatch", set()) == {n for n in named & set(listed) if listed[n].size != 10}
    assert by_kind.get("changed", set()) == {n for n in named & set(listed) if listed[n].size == 10
                                             and listed[n].etag != "e"}
    # every stored replica nobody names: uncatalogued, orphan (old) or in grace (young), exactly once
    unnamed = set(listed) - named
    assert by_kind.get("uncatalogued", set()) == {u for u in unnamed if u[1] not in catalogued}
    old = {u for u in unnamed if u[1] in catalogued and NOW - listed[u].last_modified >= DAY}
    assert by_kind.get("orphan", set()) == old
    assert report.unnamed_in_grace == len(unnamed) - len(old) - len(by_kind.get("uncatalogued", set()))
    assert report.stored_objects == len(listed) and report.entries == len(entries)
    assert not {(f.location, f.key) for f in repairs(report)} & named
    assert report.ok == (not any(by_kind.get(k) for k in INTEGRITY))


# ------------------------------------------------------------------------------------------------ real stores

def _seed(settings, run: str, n: int) -> dict[str, bytes]:
    data = {f"{run}/o{i}": os.urandom(1000 + i) for i in range(n)}
    seed_objects(settings, [("audit", k, v) for k, v in data.items()], [A, B], concurrency=4)
    return data


def test_audit_and_repair_on_the_real_stores(stack_settings):
    run = uuid.uuid4().hex[:10]
    data = _seed(stack_settings, run, 6)
    store = ReplicaStore(stack_settings)
    catalog = PlacementCatalog(stack_settings)
    rk = {k: replica_key("audit", k) for k in data}
    o = [f"{run}/o{i}" for i in range(6)]

    clean = run_audit(stack_settings, "audit", f"{run}/", verify_checksums=True, grace_s=0.0)
    assert clean.ok and clean.findings == [], clean.record()
    assert (clean.entries, clean.replicas, clean.stored_objects) == (6, 12, 12)

    store.delete(A, rk[o[1]])  # a replica lost behind the catalog's back
    store.put(B, rk[o[2]], os.urandom(len(data[o[2]])))  # rewritten with other bytes of the same size
    entry, etag = catalog.get("audit", o[3])  # the catalog's digest is wrong (bytes as catalogued otherwise)
    catalog.compare_and_set(entry.model_copy(update={"replicas": [
        r.model_copy(update={"sha256": hashlib.sha256(b"x").hexdigest()}) for r in entry.replicas]}), etag)
    store.put(C, rk[o[4]], data[o[4]])  # an unnamed copy: an orphan
    store.put(C, f"audit/{run}/stray", b"not ours")  # no catalog entry at all
    bucket_c = store.bucket(C)
    store.client(store.endpoint(C)).create_multipart_upload(Bucket=bucket_c, Key=rk[o[5]])

    report = run_audit(stack_settings, "audit", f"{run}/", verify_checksums=True, grace_s=0.0)
    assert _kinds(report) == sorted([
        ("missing", A, rk[o[1]]), ("changed", B, rk[o[2]]), ("checksum_mismatch", A, rk[o[3]]),
        ("checksum_mismatch", B, rk[o[3]]), ("orphan", C, rk[o[4]]), ("uncatalogued", C, f"audit/{run}/stray"),
        ("stale_upload", C, rk[o[5]])]), report.record()
    # With the default grace period nothing is old enough to be waste yet: in flight, as far as the audit knows.
    patient = run_audit(stack_settings, "audit", f"{run}/")
    assert {f.kind for f in patient.findings} == {"missing", "changed", "uncatalogued"}
    assert patient.unnamed_in_grace == 1

    done = repair(stack_settings, report, grace_s=0.0)
    assert done == {"orphans_deleted": 1, "orphan_bytes_deleted": len(data[o[4]]), "uploads_aborted": 1,
                    "kept": 0, "errors": 0}
    assert store.head(C, rk[o[4]]) is None
    assert store.head(C, f"audit/{run}/stray") is not None  # never deleted: not ours to judge
    assert all(store.head(loc, rk[k]) is not None for k in (o[0], o[3]) for loc in (A, B))
    assert not store.open_uploads(C, prefix=rk[o[5]])
    after = run_audit(stack_settings, "audit", f"{run}/", grace_s=0.0)
    assert {f.kind for f in after.findings} == {"missing", "changed", "uncatalogued"}


def test_checksums_are_not_read_from_archive_replicas_but_counted(stack_settings):
    # Reading an archive replica back needs a restore (billed, hours): size and ETag are checked, the bytes are not.
    run = uuid.uuid4().hex[:10]
    glacier = "aws:us-east-1:glacier-flexible"
    data = os.urandom(3000)
    seed_objects(stack_settings, [("audit", f"{run}/o", data)], [A, glacier])
    report = run_audit(stack_settings, "audit", f"{run}/", verify_checksums=True, grace_s=0.0)
    assert report.ok and report.findings == [] and report.archive_replicas_unread == 1
    assert report.record().archive_replicas_unread == 1
    ReplicaStore(stack_settings).put(glacier, replica_key("audit", f"{run}/o"), os.urandom(3000))
    rewritten = run_audit(stack_settings, "audit", f"{run}/", verify_checksums=True, grace_s=0.0)
    assert _kinds(rewritten) == [("changed", glacier, replica_key("audit", f"{run}/o"))]


def test_repair_keeps_a_replica_that_became_named_or_was_rewritten(stack_settings):
    run = uuid.uuid4().hex[:10]
    data = _seed(stack_settings, run, 2)
    store = ReplicaStore(stack_settings)
    catalog = PlacementCatalog(stack_settings)
    k0, k1 = (replica_key("audit", f"{run}/o{i}") for i in range(2))
    store.put(C, k0, data[f"{run}/o0"])
    store.put(C, k1, data[f"{run}/o1"])
    report = run_audit(stack_settings, "audit", f"{run}/", grace_s=0.0)
    assert _kinds(report) == [("orphan", C, k0), ("orphan", C, k1)]
    # After the audit: a move commits C for o0 (the entry names it now); o1's copy at C is written again.
    entry, etag = catalog.get("audit", f"{run}/o0")
    info = store.head(C, k0)
    catalog.compare_and_set(entry.model_copy(update={"version": 2, "replicas": [*entry.replicas, Replica(
        location=C, etag=info.etag, sha256=entry.replicas[0].sha256, size=info.size)]}), etag)
    store.put(C, k1, data[f"{run}/o1"])
    done = repair(stack_settings, report, grace_s=60.0)  # o1's copy at C is seconds old now
    assert done["orphans_deleted"] == 0 and done["kept"] == 2
    assert store.head(C, k0) is not None and store.head(C, k1) is not None
    # A delete conditional on the listed ETag refuses a replica rewritten since (the race the re-check leaves).
    listed = store.head(C, k1).etag
    store.put(C, k1, os.urandom(10))
    with pytest.raises(SourceChanged, match="PreconditionFailed"):
        store.delete_if_unchanged(C, k1, listed)
    assert store.head(C, k1) is not None


def test_cli_exits_2_on_an_integrity_finding(stack_settings):
    run = uuid.uuid4().hex[:10]
    _seed(stack_settings, run, 2)
    env = {**os.environ, **stack_settings.to_env()}
    cmd = [sys.executable, "-m", "dim.cli", "audit", "--bucket", "audit", "--prefix", f"{run}/"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["replicas"] == 4
    ReplicaStore(stack_settings).delete(B, replica_key("audit", f"{run}/o1"))
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2, bad.stderr[-2000:]
    out = json.loads(bad.stdout)
    assert out["ok"] is False and out["counts"]["missing"] == 1 and out["findings"][0]["location"] == B
    # Both reports were published for analytics, as printed.
    kafka.publish_end_markers(stack_settings, topics.AUDITS, run)
    published = {r.audit_id: r for r in (AuditRecord.model_validate_json(m.value()) for m in
                                         kafka.iter_records(stack_settings, topics.AUDITS, f"t-{run}", run))}
    assert published[out["audit_id"]] == AuditRecord.model_validate(out)
    assert published[json.loads(ok.stdout)["audit_id"]].ok
    # As a deployment's auditor: runs on a schedule, never exits on a finding, every report published.
    every = subprocess.run([*cmd, "--every-s", "0.2", "--count", "2"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert every.returncode == 0, every.stderr[-2000:]
    runs = [json.loads(line) for line in every.stdout.splitlines()]
    assert [r["counts"]["missing"] for r in runs] == [1, 1] and len({r["audit_id"] for r in runs}) == 2
    usage = subprocess.run([*cmd[:4], "--prefix", "x/"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert usage.returncode == 1 and "a prefix needs a bucket" in usage.stderr


def test_a_move_committing_during_the_audit_is_not_reported_missing(stack_settings):
    """The listings and the catalog are read at different moments: a replica copied after its location was listed
    and named by the time the catalog is read looks missing. The second look (fresh entry + HEAD) clears it, and
    keeps what is really missing."""
    run = uuid.uuid4().hex[:10]
    _seed(stack_settings, run, 2)
    store = ReplicaStore(stack_settings)
    catalog = PlacementCatalog(stack_settings)
    k0, k1 = (replica_key("audit", f"{run}/o{i}") for i in range(2))
    store.delete(B, k1)  # really lost
    stale_listing = {loc.id: {} for loc in store.catalogue.locations}
    for k in (k0, k1):
        for loc in (A, B):
            info = store.head(loc, k)
            if info is not None:
                stale_listing[loc][k] = StoredReplica(loc, k, info.size, info.etag, info.last_modified)
    del stale_listing[B][k0]  # listed before its copy landed
    entries = [catalog.get("audit", f"{run}/o{i}")[0] for i in range(2)]
    report = audit(entries, stale_listing, 2, NOW, DAY)
    assert _kinds(report) == [("missing", B, k0), ("missing", B, k1)]
    from mover.reconcile import _confirm

    _confirm(report, store, catalog, 2, DAY, verify_checksums=False)
    assert _kinds(report) == [("missing", B, k1)]


def test_an_unreachable_store_is_a_clear_error_not_a_traceback(stack_settings):
    env = {**os.environ, **stack_settings.to_env(), "DIM_S3__ENDPOINT": "http://127.0.0.1:9",
           "DIM_MOVER__MAX_ATTEMPTS": "1"}
    r = subprocess.run([sys.executable, "-m", "dim.cli", "audit", "--bucket", "audit", "--no-publish"], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1 and "the audit could not finish" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_audits_during_live_moves_report_no_integrity_problem(stack_settings, tmp_path):
    # The interleaving the second look is for, for real: audits run back to back while a mover moves the objects
    # they list. Every audit must be clean (a replica copied or deleted between the listing and the catalog read
    # is not "missing"), and once the moves are done a zero-grace audit finds nothing unnamed left behind.
    import threading

    from mover.service import Mover
    from schemas import Move
    from tests.test_mover_moves import mover_settings

    run = uuid.uuid4().hex[:10]
    data = _seed(stack_settings, run, 60)
    settings = mover_settings(stack_settings, tmp_path, small_concurrency=4)
    targets = [[B, C], [A, C]]
    moves = [Move(move_id=f"{run}-{i}", plan_id=run, bucket="audit", key=k, size=len(v), from_locations=[A, B],
                  to_locations=targets[i % 2], expected_version=1) for i, (k, v) in enumerate(sorted(data.items()))]
    mover = Mover(settings)
    outcomes: list = []
    worker = threading.Thread(target=lambda: outcomes.extend(mover.execute(moves)))
    worker.start()
    audits = []
    try:
        while worker.is_alive() or not audits:
            audits.append(run_audit(stack_settings, "audit", f"{run}/"))
    finally:
        worker.join()
        mover.close()
    assert all(o.state.value == "deleted" for o in outcomes) and len(outcomes) == len(moves)
    assert len(audits) >= 2, "the moves ended before a second audit could start"
    for a in audits:
        assert a.ok, a.record()
    final = run_audit(stack_settings, "audit", f"{run}/", verify_checksums=True, grace_s=0.0)
    assert final.ok and final.findings == [] and final.replicas == 2 * len(moves), final.record()
