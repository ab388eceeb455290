"""The hindsight DP: its own total equals the ledger's bill of its schedule, and no policy beats it on random small
traces (SLA-violating reads counted at the DP's penalty)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dim.config import Settings
from dim.evaluation.hindsight import SLA_PENALTY_USD, chain_dp
from dim.evaluation.pricing import client_catalogue
from dim.evaluation.simulator import simulate
from dim.evaluation.workload import from_records
from dim.producers import ReplayOptions
from dim.traces import TraceRecord
from solver.catalogue import load_catalogue
from solver.costs import LocationArrays

DAY = 86_400.0
CAT = client_catalogue(load_catalogue(), "aws:us-east-1")
COMPARED = ["all_hot", "lifecycle", "intelligent_tiering", "autoclass", "seed_rf", "ours"]


def workload(events):
    recs = [TraceRecord(float(t), obj, size, "GET", n) for n, (t, obj, size) in enumerate(sorted(events), start=1)]
    return from_records(recs, ReplayOptions(time_scale=DAY, size_scale=1.0), slot_s=DAY)


traces = st.lists(
    st.tuples(st.integers(0, 120), st.sampled_from("abcdef"), st.sampled_from([50_000, 300_000, 4 << 20, 60 << 20])),
    min_size=1, max_size=40,
).map(lambda evs: [(t, o, {"a": 50_000, "b": 300_000, "c": 4 << 20, "d": 60 << 20, "e": 1 << 30,
                           "f": 200 << 20}[o]) for t, o, _ in evs])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces)
def test_hindsight_is_cheapest(events):
    w = workload(events)
    r = simulate(w, CAT, Settings(), names=["hindsight", *COMPARED], workers=1)["policies"]
    best = r["hindsight"]["total_cost_usd"] + SLA_PENALTY_USD * r["hindsight"]["sla_violating_reads"]
    assert best == pytest.approx(r["hindsight"]["dp_usd"], rel=1e-9, abs=1e-12)
    for name in COMPARED:
        other = r[name]["total_cost_usd"] + SLA_PENALTY_USD * r[name]["sla_violating_reads"]
        assert best <= other * (1 + 1e-9) + 1e-12, f"{name} beat hindsight: {other} < {best}"


def test_dp_moves_a_big_object_down_only_when_it_pays():
    """A 100 GiB object read once on day 0: hindsight drops the backup to the cheapest tier it will not leave,
    and keeps the serving replica online; a tiny object stays where it is (the PUT costs more than it saves)."""
    la = LocationArrays.of(CAT)
    events = [(0, "big", 100 << 30), (0, "tiny", 1000), (60, "clock", 1)]
    w = workload(events)
    gcp = np.array([l for l, loc in enumerate(CAT.locations) if loc.site == "gcp:us-east1"])
    start = int(np.flatnonzero(gcp == CAT.index("gcp:us-east1:standard"))[0])
    _total, path = chain_dp(w, la, gcp, start, serve=False, sla_ms=100.0)
    big, tiny = w.keys.index("big"), w.keys.index("tiny")
    assert CAT.ids[gcp[path[-1, big]]] != "gcp:us-east1:standard"
    assert set(path[:, tiny].tolist()) == {start}
    r = simulate(w, CAT, Settings(), names=["hindsight", "all_hot"], workers=1)["policies"]
    assert r["hindsight"]["total_cost_usd"] < r["all_hot"]["total_cost_usd"]
    assert r["hindsight"]["sla_violating_reads"] == 0
