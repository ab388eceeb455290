"""Producers: publish access events to the access topic (`dim replay TRACE`, `dim generate`).

Before publishing, every object the workload references is created for real in its initial locations
(`solver.initial_locations`) with deterministic bytes of its scaled size, capped by `s3.max_object_bytes`, so the
mover has real data to move. Events carry the *scaled* (uncapped) size: costs are computed on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click

from dim.config import Settings, get_settings
from dim.traces import TraceRecord, read_trace
from schemas import AccessEvent, topics

# Event time of trace second 0: a fixed instant, so replays are reproducible (2026-01-01T00:00:00Z).
DEFAULT_START = 1767225600.0


@dataclass(frozen=True)
class ReplayOptions:
    bucket: str = "trace"
    time_scale: float = 1.0
    size_scale: float = 1.0
    start: float = DEFAULT_START
    client_region: str = "us-east-1"
    source: str = "trace"


def to_event(rec: TraceRecord, opt: ReplayOptions) -> AccessEvent:
    """The trace record as an AccessEvent; TraceError (record number and reason) if scaling breaks the contract
    (a time scale that puts events after 2299, a key too long for S3)."""
    from pydantic import ValidationError

    from dim.traces import TraceError
    from flows.parse import validation_reason

    size = round(rec.size * opt.size_scale)
    transferred = size if rec.op in ("GET", "PUT") else 0
    try:
        return AccessEvent(
            event_time=opt.start + rec.time_s * opt.time_scale, bucket=opt.bucket, key=rec.object, op=rec.op,
            bytes=transferred, object_size=size, client_region=opt.client_region,
            request_id=f"{opt.source}-{rec.line}",
        )
    except ValidationError as exc:
        reason = validation_reason(exc)
        raise TraceError(f"record {rec.line}: not a valid AccessEvent after scaling: {reason}") from None


def object_bytes(bucket: str, key: str, size: int) -> bytes:
    """Deterministic content of a workload object: anyone can re-derive and check it."""
    block = hashlib.sha256(f"{bucket}/{key}".encode()).digest() * 128  # 4 KiB
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


@dataclass
class ReplaySummary:
    events: int = 0
    objects: int = 0
    objects_created: int = 0
    bytes_created: int = 0
    seconds: float = 0.0
    first_event_time: float | None = None
    last_event_time: float | None = None
    per_partition: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def create_objects(settings: Settings, records: list[TraceRecord], opt: ReplayOptions) -> tuple[int, int]:
    """Create each distinct object once in the initial locations; returns (objects created, bytes written)."""
    from mover.objects import seed_objects

    sizes: dict[str, int] = {}
    for rec in records:
        sizes.setdefault(rec.object, rec.size)
    cap = settings.s3.max_object_bytes
    items = [
        (opt.bucket, key, object_bytes(opt.bucket, key, min(cap, round(size * opt.size_scale))))
        for key, size in sizes.items()
    ]
    placements = seed_objects(settings, items, settings.solver.initial_locations)
    created = [p for p in placements if p is not None]
    _publish_placements(settings, created)
    return len(created), sum(r.size for p in created for r in p.replicas)


def _publish_placements(settings: Settings, placements) -> None:
    """Announce each object's initial placement on the placements topic, so analytics (and the API's /objects)
    know every object from the start, not only those the mover has touched."""
    from dim.kafka import produce, producer

    prod = producer(settings)
    for p in placements:
        produce(prod, topics.PLACEMENTS, p.model_dump_json().encode(), topics.object_key(p.bucket, p.key))
    if prod.flush(60):
        raise click.ClickException("initial placements were not all delivered to the placements topic")


def publish(
    settings: Settings,
    records: Iterable[TraceRecord],
    opt: ReplayOptions,
    speed: float | None = None,
    end_run: str | None = None,
    progress: bool = False,
    total: int | None = None,
) -> ReplaySummary:
    """Publish records as AccessEvents (at `speed` events/s, or as fast as possible), then the run's end markers."""
    from dim.kafka import produce, producer, publish_end_markers

    summary = ReplaySummary()
    prod = producer(settings)
    errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            summary.per_partition[msg.partition()] = summary.per_partition.get(msg.partition(), 0) + 1

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="ev", unit_scale=True, desc="replay")
    t0 = time.monotonic()
    for i, rec in enumerate(records, start=1):
        ev = to_event(rec, opt)
        produce(prod, topics.ACCESS, ev.model_dump_json().encode(), topics.object_key(ev.bucket, ev.key),
                on_delivery=delivered)
        if summary.first_event_time is None:
            summary.first_event_time = ev.event_time
        summary.last_event_time = ev.event_time
        summary.events = i
        if i % 1000 == 0:
            prod.poll(0)
            if bar:
                bar.update(1000)
            if speed:
                ahead = i / speed - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    remaining = prod.flush(60)
    if bar:
        bar.update(summary.events % 1000)
        bar.close()
    if remaining or errors:
        raise click.ClickException(f"{remaining} events not delivered; errors: {errors[:3]}")
    if end_run:
        publish_end_markers(settings, topics.ACCESS, end_run, prod)
    summary.seconds = time.monotonic() - t0
    return summary


def replay(
    settings: Settings,
    path: Path,
    opt: ReplayOptions,
    limit: int | None = None,
    speed: float | None = None,
    end_run: str | None = None,
    create: bool = True,
    progress: bool = False,
    fmt: str | None = None,
) -> ReplaySummary:
    records = list(read_trace(path, fmt=fmt, limit=limit))
    return _create_and_publish(settings, records, opt, speed, end_run, create, progress)


def _create_and_publish(settings, records, opt, speed, end_run, create, progress) -> ReplaySummary:
    created = (0, 0)
    if create:
        created = create_objects(settings, records, opt)
    summary = publish(settings, records, opt, speed=speed, end_run=end_run, progress=progress,
                      total=len(records))
    summary.objects = len({r.object for r in records})
    summary.objects_created, summary.bytes_created = created
    return summary


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError as exc:
        raise click.BadParameter("give events per second or 'max'") from exc
    if speed <= 0:
        raise click.BadParameter("must be positive")
    return speed


_common = [
    click.option("--bucket", default="trace", show_default=True, help="Logical bucket of the objects."),
    click.option("--speed", default="max", show_default=True, help="Events per second, or 'max'."),
    click.option("--end-run", default=None, help="Append this run id's end markers to the access topic."),
    click.option("--create-objects/--no-create-objects", default=True, show_default=True,
                 help="Create each object with real bytes in its initial locations first."),
]


def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


@click.command("replay")
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--time-scale", default=1.0, show_default=True, help="Event-time seconds per trace second.")
@click.option("--size-scale", default=1.0, show_default=True, help="Multiply every object size by this.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N requests.")
@click.option("--format", "fmt", type=click.Choice(["csv", "oracleGeneral"]), default=None,
              help="Trace format (default: from the file name).")
@_apply(_common)
def replay_cmd(trace, time_scale, size_scale, limit, fmt, bucket, speed, end_run, create_objects):
    """Publish TRACE (CSV time_s,object,size_bytes[,op], plain or .zst; or libCacheSim oracleGeneral)."""
    import math

    from dim.kafka import require_broker
    from dim.traces import TraceError

    if not all(math.isfinite(v) and v > 0 for v in (time_scale, size_scale)):
        raise click.BadParameter("scales must be positive numbers")  # as `dim evaluate` says
    require_broker(get_settings())
    opt = ReplayOptions(bucket=bucket, time_scale=time_scale, size_scale=size_scale, source=trace.stem)
    try:
        summary = replay(get_settings(), trace, opt, limit=limit, speed=_speed(speed), end_run=end_run,
                         create=create_objects, progress=True, fmt=fmt)
    except TraceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary.as_dict()))


@click.command("generate")
@click.option("--objects", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--events", type=click.IntRange(min=1), default=50000, show_default=True)
@click.option("--days", type=click.FloatRange(min=0, min_open=True, max=36500), default=14.0, show_default=True,
              help="Event-time span of the workload.")
@click.option("--seed", default=42, show_default=True)
@click.option("--zipf", type=click.FloatRange(min=0, min_open=True, max=10), default=1.1, show_default=True,
              help="Zipf exponent of popularity.")
@_apply(_common)
def generate_cmd(objects, events, days, seed, zipf, bucket, speed, end_run, create_objects):
    """Publish a seeded synthetic workload: Zipf popularity, diurnal cycle, viral bursts, fading interest and
    new uploads."""
    from dim.kafka import require_broker
    from dim.workload import WorkloadSpec, generate

    if events < objects:
        raise click.BadParameter(f"must be at least --objects ({objects}): every object is uploaded once",
                                 param_hint="--events")
    require_broker(get_settings())
    spec = WorkloadSpec(objects=objects, events=events, duration_s=days * 86400.0, seed=seed, zipf_alpha=zipf)
    records = list(generate(spec))
    opt = ReplayOptions(bucket=bucket, source=f"synthetic{seed}")
    summary = _create_and_publish(get_settings(), records, opt, _speed(speed), end_run, create_objects, True)
    click.echo(json.dumps(summary.as_dict()))
