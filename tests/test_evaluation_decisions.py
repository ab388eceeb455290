"""The flow's candidate decisions that the evaluation measures (flows.shard idle re-checks, flows.horizon_reads):
expected reads over the planning horizon learnt from the shard's own past, never from its future."""

from __future__ import annotations

import pickle

import pytest

from dim.evaluation.ours import kafka_partition
from flows.horizon_reads import HorizonReads
from flows.shard import FlowParams, ShardState
from schemas import Candidate, topics

DAY = 86_400.0
STEPS = tuple(d * DAY for d in (1, 3, 7, 14, 30, 60))
MB = 1_000_000


def test_chain_ladder_recovers_the_mean_reads_over_the_horizon():
    hr = HorizonReads(30 * DAY, STEPS, sample_every=1, min_count=10)
    reads = {}
    for i in range(40):  # observed at idle 0 with one read; later one read on day 2 and one on day 10 after
        hr.observe(f"o{i}", 0.0, 1.0, 0.0, 1, MB)
        reads[f"o{i}"] = 1
    assert hr.estimate(1.0, 0.0, MB) is None  # nothing complete yet: the caller falls back to the heat
    for day in range(1, 31):
        if day == 3:
            reads.update({k: 2 for k in reads})
        if day == 11:
            reads.update({k: 3 for k in reads})
        hr.advance(day * DAY, reads.__getitem__)
        if day == 5:  # periods [0,1) and [1,3) complete: 1 read known, the rest extrapolated, decaying
            assert 1.0 < hr.estimate(1.0, 0.0, MB) < 1.0 + 1.0 / 2 * 27
    assert hr.estimate(1.0, 0.0, MB) == pytest.approx(2.0)
    # an idle state without observations borrows nothing from the burst state: None (heat fallback)
    assert hr.estimate(1.0, 7 * DAY, MB) is None


def test_each_size_class_has_its_own_estimate_and_falls_back_to_all_sizes():
    hr = HorizonReads(30 * DAY, STEPS, sample_every=1, min_count=10)
    reads = {}
    # 30 small objects read again 4 times within the horizon, 30 big ones never; 5 mid-sized ones read once more
    for i in range(30):
        for name, size in ((f"small{i}", 100_000), (f"big{i}", 8 * MB)):
            hr.observe(name, 0.0, 1.0, 0.0, 1, size)
            reads[name] = 1
    for i in range(5):
        hr.observe(f"mid{i}", 0.0, 1.0, 0.0, 1, 2 * MB)
        reads[f"mid{i}"] = 1
    for day in range(1, 31):
        if day == 2:
            reads.update({k: 5 for k in reads if k.startswith("small")})
            reads.update({k: 2 for k in reads if k.startswith("mid")})
        hr.advance(day * DAY, reads.__getitem__)
    assert hr.estimate(1.0, 0.0, 100_000) == pytest.approx(4.0)
    assert hr.estimate(1.0, 0.0, 8 * MB) == pytest.approx(0.0)
    assert hr.estimate(1.0, 0.0, 12 * MB) == pytest.approx(0.0)  # the same class (4-16 MiB)
    # 5 observations are too few for the 1-4 MiB class: all 65 objects' mean, (30 * 4 + 5 * 1) / 65
    assert hr.estimate(1.0, 0.0, 2 * MB) == pytest.approx(125 / 65)
    # a size class never seen at all: the same fallback
    assert hr.estimate(1.0, 0.0, 100 * MB) == pytest.approx(125 / 65)


def test_a_state_with_too_few_observations_falls_back_to_its_idle_time_alone():
    hr = HorizonReads(30 * DAY, STEPS, sample_every=1, min_count=10)
    reads = {}
    # 30 objects of one read (activity ~1) read twice more within the horizon; 30 busier ones (~3) never again;
    # 4 very busy ones (~30) read twice more too: too few for their activity, at any size
    for i in range(30):
        for name, activity in ((f"one{i}", 1.0), (f"busy{i}", 3.0)):
            hr.observe(name, 0.0, activity, 0.0, 1, MB)
            reads[name] = 1
    for i in range(4):
        hr.observe(f"hot{i}", 0.0, 30.0, 0.0, 1, MB)
        reads[f"hot{i}"] = 1
    assert hr.calibrated_states() == (0, hr.pooled_states)
    for day in range(1, 31):
        if day == 2:
            reads.update({k: 3 for k in reads if k.startswith("one")})
            reads.update({k: 3 for k in reads if k.startswith("hot")})
        hr.advance(day * DAY, reads.__getitem__)
    assert hr.estimate(1.0, 0.0, MB) == pytest.approx(2.0) and hr.estimate(3.0, 0.0, MB) == pytest.approx(0.0)
    # 4 observations are too few for activity ~30, in its size class and over all sizes: the mean of everything
    # observed right after an access, (30 * 2 + 4 * 2) / 64 (before this level: None, and no move down)
    assert hr.estimate(30.0, 0.0, MB) == pytest.approx(68 / 64)
    assert hr.estimate(30.0, 0.0, 100 * MB) == pytest.approx(68 / 64)
    # an idle time never observed has no estimate at any level
    assert hr.estimate(30.0, 7 * DAY, MB) is None
    # every activity right after an access has an estimate now; no idle one does
    assert hr.calibrated_states() == (hr.pooled_states // hr.idle_width, hr.pooled_states)


def test_objects_written_and_not_read_have_an_activity_of_their_own():
    hr = HorizonReads(30 * DAY, STEPS, sample_every=1, min_count=10)
    reads = {}
    # 30 objects just written (activity 0) are never read; 30 just read once (activity 1) are read twice more
    for i in range(30):
        hr.observe(f"w{i}", 0.0, 0.0, 0.0, 0, MB)
        hr.observe(f"r{i}", 0.0, 1.0, 0.0, 1, MB)
        reads[f"w{i}"], reads[f"r{i}"] = 0, 1
    for day in range(1, 31):
        if day == 2:
            reads.update({k: 3 for k in reads if k.startswith("r")})
        hr.advance(day * DAY, reads.__getitem__)
    assert hr.estimate(0.0, 0.0, MB) == pytest.approx(0.0)  # a backup is not a one-read object
    assert hr.estimate(1.0, 0.0, MB) == pytest.approx(2.0)
    assert hr.estimate(0.4, 0.0, 100 * MB) == pytest.approx(0.0)  # reads long ago, faded: not read lately


def test_an_object_written_and_never_read_is_rechecked_when_idle_and_offered_cold():
    """Its PUT is followed like a read: idle re-checks, and calibration observations when sampled."""
    shard = ShardState(FlowParams())
    shard.horizon_reads.estimate = lambda activity, idle_s, size: 0.0  # calibrated (see _run)
    out = []
    shard.on_event("b/backup", 0.0, "PUT", 50 * MB, 50 * MB, out)
    for t in (t for _, t, _ in _clock(20)):
        shard.on_event("b/clock", t, "GET", 1000, 1000, out)
    idle = [round((c.as_of - c.last_access) / DAY, 2) for c in out
            if isinstance(c, Candidate) and c.key == "backup" and c.outlook == "cold"]
    assert idle == [1.0, 3.0, 7.0, 14.0]  # before: none, ever (only its "new" candidate at the write)
    # sampled write-only objects are observed for the calibration (activity 0: their own bucket)
    fresh = ShardState(FlowParams(reads_sample_every=1))
    fresh.on_event("b/w", 0.0, "PUT", MB, MB, [])
    assert [(at, key) for _, key, at, *_ in fresh.horizon_reads.pending] == [(0.0, "b/w")]


def test_an_object_is_evaluated_at_most_once_per_eval_interval_after_a_revival():
    """A revival PUT evaluates the object; the queue entry of its earlier reads must not evaluate it again
    before eval_interval_s has passed (it did, at 3,600 s, once a later read had marked it due)."""
    shard = ShardState(FlowParams())  # eval_interval_s 3,600
    evaluated = []
    on_evaluate = shard.predictor.on_evaluate

    def spy(state, key, rec, at, *rest):
        evaluated.append((key, at))
        return on_evaluate(state, key, rec, at, *rest)
    shard.predictor.on_evaluate = spy
    for t, op in ((0.0, "GET"), (100.0, "GET"), (200.0, "DELETE"), (300.0, "PUT"), (400.0, "GET")):
        shard.on_event("b/k", t, op, 10, 10, [])
    for t in (3600.0, 3899.0, 3900.0):
        shard.on_event("b/other", t, "GET", 10, 10, [])
    assert [at for key, at in evaluated if key == "b/k"] == [0.0, 300.0, 3900.0]


def test_sampling_does_not_follow_the_partitioner():
    """CRC32 is affine: a CRC32 sample would keep all or none of a partition's keys. The sample must be ~1/n of
    every partition."""
    hr = HorizonReads(30 * DAY, STEPS, sample_every=2)
    keys = [f"b/{i}" for i in range(4000)]
    for part in range(4):
        mine = [k for k in keys if kafka_partition(topics.object_key("b", k[2:]), 4) == part]
        share = sum(hr.sampled(k) for k in mine) / len(mine)
        assert 0.4 < share < 0.6


def _run(events, params=None, knows_reads=False):
    shard = ShardState(params or FlowParams())
    if knows_reads:
        # A calibration that always has an estimate (none read again): the re-check chain apart from the
        # calibration's own warm-up (tested above and in test_uncalibrated_objects_are_not_offered_for_a_move_down).
        shard.horizon_reads.estimate = lambda activity, idle_s, size: 0.0
    out = []
    for key, t, size in events:
        shard.on_event(key, t, "GET", size, size, out)
    return shard, [c for c in out if isinstance(c, Candidate)]


def _clock(days, every_h=6):
    return [("b/clock", h * 3600.0, 1000) for h in range(0, int(days * 24) + 1, every_h)]


def test_idle_objects_are_rechecked_at_each_step_and_a_read_restarts_the_chain():
    events = sorted(_clock(80) + [("b/big", 0.0, 50 * MB), ("b/small", 0.0, 100_000), ("b/big", 20 * DAY, 50 * MB)],
                    key=lambda e: e[1])
    _, cands = _run(events, knows_reads=True)
    big = [round((c.as_of - c.last_access) / DAY, 2) for c in cands if c.key == "big" and c.outlook == "cold"]
    # day 0 (first read), idle 1, 3, 7, 14 d; read on day 20 (cold already: no candidate); idle 1 .. 60 d again
    assert big == [0.0, 1.0, 3.0, 7.0, 14.0, 1.0, 3.0, 7.0, 14.0, 30.0, 60.0]
    assert [c.as_of for c in cands if c.key == "small"] == [0.0]  # too small for any move to pay: not re-checked
    # a re-check offers expected reads no higher than the heat after a day idle, and carries the object's facts
    rechecks = [c for c in cands if c.key == "big" and c.as_of > 0]
    assert all(c.size == 50 * MB and c.horizon_s == FlowParams().horizon_s for c in rechecks)


def test_decisions_see_no_future_and_survive_recovery():
    base = sorted(_clock(40, every_h=3) + [(f"b/o{i}", (i % 97) * 3600.0 * 7, 5 * MB) for i in range(300)]
                  + [(f"b/o{i}", (i % 97) * 3600.0 * 7 + (i % 5) * DAY, 5 * MB) for i in range(0, 300, 2)],
                  key=lambda e: e[1])
    cut = 20 * DAY
    future = [("b/late", cut + 3600.0 * k, 5 * MB) for k in range(50)]
    _, plain = _run(base)
    _, more = _run(sorted(base + future, key=lambda e: e[1]))
    before = [c.model_dump() for c in plain if c.as_of < cut]
    assert before and before == [c.model_dump() for c in more if c.as_of < cut]
    # recovery: a snapshot taken midway (pickled, as Bytewax does) continues exactly like the uninterrupted run
    shard, out = ShardState(FlowParams()), []
    half = len(base) // 2
    for key, t, size in base[:half]:
        shard.on_event(key, t, "GET", size, size, out)
    shard = pickle.loads(pickle.dumps(shard))
    for key, t, size in base[half:]:
        shard.on_event(key, t, "GET", size, size, out)
    assert [c.model_dump() for c in out if isinstance(c, Candidate)] == [c.model_dump() for c in plain]
    assert any(c.as_of - c.last_access >= 7 * DAY for c in plain)  # the run did re-check idle objects


def test_uncalibrated_objects_are_not_offered_for_a_move_down():
    # A fresh shard cannot estimate reads over the planning horizon (the calibration needs a day of event time and
    # reads_min_count observations); the heat's extrapolation is wrong in both directions, and a move down made on
    # it costs money. So: no "new" and no "cold" candidate until the estimate is calibrated; "hot" ones are
    # emitted (a move up protects the SLA). A hot object that cools meanwhile leaves the sweep, keeps its outlook,
    # and is offered as cold by its next idle re-check once the calibration knows.
    shard, out = ShardState(FlowParams()), []
    shard.on_event("b/x", 0.0, "PUT", 5 * MB, 5 * MB, out)  # created: no "new" candidate yet
    for i in range(10):  # a burst of reads: hot
        shard.on_event("b/x", 60.0 * (i + 1), "GET", 5 * MB, 5 * MB, out)
    shard.on_event("b/quiet", 0.0, "GET", 5 * MB, 5 * MB, out)
    for h in range(1, 24 * 10):  # ten idle days, by the hour
        shard.on_event("b/clock", h * 3600.0, "GET", 1000, 1000, out)
    offered = [(c.key, c.outlook) for c in out if isinstance(c, Candidate)]
    assert offered == [("x", "hot"), ("clock", "hot")]  # (the clock's hourly reads make it hot too)
    x = shard.objects["b/x"]
    assert x.p_hot <= shard.params.cold_threshold and x.outlook == "hot" and "b/x" not in shard.hot
    shard.horizon_reads.estimate = lambda activity, idle_s, size: 0.0  # the calibration now knows
    shard.on_event("b/clock", 15 * 24 * 3600.0, "GET", 1000, 1000, out)  # past x's re-check at 14 days idle
    offered = [(c.key, c.outlook, round(c.as_of - c.last_access)) for c in out if isinstance(c, Candidate)]
    assert [o for o in offered[2:] if o[0] != "clock"] == [("quiet", "cold", 15 * 86400),
                                                          ("x", "cold", 15 * 86400 - 600)]
    # the same stream on a calibrated shard offers the new object at once
    shard, out = ShardState(FlowParams()), []
    shard.horizon_reads.estimate = lambda activity, idle_s, size: 0.0
    shard.on_event("b/x", 0.0, "PUT", 5 * MB, 5 * MB, out)
    assert [(c.key, c.outlook) for c in out if isinstance(c, Candidate)] == [("x", "new")]
