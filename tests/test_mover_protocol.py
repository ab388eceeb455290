"""The pure core of the mover: state machine, plan checks, recovery decisions, retry/limit logic."""

from __future__ import annotations

import random

import pytest

from mover import protocol
from mover.limits import CircuitBreaker, TokenBucket
from mover.protocol import IllegalTransition, Recovery, StepKind
from mover.retry import ErrorKind, backoff_s, classify_code
from schemas import Move, MoveEvent, MoveState, Placement, Replica

S = MoveState
A, B, C = "a:r:t", "b:r:t", "c:r:t"


def move(frm=(A, B), to=(A, C), version=3) -> Move:
    return Move(move_id="m", plan_id="p", bucket="bk", key="k", size=10, from_locations=list(frm),
                to_locations=list(to), expected_version=version)


def ev(state: MoveState, location: str = "", reason: str = "") -> MoveEvent:
    return MoveEvent(move_id="m", plan_id="p", bucket="bk", key="k", state=state, ts=0, location=location,
                     reason=reason)


def placement(locs=(A, B), version=3) -> Placement:
    return Placement(bucket="bk", key="k", version=version, updated_at=0,
                     replicas=[Replica(location=loc, sha256="aa", size=10, etag="e") for loc in locs])


def test_happy_path_steps():
    m = move(to=(A, C, "d:r:t"))
    events: list[MoveEvent] = []
    assert protocol.next_step(m, events).kind is StepKind.PLAN
    events.append(ev(S.PLANNED))
    for loc in (C, "d:r:t"):
        assert protocol.next_step(m, events) == protocol.Step(StepKind.COPY, loc)
        events.append(ev(S.COPYING, loc))
        assert protocol.next_step(m, events) == protocol.Step(StepKind.COPY, loc)  # interrupted copy is redone
        events.append(ev(S.COPIED, loc))
        assert protocol.next_step(m, events) == protocol.Step(StepKind.VERIFY, loc)
        events.append(ev(S.VERIFIED, loc))
    assert protocol.next_step(m, events).kind is StepKind.COMMIT
    events.append(ev(S.COMMITTED))
    assert protocol.next_step(m, events).kind is StepKind.DELETE
    events.append(ev(S.DELETED))
    assert protocol.next_step(m, events).kind is StepKind.DONE


def test_progress_reports_are_not_transitions():
    events = [ev(S.PLANNED), ev(S.COPYING, C), ev(S.COPIED, C), ev(S.COPYING, C, reason="progress")]
    assert protocol.next_step(move(), events) == protocol.Step(StepKind.VERIFY, C)


def test_transitions_guard_the_point_of_no_return():
    protocol.check_transition(None, S.PLANNED)
    protocol.check_transition(S.VERIFIED, S.COMMITTED)
    with pytest.raises(IllegalTransition):
        protocol.check_transition(S.COMMITTED, S.ROLLED_BACK)
    with pytest.raises(IllegalTransition):
        protocol.check_transition(S.DELETED, S.COPYING)
    with pytest.raises(IllegalTransition):
        protocol.check_transition(S.PLANNED, S.VERIFIED)


def test_plan_problems():
    assert protocol.plan_problem(move(), placement(), 2) is None
    assert protocol.plan_problem(move(version=2), placement(), 2)[1].startswith("stale_plan")
    assert protocol.plan_problem(move(frm=(A, C)), placement(), 2)[1].startswith("stale_plan")
    assert protocol.plan_problem(move(), None, 2) == (S.SKIPPED, "object_not_in_catalog")
    assert protocol.plan_problem(move(to=(C,)), placement(), 2)[0] is S.FAILED
    assert protocol.plan_problem(move(to=(C, C)), placement(), 1)[0] is S.FAILED
    known = {A, B, C}
    assert protocol.plan_problem(move(), placement(), 2, known) is None
    assert protocol.plan_problem(move(to=(A, "x:y:z")), placement(), 2, known) == (
        S.FAILED, "unknown_location: x:y:z not in the mover's catalogue")
    # recovery of such a move rolls back, deleting only where this mover can
    plan = protocol.recovery_plan(move(to=(C, "x:y:z")), [ev(S.PLANNED)], 3, placement(), 2, known)
    assert plan.action is Recovery.ROLL_BACK and plan.discard == [C]


def test_committed_placement_names_only_kept_and_verified():
    new = protocol.committed_placement(move(), placement(), {C: Replica(location=C, sha256="aa")}, now=5)
    assert new.version == 4 and new.locations == [A, C]
    with pytest.raises(ValueError):
        protocol.committed_placement(move(), placement(), {}, now=5)


def test_never_delete_what_the_catalog_names():
    assert protocol.deletable([B, C], placement((A, C))) == [B]
    assert protocol.deletable([B], None) == [B]


@pytest.mark.parametrize("events, current, expected", [
    ([ev(S.PLANNED), ev(S.COPYING, C)], placement(), Recovery.RESUME),
    ([ev(S.PLANNED), ev(S.COPYING, C)], placement(version=4), Recovery.ROLL_BACK),
    ([ev(S.PLANNED), ev(S.COPYING, C), ev(S.COPIED, C), ev(S.VERIFIED, C)], placement((A, C), 4),
     Recovery.RECORD_COMMIT),
    # the catalog holds the plan's result, but this mover never verified C: another mover committed it
    ([ev(S.PLANNED), ev(S.COPYING, C)], placement((A, C), 4), Recovery.ROLL_BACK),
    ([ev(S.PLANNED), ev(S.COPYING, C), ev(S.COPIED, C), ev(S.VERIFIED, C), ev(S.COMMITTED)], placement((A, C), 4),
     Recovery.ROLL_FORWARD),
    ([ev(S.PLANNED), ev(S.SKIPPED, reason="x")], placement(), Recovery.NOTHING),
    ([ev(S.PLANNED)], None, Recovery.ROLL_BACK),
])
def test_recovery_decisions(events, current, expected):
    plan = protocol.recovery_plan(move(), events, 3, current, 2)
    assert plan.action is expected
    if expected is Recovery.ROLL_BACK:
        assert plan.discard == protocol.deletable([C], current)


def test_growing_checks():
    rec = Replica(location=A, etag="e1", size=10)
    before = protocol.SourceView(10, "e1", 1000.0)
    assert protocol.growing_reason(before, rec, now=5000, window_s=3600) is None
    assert protocol.growing_reason(before, rec, now=1500, window_s=3600).startswith("file_growing")
    assert "during the copy" in protocol.growing_reason(before, rec, 5000, 0, protocol.SourceView(11, "e2", 1001))
    assert protocol.growing_reason(protocol.SourceView(12, "e1", 0), rec, 5000, 0).startswith("file_growing")


def test_choose_source_prefers_same_endpoint_then_non_archive():
    p = placement((A, B, C))
    assert protocol.choose_source(p, "x", {B: True}, {}).location == B
    assert protocol.choose_source(p, "x", {}, {A: True}).location == B


def test_retry_classification_and_full_jitter():
    for code, status in [("SlowDown", 503), ("429", 429), ("RequestTimeout", 400), ("InternalError", 500)]:
        assert classify_code(code, status) is ErrorKind.RETRY
    for code, status in [("AccessDenied", 403), ("NoSuchKey", 404), ("InvalidArgument", 400)]:
        assert classify_code(code, status) is ErrorKind.PERMANENT
    assert classify_code("PreconditionFailed", 412) is ErrorKind.PRECONDITION
    rng = random.Random(1)
    waits = [backoff_s(a, 0.1, 2.0, rng) for a in range(10) for _ in range(50)]
    assert all(0 <= w <= 2.0 for w in waits)
    assert max(backoff_s(0, 0.1, 2.0, rng) for _ in range(100)) <= 0.1
    assert max(backoff_s(8, 0.1, 2.0, rng) for _ in range(200)) > 1.0


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_token_bucket_limits_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, capacity=1000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire(500)
    assert clock.t == pytest.approx(4.0, abs=0.01)  # 5000 bytes at 1000 B/s with a 1000-byte burst


def test_circuit_breaker_opens_half_opens_and_closes():
    clock = FakeClock()
    br = CircuitBreaker(threshold=3, cooldown_s=2.0, clock=clock)
    for _ in range(3):
        assert br.wait_s() == 0
        br.failure()
    assert br.state == "open" and br.wait_s() > 0
    clock.t += 2.0
    assert br.wait_s() == 0  # the one probe
    assert br.wait_s() > 0  # others wait while it is out
    br.failure()
    assert br.state == "open"
    clock.t += 2.0
    assert br.wait_s() == 0
    br.success()
    assert br.state == "closed" and br.opens == 2
