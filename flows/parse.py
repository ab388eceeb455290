"""Raw access record -> validated AccessEvent, or the reason it is rejected. Pure."""

from __future__ import annotations

from pydantic import ValidationError

from schemas import AccessEvent

MAX_REASON_CHARS = 1000


# AccessEvent.model_validate_json without its per-call Python wrapper (this runs once per event).
_validate_json = AccessEvent.__pydantic_validator__.validate_json


def parse_access(raw: bytes | None) -> AccessEvent | str:
    """The event, or a human-readable reason why `raw` is not a valid AccessEvent (for the dead letter)."""
    if not raw:
        return "empty record"
    try:
        return _validate_json(raw)
    except ValidationError as exc:
        return validation_reason(exc)


def lead_problem(event_time: float, record_ts_ms: int | None, max_lead_s: float) -> str | None:
    """Why an event whose time is more than `max_lead_s` ahead of its Kafka record's timestamp is refused, or None
    (also when the record has no timestamp)."""
    if record_ts_ms is None:
        return None
    lead = event_time - record_ts_ms / 1000.0
    if lead <= max_lead_s:
        return None
    return (f"event_time {event_time:.3f} is {lead:.0f} s ahead of its record's timestamp "
            f"({record_ts_ms / 1000.0:.3f}; flow.max_event_lead_s = {max_lead_s:g}): producer clock or unit?")


def validation_reason(exc: ValidationError) -> str:
    """Why a record is not a valid contract model, one clause per field (also for producers' errors)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "json_invalid":
            parts.append(f"invalid JSON: {err['msg']}")
            continue
        loc = ".".join(str(x) for x in err["loc"]) or "record"
        hint = ""
        if loc == "event_time" and err["type"] == "less_than_equal":  # checked in pydantic's core: no Python per event
            hint = " (2299-12-31: event_time is in Unix seconds - milliseconds?)"
        parts.append(f"{loc}: {err['msg']}{hint}")
    return "; ".join(parts)[:MAX_REASON_CHARS] or "invalid record"
