"""ShardStatus: what a flow shard reports about itself and its p_hot model (flows/shard.py, pure core; the broker
path is in test_flows_dataflow, the API and panels in test_api_app / test_api_grafana)."""

from __future__ import annotations

import math
import pickle

from flows.dataflow import ShardLogic
from flows.horizon_reads import HorizonReads
from flows.predict import make_predictor
from flows.shard import STATE_FORMAT, FlowParams, ShardState, restore_shard
from schemas import AccessEvent, ShardStatus, topics
from tests.test_flows_shard_properties import HOUR, SETTINGS, T0


def shard_of(settings=SETTINGS, shard_id: int = 3) -> ShardState:
    return ShardState(FlowParams.from_settings(settings), make_predictor(settings, shard_id=shard_id),
                      shard_id=shard_id)


def busy_stream(shard: ShardState, hours: int, out: list) -> None:
    """Objects read now and then over `hours` of event time, one late event among them."""
    for i in range(hours * 12):
        t = T0 + 300.0 * i
        shard.on_event(f"b/o{i % 9}", t, "GET" if i % 4 else "PUT", 100, 5000, out)
        if i == 40:
            shard.on_event("b/o1", t - 2 * HOUR, "GET", 100, 5000, out)  # later than the lateness allows


def test_a_shard_reports_its_status_every_interval_of_event_time_and_at_the_end():
    shard, out = shard_of(), []
    busy_stream(shard, 30, out)
    statuses = [o for o in out if isinstance(o, ShardStatus)]
    # one per hour boundary the clock crossed: the stream starts on one, so 29 crossings in 30 hours
    assert len(statuses) == 29
    assert [s.as_of // HOUR for s in statuses] == [T0 // HOUR + n for n in range(1, 30)]
    assert all(s.shard == 3 for s in statuses)
    assert [s.events for s in statuses] == sorted(s.events for s in statuses)
    before = [s for s in statuses if s.labels_scored == 0]
    assert before and all(s.regression_logloss is None and s.prior_logloss is None for s in before)
    shard.finish(out)
    last = out[-1]
    assert isinstance(last, ShardStatus) and last.as_of == shard.clock
    summary, scores = shard.summary(), shard.predictor.model.summary()
    assert (last.events, last.late_events, last.objects, last.labels_learned, last.labels_pending) == (
        summary["events"], 1, summary["objects"], summary["labels_learned"], summary["labels_pending"])
    assert last.p_hot_from == summary["p_hot_from"] and last.labels_scored == scores["prior_scored"] > 0
    assert last.regression_logloss == scores["vs_prior_logloss_logreg_binned"]
    assert last.prior_logloss == scores["vs_prior_logloss_prior"] and 0 < last.prior_logloss < 10
    assert last.forest_labels_scored == scores["scored"]
    assert (last.forest_logloss is None) == (scores["scored"] == 0)
    assert last.reads_states == 24 and 0 <= last.reads_states_calibrated <= 24


def test_interval_zero_reports_only_at_the_end_and_a_shard_without_events_not_at_all():
    s = SETTINGS.model_copy(deep=True)
    s.flow.status_interval_s = 0.0
    shard, out = shard_of(s), []
    busy_stream(shard, 10, out)
    assert not any(isinstance(o, ShardStatus) for o in out)
    shard.finish(out)
    assert sum(isinstance(o, ShardStatus) for o in out) == 1
    idle, nothing = shard_of(s), []
    idle.finish(nothing)
    assert nothing == []


def test_the_reads_estimate_reports_its_states_calibrated():
    ladder = HorizonReads(30 * 86400.0, (86400.0, 3 * 86400.0), sample_every=1, min_count=2)
    assert ladder.calibrated_states() == (0, ladder.pooled_states)
    for i in range(3):  # three objects just read, watched through the ladder's first period
        ladder.observe(f"b/k{i}", T0, 1.0, 0.0, 1, 5000)
    ladder.advance(T0 + 40 * 86400.0, lambda key: 2)
    ready, states = ladder.calibrated_states()
    assert 0 < ready < states == ladder.pooled_states


def test_a_format_4_snapshot_is_upgraded_and_the_flow_names_its_shard():
    shard, out = shard_of(shard_id=5), []
    busy_stream(shard, 3, out)
    shard.state_format = 4
    del shard.shard_id, shard.next_status_at  # what a format-4 snapshot had not
    object.__delattr__(shard.params, "status_interval_s")
    ladder = shard.horizon_reads
    fresh_rows = len(ladder.reads_sum)
    del ladder.idle_base  # nor the read estimate's idle-time-only level
    for table in (ladder.reads_sum, ladder.complete):
        del table[-ladder.idle_width:]
    restored = restore_shard(pickle.dumps(shard))
    assert restored.state_format == STATE_FORMAT == 6 and restored.shard_id is None
    assert restored.next_status_at == (math.floor(restored.clock / HOUR) + 1) * HOUR
    ladder = restored.horizon_reads
    assert len(ladder.reads_sum) == len(ladder.complete) == fresh_rows
    assert not any(map(any, ladder.complete[ladder.idle_base:]))  # the new level starts empty

    # The flow's first batch after the restart names the shard after its partition.
    logic = ShardLogic(lambda partition: shard_of(shard_id=partition), pickle.dumps(restored))
    later = T0 + 5 * HOUR
    raw = AccessEvent(bucket="b", key="o1", op="GET", event_time=later, bytes=100, object_size=5000)
    (records,), _ = logic.on_batch([(5, [(0, raw.model_dump_json().encode(), None)])])
    status = [ShardStatus.model_validate_json(v) for topic, k, v in records if topic == topics.FLOW_STATUS]
    assert [(s.shard, s.as_of) for s in status] == [(5, later)]
    assert [k for topic, k, _ in records if topic == topics.FLOW_STATUS] == [b"5"]


def test_a_format_5_snapshot_keeps_its_read_estimates_under_the_new_activity_layout(monkeypatch):
    """Format 6 added the "not read lately" activity bucket: a format-5 ladder's counts move one bucket up."""
    import flows.horizon_reads as hr_module

    day, mb = 86400.0, 1_000_000
    monkeypatch.setattr(hr_module, "ACTIVITY_BUCKETS", hr_module.ACTIVITY_BUCKETS[1:])  # format 5's edges
    shard, out = shard_of(), []
    busy_stream(shard, 3, out)
    def fill(ladder: HorizonReads, reads: dict) -> HorizonReads:
        for i in range(6):  # busy (activity 3) and one-read objects of two sizes, read again within the horizon
            for name, activity, size in ((f"b/busy{i}", 3.0, mb), (f"b/one{i}", 1.0, 8 * mb)):
                ladder.observe(name, T0, activity, 0.0, 1, size)
                reads[name] = 1 + (i % 3 if activity > 1 else 1)
        ladder.advance(T0 + 2 * day, reads.__getitem__)  # first two periods complete, the third still pending
        return ladder

    reads: dict = {}
    ladder = shard.horizon_reads = fill(HorizonReads(30 * day, (day, 3 * day), sample_every=1, min_count=2), reads)
    probes = [(a, idle, size) for a in (1.0, 3.0, 30.0) for idle in (0.0, 2 * day) for size in (mb, 8 * mb)]
    before = [ladder.estimate(*probe) for probe in probes]
    assert any(e is not None for e in before)
    shard.state_format = 5
    blob = pickle.dumps(shard)
    monkeypatch.undo()

    restored = restore_shard(blob)
    assert restored.state_format == STATE_FORMAT == 6
    ladder = restored.horizon_reads
    assert [ladder.estimate(*probe) for probe in probes] == before
    assert ladder.pooled_states == 3 * 6 and len(ladder.reads_sum) == len(ladder.complete) == 6 * 18 + 3
    assert ladder.estimate(0.0, 0.0, mb) == ladder.estimate(0.0, 0.0, 8 * mb) == ladder._estimate(
        ladder.idle_base)  # the new bucket is empty: its idle time's estimate
    # The observations still pending complete into their moved states: as in a ladder built with format 6.
    built = fill(HorizonReads(30 * day, (day, 3 * day), sample_every=1, min_count=2), {})
    later = {k: v + 1 for k, v in reads.items()}
    for each in (ladder, built):
        each.advance(T0 + 40 * day, later.__getitem__)
    assert ladder.reads_sum == built.reads_sum and ladder.complete == built.complete
    assert [ladder.estimate(*probe) for probe in probes] == [built.estimate(*probe) for probe in probes]
