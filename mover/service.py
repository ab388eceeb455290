"""The mover service: recover what a crash left unfinished, then consume moves and execute them.

Moves arrive on topics.MOVES keyed by object, so one partition, hence one mover process of the consumer group,
owns an object at a time. Within a batch, moves of different objects run concurrently and moves of the same
object in order. Offsets are committed only after the batch was executed and its events flushed
(at-least-once); a redelivered move is recognised by its journal entry and not run twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from dim import kafka
from dim.config import Settings
from mover.executor import MoveExecutor, MoveOutcome
from mover.journal import MoveJournal
from mover.s3ops import ReplicaStore
from schemas import DeadLetter, Move, MoveEvent, MoveState, PlacementPlan, dead_letter_payload, topics

log = logging.getLogger(__name__)


class Summary:
    def __init__(self):
        self.states: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.bytes_moved = 0
        self.recovered = 0
        self.redelivered = 0
        self.deferred = 0
        self.dead_letters = 0
        self.errors = 0
        self.dry_run = 0
        self.started = time.monotonic()

    def add(self, outcome: MoveOutcome, recovered: bool = False) -> None:
        if outcome.redelivered:  # counted when it ran (or by recovery), not again
            self.redelivered += 1
            return
        self.states[outcome.state.value if outcome.state else "unknown"] += 1
        if outcome.reason:
            self.reasons[outcome.reason.split(":")[0]] += 1
        if outcome.state is MoveState.DELETED:
            self.bytes_moved += outcome.bytes_copied
        self.recovered += recovered

    def as_dict(self, store: ReplicaStore | None = None) -> dict:
        elapsed = time.monotonic() - self.started
        out = {
            "moves_done": self.states.get(MoveState.DELETED.value, 0),
            "moves_skipped": self.states.get(MoveState.SKIPPED.value, 0),
            "moves_failed": self.states.get(MoveState.FAILED.value, 0),
            "moves_rolled_back": self.states.get(MoveState.ROLLED_BACK.value, 0),
            "moves_recovered": self.recovered,
            "moves_redelivered": self.redelivered,
            "growing_retries": self.deferred,
            "moves_dry_run": self.dry_run,
            "bytes_moved": self.bytes_moved,
            "dead_letters": self.dead_letters,
            "errors": self.errors,
            "elapsed_s": round(elapsed, 3),
            "reasons": dict(self.reasons),
        }
        if store is not None:
            out["s3"] = dict(store.stats)
        return out


class Mover:
    """One mover process's state: journal, store, executor, and a worker pool."""

    def __init__(self, settings: Settings, on_bytes: Callable[[int], None] | None = None, producer=None,
                 after_event=None):
        self.settings = settings
        # Bigger batches: Tansu writes each produce batch into the object store the mover copies through, so
        # small batches cost store requests the moves need (see docs/mover.md). Events may wait this long;
        # the journal, not the topic, is what recovery trusts, and every batch ends with a flush.
        self.producer = producer or kafka.producer(settings, **{"linger.ms": settings.mover.events_linger_ms})
        self.store = ReplicaStore(settings)
        self.journal = MoveJournal(settings, producer=self.producer)
        self.executor = MoveExecutor(settings, self.journal, self.store, producer=self.producer,
                                     on_bytes=on_bytes, after_event=after_event)
        m = settings.mover
        self.pool = ThreadPoolExecutor(max(1, m.concurrency, m.small_concurrency))
        # Moves that stream parts (bigger than one part) are limited to `concurrency` at a time.
        self.large_slots = threading.BoundedSemaphore(max(1, m.concurrency))
        self.summary = Summary()
        self.deferred: list[tuple[float, Move]] = []  # (due, move): file_growing moves to try again

    def recover(self) -> None:
        for outcome in self.executor.recover():
            self.summary.add(outcome, recovered=True)
        self.journal.sync()
        self.journal.compact(self.settings.mover.journal_keep_finished_s)

    def _execute_in_order(self, moves: list[Move]) -> list[MoveOutcome]:
        if any(mv.size > self.store.part_size for mv in moves):
            with self.large_slots:
                return self._execute_each(moves)
        return self._execute_each(moves)

    def _execute_each(self, moves: list[Move]) -> list[MoveOutcome]:
        out = []
        for move in moves:
            try:
                out.append(self.executor.execute(move))
            except Exception:
                log.exception("move %s raised; trying once more through recovery", move.move_id)
                try:
                    out.append(self.executor.execute(move))
                except Exception:
                    log.exception("move %s left unfinished in the journal for the next start", move.move_id)
                    self.summary.errors += 1
        return out

    def execute(self, moves: list[Move]) -> list[MoveOutcome]:
        """Run moves: different objects in parallel, the same object's moves in the given order."""
        by_object: dict[tuple[str, str], list[Move]] = {}
        for move in moves:
            by_object.setdefault((move.bucket, move.key), []).append(move)
        outcomes: list[MoveOutcome] = []
        for result in self.pool.map(self._execute_in_order, by_object.values()):
            outcomes.extend(result)
        for o in outcomes:
            self.summary.add(o)
        self._defer_growing(moves, outcomes)
        self.journal.sync()  # the batch's end states are durable before its offsets can be committed
        self.producer.flush(30)
        return outcomes

    # ------------------------------------------------------------------------------------------ file_growing

    def _defer_growing(self, moves: list[Move], outcomes: list[MoveOutcome]) -> None:
        """A move skipped as file_growing is tried again later, as a new move (`<id>~retry<n>`) against the
        same catalog version, up to `growing_retries` times `growing_retry_s` apart."""
        m = self.settings.mover
        by_id = {mv.move_id: mv for mv in moves}
        for o in outcomes:
            if o.state is not MoveState.SKIPPED or not o.reason.startswith("file_growing"):
                continue
            move = by_id.get(o.move_id)
            if move is None:
                continue
            base, _, n = move.move_id.partition("~retry")
            attempt = int(n or 0) + 1
            if attempt > m.growing_retries:
                continue
            retry = move.model_copy(update={"move_id": f"{base}~retry{attempt}"})
            self.deferred.append((time.monotonic() + m.growing_retry_s, retry))
            self.summary.deferred += 1

    def run_due(self, wait: bool = False) -> None:
        """Execute the deferred moves that are due (with `wait`, all of them, sleeping until each is due)."""
        while self.deferred:
            self.deferred.sort(key=lambda d: d[0])
            now = time.monotonic()
            due = [mv for t, mv in self.deferred if t <= now]
            if not due:
                if not wait:
                    return
                time.sleep(max(0.0, self.deferred[0][0] - now))
                continue
            self.deferred = [(t, mv) for t, mv in self.deferred if t > now]
            self.execute(due)

    def handle_batch(self, msgs) -> None:
        self.run_due()
        moves = []
        for m in msgs:
            try:
                moves.append(Move.model_validate_json(m.value() or b""))
            except ValidationError as exc:
                self.dead_letter(m, f"invalid Move: {exc.errors()[0].get('msg', exc)}"[:500])
        if self.settings.mover.dry_run:
            self.announce_dry_run(moves)
        else:
            self.execute(moves)

    def announce_dry_run(self, moves: list[Move]) -> None:
        """Dry run: say what would be moved (a `planned` MoveEvent with reason dry_run), touch no store."""
        for mv in moves:
            ev = MoveEvent(move_id=mv.move_id, plan_id=mv.plan_id, bucket=mv.bucket, key=mv.key,
                           state=MoveState.PLANNED, ts=time.time(), bytes=mv.size, reason="dry_run")
            kafka.produce(self.producer, topics.MOVE_EVENTS, ev.model_dump_json().encode(),
                          topics.object_key(mv.bucket, mv.key))
            self.summary.dry_run += 1
        self.producer.flush(30)

    def dead_letter(self, msg, reason: str) -> None:
        dl = DeadLetter(ts=time.time(), source_topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                        reason=reason, payload=dead_letter_payload(msg.value()))
        self.producer.produce(topics.DEAD_LETTERS, value=dl.model_dump_json().encode(), key=msg.topic().encode())
        self.summary.dead_letters += 1

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.journal.close()
        self.producer.flush(30)


def run_mover(settings: Settings, until_run: str | None = None, idle_timeout_s: float | None = None,
              on_bytes: Callable[[int], None] | None = None, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Recover, then consume topics.MOVES (group "mover") until `until_run`'s end markers / idle / stop.
    Returns a summary: moves done/skipped/failed/rolled back, bytes moved, reasons."""
    mover = Mover(settings, on_bytes=on_bytes)
    dry = settings.mover.dry_run
    try:
        if not dry:  # a dry run changes no store, not even to finish an interrupted move
            mover.recover()
        # A dry run reads in a group of its own: committing the real group's offsets would hide the moves from
        # the real mover.
        group = f"{settings.mover.group}-dry-run" if dry else settings.mover.group
        kafka.drain(settings, group, [topics.MOVES], mover.handle_batch, until_run=until_run,
                    idle_timeout_s=idle_timeout_s,
                    max_batch=max(64, settings.mover.concurrency * 8, settings.mover.small_concurrency * 4),
                    should_stop=should_stop)
        mover.run_due(wait=not should_stop())  # a bounded run finishes its file_growing retries
        return mover.summary.as_dict(mover.store)
    finally:
        mover.close()


def run_plan(settings: Settings, plan: PlacementPlan, on_bytes: Callable[[int], None] | None = None) -> dict:
    """Recover, then execute one plan's moves directly (no Kafka input; events are still published)."""
    mover = Mover(settings, on_bytes=on_bytes)
    try:
        mover.recover()
        mover.execute(plan.moves)
        mover.run_due(wait=True)
        return mover.summary.as_dict(mover.store)
    finally:
        mover.close()
