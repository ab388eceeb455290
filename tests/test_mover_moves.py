"""The mover against the real embedded SeaweedFS: copy, verify, commit, delete; stale plans; crash recovery."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from dim.config import Settings
from mover.catalog import PlacementCatalog, replica_key
from mover.executor import MoveExecutor
from mover.journal import MoveJournal
from mover.objects import seed_object, seed_objects
from mover.s3ops import ReplicaStore
from schemas import Move, MoveEvent, MoveState

A, B, C = "aws:us-east-1:standard", "gcp:us-east1:standard", "azure:eastus:hot"
S = MoveState


class SimulatedCrash(BaseException):
    """Raised from the executor's after-event hook: unwinds like a kill, no cleanup code runs."""


def mover_settings(base: Settings, tmp_path, **mover) -> Settings:
    return base.model_copy(update={"mover": base.mover.model_copy(update={"journal_dir": tmp_path / "journal",
                                                                          **mover})})


def new_key() -> str:
    return f"obj-{uuid.uuid4().hex[:12]}"


def make_move(key: str, frm: list[str], to: list[str], expected_version: int | None = 1, size: int = 0) -> Move:
    return Move(move_id=uuid.uuid4().hex, plan_id="p-test", bucket="app", key=key, size=size,
                from_locations=frm, to_locations=to, expected_version=expected_version)


def stored_sha(store: ReplicaStore, location: str, key: str) -> str | None:
    info = store.head(location, replica_key("app", key))
    if info is None:
        return None
    return store.read_sha256(location, replica_key("app", key), info.size)


def assert_catalog_truthful(settings: Settings, store: ReplicaStore, key: str, data: bytes) -> list[str]:
    """Every replica the catalog names exists, byte-identical; returns the named locations."""
    placement, _ = PlacementCatalog(settings).get("app", key)
    want = hashlib.sha256(data).hexdigest()
    for rep in placement.replicas:
        assert rep.sha256 == want
        assert stored_sha(store, rep.location, key) == want, rep.location
    return placement.locations


def test_move_changes_bucket_bytes_identical_old_replica_gone(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(300_000)
    seed_object(settings, "app", key, data, [A, B])
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store).execute(make_move(key, [A, B], [A, C], size=len(data)))
        states = [e.state for e in journal.entry(outcome.move_id).events]
    assert outcome.state is S.DELETED, outcome.reason
    assert states == [S.PLANNED, S.COPYING, S.COPIED, S.VERIFIED, S.COMMITTED, S.DELETED]
    placement, _ = PlacementCatalog(settings).get("app", key)
    assert placement.version == 2 and placement.locations == [A, C]
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert store.head(B, replica_key("app", key)) is None
    assert outcome.bytes_copied == len(data)


def test_stale_expected_version_is_skipped_and_copies_nothing(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), b"x" * 1000
    seed_object(settings, "app", key, data, [A, B])
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store).execute(
            make_move(key, [A, B], [A, C], expected_version=7))
    assert outcome.state is S.SKIPPED and outcome.reason.startswith("stale_plan")
    assert store.head(C, replica_key("app", key)) is None
    placement, _ = PlacementCatalog(settings).get("app", key)
    assert placement.version == 1 and placement.locations == [A, B]


def test_redelivered_move_is_not_run_twice(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), b"y" * 5000
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C])
    with MoveJournal(settings) as journal:
        ex = MoveExecutor(settings, journal)
        assert ex.execute(move).state is S.DELETED
        again = ex.execute(move)
        assert again.state is S.DELETED
        assert len(journal.entry(move.move_id).events) == 6
    placement, _ = PlacementCatalog(settings).get("app", key)
    assert placement.version == 2


def test_a_move_to_a_location_the_mover_does_not_know_fails_and_recovery_still_starts(stack_settings, tmp_path):
    # A plan made with another catalogue version (or written by hand) may name a location this mover has no
    # bucket for. Before: KeyError mid-move, the `planned` entry left in the journal, and every later start's
    # recovery raised the same KeyError - the mover could not start at all.
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(1000)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [C, "mars:olympus-1:hot"])
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal).execute(move)
    assert outcome.state is S.FAILED and outcome.reason.startswith("unknown_location: mars:olympus-1:hot")
    # a journal an older mover left with such a move unfinished (C already copied)
    stuck = make_move(key, [A, B], [C, "mars:olympus-1:hot"])
    store = ReplicaStore(settings)
    store.put(C, replica_key("app", key), data)
    with MoveJournal(settings) as journal:
        journal.append(MoveEvent(move_id=stuck.move_id, plan_id="p", bucket="app", key=key, state=S.PLANNED,
                                 ts=1.0), move=stuck, base_version=1)
    with MoveJournal(settings) as journal:
        outcomes = MoveExecutor(settings, journal, store).recover()
    assert [o.state for o in outcomes] == [S.ROLLED_BACK] and "unknown_location" in outcomes[0].reason
    assert store.head(C, replica_key("app", key)) is None  # the copy the old mover made is thrown away
    assert assert_catalog_truthful(settings, store, key, data) == [A, B]


def test_below_replication_factor_fails_without_touching_anything(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key = new_key()
    seed_object(settings, "app", key, b"z" * 100, [A, B])
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal).execute(make_move(key, [A, B], [C]))
    assert outcome.state is S.FAILED and "below_replication_factor" in outcome.reason
    assert PlacementCatalog(settings).get("app", key)[0].locations == [A, B]


def crash_after(state: MoveState):
    def hook(ev: MoveEvent) -> None:
        if ev.state is state and ev.reason != "progress":
            raise SimulatedCrash(state.value)

    return hook


@pytest.mark.parametrize("state", [S.PLANNED, S.COPYING, S.COPIED, S.VERIFIED, S.COMMITTED])
def test_crash_after_any_step_then_recovery_completes(stack_settings, tmp_path, state):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(70_000)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [B, C])
    journal = MoveJournal(settings)
    with pytest.raises(SimulatedCrash):
        MoveExecutor(settings, journal, after_event=crash_after(state)).execute(move)
    journal.close()
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal2:
        outcomes = MoveExecutor(settings, journal2, store).recover()
        assert [o.state for o in outcomes] == [S.DELETED]
        assert protocol_states(journal2, move.move_id)[-1] is S.DELETED
    assert assert_catalog_truthful(settings, store, key, data) == [B, C]
    assert PlacementCatalog(settings).get("app", key)[0].version == 2
    assert store.head(A, replica_key("app", key)) is None


def protocol_states(journal: MoveJournal, move_id: str) -> list[MoveState]:
    return [e.state for e in journal.entry(move_id).events]


@pytest.mark.parametrize("state", [S.COPYING, S.COPIED, S.VERIFIED])
def test_crash_then_catalog_moved_on_rolls_back(stack_settings, tmp_path, state):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(10_000)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C])
    journal = MoveJournal(settings)
    with pytest.raises(SimulatedCrash):
        MoveExecutor(settings, journal, after_event=crash_after(state)).execute(move)
    journal.close()
    # Meanwhile the catalog changed (another writer bumped the version): the plan is stale.
    catalog = PlacementCatalog(settings)
    catalog.update("app", key, lambda old: old.model_copy(update={"version": old.version + 1}))
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal2:
        outcomes = MoveExecutor(settings, journal2, store).recover()
    assert [o.state for o in outcomes] == [S.ROLLED_BACK]
    assert "stale_plan" in outcomes[0].reason
    assert store.head(C, replica_key("app", key)) is None  # the unnamed new replica was thrown away
    assert assert_catalog_truthful(settings, store, key, data) == [A, B]
    assert not store.open_uploads(C, prefix=replica_key("app", key))


def test_a_move_another_mover_finished_while_this_one_was_down_ends_without_touching_its_replicas(
        stack_settings, tmp_path):
    # Mover 0 dies mid-copy; its partition goes to mover 1, which gets the move redelivered and runs it to the
    # end. When mover 0 restarts, the catalog holds the plan's placement, but not from mover 0's commit: its
    # recovery must neither record a commit it never made (an illegal copying -> committed, which stopped the
    # recovery) nor delete replicas the catalog names; its own open upload is aborted.
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(20_000)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C])
    journal = MoveJournal(settings)
    with pytest.raises(SimulatedCrash):
        MoveExecutor(settings, journal, after_event=crash_after(S.COPYING)).execute(move)
    journal.close()
    store = ReplicaStore(settings)
    rkey = replica_key("app", key)
    store.client(store.endpoint(C)).create_multipart_upload(Bucket=store.bucket(C), Key=rkey)  # mover 0's copy
    with MoveJournal(settings, instance="other") as other:
        assert MoveExecutor(settings, other, store).execute(move).state is S.DELETED
    assert store.open_uploads(C, prefix=rkey)  # the other mover's hygiene covers only its own upload
    with MoveJournal(settings) as journal2:
        outcomes = MoveExecutor(settings, journal2, store).recover()
        assert [o.state for o in outcomes] == [S.ROLLED_BACK] and "already_placed" in outcomes[0].reason
        assert S.COMMITTED not in protocol_states(journal2, move.move_id)
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert PlacementCatalog(settings).get("app", key)[0].version == 2
    assert not store.open_uploads(C, prefix=rkey)


class CrashAfterCasCatalog(PlacementCatalog):
    """The CAS lands, then the process dies before journaling `committed`."""

    def compare_and_set(self, placement, etag):
        super().compare_and_set(placement, etag)
        raise SimulatedCrash("after CAS")


def test_crash_between_cas_and_journal_is_recognised_as_committed(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(4096)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C])
    journal = MoveJournal(settings)
    with pytest.raises(SimulatedCrash):
        MoveExecutor(settings, journal, catalog=CrashAfterCasCatalog(settings)).execute(move)
    journal.close()
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal2:
        outcomes = MoveExecutor(settings, journal2, store).recover()
        assert [o.state for o in outcomes] == [S.DELETED]
        assert any("recovered" in e.reason for e in journal2.entry(move.move_id).events)
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert store.head(B, replica_key("app", key)) is None


class LostAnswerCasCatalog(PlacementCatalog):
    """The CAS lands, then every answer is lost: the client gives up (RetriesExhausted) as after a network cut."""

    def compare_and_set(self, placement, etag):
        from mover.s3ops import RetriesExhausted

        super().compare_and_set(placement, etag)
        raise RetriesExhausted("PUT catalog: gave up after 6 attempts: ReadTimeoutError")


def test_a_commit_whose_answers_were_lost_is_recognised_as_committed(stack_settings, tmp_path):
    """Before: the move failed with a rollback although the catalog named its new replica set - the dropped
    replica was kept (and paid for) forever, and the new placement never reached the placements topic."""
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(4096)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C])
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store, catalog=LostAnswerCasCatalog(settings)).execute(move)
        assert outcome.state is S.DELETED, outcome.reason
        assert any("recovered: commit found" in e.reason for e in journal.entry(move.move_id).events)
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert store.head(B, replica_key("app", key)) is None


def test_streamed_multipart_copy_across_endpoints(stack_settings, tmp_path):
    # "localhost" and "127.0.0.1" are different endpoints to the mover: no server-side copy possible.
    other = stack_settings.s3.endpoint.replace("127.0.0.1", "localhost")
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: other}, part_size=5 * 1024 * 1024)
    key, data = new_key(), os.urandom(12 * 1024 * 1024 + 17)
    seed_object(settings, "app", key, data, [A, B])
    store = ReplicaStore(settings)
    seen = []
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store, on_bytes=seen.append).execute(
            make_move(key, [A, B], [A, C], size=len(data)))
    assert outcome.state is S.DELETED, outcome.reason
    assert store.stats["streamed_copies"] == 1 and store.stats["server_copies"] == 0
    assert sum(seen) == len(data)
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert not store.open_uploads(C, prefix=replica_key("app", key))


def test_source_changed_since_catalog_is_skipped_as_growing(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    key = new_key()
    seed_object(settings, "app", key, b"v1" * 1000, [A, B])
    store = ReplicaStore(settings)
    store.put(A, replica_key("app", key), b"v2, longer" * 1000)  # the application appended to it
    store.put(B, replica_key("app", key), b"v2, longer" * 1000)
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store).execute(make_move(key, [A, B], [A, C]))
    assert outcome.state is S.SKIPPED and outcome.reason.startswith("file_growing")
    assert store.head(C, replica_key("app", key)) is None


def test_recently_modified_source_is_skipped_within_window(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path, growing_window_s=3600)
    key = new_key()
    seed_object(settings, "app", key, b"fresh" * 100, [A, B])
    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal).execute(make_move(key, [A, B], [A, C]))
    assert outcome.state is S.SKIPPED and "file_growing" in outcome.reason


def test_seed_objects_batch_is_idempotent(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    items = [("app", new_key(), os.urandom(100 + i)) for i in range(40)]
    placements = seed_objects(settings, items, [A, B], concurrency=8)
    assert [p.key for p in placements] == [k for _, k, _ in items]
    again = seed_objects(settings, items[:3], [A, C])  # existing entries are left alone
    assert all(p.locations == [A, B] and p.version == 1 for p in again)
    store = ReplicaStore(settings)
    _, k, d = items[5]
    assert stored_sha(store, B, k) == hashlib.sha256(d).hexdigest()


@pytest.mark.timeout(180)  # the bug this guards against is a deadlock
def test_concurrent_streamed_copies_share_a_small_buffer_budget(stack_settings, tmp_path):
    """Several large copies at once with room for only three parts in memory must all finish (no deadlock)."""
    from mover.service import Mover

    other = stack_settings.s3.endpoint.replace("127.0.0.1", "localhost")
    part = 5 * 1024 * 1024
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: other}, part_size=part,
                              max_buffer_bytes=3 * part, concurrency=4, group=f"m-{uuid.uuid4().hex}")
    items = [("app", new_key(), os.urandom(4 * part + 1)) for _ in range(4)]
    seed_objects(settings, items, [A, B], concurrency=4)
    mover = Mover(settings)
    try:
        outcomes = mover.execute([make_move(k, [A, B], [A, C], size=len(d)) for _, k, d in items])
    finally:
        mover.close()
    assert [o.state for o in outcomes] == [S.DELETED] * 4, [o.reason for o in outcomes]
    for _, k, d in items:
        assert assert_catalog_truthful(settings, mover.store, k, d) == [A, C]



def test_growing_object_is_retried_later_and_then_moved(stack_settings, tmp_path):
    from mover.service import Mover

    settings = mover_settings(stack_settings, tmp_path, growing_window_s=1.5, growing_retry_s=2.0,
                              growing_retries=2)
    key, data = new_key(), b"still being written" * 100
    seed_object(settings, "app", key, data, [A, B])
    mover = Mover(settings)
    try:
        first = mover.execute([make_move(key, [A, B], [A, C])])
        assert first[0].state is S.SKIPPED and first[0].reason.startswith("file_growing")
        mover.run_due(wait=True)
    finally:
        mover.close()
    summary = mover.summary.as_dict()
    assert summary["growing_retries"] == 1 and summary["moves_done"] == 1, summary
    assert PlacementCatalog(settings).get("app", key)[0].locations == [A, C]


def test_a_copy_verified_longer_ago_than_half_the_audit_grace_is_checked_again_before_its_commit(
        stack_settings, tmp_path):
    # A copy waits, unnamed, between its verification and the commit (here: a week of wall time). Meanwhile
    # `dim audit --repair` may take it for an orphan and delete it; the commit must then not name it.
    settings = mover_settings(stack_settings, tmp_path)
    key, data = new_key(), os.urandom(5_000)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [B, C])
    store = ReplicaStore(settings)
    now = [1_800_000_000.0]

    def week_passes_and_repair_deletes_the_copy(ev: MoveEvent) -> None:
        if ev.state is S.VERIFIED:
            now[0] += settings.mover.audit_grace_s
            store.delete(C, replica_key("app", key))

    with MoveJournal(settings) as journal:
        outcome = MoveExecutor(settings, journal, store, after_event=week_passes_and_repair_deletes_the_copy,
                               clock=lambda: now[0]).execute(move)
    assert outcome.state is S.FAILED and "gone or changed" in outcome.reason, outcome
    assert assert_catalog_truthful(settings, store, key, data) == [A, B]
    assert PlacementCatalog(settings).get("app", key)[0].version == 1
