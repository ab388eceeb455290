"""Baseline policies obey their products' rules on hand-made access patterns; the ledger's bill adds up."""

from __future__ import annotations

import numpy as np
import pytest

from dim.config import Settings
from dim.evaluation.pricing import client_catalogue
from dim.evaluation.simulator import simulate
from dim.evaluation.workload import from_records
from dim.producers import ReplayOptions
from dim.traces import TraceRecord
from solver.catalogue import load_catalogue

DAY = 86_400.0
MB = 1 << 20
CAT = client_catalogue(load_catalogue(), "aws:us-east-1")


def workload(events, days=None):
    """events: (day, object, size bytes); one trace second = one simulated day."""
    recs = [TraceRecord(float(t), obj, size, "GET", n) for n, (t, obj, size) in enumerate(events, start=1)]
    if days is not None:  # a late request of a throwaway object stretches the window to `days`
        recs.append(TraceRecord(float(days), "clock", 1, "GET", len(recs) + 1))
    return from_records(recs, ReplayOptions(time_scale=DAY, size_scale=1.0), slot_s=DAY)


def run(events, names, days=None, **kw):
    w = workload(events, days)
    return w, simulate(w, CAT, Settings(), names=names, workers=1, **kw)


def classes_by_slot(w, result, name):
    mix = result["series"]["tier_bytes"][name]
    return [max(mix, key=lambda c: mix[c][s]) for s in range(w.n_slots)]


def test_all_hot_never_moves():
    w, r = run([(0, "a", 4 * MB), (5, "a", 4 * MB)], ["all_hot"], days=100)
    assert w.n_slots == 101
    p = r["policies"]["all_hot"]
    assert p["moves"] == 0 and p["bytes_moved"] == 0
    assert set(classes_by_slot(w, r, "all_hot")) == {"hot"}


def test_lifecycle_goes_by_age_not_access():
    # read every day: lifecycle still tiers by age (IA at 30 d, archive at 90 d)
    events = [(d, "a", 4 * MB) for d in range(120)]
    _w, r = run(events, ["lifecycle"])
    mix = r["series"]["tier_bytes"]["lifecycle"]
    big = 2 * 4 * MB  # two replicas of "a"
    assert mix["hot"][29] == pytest.approx(big)
    assert mix["cool"][30] == pytest.approx(big) and mix["hot"][30] == 0
    assert mix["archive"][90] == pytest.approx(big) and mix["cool"][90] == 0
    p = r["policies"]["lifecycle"]
    assert p["breakdown"]["retrieval"] > 0  # reads out of IA pay retrieval
    # from day 90 the AWS replica sits in Glacier Flexible (restore: slower than the SLA), so reads are served by
    # the online GCS Archive replica instead, paying GCP's egress to the client in us-east-1
    assert p["sla_violating_reads"] == 0
    assert r["series"]["cumulative_cost_usd"]["lifecycle"][-1] > 0 and p["breakdown"]["transfer"] > 0


def test_intelligent_tiering_follows_idle_time_and_skips_small_objects():
    # "a" read at day 0 and day 40; "s" is small (< 128 KB) and never read again
    events = [(0, "a", 4 * MB), (0, "s", 1000), (40, "a", 4 * MB)]
    w, r = run(events, ["intelligent_tiering"], days=140)
    mix = r["series"]["tier_bytes"]["intelligent_tiering"]
    a = 2 * 4 * MB
    assert mix["hot"][29] >= a and mix["cool"][29] == 0
    assert mix["cool"][30] == pytest.approx(a)  # 30 days without access
    assert mix["cool"][40] == pytest.approx(a)  # read at day 40 is served from IA ...
    assert mix["hot"][41] >= a and mix["cool"][41] == 0  # ... and brings it back to frequent
    assert mix["cool"][70] == pytest.approx(a)
    assert mix["cold"][130] == pytest.approx(a)  # 90 days idle: archive instant access
    assert all(mix["hot"][s] >= 2 * 1000 for s in range(w.n_slots))  # the small object stays frequent
    p = r["policies"]["intelligent_tiering"]
    assert p["breakdown"]["retrieval"] == 0 and p["breakdown"]["early_deletion"] == 0
    # monitoring: 2 replicas of "a" only ("s" and the 1-byte clock object are under 128 KB), $0.0025/1000/month
    months = sum(min(1.0, (w.slot_start(s + 1) - max(w.birth[0], w.slot_start(s))) / DAY) for s in range(w.n_slots)) / 30
    assert p["breakdown"]["monitoring"] == pytest.approx(2 * 0.0025 / 1000 * months, rel=1e-6)


def test_autoclass_reaches_archive_after_a_year():
    _w, r = run([(0, "a", 4 * MB)], ["autoclass"], days=400)
    mix = r["series"]["tier_bytes"]["autoclass"]
    a = 2 * 4 * MB
    assert mix["cool"][31] == pytest.approx(a) and mix["cold"][91] == pytest.approx(a)
    assert mix["archive"][366] == pytest.approx(a)


@pytest.mark.parametrize("name", ["all_hot", "lifecycle", "intelligent_tiering", "autoclass", "hindsight"])
def test_costs_add_up(name):
    rng = np.random.default_rng(1)
    events = sorted((int(t), f"o{rng.integers(20)}", 0) for t in rng.integers(0, 100, 300))
    events = [(t, o, (int(o[1:]) + 1) * 3 * MB) for t, o, _ in events]
    _w, r = run(events, [name])
    p = r["policies"][name]
    assert p["total_cost_usd"] == pytest.approx(sum(p["breakdown"].values()), rel=1e-12)
    assert r["series"]["cumulative_cost_usd"][name][-1] == pytest.approx(p["total_cost_usd"], rel=1e-9)
    assert all(v >= 0 for v in p["breakdown"].values())
    assert p["reads"] == 300


def test_early_deletion_is_billed_by_age():
    """A replica moved into IA and out again after 10 days pays the 20 remaining days of its 30-day minimum."""
    from dim.evaluation.ledger import Ledger
    from solver.costs import GB, LocationArrays

    la = LocationArrays.of(CAT)
    std, ia = CAT.index("aws:us-east-1:standard"), CAT.index("aws:us-east-1:standard-ia")
    size = np.array([10 * GB], dtype=np.int64)
    initial = np.zeros(len(la), dtype=bool)
    initial[std] = True
    led = Ledger(CAT, la, size, np.array([0.0]), initial, DAY, 100.0, 30, t0=0.0)
    to_ia = initial.copy()
    to_ia[std], to_ia[ia] = False, True
    led.apply(1, to_ia[None, :])
    led.apply(11, initial[None, :])
    assert led.per_slot["early_deletion"][11] == pytest.approx(10 * 0.0125 * 20 / 30)
    # copying back out of IA pays its retrieval fee; into IA and back: one PUT each + GETs
    assert led.per_slot["retrieval"][11] == pytest.approx(10 * 0.01)
    assert led.moves == 2 and led.bytes_moved == pytest.approx(2 * 10 * GB)


def test_ours_replays_the_flow_and_plans_with_the_live_planner():
    """ours: candidates from flows.shard, planned by solver.plan; shards routed like Kafka/flows.offline."""
    from dim.evaluation.ours import Ours, kafka_partition
    from flows.offline import shard_of
    from schemas import topics

    for k in ("1", "abc", "12345678901234567890"):
        assert kafka_partition(topics.object_key("trace", k), 4) == shard_of(f"trace/{k}", 4)
    # a 2 GiB object read twice on day 0, then idle for 60 days; a 1 KB one likewise; "tick0" (big's partition)
    # moves big's shard clock to days 1 and 3. Every object is sampled and one observation calibrates a state:
    # big's re-check at 1 day idle observes it (idle states learn from idle observations only), and that
    # observation's first day is complete by day 3.
    assert kafka_partition(topics.object_key("trace", "tick0"), 4) == kafka_partition(
        topics.object_key("trace", "big"), 4)
    settings = Settings()
    settings.flow.reads_sample_every, settings.flow.reads_min_count = 1, 1
    events = [(0, "big", 2 << 30), (0, "big", 2 << 30), (0, "tiny", 1000), (0, "tiny", 1000), (1, "tick0", 1), (3, "tick0", 1)]
    w = workload(events, days=60)
    r = simulate(w, CAT, settings, names=["ours", "all_hot"], workers=1)
    ours = r["policies"]["ours"]
    assert ours["candidates"] >= 1 and ours["plan_methods"] == ["lagrangian"]
    assert ours["total_cost_usd"] < r["policies"]["all_hot"]["total_cost_usd"]
    assert ours["moves"] >= 1 and ours["sla_violating_reads"] == 0
    # each shard's status at the end of the replay: the events it saw, what served p_hot there
    shards = ours["flow_shards"]
    assert [s["shard"] for s in shards] == sorted({s["shard"] for s in shards}) and len(shards) >= 2
    assert sum(s["events"] for s in shards) == len(events) + 1  # + the clock event on day 60
    assert all(s["p_hot_from"] == "prior" and s["reads_states"] > 0 for s in shards)
    pol = Ours(settings, CAT, w, workers=1)
    # Before day 3 big's shard cannot estimate its reads over the horizon: nothing is offered (the heat's
    # extrapolation is not enough to move anything down). Its re-check at 3 days idle is the first calibrated one;
    # the clock's event on day 60 advances big's shard to its last re-check. Tiny, evaluated only uncalibrated
    # and below recheck_min_bytes, is never offered.
    emitted = [c for v in pol.by_slot.values() for c in v]
    assert sorted((c.key, round((c.as_of - w.t0) / 86400)) for c in emitted if c.key != "tick0") == [
        ("big", 3), ("big", 60), ("clock", 60)]
    assert len(emitted) == ours["candidates_emitted"]
    assert ours["candidates"] == len([c for c in emitted if c.as_of - w.t0 < 60 * DAY])  # day 60: no cycle after it
