"""Trace readers: turn a request trace into `TraceRecord`s. Pure parsing, no Kafka, no S3.

Formats
- CSV `time_s,object,size_bytes[,op]` (header optional), plain or zstd-compressed (`.zst`), as in
  `../shared/traces/`. `op` defaults to GET.
- libCacheSim *oracleGeneral* binary: little-endian records of
  `uint32 timestamp, uint64 obj_id, uint32 obj_size, int64 next_access_vtime` (24 bytes), optionally `.zst`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OPS = ("GET", "PUT", "HEAD", "DELETE")
_ORACLE = struct.Struct("<IQIq")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    time_s: float
    object: str
    size: int
    op: str
    line: int  # 1-based record number in the trace, for request ids and error messages


class TraceError(ValueError):
    pass


def open_binary(path: Path) -> io.BufferedIOBase:
    raw = open(path, "rb")  # noqa: SIM115 - returned open: the caller closes it
    if path.suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw


def detect_format(path: Path | str) -> str:
    path = Path(path)
    name = path.name.removesuffix(".zst")
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".oracleGeneral", ".bin", ".oracleGeneral.bin")) or "oracleGeneral" in name:
        return "oracleGeneral"
    raise TraceError(f"cannot tell the format of {path.name}: use a .csv[.zst] or .oracleGeneral[.zst] file")


def read_trace(path: Path | str, fmt: str | None = None, limit: int | None = None) -> Iterator[TraceRecord]:
    import zstandard

    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in ("csv", "oracleGeneral"):
        raise TraceError(f"unknown trace format {fmt!r}")
    n = 0
    try:
        for n, record in enumerate(_read_csv(path, limit) if fmt == "csv" else _read_oracle(path, limit), 1):
            yield record
    except zstandard.ZstdError as exc:
        raise TraceError(f"{path.name}: not a readable zstd file after {n} records ({exc})") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path.name}: not UTF-8 text after {n} records ({exc.reason} at byte {exc.start} of a "
                         "block): a CSV trace is time_s,object,size_bytes[,op] in UTF-8") from None


def _read_csv(path: Path, limit: int | None) -> Iterator[TraceRecord]:
    with open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        n = 0
        for lineno, line in enumerate(text, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(",")
            if lineno == 1 and not _is_number(parts[0]):
                continue  # header
            if len(parts) < 3:
                raise TraceError(f"{path.name}:{lineno}: expected time_s,object,size_bytes[,op], got {line!r}")
            try:
                t, size = float(parts[0]), int(parts[2])
            except ValueError as exc:
                raise TraceError(f"{path.name}:{lineno}: {exc}") from exc
            op = parts[3].strip().upper() if len(parts) > 3 and parts[3].strip() else "GET"
            if op not in OPS:
                raise TraceError(f"{path.name}:{lineno}: unknown op {op!r}")
            if size < 0:
                raise TraceError(f"{path.name}:{lineno}: negative size {size}")
            n += 1
            yield TraceRecord(t, parts[1].strip(), size, op, n)
            if limit is not None and n >= limit:
                return


def _read_oracle(path: Path, limit: int | None) -> Iterator[TraceRecord]:
    with open_binary(path) as fh:
        n = 0
        while True:
            chunk = fh.read(_ORACLE.size * 4096)
            if not chunk:
                return
            if len(chunk) % _ORACLE.size:
                more = fh.read(_ORACLE.size - len(chunk) % _ORACLE.size)
                chunk += more
                if len(chunk) % _ORACLE.size:
                    raise TraceError(f"{path.name}: truncated record at the end of the file")
            for ts, obj, size, nxt in _ORACLE.iter_unpack(chunk):
                # next_access_vtime is -1 or INT64_MAX (never again) or a later request's (virtual) time, so
                # positive: anything else means the bytes are not an oracleGeneral trace and would replay as noise
                if nxt <= 0 and nxt != -1:
                    raise TraceError(f"{path.name}: record {n + 1} is not oracleGeneral (next access time {nxt}): "
                                     "is this file in another format? (--format)")
                n += 1
                yield TraceRecord(float(ts), str(obj), size, "GET", n)
                if limit is not None and n >= limit:
                    return


def write_oracle(path: Path, records: list[tuple[int, int, int]]) -> None:
    """Write (timestamp, obj_id, size) records as oracleGeneral (next_access_vtime = -1): for tests and tools."""
    with open(path, "wb") as fh:
        fh.writelines(_ORACLE.pack(ts, obj, size, -1) for ts, obj, size in records)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
