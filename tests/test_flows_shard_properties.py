"""Properties of the pure shard core over generated event streams (no broker: flows/shard.py alone).

The broker tests (test_flows_exactness) show recovery and worker-count independence on one trace; these look for
the odd stream that breaks them: deletes and re-creations, late and very late events, bursts at one instant,
idle re-checks, labels falling due and the model switching on - with cadences shrunk so all of it happens within
a few dozen events.
"""

from __future__ import annotations

import pickle

from hypothesis import event, given, settings
from hypothesis import strategies as st

from dim.config import Settings
from flows.dataflow import encode_outputs, process_batch
from flows.features import object_features
from flows.model import BINNED, hat_bins
from flows.predict import make_predictor
from flows.shard import FlowParams, ShardState, restore_shard
from schemas import (
    MAX_EVENT_TIME,
    MAX_OBJECT_SIZE,
    AccessEvent,
    Candidate,
    DeadLetter,
    ObjectHeat,
    ShardStatus,
    topics,
)

T0 = 1_767_225_600.0
HOUR = 3600.0


def small_cadence_settings() -> Settings:
    s = Settings()
    f = s.flow
    f.horizon_s = HOUR
    f.eval_interval_s = 600.0
    f.sweep_interval_s = HOUR
    f.heat_interval_s = 3 * HOUR
    f.allowed_lateness_s = 600.0
    f.idle_recheck_days = [1 / 24, 3 / 24, 6 / 24]
    f.recheck_min_bytes = 1000
    f.reads_sample_every = 1
    f.reads_min_count = 2
    f.model_warmup = 3
    f.model_window = 50
    f.label_fraction = 0.9
    f.forest_fraction = 0.7
    s.solver.planning_horizon_days = 4 / 24
    return s


SETTINGS = small_cadence_settings()

# (object, time step in seconds - negative steps make late events, op, object size)
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),
        st.one_of(st.floats(min_value=0, max_value=1200), st.just(0.0), st.floats(min_value=0, max_value=6 * HOUR),
                  st.floats(min_value=-2 * HOUR, max_value=0), st.just(30 * 365 * 86400.0)),  # decades idle
        st.sampled_from(["GET", "GET", "GET", "HEAD", "PUT", "DELETE"]),
        st.sampled_from([100, 5000, 2_000_000]),
    ),
    min_size=1,
    max_size=120,
)


def events_of(generated) -> list[tuple[str, float, str, int, int]]:
    t, out = T0, []
    for obj, step, op, size in generated:
        # within the contract (a stream of enough decade-long steps would pass 2299, which AccessEvent refuses)
        t = min(t + step, MAX_EVENT_TIME)
        out.append((f"b/o{obj}", t, op, size if op in ("GET", "PUT") else 0, size))
    return out


def dumped(outputs, status_ignores: tuple[str, ...] = ()) -> list[dict]:
    """Outputs as comparable dicts; `status_ignores`: ShardStatus counters left out."""
    return [{"kind": type(o).__name__, **o.model_dump(exclude=set(status_ignores) if type(o) is ShardStatus else None)}
            for o in outputs]


def model_answers(shard: ShardState) -> tuple:
    # (pickled bytes are no test of equal state: the memo layout of equal objects differs after a round trip)
    model, h = shard.predictor.model, shard.params.heat
    probes = [object_features(h, rec, shard.clock, *rec.heats(h, shard.clock)) for rec in shard.objects.values()]
    return (model.summary(), model.rng.getstate(), shard.predictor.rng.getstate(),
            [(name, m.predict_proba_one(hat_bins(x) if name == BINNED else x)) for name, m in model.models.items()
             for x in probes])


def fresh_shard() -> ShardState:
    return ShardState(FlowParams.from_settings(SETTINGS), make_predictor(SETTINGS, shard_id=3))


@settings(max_examples=150, deadline=None)
@given(steps, st.lists(st.integers(min_value=0, max_value=80), max_size=4))
def test_a_shard_restored_from_any_snapshot_continues_exactly_as_an_uninterrupted_one(generated, cuts):
    events = events_of(generated)
    whole, whole_out = fresh_shard(), []
    for ev in events:
        whole.on_event(*ev, whole_out)
    whole.finish(whole_out)

    shard, out = fresh_shard(), []
    cut_at = {c % (len(events) + 1) for c in cuts}
    for i, ev in enumerate(events):
        if i in cut_at:  # a crash right after the snapshot: the rest is replayed into the restored state
            shard = restore_shard(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
        shard.on_event(*ev, out)
    if len(events) in cut_at:
        shard = restore_shard(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
    shard.finish(out)

    assert dumped(out) == dumped(whole_out)
    # what the examples reach (pytest --hypothesis-show-statistics): ~1 in 4 has the model serving
    model = whole.predictor.model
    event("model: " + ("serving" if model.selected != "prior" else "learning" if model.learned else "prior"))
    event(f"late events: {bool(whole.late_events)}")
    assert (shard.events, shard.late_events, shard.predictor.labels_learned) == (
        whole.events, whole.late_events, whole.predictor.labels_learned)
    # the models' state, not only what they said so far: the same answers about every object, from each model
    assert model_answers(shard) == model_answers(whole)


def uncounted(record: tuple[str, bytes | None, bytes]) -> tuple[str, bytes | None, bytes]:
    """A flow record with a ShardStatus's dead-letter count left out."""
    topic, key, value = record
    if topic != topics.FLOW_STATUS:
        return record
    return topic, key, ShardStatus.model_validate_json(value).model_copy(update={"dead_letters": 0}).model_dump_json(
    ).encode()


@settings(max_examples=100, deadline=None)
@given(steps, st.lists(st.integers(min_value=1, max_value=80), max_size=6), st.sets(st.integers(0, 80), max_size=5))
def test_micro_batch_boundaries_do_not_change_what_a_shard_emits(generated, sizes, bad_at):
    # The live flow feeds raw records in whatever batches a poll returns, invalid ones among them; the offline core
    # feeds events one by one. Both must emit the same records, and every invalid record becomes a dead letter.
    events = events_of(generated)
    raws: list[tuple[int, bytes | None, int | None]] = []
    for k, t, op, n, size in events:
        if len(raws) in bad_at:
            raws.append((len(raws), b'{"op": "GET"}', None))
        raws.append((len(raws), AccessEvent(bucket="b", key=k.partition("/")[2], op=op, event_time=t, bytes=n,
                                            object_size=size).model_dump_json().encode(), None))
    shard, records, start = fresh_shard(), [], 0
    for size in [*sizes, len(raws)]:
        process_batch(shard, 7, raws[start:start + size], records)
        start += size

    reference, emitted, expected = fresh_shard(), [], []
    for ev in events:
        reference.on_event(*ev, emitted)
    encode_outputs(reference, emitted, expected)
    # the status counts the dead letters the batches held (the reference never saw them), the rest is equal
    assert [uncounted(r) for r in records if r[0] != topics.DEAD_LETTERS] == [uncounted(r) for r in expected]
    counted = [ShardStatus.model_validate_json(r[2]).dead_letters for r in records if r[0] == topics.FLOW_STATUS]
    assert counted == sorted(counted) and all(n <= len(bad_at) for n in counted)
    letters = [DeadLetter.model_validate_json(r[2]) for r in records if r[0] == topics.DEAD_LETTERS]
    assert [(d.partition, d.offset) for d in letters] == [(7, i) for i, raw, _ in raws if raw == b'{"op": "GET"}']
    assert all(d.reason for d in letters) and shard.dead_letters == len(letters)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.builds(
    AccessEvent,
    event_time=st.one_of(st.floats(0, MAX_EVENT_TIME), st.sampled_from([0.0, MAX_EVENT_TIME, T0])),
    bucket=st.sampled_from(["b", "c"]),
    key=st.sampled_from(["k", "k2", "a/b"]),
    op=st.sampled_from(["GET", "PUT", "HEAD", "DELETE"]),
    bytes=st.integers(0, MAX_OBJECT_SIZE),
    object_size=st.integers(0, MAX_OBJECT_SIZE),
), min_size=1, max_size=40))
def test_any_valid_access_events_are_accounted_never_an_exception(events):
    # Whatever valid events arrive, in whatever order and at whatever times the contract allows (centuries apart,
    # sizes up to the 1 PiB limit), the shard accounts them and emits records that serialise: a flow that stopped
    # on one would stop again on it after every restart.
    shard, records = fresh_shard(), []
    process_batch(shard, 0, [(i, e.model_dump_json().encode(), None) for i, e in enumerate(events)], records)
    emitted: list = []
    shard.finish(emitted)
    encode_outputs(shard, emitted, records)
    assert shard.events == len(events) and shard.dead_letters == 0
    models = {topics.CANDIDATES: Candidate, topics.HEAT: ObjectHeat, topics.FLOW_STATUS: ShardStatus}
    for topic, _, value in records:
        models[topic].model_validate_json(value)
    assert ShardStatus.model_validate_json(records[-1][2]).events == len(events)  # finish() ends with the status
