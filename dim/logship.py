"""`dim ship-logs`: S3 server access log files -> the access topic (the parsing is dim/s3logs.py, pure).

Sources are local files or directories, or `s3://bucket/prefix` - the bucket S3 delivers the logs to - read through
the configured S3 endpoint (or `--endpoint`). A state file remembers which log files were shipped, per source, so
a re-run (cron, or `--every-s`) ships only new files; names that are no longer listed drop out of it, so it stays
as small as the source (let a lifecycle rule expire shipped logs, or point the source at a dated prefix).

Delivery is at-least-once per log file: a file's events are flushed to the broker before the file is recorded as
shipped, and the state is replaced atomically; a crash between the two ships that one file again. Lines that are
not access log records go to the dead-letter topic with the file, line number and reason; valid records that are
not object accesses (bucket operations, failed requests, ...) are counted per reason in the summary. Nothing is
dropped without a count.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from dim.config import Settings, get_settings
from dim.s3logs import LogLineError, Skipped, parse_line
from schemas import DeadLetter, dead_letter_payload, topics

STATE_VERSION = 1
DEAD_LETTER_SOURCE = "s3-access-log"
_GZIP_MAGIC = b"\x1f\x8b"


class ShipError(RuntimeError):
    """The broker did not take a file's records; the file stays unshipped (the next pass ships it again)."""


@dataclass
class ShipSummary:
    files: int = 0  # shipped by this run
    files_already_shipped: int = 0
    lines: int = 0
    events: int = 0
    events_by_op: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> records
    dead_letters: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "events_by_op": dict(self.events_by_op), "skipped": dict(self.skipped)}


def _lines(raw: io.BufferedIOBase) -> Iterator[str]:
    """Text lines of a log file, gzip-compressed or not (told by its first bytes, not its name)."""
    buffered = io.BufferedReader(raw) if not isinstance(raw, io.BufferedReader) else raw
    stream = gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == _GZIP_MAGIC else buffered
    yield from io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")


class LocalSource:
    """A log file, or every file of a directory (not hidden, not recursive), in name order."""

    def __init__(self, path: Path):
        if not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint="SOURCES")
        self.path = path
        self.id = str(path.resolve())

    def names(self) -> list[str]:
        if self.path.is_file():
            return [self.path.name]
        return sorted(p.name for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))

    def open(self, name: str):
        return open(self.path if self.path.is_file() else self.path / name, "rb")


class S3Source:
    """Every object under s3://bucket/prefix, in key order (S3 names log files by delivery time)."""

    def __init__(self, url: str, client):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise click.BadParameter(f"{url}: expected s3://bucket[/prefix]", param_hint="SOURCES")
        self.bucket, self.prefix, self.client = bucket, prefix, client
        self.id = url

    def names(self) -> list[str]:
        from mover.s3ops import listed_objects

        def page(continuation: dict) -> dict:
            return self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, **continuation)

        return sorted(o["Key"] for o in listed_objects(page) if not o["Key"].endswith("/"))

    def open(self, name: str):
        # In memory, one file at a time: S3 delivers logs in objects of kilobytes to a few megabytes.
        return io.BytesIO(self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read())


class ShipState:
    """Which files of which source were shipped; replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, set[str]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") != STATE_VERSION:
                    raise ValueError(f"version {data.get('version')!r}, this shipper reads {STATE_VERSION}")
                self.done = {src: set(names) for src, names in data["done"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise click.ClickException(
                    f"the ship-logs state {path} is unreadable ({exc}); move it away to ship every file again"
                ) from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"version": STATE_VERSION, "done": {s: sorted(n) for s, n in self.done.items()}}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def ship(settings: Settings, sources: list, state: ShipState, client_region: str = "",
         end_run: str | None = None) -> ShipSummary:
    """Ship every not yet shipped file of `sources`; the summary of what was published and skipped."""
    from dim.kafka import produce, producer, publish_end_markers

    summary = ShipSummary()
    started = time.monotonic()
    prod = producer(settings)
    errors: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    for source in sources:
        listed = source.names()
        done = state.done.setdefault(source.id, set())
        done &= set(listed)  # forget files that are gone: the state stays as small as the source
        for name in listed:
            if name in done:
                summary.files_already_shipped += 1
                continue
            with source.open(name) as raw:
                for line_no, line in enumerate(_lines(raw), start=1):
                    if not line.strip():
                        continue
                    summary.lines += 1
                    try:
                        parsed = parse_line(line, client_region)
                    except LogLineError as exc:
                        dl = DeadLetter(ts=time.time(), source_topic=DEAD_LETTER_SOURCE, offset=line_no,
                                        reason=f"{source.id} {name}:{line_no}: {exc}",
                                        payload=dead_letter_payload(line.rstrip("\r\n").encode()))
                        produce(prod, topics.DEAD_LETTERS, dl.model_dump_json().encode(),
                                DEAD_LETTER_SOURCE.encode(), on_delivery=delivered)
                        summary.dead_letters += 1
                        continue
                    if isinstance(parsed, Skipped):
                        summary.skipped[parsed.reason] += 1
                        continue
                    produce(prod, topics.ACCESS, parsed.model_dump_json().encode(),
                            topics.object_key(parsed.bucket, parsed.key), on_delivery=delivered)
                    summary.events += 1
                    summary.events_by_op[parsed.op.value] += 1
                    if summary.events % 10000 == 0:
                        prod.poll(0)
            # The file counts as shipped only once everything it produced is on the broker.
            remaining = prod.flush(60)
            if remaining or errors:
                state.save()  # the files before this one are shipped
                raise ShipError(f"{source.id} {name}: {remaining} records not delivered; errors: {errors[:3]}; "
                                "it will be shipped again by the next pass")
            done.add(name)
            state.save()
            summary.files += 1
    state.save()
    if end_run:
        publish_end_markers(settings, topics.ACCESS, end_run, prod)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def open_sources(settings: Settings, specs: tuple[str, ...], endpoint: str | None) -> list:
    client = None
    out = []
    for spec in specs:
        if spec.startswith("s3://"):
            if client is None:
                from dim.config import s3_client

                client = s3_client(settings, endpoint)
            out.append(S3Source(spec, client))
        else:
            out.append(LocalSource(Path(spec)))
    return out


@click.command("ship-logs")
@click.argument("sources", nargs=-1, required=True)
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Which files were shipped (default: <stack.data_dir>/ship-logs-state.json).")
@click.option("--endpoint", default=None, help="S3 endpoint of s3:// sources (default: s3.endpoint).")
@click.option("--client-region", default="", help="Region the requests came from (the logs do not say).")
@click.option("--end-run", default=None, help="Append this run id's end markers to the access topic.")
@click.option("--every-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Ship new files again this many seconds after each pass started, until stopped.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="With --every-s: stop after this many passes.")
def ship_logs_cmd(sources: tuple[str, ...], state_path: Path | None, endpoint: str | None, client_region: str,
                  end_run: str | None, every_s: float | None, count: int | None):
    """Publish Amazon S3 server access logs (files, directories or s3://bucket/prefix; plain or gzip) to the access
    topic; prints a JSON summary per pass."""
    from botocore.exceptions import BotoCoreError, ClientError
    from confluent_kafka import KafkaException

    from dim.kafka import require_broker

    settings = get_settings()
    require_broker(settings)
    state = ShipState(state_path or settings.stack.data_dir / "ship-logs-state.json")
    passes = 0
    while True:
        started = time.monotonic()
        try:
            summary = ship(settings, open_sources(settings, sources, endpoint), state, client_region, end_run)
            click.echo(json.dumps(summary.as_dict()))
        except (BotoCoreError, ClientError, OSError, ShipError, KafkaException) as exc:
            if every_s is None:
                raise click.ClickException(f"the logs were not all shipped: {exc}") from exc
            click.echo(f"warning: the logs were not all shipped, trying again later: {exc}", err=True)
        passes += 1
        if every_s is None or (count is not None and passes >= count):
            return
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
