"""Repeated access events (at-least-once producers) are counted once: flows/dedup.py and the shard (pure)."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.dataflow import encode_outputs, process_batch
from flows.dedup import RequestMemory
from flows.predict import make_predictor
from flows.shard import STATE_FORMAT, FlowParams, ShardState, restore_shard
from schemas import AccessEvent, DeadLetter, ObjectHeat, topics
from tests.test_flows_shard_properties import SETTINGS, dumped, events_of, fresh_shard, steps

T0 = 1_767_225_600.0
LATENESS = SETTINGS.flow.allowed_lateness_s


def test_a_restored_memory_recognises_repeats_in_another_process():
    # Python's str hashes differ between processes (PYTHONHASHSEED): a recovered shard must still know its repeats.
    import subprocess
    import sys
    from pathlib import Path

    m = RequestMemory(300.0)
    for i in range(50):
        assert not m.repeat(f"R{i}", "GET", f"b/k{i % 7}", T0 + i, clock=T0 + i)
    blob = pickle.dumps(m)
    code = ("import pickle, sys; m = pickle.loads(sys.stdin.buffer.read()); "
            f"print(len(m), m.repeat('R3', 'GET', 'b/k3', {T0 + 3!r}, {T0 + 49!r}), "
            f"m.repeat('R3', 'GET', 'b/k4', {T0 + 3!r}, {T0 + 49!r}))")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True,
                         env={"PYTHONHASHSEED": "12345"}, cwd=Path(__file__).parent.parent).stdout.decode()
    assert out.split() == ["50", "True", "False"]


def test_a_repeat_within_the_window_is_recognised_and_forgotten_after_it():
    m = RequestMemory(300.0)
    assert not m.repeat("R", "GET", "b/k", T0, clock=T0)
    assert m.repeat("R", "GET", "b/k", T0, clock=T0 + 299)
    assert not m.repeat("R", "PUT", "b/k", T0, clock=T0)       # a copy onto itself: GET and PUT of one request
    assert not m.repeat("R", "DELETE", "b/k1", T0, clock=T0)   # a multi-object delete: one record per key
    assert not m.repeat("R", "DELETE", "b/k2", T0, clock=T0)
    assert len(m) == 4
    m.expire(T0 + 300)
    assert len(m) == 4  # still within the window
    m.expire(T0 + 300 + m.bucket_s)
    assert len(m) == 0
    # beyond the window at arrival: neither checked nor remembered (counted as a late event by the shard)
    assert not m.repeat("R", "GET", "b/k", T0, clock=T0 + 301)
    assert not m.repeat("R", "GET", "b/k", T0, clock=T0 + 301) and len(m) == 0


def test_a_zero_window_remembers_nothing():
    m = RequestMemory(0.0)
    assert not m.repeat("R", "GET", "b/k", T0, clock=T0) and not m.repeat("R", "GET", "b/k", T0, clock=T0)
    m.expire(T0)
    assert len(m) == 0


def test_the_shard_counts_a_repeat_once_and_says_so():
    shard, out = fresh_shard(), []
    assert shard.on_event("b/k", T0, "GET", 10, 10, out, "R1")
    assert not shard.on_event("b/k", T0, "GET", 10, 10, out, "R1")
    assert shard.on_event("b/k", T0 + 1, "GET", 10, 10, out, "R1")   # same id, another time: another access
    assert shard.on_event("b/k", T0 + 2, "GET", 10, 10, out)         # no request id: never a repeat
    assert shard.on_event("b/k", T0 + 2, "GET", 10, 10, out)
    assert (shard.events, shard.repeats, shard.objects["b/k"].reads) == (4, 1, 4)


def test_process_batch_sends_a_repeat_to_the_dead_letters_with_its_request_id():
    ev = AccessEvent(bucket="b", key="k", op="GET", event_time=T0, bytes=5, object_size=5, request_id="3E57427F")
    raw = ev.model_dump_json().encode()
    shard, records = fresh_shard(), []
    process_batch(shard, 2, [(10, raw, None), (11, raw, None)], records)
    emitted: list = []
    shard.finish(emitted)
    encode_outputs(shard, emitted, records)
    letters = [DeadLetter.model_validate_json(r[2]) for r in records if r[0] == topics.DEAD_LETTERS]
    assert [(d.partition, d.offset) for d in letters] == [(2, 11)]
    assert "repeat" in letters[0].reason and "3E57427F" in letters[0].reason and letters[0].payload == raw.decode()
    heat = [ObjectHeat.model_validate_json(r[2]) for r in records if r[0] == topics.HEAT]
    assert heat[-1].reads == 1 and heat[-1].bytes_read == 5


@settings(max_examples=120, deadline=None)
@given(steps, st.lists(st.integers(0, 200), max_size=25), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 200), max_size=3))
def test_repeats_within_the_lateness_change_nothing_but_the_repeat_count(generated, repeat_of, seed, cuts):
    # Any stream, with some of its events delivered again a little later (as long as the copy's time is still
    # within the allowed lateness of the shard clock when it arrives), crashes and restores in between: the shard
    # emits exactly what it emits for the stream delivered once.
    events = [(*ev, f"req-{i}") for i, ev in enumerate(events_of(generated))]
    once, once_out = fresh_shard(), []
    for ev in events:
        once.on_event(*ev[:5], once_out, ev[5])
    once.finish(once_out)

    rng = random.Random(seed)
    stream = list(events)
    for r in repeat_of:
        i = r % len(events)
        at = stream.index(events[i]) + 1 + rng.randrange(3)
        if events[i][1] >= max(ev[1] for ev in stream[:at]) - LATENESS:  # the shard clock when it arrives
            stream.insert(at, events[i])
    shard, out = fresh_shard(), []
    cut_at = {c % (len(stream) + 1) for c in cuts}
    for j, ev in enumerate(stream):
        if j in cut_at:
            shard = restore_shard(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
        shard.on_event(*ev[:5], out, ev[5])
    shard.finish(out)

    # the shard's status counts the repeats; everything else is what the stream delivered once gives
    assert dumped(out, status_ignores=("repeats",)) == dumped(once_out, status_ignores=("repeats",))
    assert (shard.events, shard.repeats) == (once.events, len(stream) - len(events))
    assert out[-1].repeats == shard.repeats


def test_a_format_2_snapshot_is_upgraded_with_an_empty_request_memory():
    shard, out = fresh_shard(), []
    shard.on_event("b/k", T0, "GET", 10, 10, out, "R1")
    shard.state_format = 2
    del shard.requests, shard.repeats, shard.shard_id, shard.next_status_at
    object.__delattr__(shard.params, "dedup_window_s")  # a format-2 snapshot's FlowParams had no such field
    object.__delattr__(shard.params, "status_interval_s")
    restored = restore_shard(pickle.dumps(shard))
    assert restored.state_format == STATE_FORMAT == 6 and restored.repeats == 0
    assert restored.requests.window_s == LATENESS and len(restored.requests) == 0
    assert restored.on_event("b/k", T0 + 1, "GET", 10, 10, out, "R1") and restored.objects["b/k"].reads == 2


def test_a_format_3_snapshot_is_upgraded_and_its_model_keeps_serving():
    # Format 4 keeps the heat prior's p_hot with each pending label and scores the model against it. A format-3
    # state has neither: its pending labels get no prior, its model keeps serving by its label count.
    from flows.model import BINNED, FOREST, PRIOR

    s = SETTINGS.model_copy(deep=True)
    s.flow.model_warmup, s.flow.label_fraction = 5, 1.0
    shard, out = ShardState(FlowParams.from_settings(s), make_predictor(s, shard_id=0)), []
    for i in range(400):
        shard.on_event(f"b/o{i % 7}", T0 + 1800.0 * i, "GET", 10, 10, out, f"R{i}")
    model, labels = shard.predictor.model, shard.predictor.labels
    assert model.learned >= 5 and len(labels) > 0 and model.selected != PRIOR
    shard.state_format = 3
    del model.vs_prior, model.prior_scored, shard.shard_id, shard.next_status_at
    model.selected = BINNED
    for pending in labels.pending():
        object.__delattr__(pending, "prior")
    restored = restore_shard(pickle.dumps(shard))
    rmodel = restored.predictor.model
    assert restored.state_format == STATE_FORMAT == 6 and rmodel.prior_scored == 0
    assert rmodel.selected in (BINNED, FOREST)  # serving by its count, as before the upgrade
    assert all(pending.prior is None for pending in restored.predictor.labels.pending())
    learned = rmodel.learned
    for i in range(400, 500):  # the old labels fall due (learned without a prior score), then new ones with it
        restored.on_event(f"b/o{i % 7}", T0 + 1800.0 * i, "GET", 10, 10, out, f"R{i}")
    assert rmodel.learned > learned and 0 < rmodel.prior_scored < rmodel.learned - learned + 1
    assert restored.summary()["p_hot_from"] == rmodel.selected


def test_the_window_is_the_allowed_lateness_unless_set():
    s = SETTINGS.model_copy(deep=True)
    s.flow.allowed_lateness_s = 7200.0
    assert ShardState(FlowParams.from_settings(s), make_predictor(s, shard_id=0)).requests.window_s == 7200.0
    s.flow.dedup_window_s = 0.0
    shard, out = ShardState(FlowParams.from_settings(s), make_predictor(s, shard_id=0)), []
    assert shard.on_event("b/k", T0, "GET", 1, 1, out, "R") and shard.on_event("b/k", T0, "GET", 1, 1, out, "R")
    assert shard.objects["b/k"].reads == 2 and len(shard.requests) == 0
