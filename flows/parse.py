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
        return _reason(exc)


def _reason(exc: ValidationError) -> str:
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
