"""Pure heat math: order independence within the lateness, cooling at query time, late events, op semantics."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.heat import HeatParams, HeatState, expected_reads, half_life_label, poisson_at_least

P = HeatParams(half_lives_s=(3600.0, 86400.0, 7 * 86400.0), allowed_lateness_s=300.0, growing_window_s=3600.0)
T0 = 1_700_000_000.0

events_strategy = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=30 * 86400, allow_nan=False),
        st.sampled_from(["GET", "GET", "GET", "PUT", "HEAD"]),
        st.integers(min_value=0, max_value=10**9),
    ),
    min_size=1,
    max_size=60,
)


def build(events, params=P):
    s = HeatState(params)
    for t, op, size in events:
        s.add(params, T0 + t, op, size, size)
    return s


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


def reference_heat(events, op: str, at: float, half_life: float) -> float:
    return sum(2 ** (-(at - (T0 + t)) / half_life) for t, o, _ in events if o == op)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False), st.floats(min_value=0, max_value=40 * 86400))
def test_any_order_gives_the_same_heat(events, rnd, query_offset):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = build(events), build(shuffled)
    at = T0 + max(t for t, _, _ in events) + query_offset
    for x, y in zip(a.read_heat(P, at) + a.write_heat(P, at), b.read_heat(P, at) + b.write_heat(P, at)):
        assert close(x, y)
    assert (a.reads, a.writes, a.heads, a.bytes_read) == (b.reads, b.writes, b.heads, b.bytes_read)
    assert (a.first_seen, a.last_access, a.size, a.growing(P, at)) == (
        b.first_seen, b.last_access, b.size, b.growing(P, at))


@settings(max_examples=100, deadline=None)
@given(events_strategy)
def test_heat_is_the_decayed_count(events):
    s = build(events)
    at = T0 + max(t for t, _, _ in events) + 1234.5
    for i, h in enumerate(P.half_lives_s):
        assert close(s.read_heat(P, at)[i], reference_heat(events, "GET", at, h), 1e-9)
        assert close(s.write_heat(P, at)[i], reference_heat(events, "PUT", at, h), 1e-9)


@settings(max_examples=100, deadline=None)
@given(events_strategy, st.floats(min_value=0, max_value=40 * 86400))
def test_the_flows_combined_heat_query_equals_the_separate_ones(events, query_offset):
    s = build(events)
    at = T0 + max(t for t, _, _ in events) + query_offset
    assert s.heats(P, at) == (s.read_heat(P, at), s.write_heat(P, at))  # exactly: the flow serves these
    assert HeatState(P).heats(P, at) == ([0.0] * 3, [0.0] * 3)
    two = HeatParams(half_lives_s=(3600.0, 86400.0))  # the general path (the default three are unrolled)
    s2 = build(events, two)
    assert s2.heats(two, at) == (s2.read_heat(two, at), s2.write_heat(two, at))


def test_idle_objects_cool_without_new_events():
    s = build([(0.0, "GET", 10)] * 8)
    now = s.read_heat(P, T0)
    later = s.read_heat(P, T0 + 3600.0)
    assert now == [pytest.approx(8.0)] * 3
    assert later[0] == pytest.approx(4.0)  # one 1 h half-life later
    assert later[1] == pytest.approx(8.0 * 2 ** (-1 / 24))
    assert s.read_heat(P, T0 + 365 * 86400.0)[0] == 0.0  # underflows cleanly, no error


def test_long_event_time_spans_do_not_overflow():
    rng = random.Random(7)
    events = [(rng.uniform(0, 2 * 365 * 86400), "GET", 1) for _ in range(500)]
    s = build(events)
    at = T0 + max(t for t, _, _ in events)
    assert all(math.isfinite(v) for v in s.read_heat(P, at))
    assert close(s.read_heat(P, at)[2], reference_heat(events, "GET", at, P.half_lives_s[2]))


def test_late_events_are_counted_and_tallied():
    s = HeatState(P)
    s.add(P, T0 + 1000, "GET", 1, 1)
    assert not s.add(P, T0 + 1000 - 300, "GET", 1, 1)  # exactly at the lateness bound: on time
    assert s.add(P, T0 + 1000 - 301, "GET", 1, 1)  # later than allowed: counted, and flagged
    assert s.late_events == 1
    assert s.reads == 3
    in_order = build([(699.0, "GET", 1), (700.0, "GET", 1), (1000.0, "GET", 1)])
    assert close(s.read_heat(P, T0 + 2000)[0], in_order.read_heat(P, T0 + 2000)[0])


def test_op_semantics():
    s = HeatState(P)
    s.add(P, T0, "PUT", 100, 100)
    assert s.growing(P, T0 + 3600) and not s.growing(P, T0 + 3601)
    s.add(P, T0 + 10, "HEAD", 0, 100)
    assert s.read_heat(P, T0 + 10) == [0.0, 0.0, 0.0] and s.heads == 1 and s.last_access == T0 + 10
    s.add(P, T0 + 20, "GET", 100, 100)
    assert s.bytes_read == 100 and s.reads == 1
    s.add(P, T0 + 30, "DELETE", 0, 0)
    assert s.gone and not s.growing(P, T0 + 31) and s.size == 100
    assert expected_reads(P, s, T0 + 31, 86400.0) == 0.0
    s.add(P, T0 + 40, "PUT", 50, 50)
    assert not s.gone and s.size == 50
    with pytest.raises(ValueError):
        s.add(P, T0 + 50, "POST", 0, 0)


def test_labels_and_poisson():
    assert [half_life_label(h) for h in (3600, 86400, 604800, 90, 1800)] == ["1h", "1d", "7d", "90s", "30m"]
    assert poisson_at_least(0.0, 2) == 0.0 and poisson_at_least(5.0, 0) == 1.0
    assert poisson_at_least(2.0, 2) == pytest.approx(1 - 3 * math.exp(-2))
    # Far in the tail, where exp(-mu) underflows (mu > ~745): values from scipy.stats.poisson.sf(k - 1, mu)
    assert poisson_at_least(750.0, 1000) == pytest.approx(2.15e-18, rel=0.05)
    assert poisson_at_least(800.0, 1000) == pytest.approx(5.5e-12, rel=0.05)
    assert poisson_at_least(2000.0, 5000) == 0.0 and poisson_at_least(2000.0, 1000) == 1.0
    assert poisson_at_least(800.0, 800) == pytest.approx(0.50470, abs=1e-4)


def test_state_survives_pickling():
    import pickle

    s = build([(0.0, "GET", 5), (10.0, "PUT", 7)])
    r = pickle.loads(pickle.dumps(s))
    assert r.read_heat(P, T0 + 99) == s.read_heat(P, T0 + 99) and r.size == 7 and r.writes == 1
