"""Kafka record -> analytics rows (pure: no I/O). A record that does not validate becomes a dead-letter row.

`rows_of_record` returns {table: [row, ...]}: most topics give one row in their own table, a plan also gives one
row per embedded move, and anything invalid gives one `dead_letters` row with the reason.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas import (
    MAX_EVENT_TIME,
    AccessEvent,
    AuditRecord,
    Candidate,
    DeadLetter,
    Move,
    MoveEvent,
    ObjectHeat,
    Placement,
    PlacementPlan,
    ShardStatus,
    topics,
)
from schemas import tables as t

MODEL_OF_TOPIC: dict[str, type[BaseModel]] = {
    topics.ACCESS: AccessEvent,
    topics.HEAT: ObjectHeat,
    topics.CANDIDATES: Candidate,
    topics.PLANS: PlacementPlan,
    topics.MOVES: Move,
    topics.MOVE_EVENTS: MoveEvent,
    topics.PLACEMENTS: Placement,
    topics.DEAD_LETTERS: DeadLetter,
    topics.AUDITS: AuditRecord,
    topics.FLOW_STATUS: ShardStatus,
}

MAX_PAYLOAD = 4096

Rows = dict[str, list[dict[str, Any]]]


# ClickHouse parses an out-of-range number silently (2**70 into UInt64 reads as 0): check before inserting.
UINT64 = (0, 2**64 - 1)
SIGNED_COLUMNS = {"partition": (-(2**31), 2**31 - 1), "offset": (-(2**63), 2**63 - 1)}  # dead_letters
NARROW_COLUMNS = {"_partition": (0, 2**16 - 1), "shard": (0, 2**16 - 1), "attempt": (0, 2**32 - 1),
                  "reads_states": (0, 2**32 - 1), "reads_states_calibrated": (0, 2**32 - 1)}
# DateTime64(3) columns hold 1900..2299; our times are Unix seconds, not before 1970.
TIME_COLUMNS = {"event_time", "as_of", "first_seen", "last_access", "created_at", "ts", "updated_at", "started_at",
                "finished_at"}
MAX_TIME = MAX_EVENT_TIME  # 2299-12-31T23:59:59Z


def _out_of_range(row: dict[str, Any]) -> str | None:
    for name, value in row.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            lo, hi = SIGNED_COLUMNS.get(name) or NARROW_COLUMNS.get(name) or UINT64
            if not lo <= value <= hi:
                return f"{name} out of range: {value}"
        if name in TIME_COLUMNS and isinstance(value, (int, float)) and not 0 <= value <= MAX_TIME:
            return f"{name} out of range: {value}"
    return None


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _move_row(m: Move, coords: dict[str, int]) -> dict[str, Any]:
    row = m.model_dump(mode="json")
    return {**row, **coords}


def model_rows(record: BaseModel, coords: dict[str, int]) -> Rows:
    """Rows of one validated record; `coords` = {"_partition": p, "_offset": o}."""
    d = record.model_dump(mode="json")
    d.pop("schema_version", None)
    if isinstance(record, AccessEvent):
        return {t.ACCESS_EVENTS: [{**d, **coords}]}
    if isinstance(record, ObjectHeat):
        return {t.OBJECT_HEAT: [{**d, **coords}]}
    if isinstance(record, Candidate):
        return {t.CANDIDATES: [{**d, **coords}]}
    if isinstance(record, PlacementPlan):
        header = {k: v for k, v in d.items() if k != "moves"}
        header["moves"] = len(record.moves)
        return {t.PLANS: [{**header, **coords}], t.MOVES: [_move_row(m, coords) for m in record.moves]}
    if isinstance(record, Move):
        return {t.MOVES: [_move_row(record, coords)]}
    if isinstance(record, MoveEvent):
        return {t.MOVE_EVENTS: [{**d, **coords}]}
    if isinstance(record, Placement):
        row = {
            "bucket": record.bucket, "key": record.key, "version": record.version,
            "size": max((r.size for r in record.replicas), default=0),
            "locations": record.locations,
            "replicas": json.dumps([r.model_dump(mode="json") for r in record.replicas], separators=(",", ":")),
            "updated_at": record.updated_at, "deleted": record.deleted,
        }
        return {t.PLACEMENTS: [{**row, **coords}]}
    if isinstance(record, DeadLetter):
        return {t.DEAD_LETTERS: [{**d, "_topic": topics.DEAD_LETTERS, **coords}]}
    if isinstance(record, AuditRecord):
        findings = d.pop("findings")
        head = {"audit_id": record.audit_id, "started_at": record.started_at}
        return {t.AUDITS: [{**d, **coords}], t.AUDIT_FINDINGS: [{**head, **f, **coords} for f in findings]}
    if isinstance(record, ShardStatus):
        return {t.FLOW_STATUS: [{**d, **coords}]}
    raise TypeError(f"no table for {type(record).__name__}")


def dead_letter_row(topic: str, partition: int, offset: int, reason: str, payload: bytes | None,
                    now: float | None = None) -> dict[str, Any]:
    return {
        "ts": time.time() if now is None else now, "source_topic": topic, "partition": partition,
        "offset": offset, "reason": reason[:1000],
        "payload": (payload or b"")[:MAX_PAYLOAD].decode("utf-8", errors="replace"),
        "_topic": topic, "_partition": partition, "_offset": offset,
    }


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "record"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid record: " + "; ".join(parts)


def rows_of_record(topic: str, partition: int, offset: int, value: bytes | None,
                   now: float | None = None) -> Rows:
    """Validate one record of `topic` and map it to rows, or to a dead-letter row with the reason."""
    model = MODEL_OF_TOPIC.get(topic)
    if model is None:
        return {t.DEAD_LETTERS: [dead_letter_row(topic, partition, offset, "unknown topic", value, now)]}
    if not value:
        return {t.DEAD_LETTERS: [dead_letter_row(topic, partition, offset, "empty record", value, now)]}
    try:
        record = model.model_validate_json(value)
    except ValidationError as exc:
        return {t.DEAD_LETTERS: [dead_letter_row(topic, partition, offset, _reason(exc), value, now)]}
    rows = model_rows(record, {"_partition": partition, "_offset": offset})
    if not all(_finite(r) for rs in rows.values() for r in rs):
        return {t.DEAD_LETTERS: [dead_letter_row(topic, partition, offset, "non-finite number", value, now)]}
    for table_rows in rows.values():
        for r in table_rows:
            problem = _out_of_range(r)
            if problem:
                return {t.DEAD_LETTERS: [dead_letter_row(topic, partition, offset, problem, value, now)]}
    return rows
