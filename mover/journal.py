"""MoveJournal: the mover's durable, local, append-only record of every move step.

One JSON line per step, written (`os.write`, so it survives a SIGKILL of the process at once) before the mover
acts on it being recorded, in `<journal_dir>/moves-<instance>.jsonl`. Lines are made durable against a crash of
the machine by `sync()` (group commit: one fsync for every line written so far, shared by concurrent moves),
which the executor calls before each step that changes a store in a way recovery must know about: before the
first write to a target location and before the catalog commit (see mover/executor.py). The file is locked
(flock) by the one mover process that owns it, so two movers never recover each other's moves. Each step is also published to the move-events topic (key = object
key) for the analytics side; the journal, not the topic, is what recovery trusts.

Line format: {"event": MoveEvent, "move": Move | null, "base_version": int | null}. The `planned` line carries
the whole Move and the catalog version it was checked against, so recovery can finish a move without Kafka
redelivering it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pydantic import ValidationError

from dim import kafka
from dim.config import Settings
from schemas import TERMINAL_MOVE_STATES, Move, MoveEvent, topics

log = logging.getLogger(__name__)


class JournalLocked(RuntimeError):
    pass


@dataclass
class JournalEntry:
    """Everything the journal knows about one move."""

    move: Move | None = None
    base_version: int | None = None
    events: list[MoveEvent] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return any(e.state in TERMINAL_MOVE_STATES for e in self.events)


class MoveJournal:
    def __init__(self, settings: Settings, producer=None, instance: str | None = None, fsync: bool | None = None):
        self.dir = Path(settings.journal_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = instance or settings.mover.instance
        self.path = self.dir / f"moves-{name}.jsonl"
        self.fsync = settings.mover.journal_fsync if fsync is None else fsync
        self.sync_interval_s = settings.mover.journal_sync_interval_s
        self._last_sync = 0.0
        self.producer = producer
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = self._synced = 0
        self._lockfile = open(self.dir / f"moves-{name}.lock", "w")  # noqa: SIM115 - held for our lifetime
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lockfile.close()
            raise JournalLocked(f"journal {self.path} is in use by another mover process "
                                f"(give each mover its own DIM_MOVER__INSTANCE)") from exc
        self.entries: dict[str, JournalEntry] = self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> dict[str, JournalEntry]:
        entries: dict[str, JournalEntry] = {}
        if not self.path.exists():
            return entries
        complete = 0  # bytes up to the end of the last whole line
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    break  # a torn last line: cut off below
                complete += len(raw)
                try:
                    rec = json.loads(raw)
                    ev = MoveEvent.model_validate(rec["event"])
                    move = Move.model_validate(rec["move"]) if rec.get("move") else None
                except (ValueError, KeyError, TypeError, ValidationError):
                    log.warning("journal %s line %d unreadable; skipped", self.path, n)
                    continue
                entry = entries.setdefault(ev.move_id, JournalEntry())
                if move is not None:
                    entry.move, entry.base_version = move, rec.get("base_version")
                entry.events.append(ev)
        size = self.path.stat().st_size
        if complete < size:
            # A crash of the machine cut the last write short. Recovery never needs that line (every step it must
            # know about is preceded by a sync() that made the lines before it durable), but the next line
            # appended must start a line of its own, not be glued to the fragment and skipped with it at the
            # following restart.
            log.warning("journal %s ends in a torn line (%d bytes); cut off", self.path, size - complete)
            with open(self.path, "r+b") as f:
                f.truncate(complete)
                f.flush()
                os.fsync(f.fileno())
        return entries

    def _write_line(self, data: bytes) -> None:
        """All of `data` or none of it: os.write may write less than asked (a full disk); the rest is written, or
        on an error the part already written is cut back, so no torn line is left in the middle of the file."""
        start = os.lseek(self._fd, 0, os.SEEK_END)
        rest = memoryview(data)
        try:
            while rest:
                rest = rest[os.write(self._fd, rest):]
        except OSError:
            os.ftruncate(self._fd, start)
            raise

    def append(self, event: MoveEvent, move: Move | None = None, base_version: int | None = None,
               durable: bool = True, sync: bool = True) -> None:
        """Record one step, then publish it. `durable=False` (progress reports only) skips the file; `sync=False`
        writes the line but leaves the fsync to the next `sync()` (the caller's next durability point)."""
        line = json.dumps({"event": event.model_dump(mode="json"),
                           "move": move.model_dump(mode="json") if move else None,
                           "base_version": base_version}, separators=(",", ":")) + "\n"
        if durable:
            with self._lock:
                self._write_line(line.encode())
                self._written += 1
                mine = self._written
                entry = self.entries.setdefault(event.move_id, JournalEntry())
                if move is not None:
                    entry.move, entry.base_version = move, base_version
                entry.events.append(event)
            if sync and self.fsync:
                self._sync(mine)
        self.publish(event)

    def sync(self) -> None:
        """Make every line written so far durable (no-op when they already are, or fsync is off)."""
        if self.fsync:
            with self._lock:
                upto = self._written
            self._sync(upto)

    def _sync(self, upto: int) -> None:
        """Group commit: one fsync makes every line written before it durable, so threads that wrote while
        another was syncing share the next fsync instead of queueing one each."""
        with self._sync_lock:
            if self._synced >= upto:
                return
            # fsyncs back to back flush the file system journal (and the stores' dirty data with it) hundreds
            # of times a second; a short pause lets the lines of more concurrent moves share each one.
            pause = self._last_sync + self.sync_interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with self._lock:
                target, fd = self._written, self._fd
            os.fsync(fd)
            self._synced = target
            self._last_sync = time.monotonic()

    def publish(self, event: MoveEvent) -> None:
        if self.producer is None:
            return
        payload = event.model_dump_json().encode()
        key = topics.object_key(event.bucket, event.key)
        kafka.produce(self.producer, topics.MOVE_EVENTS, payload, key)
        self.producer.poll(0)

    def entry(self, move_id: str) -> JournalEntry | None:
        return self.entries.get(move_id)

    def unfinished(self) -> list[JournalEntry]:
        return [e for e in self.entries.values() if not e.finished and e.move is not None]

    def compact(self, keep_finished_s: float, now: float | None = None) -> int:
        """Rewrite the file without moves that finished more than `keep_finished_s` ago (atomic rename); returns
        the number of moves dropped. Recently finished moves stay so that a redelivered move is recognised."""
        now = time.time() if now is None else now
        with self._sync_lock, self._lock:
            keep = {mid: e for mid, e in self.entries.items()
                    if not e.finished or now - e.events[-1].ts < keep_finished_s}
            dropped = len(self.entries) - len(keep)
            if not dropped:
                return 0
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                for e in keep.values():
                    for i, ev in enumerate(e.events):
                        first = i == 0
                        f.write(json.dumps({"event": ev.model_dump(mode="json"),
                                            "move": e.move.model_dump(mode="json") if first and e.move else None,
                                            "base_version": e.base_version if first else None}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self.entries = keep
            return dropped

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
        if self.producer is not None:
            self.producer.flush(30)
        with self._sync_lock, self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        self._lockfile.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
