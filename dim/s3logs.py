"""Amazon S3 server access log records -> AccessEvents. Pure: no I/O (dim/logship.py reads and publishes).

Most estates' applications do not emit access events of their own, but their buckets can log every request
(S3 server access logging; several S3-compatible stores write the same format). One record is one line of
space-separated fields; `[time]` and `"quoted"` fields contain spaces, `-` means "none":

    owner bucket [06/Feb/2019:00:00:38 +0000] remote-ip requester request-id operation key "request-uri" status
    error-code bytes-sent object-size total-ms turnaround-ms "referrer" "user-agent" version-id ...

Only the first 13 fields are used; S3 appends new fields at the end over the years, so more are fine.

What becomes an event (the flow's four ops; everything else is *skipped with a reason*, counted by the shipper):
- GET: REST.GET.OBJECT, WEBSITE.GET.OBJECT (bytes = bytes sent, so ranged reads count what they read), and
  REST.COPY.OBJECT_GET (S3 logs a copy as a read of the source plus a write of the target).
- HEAD: REST.HEAD.OBJECT, WEBSITE.HEAD.OBJECT, and a GET answered 304 Not Modified (a validation, no bytes).
- PUT: REST.PUT.OBJECT, REST.POST.OBJECT (browser upload), REST.COPY.OBJECT (the copy's target), REST.POST.UPLOAD
  (CompleteMultipartUpload: the object exists from then on; its parts are skipped).
- DELETE: REST.DELETE.OBJECT, BATCH.DELETE.OBJECT (one record per key of a multi-object delete), and S3's own
  lifecycle expirations S3.EXPIRE.OBJECT and S3.CREATE.DELETEMARKER.
- Skipped: failed requests (any status but 2xx, and 304 on reads), bucket-level operations, multipart steps, S3's
  lifecycle transitions and restores (S3 moving data is not an application reading it), and GET/HEAD/PUT records
  whose object size is not logged (an event must carry the object's size: a guess would mislead the cost model).
A line that is not a server access log record raises LogLineError with the reason (the shipper dead-letters it).

Keys are logged URL-encoded and decoded here once (`%20` -> space; `+` stays `+`, a legal key character). Versions
are not told apart: events are per key, as the flow keeps heat per key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from pydantic import ValidationError

from flows.parse import validation_reason
from schemas import AccessEvent

# One field: [bracketed time], "quoted string" (backslash escapes), or a run of non-spaces.
_FIELD = re.compile(r'\[[^\]]*\]|"(?:[^"\\]|\\.)*"|\S+')
_TIME = re.compile(r"\[(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
USED_FIELDS = 13  # owner ... object size

_OPS = {
    "REST.GET.OBJECT": "GET", "WEBSITE.GET.OBJECT": "GET", "REST.COPY.OBJECT_GET": "GET",
    "REST.HEAD.OBJECT": "HEAD", "WEBSITE.HEAD.OBJECT": "HEAD",
    "REST.PUT.OBJECT": "PUT", "REST.POST.OBJECT": "PUT", "REST.COPY.OBJECT": "PUT", "REST.POST.UPLOAD": "PUT",
    "REST.DELETE.OBJECT": "DELETE", "BATCH.DELETE.OBJECT": "DELETE",
    "S3.EXPIRE.OBJECT": "DELETE", "S3.CREATE.DELETEMARKER": "DELETE",
}
# Operations S3 performs itself (lifecycle): logged with no HTTP status.
_SERVICE_PREFIX = "S3."
_MULTIPART_STEPS = ("REST.PUT.PART", "REST.POST.UPLOADS", "REST.DELETE.UPLOAD", "REST.GET.UPLOAD",
                    "REST.COPY.PART", "REST.COPY.PART_GET")


class LogLineError(ValueError):
    """Not a server access log record (or one that breaks the AccessEvent contract); the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A valid record that is not an object access the flow counts; `reason` is what the shipper tallies."""

    reason: str


def split_fields(line: str) -> list[str]:
    """The record's fields, brackets and quotes removed from bracketed and quoted ones."""
    out = []
    for f in _FIELD.findall(line):
        if f[0] == "[" or (f[0] == '"' and len(f) > 1):
            f = f[1:-1]
            if "\\" in f:
                f = re.sub(r"\\(.)", r"\1", f)
        out.append(f)
    return out


def parse_time(field: str) -> float:
    """`[06/Feb/2019:00:00:38 +0000]` -> Unix seconds."""
    m = _TIME.fullmatch(field)
    if m is None or m.group(2) not in _MONTHS:
        raise LogLineError(f"time {field!r} is not [dd/Mon/yyyy:HH:MM:SS +zzzz]")
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    try:
        local = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError as exc:
        raise LogLineError(f"time {field!r}: {exc}") from None
    offset = (int(zh) * 3600 + int(zm) * 60) * (1 if sign == "+" else -1)
    return local.timestamp() - offset


def _count(field: str, name: str) -> int | None:
    """A byte count field: None for `-`."""
    if field == "-":
        return None
    if not field.isdigit():
        raise LogLineError(f"{name} {field!r} is not a number")
    return int(field)


def parse_line(line: str, client_region: str = "") -> AccessEvent | Skipped:
    """One server access log record -> an AccessEvent, or Skipped(reason); LogLineError if it is not one."""
    raw = line.rstrip("\r\n")
    bracket = raw.find("[")
    if bracket < 0:
        raise LogLineError("no [time] field: not an S3 server access log record")
    # The time field is the only bracketed one: split it off first, so a quoted field holding "]" cannot confuse it.
    head = raw[:bracket].split()
    end = raw.find("]", bracket)
    if end < 0 or len(head) != 2:
        raise LogLineError("expected 'owner bucket [time] ...': not an S3 server access log record")
    fields = head + [raw[bracket:end + 1]] + split_fields(raw[end + 1:])
    if len(fields) < USED_FIELDS:
        raise LogLineError(f"{len(fields)} fields, a record has at least {USED_FIELDS}")
    _owner, bucket, when, _ip, _requester, request_id, operation, key, _uri, status, error = fields[:11]
    sent, size = _count(fields[11], "bytes sent"), _count(fields[12], "object size")
    event_time = parse_time(when)
    op = _OPS.get(operation)
    if op is None:
        if operation in _MULTIPART_STEPS:
            return Skipped("multipart upload step (the object counts at CompleteMultipartUpload)")
        if operation.startswith(_SERVICE_PREFIX):
            return Skipped("S3 lifecycle transition or restore (not an application access)")
        if operation.count(".") < 2:
            raise LogLineError(f"operation {operation!r} is not TYPE.METHOD.RESOURCE")
        return Skipped("not an object operation")
    if status == "-" and not operation.startswith(_SERVICE_PREFIX):
        raise LogLineError("no HTTP status on a request record")
    if status != "-":
        if not (status.isdigit() and len(status) == 3):
            raise LogLineError(f"HTTP status {status!r} is not a 3-digit code")
        if status == "304" and op == "GET":
            op = "HEAD"  # a conditional read that found its copy current: a validation, nothing transferred
        elif not status.startswith("2"):
            return Skipped(f"request failed (HTTP {status}{'' if error == '-' else ' ' + error})")
    if key == "-":
        raise LogLineError(f"operation {operation} without a key")
    if op == "DELETE":
        nbytes, object_size = 0, 0
    elif size is None:
        return Skipped(f"object size not logged ({operation})")
    else:
        object_size = size
        nbytes = (sent or 0) if op == "GET" else (size if op == "PUT" else 0)
    try:
        return AccessEvent(event_time=event_time, bucket=bucket, key=unquote(key), op=op, bytes=nbytes,
                           object_size=object_size, client_region=client_region,
                           request_id="" if request_id == "-" else request_id[:128])
    except ValidationError as exc:
        raise LogLineError(f"not a valid AccessEvent: {validation_reason(exc)}") from None
