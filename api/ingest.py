"""Ingestion: every topic of `schemas.tables.TABLE_OF_TOPIC` -> the analytics store, at-least-once and exact.

`consume` (dim.kafka.drain plus stored end markers) hands over batches (>= 10,000 records or <= 1 s) and commits
the offsets only after `handle_batch` returned, i.e. after the insert. A crash between insert and commit redelivers the batch; the raw
tables are ReplacingMergeTree on the Kafka coordinates, so the second copy collapses and every count stays exact.
A record that does not validate, or that the store refuses, becomes a dead-letter row with the reason.
After each batch the derived tables (hourly rollups, SLA events, cost ledger) are recomputed for the hours and
days the batch touched (api.derive).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from api.rows import Rows, dead_letter_row, rows_of_record
from api.store import AnalyticsStore, StoreError
from dim import kafka
from dim.config import Settings
from schemas import tables as t

log = logging.getLogger(__name__)

INGEST_GROUP = "api-ingest"
_TOPIC_OF_TABLE = {table: topic for topic, table in t.TABLE_OF_TOPIC.items()}


@dataclass
class IngestStats:
    """Live counters, read by /metrics (the ingester runs in a thread of the API process)."""

    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    last_batch_at: float = 0.0
    started_at: float = field(default_factory=time.time)
    # (topic, partition) -> last offset handled
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    error: str = ""


def batch_rows(msgs: list[Message], now: float | None = None) -> Rows:
    out: Rows = defaultdict(list)
    for m in msgs:
        for table, rows in rows_of_record(m.topic(), m.partition(), m.offset(), m.value(), now).items():
            out[table].extend(rows)
    return out


def insert_rows(store: AnalyticsStore, rows: Rows) -> dict[str, int]:
    """Insert every table's rows; a table whose batch the store refuses is retried row by row and the refused
    rows become dead letters (a bad value must not block the partition). Store outages still raise."""
    counts: dict[str, int] = defaultdict(int)
    dead: list[dict[str, Any]] = list(rows.get(t.DEAD_LETTERS, []))
    for table, table_rows in rows.items():
        if table == t.DEAD_LETTERS or not table_rows:
            continue
        try:
            counts[table] += store.insert(table, table_rows)
        except (StoreError, ValueError):
            for row in table_rows:
                try:
                    counts[table] += store.insert(table, [row])
                except (StoreError, ValueError) as exc:
                    dead.append(dead_letter_row(_TOPIC_OF_TABLE.get(table, table), row.get("_partition", -1), row.get("_offset", -1),
                                                f"{table} refused the row: {str(exc)[:300]}",
                                                repr(row).encode()))
    if dead:
        counts[t.DEAD_LETTERS] += store.insert(t.DEAD_LETTERS, dead)
    return dict(counts)


def run_ingest(
    settings: Settings,
    store: AnalyticsStore,
    until_run: str | None = None,
    idle_timeout_s: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stats: IngestStats | None = None,
    derive: bool = True,
    max_batch: int = 10_000,
    group: str = INGEST_GROUP,
) -> dict[str, int]:
    """Consume every topic into `store` until `until_run`'s end markers (all partitions of all topics), idle
    timeout, or `should_stop()`. Returns rows inserted per table in this call (redeliveries included)."""
    from api import derive as derived

    store.migrate()
    if derive:
        derived.load_prices(store, settings)
    stats = stats or IngestStats()
    totals: dict[str, int] = defaultdict(int)

    def handle(msgs: list[Message]) -> None:
        rows = batch_rows(msgs)
        counts = insert_rows(store, rows)
        if derive:
            derived.refresh(store, settings, rows)
        for table, n in counts.items():
            totals[table] += n
            stats.rows[table] += n
        stats.records += len(msgs)
        stats.batches += 1
        stats.dead_letters += counts.get(t.DEAD_LETTERS, 0)
        stats.last_batch_at = time.time()
        for m in msgs:
            stats.positions[(m.topic(), m.partition())] = m.offset()
        log.info("ingested batch of %d records: %s", len(msgs), dict(counts))

    # drain commits only after `handle` stored the batch (at-least-once; the tables deduplicate), and commits a
    # partition at its end marker, not past it, so a restarted bounded run finds its markers again.
    kafka.drain(settings, group, list(t.TABLE_OF_TOPIC), handle, until_run=until_run,
                idle_timeout_s=idle_timeout_s, should_stop=should_stop, max_batch=max_batch)
    return dict(totals)


class BackgroundIngester:
    """The ingester in a thread of the API process (a chDB directory can be open in one process only)."""

    def __init__(self, settings: Settings, store: AnalyticsStore):
        self.settings = settings
        self.store = store
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dim-ingest", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_ingest(self.settings, self.store, should_stop=self._stop.is_set, stats=self.stats)
            except Exception as exc:  # keep serving reads; retry the consumer after a pause
                self.stats.error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("ingest failed; retrying in 5 s")
                self._stop.wait(5.0)

    def start(self) -> BackgroundIngester:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
