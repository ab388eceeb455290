"""The move protocol as a pure state machine: which step comes next, and what recovery after a crash must do.

No I/O here. The executor (live) and any offline checker call these functions with what they observed: the
journal's events of one move and a view of the catalog entry.

One move runs  planned -> (copying -> copied -> verified) for each added location -> committed -> deleted.
`committed` is the only point of no return: before it the new replicas are invisible (the catalog does not
name them) and can be thrown away; after it the catalog names the new replica set and the dropped replicas
are garbage that must be deleted. Hence the recovery rule:

* journal or catalog shows the commit happened  -> roll forward (delete dropped replicas, finish) - from the
  catalog only if the journal verified every new replica (else another mover committed it: ours rolls back);
* not committed and the plan still matches the catalog -> resume (re-copy what was not verified);
* not committed and the catalog moved on (stale plan, object gone) -> roll back (delete the unnamed new
  replicas, abort their multipart uploads).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum

from schemas import TERMINAL_MOVE_STATES, Move, MoveEvent, MoveState, Placement, Replica

S = MoveState

# Legal transitions of a move's *last* state. `verified -> copying` is the next added location;
# `planned -> committed` is a move that only drops replicas.
_ALLOWED: dict[MoveState | None, frozenset[MoveState]] = {
    None: frozenset({S.PLANNED, S.SKIPPED, S.FAILED}),
    S.PLANNED: frozenset({S.COPYING, S.COMMITTED, S.SKIPPED, S.FAILED, S.ROLLED_BACK}),
    S.COPYING: frozenset({S.COPYING, S.COPIED, S.SKIPPED, S.FAILED, S.ROLLED_BACK}),
    S.COPIED: frozenset({S.VERIFIED, S.COPYING, S.SKIPPED, S.FAILED, S.ROLLED_BACK}),
    S.VERIFIED: frozenset({S.COPYING, S.COMMITTED, S.SKIPPED, S.FAILED, S.ROLLED_BACK}),
    # After the commit there is no way back: only finishing (or failing to delete garbage) remains.
    S.COMMITTED: frozenset({S.DELETED, S.FAILED}),
}


class IllegalTransition(ValueError):
    pass


def check_transition(previous: MoveState | None, new: MoveState) -> None:
    if previous in TERMINAL_MOVE_STATES:
        raise IllegalTransition(f"move already ended in {previous.value}; cannot go to {new.value}")
    if new not in _ALLOWED.get(previous, frozenset()):
        raise IllegalTransition(f"{previous.value if previous else 'start'} -> {new.value} is not allowed")


@dataclass(frozen=True)
class Progress:
    """What the journal says about one move."""

    last: MoveState | None = None
    copying: str | None = None  # location whose copy started but did not finish
    copied: frozenset[str] = frozenset()  # copied, not yet verified
    verified: frozenset[str] = frozenset()
    committed: bool = False
    terminal: MoveState | None = None
    reason: str = ""


def progress_of(events: list[MoveEvent]) -> Progress:
    last, copying, terminal, reason = None, None, None, ""
    copied: set[str] = set()
    verified: set[str] = set()
    committed = False
    for ev in events:
        if ev.reason == "progress":  # progress reports are not transitions
            continue
        last = ev.state
        if ev.state is S.COPYING:
            copying = ev.location
        elif ev.state is S.COPIED:
            copied.add(ev.location)
            copying = None
        elif ev.state is S.VERIFIED:
            copied.discard(ev.location)
            verified.add(ev.location)
        elif ev.state is S.COMMITTED:
            committed = True
        if ev.state in TERMINAL_MOVE_STATES:
            terminal, reason = ev.state, ev.reason
    return Progress(last, copying, frozenset(copied), frozenset(verified), committed, terminal, reason)


class StepKind(str, Enum):
    PLAN = "plan"  # check the plan against the catalog, journal `planned`
    COPY = "copy"
    VERIFY = "verify"
    COMMIT = "commit"
    DELETE = "delete"  # delete the dropped replicas, journal `deleted`
    DONE = "done"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    location: str = ""


def next_step(move: Move, events: list[MoveEvent]) -> Step:
    """The next step of a move given its journal (used both to run a move and to resume it)."""
    p = progress_of(events)
    if p.terminal is not None:
        return Step(StepKind.DONE)
    if p.last is None:
        return Step(StepKind.PLAN)
    if p.committed:
        return Step(StepKind.DELETE)
    if p.copying is not None:
        return Step(StepKind.COPY, p.copying)  # an interrupted copy is redone from the start
    for loc in move.added:
        if loc in p.copied:
            return Step(StepKind.VERIFY, loc)
        if loc not in p.verified:
            return Step(StepKind.COPY, loc)
    return Step(StepKind.COMMIT)


# ------------------------------------------------------------------------------------------ plan checking


def plan_problem(move: Move, current: Placement | None, replication_factor: int,
                 known: Collection[str] | None = None) -> tuple[MoveState, str] | None:
    """Why this move must not run against the catalog entry `current`: (skipped|failed, reason), or None.
    `known`: the location ids of the mover's catalogue (a plan made with another catalogue may name others)."""
    if known is not None:
        unknown = sorted({*move.from_locations, *move.to_locations}.difference(known))
        if unknown:
            return S.FAILED, f"unknown_location: {', '.join(unknown)} not in the mover's catalogue"
    if len(set(move.to_locations)) != len(move.to_locations):
        return S.FAILED, "invalid_plan: duplicate target locations"
    if len(move.to_locations) < replication_factor:
        return S.FAILED, (f"below_replication_factor: {len(move.to_locations)} target replicas "
                          f"< RF {replication_factor}")
    if current is None or current.deleted:
        return S.SKIPPED, "object_not_in_catalog"
    if move.expected_version is not None and current.version != move.expected_version:
        return S.SKIPPED, f"stale_plan: catalog version {current.version} != expected {move.expected_version}"
    if set(current.locations) != set(move.from_locations):
        return S.SKIPPED, (f"stale_plan: catalog replicas {sorted(current.locations)} != plan's "
                           f"{sorted(move.from_locations)}")
    if not current.replicas:
        return S.FAILED, "no_source_replica"
    return None


def commit_happened(move: Move, base_version: int | None, current: Placement | None) -> bool:
    """Whether the catalog already holds this move's result (a crash may fall between CAS and journal)."""
    if current is None or base_version is None:
        return False
    return current.version > base_version and set(current.locations) == set(move.to_locations)


def committed_placement(move: Move, current: Placement, new_replicas: dict[str, Replica], now: float) -> Placement:
    """The catalog entry after the move: kept replicas as they were, added ones as verified, version + 1."""
    kept = {r.location: r for r in current.replicas}
    replicas = []
    for loc in move.to_locations:
        rep = new_replicas.get(loc) or kept.get(loc)
        if rep is None:
            raise ValueError(f"{loc} is neither kept nor newly verified: refusing to name it in the catalog")
        replicas.append(rep)
    return current.model_copy(update={"version": current.version + 1, "replicas": replicas, "updated_at": now})


def deletable(locations: list[str], current: Placement | None) -> list[str]:
    """Of `locations`, those whose replica may be deleted: never one the catalog names."""
    named = set(current.locations) if current is not None and not current.deleted else set()
    return [loc for loc in locations if loc not in named]


# ------------------------------------------------------------------------------------------ source checks


@dataclass(frozen=True)
class SourceView:
    """What a HEAD of the source replica said."""

    size: int
    etag: str
    last_modified: float


def growing_reason(before: SourceView, recorded: Replica, now: float, window_s: float,
                   after: SourceView | None = None) -> str | None:
    """`file_growing: ...` when the source changed recently, differs from the catalog, or changed during copy."""
    if after is not None and after != before:
        return "file_growing: source changed during the copy"
    if recorded.size and before.size != recorded.size:
        return f"file_growing: source size {before.size} != catalog {recorded.size}"
    if recorded.etag and before.etag.strip('"') != recorded.etag.strip('"'):
        return "file_growing: source ETag differs from the catalog"
    if window_s > 0 and now - before.last_modified < window_s:
        return f"file_growing: source modified {now - before.last_modified:.1f} s ago (< {window_s:.0f} s)"
    return None


def choose_source(current: Placement, target: str, same_endpoint: dict[str, bool],
                  archive: dict[str, bool]) -> Replica:
    """The replica to copy from: prefer one on the target's endpoint (server-side copy), then non-archive."""
    def rank(rep: Replica) -> tuple[int, int]:
        return (0 if same_endpoint.get(rep.location) else 1, 1 if archive.get(rep.location) else 0)

    return min(current.replicas, key=rank)


# ------------------------------------------------------------------------------------------------ recovery


class Recovery(str, Enum):
    NOTHING = "nothing"  # the move ended; nothing to do
    RECORD_COMMIT = "record_commit"  # catalog has the commit, journal does not: journal it, then roll forward
    ROLL_FORWARD = "roll_forward"  # delete dropped replicas, finish
    RESUME = "resume"  # plan still valid: continue from next_step
    ROLL_BACK = "roll_back"  # plan no longer valid: delete unnamed new replicas, abort uploads


@dataclass(frozen=True)
class RecoveryPlan:
    action: Recovery
    reason: str = ""
    # New replicas to throw away when rolling back (only ones the catalog does not name).
    discard: list[str] = field(default_factory=list)


def recovery_plan(move: Move, events: list[MoveEvent], base_version: int | None, current: Placement | None,
                  replication_factor: int, known: Collection[str] | None = None) -> RecoveryPlan:
    """What a restarted mover must do about a move it finds unfinished in its journal."""
    p = progress_of(events)
    if p.terminal is not None:
        return RecoveryPlan(Recovery.NOTHING)
    if p.committed:
        return RecoveryPlan(Recovery.ROLL_FORWARD)
    if commit_happened(move, base_version, current):
        if set(move.added) <= p.verified:  # our CAS may have landed (the verified lines were synced before it)
            return RecoveryPlan(Recovery.RECORD_COMMIT)
        # The catalog holds the plan's result, but not from us: we never verified every new replica. Another mover
        # ran the move (redelivered to it while we were down) or reached the same placement. Ours ends here; its
        # open uploads are aborted, and no replica the catalog names is touched.
        return RecoveryPlan(Recovery.ROLL_BACK, reason="already_placed: the catalog holds the plan's placement, "
                            "committed by another mover", discard=deletable(move.added, current))
    problem = plan_problem(move, current, replication_factor, known)
    if problem is None and base_version is not None and current is not None and current.version != base_version:
        problem = (S.SKIPPED, f"stale_plan: catalog version {current.version} != {base_version} at planning")
    if problem is None:
        return RecoveryPlan(Recovery.RESUME)
    discard = [loc for loc in deletable(move.added, current) if known is None or loc in known]
    return RecoveryPlan(Recovery.ROLL_BACK, reason=problem[1], discard=discard)
