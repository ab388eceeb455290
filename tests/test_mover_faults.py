"""Retries, permanent errors, the circuit breaker, bandwidth limits and archive restores, against the real
SeaweedFS behind a real `dim chaos` proxy process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mover.archive import restore_state
from mover.catalog import PlacementCatalog, replica_key
from mover.chaos import ChaosConfig, set_config, start_process, stats
from mover.executor import MoveExecutor
from mover.journal import MoveJournal
from mover.objects import seed_object
from mover.s3ops import ReplicaStore
from schemas import MoveState
from tests.test_mover_moves import A, B, C, assert_catalog_truthful, make_move, mover_settings, new_key

S = MoveState


@pytest.fixture
def proxy(stack_settings):
    proc, url = start_process(stack_settings.s3.endpoint, ChaosConfig(seed=7), env=dict(os.environ))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_move(settings, key, frm, to, size=0):
    store = ReplicaStore(settings)
    with MoveJournal(settings) as journal:
        start = time.monotonic()
        outcome = MoveExecutor(settings, journal, store).execute(make_move(key, frm, to, size=size))
        return outcome, store, time.monotonic() - start


def test_throttling_is_retried_until_the_move_completes(stack_settings, tmp_path, proxy):
    set_config(proxy, ChaosConfig(rate_429=0.3, rate_503=0.2, seed=1))
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: proxy}, backoff_base_s=0.01,
                              backoff_max_s=0.1, max_attempts=12)
    key, data = new_key(), os.urandom(200_000)
    seed_object(settings, "app", key, data, [A, B])
    outcome, store, _ = run_move(settings, key, [A, B], [A, C])
    assert outcome.state is S.DELETED, outcome.reason
    assert stats(proxy).get("429", 0) + stats(proxy).get("503", 0) > 0
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]


def test_permanent_error_fails_at_once_without_retries(stack_settings, tmp_path, proxy):
    set_config(proxy, ChaosConfig(rate_403=1.0))
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: proxy}, backoff_base_s=1.0,
                              max_attempts=6)
    key, data = new_key(), os.urandom(5000)
    seed_object(settings, "app", key, data, [A, B])
    outcome, store, _ = run_move(settings, key, [A, B], [A, C])
    assert outcome.state is S.FAILED and "AccessDenied" in outcome.reason
    # No retry, hence no backoff (the store sleeps only after a retryable answer) and no breaker wait. Not timed:
    # "elapsed < 1 s" failed at 2.0 s on a loaded CI machine with no retry at all.
    assert store.stats["retries"] == 0 and store.stats["breaker_waits"] == 0
    assert PlacementCatalog(settings).get("app", key)[0].locations == [A, B]


def test_breaker_opens_on_a_failing_endpoint_and_the_move_fails_with_reason(stack_settings, tmp_path, proxy):
    set_config(proxy, ChaosConfig(rate_503=1.0))
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: proxy}, backoff_base_s=0.01,
                              backoff_max_s=0.05, max_attempts=6, breaker_threshold=3, breaker_cooldown_s=0.1)
    key, data = new_key(), os.urandom(5000)
    seed_object(settings, "app", key, data, [A, B])
    outcome, store, _ = run_move(settings, key, [A, B], [A, C])
    assert outcome.state is S.FAILED and "gave up after 6 attempts" in outcome.reason
    assert store.guard(proxy).breaker.opens >= 1 and store.stats["breaker_waits"] >= 1
    assert PlacementCatalog(settings).get("app", key)[0].locations == [A, B]
    assert store.head(B, replica_key("app", key)) is not None  # nothing was deleted


def test_bandwidth_limit_paces_a_streamed_copy(stack_settings, tmp_path, proxy):
    set_config(proxy, ChaosConfig())
    rate = 4 * 1024 * 1024
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: proxy}, bandwidth_bytes_s=rate,
                              part_size=5 * 1024 * 1024)
    key, data = new_key(), os.urandom(16 * 1024 * 1024)
    seed_object(settings, "app", key, data, [A, B])
    outcome, store, elapsed = run_move(settings, key, [A, B], [A, C], size=len(data))
    assert outcome.state is S.DELETED, outcome.reason
    # The bucket starts with an 8 MiB burst; the other 8 MiB must wait at 4 MiB/s on the target endpoint.
    assert elapsed >= 1.5
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]


def test_archive_source_is_restored_before_copying(stack_settings, tmp_path):
    settings = mover_settings(stack_settings, tmp_path)
    store = ReplicaStore(settings)
    archives = [loc.id for loc in store.catalogue.locations if loc.archive][:2]
    if len(archives) < 2:
        pytest.skip("catalogue has fewer than two archive locations")
    key, data = new_key(), os.urandom(3000)
    seed_object(settings, "app", key, data, archives)
    outcome, store, _ = run_move(settings, key, archives, [A, C])
    assert outcome.state is S.DELETED, outcome.reason
    assert store.stats["restores"] == 1
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]


def _archive_move_settings(stack_settings, tmp_path, proxy, **mover):
    """Two archive locations behind the proxy, which models their restores (mover/chaos_archive.py)."""
    store = ReplicaStore(stack_settings)
    archives = [loc.id for loc in store.catalogue.locations if loc.archive][:2]
    settings = mover_settings(stack_settings, tmp_path, endpoints={loc: proxy for loc in archives}, **mover)
    return settings, archives, [store.bucket(loc) for loc in archives]


def test_slow_restore_is_polled_with_backoff_until_readable(stack_settings, tmp_path, proxy):
    settings, archives, buckets = _archive_move_settings(stack_settings, tmp_path, proxy, restore_poll_base_s=0.05)
    key, data = new_key(), os.urandom(5000)
    seed_object(settings, "app", key, data, archives)
    set_config(proxy, ChaosConfig(archive_buckets=buckets, restore_polls=4))
    store = ReplicaStore(settings)
    rkey = replica_key("app", key)
    with pytest.raises(Exception, match="InvalidObjectState"):  # archived: unreadable until restored
        store.read_range(archives[0], rkey, 0, 10)
    outcome, store, seconds = run_move(settings, key, archives, [A, C])
    assert outcome.state is S.DELETED, outcome.reason
    st = stats(proxy)
    assert st.get("archive_202") == 1  # one restore requested
    assert st.get("restore_ongoing_heads") == 4  # polled through every "ongoing" answer
    assert st.get("archive_403") == 1  # only our own early read was refused: the mover waited
    # Four waits of base + full-jitter backoff (0.05 s base): at least 4 x 0.05 s.
    assert seconds >= 0.2
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]


def test_restore_that_never_completes_times_out_and_commits_nothing(stack_settings, tmp_path, proxy):
    settings, archives, buckets = _archive_move_settings(stack_settings, tmp_path, proxy, restore_poll_base_s=0.05,
                                                         restore_timeout_s=0.5)
    key, data = new_key(), os.urandom(5000)
    seed_object(settings, "app", key, data, archives)
    set_config(proxy, ChaosConfig(archive_buckets=buckets, restore_polls=10_000))
    outcome, store, _ = run_move(settings, key, archives, [A, C])
    assert outcome.state is S.FAILED and outcome.reason.startswith("restore_timeout"), outcome.reason
    assert stats(proxy).get("restore_ongoing_heads", 0) >= 3
    placement, _ = PlacementCatalog(settings).get("app", key)
    assert placement.version == 1 and placement.locations == archives
    assert store.head(C, replica_key("app", key)) is None  # nothing copied


def test_restore_header_parsing():
    assert restore_state(None) == "none"
    assert restore_state('ongoing-request="true"') == "ongoing"
    assert restore_state('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"') == "done"


def test_sigkill_mid_streamed_copy_resumes_with_no_upload_left_open(stack_settings, tmp_path):
    """A real `dim move --plan-file` process killed while a multipart upload is open; the restart aborts it,
    redoes the copy and completes the move."""
    from schemas import PlacementPlan

    other = stack_settings.s3.endpoint.replace("127.0.0.1", "localhost")
    settings = mover_settings(stack_settings, tmp_path, endpoints={C: other}, part_size=5 * 1024 * 1024,
                              part_concurrency=1, bandwidth_bytes_s=8 * 1024 * 1024, group=f"k-{uuid.uuid4().hex}")
    key, data = new_key(), os.urandom(40 * 1024 * 1024)
    seed_object(settings, "app", key, data, [A, B])
    move = make_move(key, [A, B], [A, C], size=len(data))
    plan = PlacementPlan(plan_id="kill", created_at=0, method="test", candidates=1, objective_usd=0, moves=[move])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.model_dump_json())
    env = {**os.environ, **settings.to_env()}
    cmd = [sys.executable, "-m", "dim.cli", "move", "--plan-file", str(plan_file), "--no-progress"]
    store = ReplicaStore(settings)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not store.open_uploads(C, prefix=replica_key("app", key)):
            assert proc.poll() is None and time.monotonic() < deadline, "no multipart upload seen"
            time.sleep(0.05)
        time.sleep(0.5)  # some parts uploaded
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert store.open_uploads(C, prefix=replica_key("app", key))  # the kill left one open
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"moves_recovered": 1' in out.stdout
    assert not store.open_uploads(C, prefix=replica_key("app", key))
    assert assert_catalog_truthful(settings, store, key, data) == [A, C]
    assert store.head(B, replica_key("app", key)) is None
