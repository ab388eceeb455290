"""Execute one move: copy -> verify each added replica, commit the new replica set by compare-and-set, then
delete the dropped replicas. The order of steps comes from mover.protocol; this module does the I/O.

Guarantees (see docs/mover.md): the catalog only ever names verified replicas; a replica is deleted only when
the catalog (re-read) does not name it; every step is journaled before the next one starts, so a restart can
resume or roll back (`recover`).

Durability points: every step's line is written to the journal file before the next step (a SIGKILL loses
nothing the kernel was given). The journal is fsync'd (group commit, shared by concurrent moves) at the two
points where a crash of the machine would otherwise leave something recovery could not find: before the first
write to a target location (so an unnamed replica or open upload is always known) and before the catalog
commit. After the commit, the catalog itself is the durable record (`protocol.commit_happened`), so the
`committed`/`deleted` lines are fsync'd with the batch (`Mover.execute`) before Kafka offsets are committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dim.config import Settings
from mover import protocol
from mover.catalog import CatalogConflict, PlacementCatalog, replica_key
from mover.journal import JournalEntry, MoveJournal
from mover.protocol import Recovery, StepKind
from mover.s3ops import (
    CopyResult,
    MoveError,
    ObjectInfo,
    ReplicaStore,
    RetriesExhausted,
    SourceChanged,
    VerificationFailed,
)
from schemas import Move, MoveEvent, MoveState, Placement, Replica, topics

log = logging.getLogger(__name__)
S = MoveState


@dataclass
class MoveOutcome:
    move_id: str
    state: MoveState
    reason: str = ""
    bytes_copied: int = 0
    placement: Placement | None = None
    redelivered: bool = False  # the journal had already finished it: reported again, not run again


def resilient_catalog(settings: Settings, store: ReplicaStore) -> PlacementCatalog:
    """The catalog with the mover's retries, limits and breaker on every request."""
    endpoint = settings.s3.endpoint

    def call(what, fn):
        try:
            return store.call(endpoint, what, fn)
        except SourceChanged as exc:  # a failed If-Match / If-None-Match
            raise CatalogConflict(exc.reason) from exc

    return PlacementCatalog(settings, client=store.client(endpoint), call=call)


class _Stop(Exception):
    """Internal: the move ended (skipped/failed) and was journaled."""

    def __init__(self, outcome: MoveOutcome):
        self.outcome = outcome


class MoveExecutor:
    def __init__(self, settings: Settings, journal: MoveJournal, store: ReplicaStore | None = None,
                 catalog: PlacementCatalog | None = None, producer=None,
                 on_bytes: Callable[[int], None] | None = None,
                 after_event: Callable[[MoveEvent], None] | None = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.journal = journal
        self.store = store or ReplicaStore(settings)
        self.catalog = catalog or resilient_catalog(settings, self.store)
        self.producer = producer
        self.on_bytes = on_bytes
        self.after_event = after_event  # test hook: may raise to simulate a crash right after a step
        self.clock = clock
        self.rf = settings.solver.replication_factor
        self.known = frozenset(loc.id for loc in self.store.catalogue.locations)
        self._copies: dict[tuple[str, str], CopyResult] = {}  # (move_id, location) -> result, this process
        self._restored: set[tuple[str, str]] = set()  # (move_id, archive location) restored by this process
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ entry points

    def execute(self, move: Move) -> MoveOutcome:
        """Run `move` to an end state. A move the journal already finished is not run again (redelivery)."""
        entry = self.journal.entry(move.move_id)
        if entry is not None and entry.finished:
            # Redelivered after a crash: its events may never have reached the topic; publish the end again.
            self.journal.publish(entry.events[-1])
            if protocol.progress_of(entry.events).committed:
                got = self.catalog.get(move.bucket, move.key)
                self._publish_placement(got[0] if got else None)
            outcome = self._outcome_of(move.move_id, entry)
            outcome.redelivered = True
            return outcome
        if entry is not None and entry.events:
            return self._recover_entry(entry if entry.move else JournalEntry(move, entry.base_version, entry.events))
        try:
            return self._run(move)
        except _Stop as stop:
            return stop.outcome
        except MoveError as exc:  # the catalog could not be read: nothing was done yet
            entry = self.journal.entry(move.move_id)
            if entry is not None and entry.events:
                raise
            reason = f"catalog_unavailable: {exc.reason}"
            self._record(move, S.FAILED, reason=reason, with_move=True)
            return MoveOutcome(move.move_id, S.FAILED, reason)

    def recover(self) -> list[MoveOutcome]:
        """After a restart: finish or roll back every move the journal left unfinished, and abort multipart
        uploads older than `stale_upload_s` (leftovers of crashed processes)."""
        outcomes = [self._recover_entry(e) for e in self.journal.unfinished()]
        self.store.abort_stale_uploads(self.settings.mover.stale_upload_s)
        return outcomes

    # ------------------------------------------------------------------------------------------ journal

    def _record(self, move: Move, state: MoveState, location: str = "", nbytes: int = 0, sha256: str = "",
                reason: str = "", base_version: int | None = None, with_move: bool = False) -> MoveEvent:
        entry = self.journal.entry(move.move_id)
        previous = protocol.progress_of(entry.events).last if entry else None
        protocol.check_transition(previous, state)
        ev = MoveEvent(move_id=move.move_id, plan_id=move.plan_id, bucket=move.bucket, key=move.key, state=state,
                       ts=self.clock(), location=location, bytes=nbytes, sha256=sha256, reason=reason)
        self.journal.append(ev, move=move if with_move else None, base_version=base_version, sync=False)
        if self.after_event is not None:
            self.after_event(ev)
        return ev

    def _events(self, move: Move) -> list[MoveEvent]:
        entry = self.journal.entry(move.move_id)
        return list(entry.events) if entry else []

    def _outcome_of(self, move_id: str, entry: JournalEntry) -> MoveOutcome:
        p = protocol.progress_of(entry.events)
        copied = sum(e.bytes for e in entry.events if e.state is S.COPIED)
        return MoveOutcome(move_id, p.terminal or p.last, p.reason, copied)

    def _end(self, move: Move, state: MoveState, reason: str, rollback: bool = True) -> MoveOutcome:
        if rollback:
            reason = self._rollback(move, reason)
        self._record(move, state, reason=reason)
        return MoveOutcome(move.move_id, state, reason, self._copied_bytes(move))

    def _copied_bytes(self, move: Move) -> int:
        return sum(e.bytes for e in self._events(move) if e.state is S.COPIED)

    # ------------------------------------------------------------------------------------------ the move

    def _run(self, move: Move) -> MoveOutcome:
        got = self.catalog.get(move.bucket, move.key)
        current = got[0] if got else None
        problem = protocol.plan_problem(move, current, self.rf, self.known)
        if problem is not None:
            self._record(move, problem[0], reason=problem[1], with_move=True)
            return MoveOutcome(move.move_id, problem[0], problem[1])
        self._record(move, S.PLANNED, base_version=current.version, with_move=True)
        return self._continue(move, current.version, current, etag=got[1])

    def _continue(self, move: Move, base_version: int, current: Placement | None = None,
                  resumed: bool = False, etag: str | None = None) -> MoveOutcome:
        if current is None:
            got = self.catalog.get(move.bucket, move.key)
            current, etag = got if got else (None, None)
        new_replicas: dict[str, Replica] = {}
        placement: Placement | None = None
        try:
            while True:
                events = self._events(move)
                step = protocol.next_step(move, events)
                if step.kind is StepKind.COPY:
                    interrupted = protocol.progress_of(events).copying == step.location
                    self._copy(move, current, step.location, interrupted)
                elif step.kind is StepKind.VERIFY:
                    new_replicas[step.location] = self._verify(move, current, step.location)
                elif step.kind is StepKind.COMMIT:
                    # Verified before a restart, or so long ago that `dim audit --repair` may since have taken the
                    # unnamed copy for an orphan (older than half its grace period): re-check what is stored.
                    stale_before = self.clock() - self.settings.mover.audit_grace_s / 2
                    for loc in move.added:
                        if loc not in new_replicas or new_replicas[loc].verified_at < stale_before:
                            new_replicas[loc] = self._stored_replica(move, current, loc)
                    placement = self._commit(move, base_version, new_replicas, current, etag)
                elif step.kind is StepKind.DELETE:
                    self._delete_dropped(move, placement)
                elif step.kind is StepKind.DONE:
                    return self._outcome_of(move.move_id, self.journal.entry(move.move_id)) if placement is None \
                        else MoveOutcome(move.move_id, S.DELETED, "", self._copied_bytes(move), placement)
                else:  # PLAN cannot come after `planned`
                    raise AssertionError(step)
        except _Stop as stop:
            return stop.outcome
        except SourceChanged as exc:
            return self._end(move, S.SKIPPED, f"file_growing: {exc.reason}")
        except MoveError as exc:
            committed = protocol.progress_of(self._events(move)).committed
            return self._end(move, S.FAILED, exc.reason, rollback=not committed)

    def _source_replica(self, current: Placement, target: str) -> Replica:
        return protocol.choose_source(
            current, target, {r.location: self.store.same_endpoint(r.location, target) for r in current.replicas},
            {r.location: self.store.is_archive(r.location) for r in current.replicas})

    def _copy_small(self, move: Move, src: Replica, target: str, rkey: str) -> None:
        """One GET conditional on the catalog's ETag (so the bytes are exactly the catalogued version: nothing
        can change "during" a single response) and one PUT whose ETag proves the store got those bytes."""
        def admit(view: protocol.SourceView) -> None:
            reason = protocol.growing_reason(view, src, self.clock(), self.settings.mover.growing_window_s)
            if reason:
                raise SourceChanged(reason.removeprefix("file_growing: "))

        self._record(move, S.COPYING, location=target)
        self.journal.sync()  # durable before the first write to the target
        result = self.store.copy_small(src.location, target, rkey, src.etag, src.sha256, admit,
                                       progress=self._progress(move, target))
        with self._lock:
            self._copies[(move.move_id, target)] = result
        self._record(move, S.COPIED, location=target, nbytes=result.size, sha256=result.sha256)

    def _expected_source(self, move: Move, current: Placement, target: str) -> tuple[Replica, ObjectInfo]:
        """The replica to copy from and its HEAD, after the growing checks."""
        src = self._source_replica(current, target)
        rkey = replica_key(move.bucket, move.key)
        info = self.store.head(src.location, rkey)
        if info is None:
            raise _Stop(self._end(move, S.FAILED, f"source_missing: catalog names {src.location} but it is absent"))
        if self.store.is_archive(src.location) and (move.move_id, src.location) not in self._restored:
            from mover.archive import ensure_restored

            ensure_restored(self.store, src.location, rkey, self.settings.mover)
            with self._lock:  # once per move, not once per added replica
                self._restored.add((move.move_id, src.location))
        reason = protocol.growing_reason(self._view(info), src, self.clock(), self.settings.mover.growing_window_s)
        if reason:
            raise _Stop(self._end(move, S.SKIPPED, reason))
        return src, info

    @staticmethod
    def _view(info: ObjectInfo) -> protocol.SourceView:
        return protocol.SourceView(info.size, info.etag, info.last_modified)

    def _copy(self, move: Move, current: Placement, target: str, interrupted: bool) -> None:
        rkey = replica_key(move.bucket, move.key)
        if interrupted:  # a copy cut short by a crash may have left a multipart upload open
            self.store.abort_uploads(target, rkey)
        src = self._source_replica(current, target)
        if (src.etag and src.sha256 and not self.store.is_archive(src.location)
                and self.store.single_request_copy(src.location, target, src.size)):
            self._copy_small(move, src, target, rkey)
            return
        src, before = self._expected_source(move, current, target)
        sha = src.sha256 or before.sha256
        self._record(move, S.COPYING, location=target)
        self.journal.sync()  # durable before the first write to the target
        result = self.store.copy(src.location, target, rkey, before, sha, progress=self._progress(move, target))
        after = self.store.head(src.location, rkey)
        if after is None or self._view(after) != self._view(before):
            raise SourceChanged("source changed while it was being copied")
        with self._lock:
            self._copies[(move.move_id, target)] = result
        self._record(move, S.COPIED, location=target, nbytes=result.size, sha256=result.sha256)

    def _verify(self, move: Move, current: Placement, target: str) -> Replica:
        rkey = replica_key(move.bucket, move.key)
        src = next((r for r in current.replicas), None)
        expected_sha = next((r.sha256 for r in current.replicas if r.sha256), "")
        expected_size = src.size if src else 0
        with self._lock:
            result = self._copies.pop((move.move_id, target), None)
        if result is not None and result.single_put and result.sha256:
            if expected_size and result.size != expected_size:
                raise VerificationFailed(f"verify {target}: size {result.size} != {expected_size}")
            if expected_sha and result.sha256 != expected_sha:
                raise VerificationFailed(f"checksum_mismatch at {target}: sha256 {result.sha256} != {expected_sha}")
            now = self._record(move, S.VERIFIED, location=target, nbytes=result.size, sha256=result.sha256).ts
            return Replica(location=target, etag=result.etag, sha256=result.sha256, size=result.size,
                           created_at=now, verified_at=now)
        stored = self.store.head(target, rkey)
        if stored is None:
            raise VerificationFailed(f"verify {target}: the copied replica is missing")
        if expected_size and stored.size != expected_size:
            raise VerificationFailed(f"verify {target}: size {stored.size} != {expected_size}")
        if result is not None and result.sha256 and not result.server_side:
            # Streamed: the digest was computed from the bytes we sent; the store's ETag proves it got them.
            digest = result.sha256
            if stored.etag != result.etag:
                raise VerificationFailed(f"verify {target}: stored ETag {stored.etag} != sent {result.etag}")
        else:
            digest = self.store.read_sha256(target, rkey, stored.size)
        if expected_sha and digest != expected_sha:
            raise VerificationFailed(f"checksum_mismatch at {target}: sha256 {digest} != {expected_sha}")
        now = self._record(move, S.VERIFIED, location=target, nbytes=stored.size, sha256=digest).ts
        return Replica(location=target, etag=stored.etag, sha256=digest, size=stored.size, created_at=now,
                       verified_at=now)

    def _stored_replica(self, move: Move, current: Placement, loc: str) -> Replica:
        """A replica verified before a restart: it must still be there with the size and digest journaled."""
        rkey = replica_key(move.bucket, move.key)
        verified = [e for e in self._events(move) if e.state is S.VERIFIED and e.location == loc][-1]
        stored = self.store.head(loc, rkey)
        if stored is None or stored.size != verified.bytes or (stored.sha256 and verified.sha256
                                                                and stored.sha256 != verified.sha256):
            raise VerificationFailed(f"replica at {loc} verified before the restart is gone or changed")
        return Replica(location=loc, etag=stored.etag, sha256=verified.sha256, size=stored.size,
                       created_at=verified.ts, verified_at=verified.ts)

    def _commit(self, move: Move, base_version: int, new_replicas: dict[str, Replica],
                current: Placement | None = None, etag: str | None = None) -> Placement:
        """CAS the new replica set onto the entry we planned against. The first try uses the entry read at
        planning (one request when nothing changed); a conflict re-reads and re-checks. So does a CAS whose
        answers were all lost (RetriesExhausted): the write may have landed, and failing the move then would roll
        back copies the catalog names and keep the dropped replicas forever."""
        unanswered: RetriesExhausted | None = None
        for attempt in range(4):
            if attempt or current is None or etag is None:
                got = self.catalog.get(move.bucket, move.key)
                current, etag = got if got else (None, None)
            if protocol.commit_happened(move, base_version, current):
                self._record(move, S.COMMITTED, reason="recovered: commit found in catalog")
                self._publish_placement(current)
                return current
            problem = protocol.plan_problem(move, current, self.rf, self.known)
            if problem is None and current.version != base_version:
                problem = (S.SKIPPED, f"stale_plan: catalog version {current.version} != {base_version}")
            if problem is not None:
                raise _Stop(self._end(move, problem[0], problem[1]))
            new = protocol.committed_placement(move, current, new_replicas, self.clock())
            self.journal.sync()  # the verified replicas and the base version are durable before the commit
            try:
                self.catalog.compare_and_set(new, etag)
            except CatalogConflict:
                continue  # re-read: either someone else changed it (stale) or our write did land
            except RetriesExhausted as exc:
                unanswered = exc  # re-read: commit_happened tells whether it landed
                continue
            self._record(move, S.COMMITTED, nbytes=sum(r.size for r in new_replicas.values()))
            self._publish_placement(new)
            return new
        if unanswered is not None:
            raise unanswered
        raise _Stop(self._end(move, S.SKIPPED, "stale_plan: catalog kept changing during the commit"))

    def _delete_dropped(self, move: Move, committed: Placement | None = None) -> None:
        if committed is not None:  # we just wrote it, and we own the object: no need to read it back
            current = committed
        else:
            got = self.catalog.get(move.bucket, move.key)
            current = got[0] if got else None
        rkey = replica_key(move.bucket, move.key)
        for loc in protocol.deletable(move.dropped, current):
            if loc not in self.known:  # only a journal of another catalogue version can get here: leave it
                log.warning("move %s: cannot delete the replica at %s, not in this catalogue", move.move_id, loc)
                continue
            self.store.delete(loc, rkey, batched=True)
        self._record(move, S.DELETED, location=",".join(move.dropped))

    def _rollback(self, move: Move, reason: str) -> str:
        """Throw away the new replicas the catalog does not name (and their open uploads). Best effort: what
        cannot be cleaned now is unnamed garbage, never a catalog error; the reason says so."""
        try:
            got = self.catalog.get(move.bucket, move.key)
            current = got[0] if got else None
            rkey = replica_key(move.bucket, move.key)
            unnamed = set(protocol.deletable(move.added, current))
            for loc in (loc for loc in move.added if loc in self.known):  # nothing was written anywhere else
                self.store.abort_uploads(loc, rkey)  # ours may be open even where the catalog names a replica
                if loc in unnamed:
                    self.store.delete(loc, rkey)
        except MoveError as exc:
            return f"{reason}; cleanup incomplete: {exc.reason}"
        return reason

    # ------------------------------------------------------------------------------------------ recovery

    def _recover_entry(self, entry: JournalEntry) -> MoveOutcome:
        move = entry.move
        try:
            got = self.catalog.get(move.bucket, move.key)
            current = got[0] if got else None
            plan = protocol.recovery_plan(move, entry.events, entry.base_version, current, self.rf, self.known)
            log.info("recovering move %s: %s %s", move.move_id, plan.action.value, plan.reason)
            if plan.action is Recovery.NOTHING:
                return self._outcome_of(move.move_id, entry)
            if plan.action is Recovery.RECORD_COMMIT:
                self._record(move, S.COMMITTED, reason="recovered: commit found in catalog")
                self._publish_placement(current)
            if plan.action in (Recovery.RECORD_COMMIT, Recovery.ROLL_FORWARD, Recovery.RESUME):
                return self._continue(move, entry.base_version, current, resumed=True)
            return self._end(move, S.ROLLED_BACK, plan.reason)
        except _Stop as stop:
            return stop.outcome
        except MoveError as exc:
            return MoveOutcome(move.move_id, protocol.progress_of(entry.events).last, f"recovery: {exc.reason}")

    # ------------------------------------------------------------------------------------------ side outputs

    def _publish_placement(self, placement: Placement | None) -> None:
        if self.producer is None or placement is None:
            return
        self.producer.produce(topics.PLACEMENTS, value=placement.model_dump_json().encode(),
                              key=topics.object_key(placement.bucket, placement.key))
        self.producer.poll(0)

    def _progress(self, move: Move, location: str) -> Callable[[int], None]:
        """Bytes callback: feeds the CLI's bar and publishes a progress event at most every half second."""
        state = {"done": 0, "last": 0.0}

        def report(n: int) -> None:
            state["done"] += n
            if self.on_bytes is not None:
                self.on_bytes(n)
            now = time.monotonic()
            if now - state["last"] >= 0.5 and state["done"] < move.size:
                state["last"] = now
                self.journal.append(MoveEvent(move_id=move.move_id, plan_id=move.plan_id, bucket=move.bucket,
                                              key=move.key, state=S.COPYING, ts=self.clock(), location=location,
                                              bytes=state["done"], reason="progress"), durable=False)

        return report
