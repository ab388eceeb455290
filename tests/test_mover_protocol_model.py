"""The move protocol's decisions (mover/protocol.py) against a model of the stores, the catalog and the journal,
with crashes between any two actions and another writer changing the catalog at any time.

The model executor takes each step the way mover/executor.py does - journal line, then the act - and asks the
protocol what comes next and, after each crash, what recovery must do. The chaos test shows the real executor under
SIGKILL on real stores for a few hundred moves; this looks for the interleaving that breaks the rules at all:
the catalog never names a missing or partial replica, never fewer than RF, and a finished move leaves no partial
upload and no replica the catalog does not name.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from mover import protocol
from mover.protocol import Recovery, StepKind
from schemas import TERMINAL_MOVE_STATES, Move, MoveEvent, MoveState, Placement, Replica

S = MoveState
RF = 2
LOCATIONS = ["a:r:hot", "b:r:hot", "c:r:cool", "d:r:cold"]


class Crash(Exception):
    pass


class World:
    """The object's replicas (locations holding it), its open uploads, the catalog entry, the move's journal."""

    def __init__(self, move: Move, start: list[str], data):
        self.move, self.data = move, data
        self.store = set(start)
        self.uploads: set[str] = set()  # locations with an open (multipart) upload of this move
        self.catalog = Placement(bucket="b", key="k", version=1, updated_at=0.0,
                                 replicas=[Replica(location=loc) for loc in start])
        self.events: list[MoveEvent] = []
        self.base_version: int | None = None
        self.clock = 0.0
        self.crashes = 0
        self.replaced = False  # another mover changed the replica set

    # -- what may happen between any two actions ----------------------------------------------------------
    def tick(self) -> None:
        self.check()
        what = self.data.draw(st.sampled_from(["go"] * 8 + ["crash", "bump", "delete"]))
        if what == "crash" and self.crashes < 3:
            self.crashes += 1
            raise Crash()
        if what == "bump" and not self.catalog.deleted:  # another writer: same replicas, new version
            self.catalog = self.catalog.model_copy(update={"version": self.catalog.version + 1})
        if what == "delete" and not self.catalog.deleted:  # the object is deleted by its owner
            self.catalog = self.catalog.model_copy(update={"version": self.catalog.version + 1, "deleted": True})
        self.check()

    def while_down(self) -> None:
        """While this mover is down its partitions go to another mover, which may run moves of the same object
        (this very move among them, redelivered): each copies, commits, then deletes what it dropped."""
        for _ in range(self.data.draw(st.integers(0, 2))):
            if self.catalog.deleted:
                return
            new = self.data.draw(st.lists(st.sampled_from(LOCATIONS), min_size=RF, max_size=3, unique=True))
            self.store.update(new)
            old = self.catalog.locations
            self.catalog = self.catalog.model_copy(update={
                "version": self.catalog.version + 1, "replicas": [Replica(location=loc) for loc in new]})
            for loc in old:
                if loc not in new:
                    self.store.discard(loc)
            self.replaced = True
            self.check()

    def check(self) -> None:
        if self.catalog.deleted:
            return
        named = self.catalog.locations
        assert len(named) >= RF, f"catalog names {named}: fewer than RF"
        for loc in named:
            assert loc in self.store, f"catalog names {loc}, which holds no replica"

    # -- the executor, step by step --------------------------------------------------------------------------
    def record(self, state: MoveState, location: str = "", reason: str = "") -> None:
        previous = protocol.progress_of(self.events).last
        protocol.check_transition(previous, state)
        self.clock += 1
        self.events.append(MoveEvent(move_id="m", plan_id="p", bucket="b", key="k", state=state, ts=self.clock,
                                     location=location, reason=reason))
        self.tick()

    def current(self) -> Placement | None:
        return None if self.catalog.deleted else self.catalog

    def end(self, state: MoveState, reason: str) -> None:
        self.roll_back(protocol.deletable(self.move.added, self.current()))
        self.record(state, reason=reason)

    def roll_back(self, discard: list[str]) -> None:
        for loc in self.move.added:  # as executor._rollback: abort this move's uploads wherever, delete unnamed
            self.uploads.discard(loc)
            self.tick()
            if loc in discard:
                self.store.discard(loc)
                self.tick()

    def run(self) -> None:
        problem = protocol.plan_problem(self.move, self.current(), RF)
        if problem is not None:
            self.record(problem[0], reason=problem[1])
            return
        self.base_version = self.catalog.version
        self.record(S.PLANNED)
        self.resume()

    def resume(self) -> None:
        move = self.move
        while True:
            step = protocol.next_step(move, self.events)
            if step.kind is StepKind.COPY:
                if protocol.progress_of(self.events).copying != step.location:
                    self.record(S.COPYING, step.location)
                self.uploads.discard(step.location)  # an interrupted copy's upload is aborted, then redone
                self.uploads.add(step.location)
                self.tick()
                self.store.add(step.location)  # completed
                self.uploads.discard(step.location)
                self.tick()
                self.record(S.COPIED, step.location)
            elif step.kind is StepKind.VERIFY:
                assert step.location in self.store
                self.record(S.VERIFIED, step.location)
            elif step.kind is StepKind.COMMIT:
                current = self.current()
                if protocol.commit_happened(move, self.base_version, current):
                    self.record(S.COMMITTED, reason="recovered: commit found in catalog")
                    continue
                problem = protocol.plan_problem(move, current, RF)
                if problem is None and current.version != self.base_version:
                    problem = (S.SKIPPED, "stale_plan")
                if problem is not None:
                    self.end(problem[0], problem[1])
                    return
                added = {loc: Replica(location=loc) for loc in move.added}
                self.catalog = protocol.committed_placement(move, current, added, self.clock)  # the CAS
                self.tick()
                self.record(S.COMMITTED)
            elif step.kind is StepKind.DELETE:
                for loc in protocol.deletable(move.dropped, self.current()):
                    self.store.discard(loc)
                    self.tick()
                self.record(S.DELETED)
            elif step.kind is StepKind.DONE:
                return

    def recover(self) -> None:
        if not self.events:  # crashed before the first line: the move is redelivered and run again
            self.run()
            return
        plan = protocol.recovery_plan(self.move, self.events, self.base_version, self.current(), RF)
        if plan.action is Recovery.NOTHING:
            return
        if plan.action is Recovery.RECORD_COMMIT:
            self.record(S.COMMITTED, reason="recovered: commit found in catalog")
        if plan.action is Recovery.ROLL_BACK:
            self.roll_back(plan.discard)
            self.record(S.ROLLED_BACK, reason=plan.reason)
            return
        self.resume()


moves = st.tuples(
    st.lists(st.sampled_from(LOCATIONS), min_size=2, max_size=3, unique=True),  # where the object is
    st.lists(st.sampled_from(LOCATIONS), min_size=1, max_size=3, unique=True),  # where the plan wants it
    st.booleans(),  # the plan names the catalog version it was made against
)


@settings(max_examples=400, deadline=None)
@given(moves, st.data())
def test_no_interleaving_of_crashes_and_catalog_changes_breaks_the_rules(spec, data):
    start, target, pinned = spec
    move = Move(move_id="m", plan_id="p", bucket="b", key="k", size=1, from_locations=start, to_locations=target,
                expected_version=1 if pinned else None)
    world = World(move, start, data)
    try:
        world.run()
    except Crash:
        while True:
            world.while_down()
            try:
                world.recover()
                break
            except Crash:
                continue
    world.check()
    end = protocol.progress_of(world.events).terminal
    event(f"end: {end.value}, crashes: {world.crashes}, deleted: {world.catalog.deleted}, replaced: {world.replaced}")
    assert end in TERMINAL_MOVE_STATES
    assert not world.uploads, world.uploads  # no upload left open
    if not world.catalog.deleted and not world.replaced:
        # Nothing left behind that the catalog does not name (the object's own replicas go with its deletion).
        # Not promised when another mover changed the replica set meanwhile: a replica this move dropped may stay
        # behind, unnamed (a cost, never a loss).
        assert sorted(world.store) == sorted(world.catalog.locations), (world.store, world.catalog.locations)
        if end is S.DELETED:
            assert sorted(world.catalog.locations) == sorted(target)
