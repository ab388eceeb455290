"""`dim move`, `dim audit` and `dim chaos`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from confluent_kafka import KafkaException


def _settings():
    from dim.config import get_settings

    return get_settings()


@click.command("move")
@click.option("--until-run", default=None, help="Stop after this run's end markers on every partition of the moves topic.")
@click.option("--plan-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Execute the moves of one PlacementPlan JSON file instead of consuming the topic.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this many seconds without moves.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar with bytes/s.")
def move_cmd(until_run: str | None, plan_file: Path | None, idle_timeout: float | None, progress: bool):
    """Run the mover: copy, verify, commit, delete; prints a JSON summary."""
    from tqdm import tqdm

    from dim.kafka import require_broker
    from mover.service import run_mover, run_plan
    from schemas import PlacementPlan

    settings = _settings()
    total = None
    plan = None
    if plan_file is not None:
        from pydantic import ValidationError

        try:
            plan = PlacementPlan.model_validate_json(plan_file.read_bytes())
        except ValidationError as exc:
            raise click.ClickException(f"{plan_file} is not a PlacementPlan: {_problems(exc)}") from None
        total = sum(m.size * max(1, len(m.added)) for m in plan.moves)
    require_broker(settings)  # a plan file's moves report their events to the broker too
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="moving", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        if plan is not None:
            summary = run_plan(settings, plan, on_bytes=bar.update)
        else:
            summary = run_mover(settings, until_run=until_run, idle_timeout_s=idle_timeout, on_bytes=bar.update)
    finally:
        bar.close()
    click.echo(json.dumps(summary))


@click.command("audit")
@click.option("--bucket", default=None, help="Audit only this bucket's objects (default: every object).")
@click.option("--prefix", default="", help="... and only keys starting with this (needs --bucket).")
@click.option("--verify-checksums", is_flag=True,
              help="Read every catalogued replica back and compare its SHA-256 (reads all the bytes).")
@click.option("--repair", is_flag=True,
              help="Delete orphans and abort stale uploads older than the grace period, each re-checked first.")
@click.option("--grace-s", type=click.FloatRange(min=0), default=None,
              help="Unnamed replicas and open uploads younger than this are left alone "
                   "(default: mover.audit_grace_s for replicas, mover.stale_upload_s for uploads).")
@click.option("--publish/--no-publish", default=True,
              help="Publish the report to the audits topic (analytics, API, Grafana).")
@click.option("--every-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Run again this many seconds after each audit started, until stopped (a deployment's auditor).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="With --every-s: stop after this many audits.")
def audit_cmd(bucket: str | None, prefix: str, verify_checksums: bool, repair: bool, grace_s: float | None,
              publish: bool, every_s: float | None, count: int | None):
    """Check the stores against the placement catalog; prints the AuditRecord as JSON (plus what a repair did),
    exits 2 on an integrity finding (a single run; with --every-s the findings go to the audits topic)."""
    import time

    from mover.s3ops import MoveError

    settings = _settings()
    runs = 0
    while True:
        started = time.monotonic()
        try:
            ok = _audit_once(settings, bucket, prefix, verify_checksums, repair, grace_s, publish)
        except MoveError as exc:  # a store or the catalog would not answer
            if every_s is None:
                raise click.ClickException(f"the audit could not finish: {exc.reason}") from exc
            click.echo(f"warning: the audit could not finish, trying again later: {exc.reason}", err=True)
            ok = False
        runs += 1
        if every_s is None:
            if not ok:
                sys.exit(2)
            return
        if count is not None and runs >= count:
            return
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))


def _audit_once(settings, bucket: str | None, prefix: str, verify_checksums: bool, repair: bool,
                grace_s: float | None, publish: bool) -> bool:
    from mover.reconcile import publish as publish_record
    from mover.reconcile import repair as repair_waste
    from mover.reconcile import run_audit

    try:
        report = run_audit(settings, bucket, prefix, verify_checksums, grace_s)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    record = report.record()
    out = record.model_dump(mode="json")
    if repair:
        out["repair"] = repair_waste(settings, report, grace_s)
    click.echo(json.dumps(out))
    if publish:
        try:
            publish_record(settings, record)
        except (RuntimeError, KafkaException) as exc:
            click.echo(f"warning: the report was not published: {exc}", err=True)
    return report.ok


def _problems(exc, shown: int = 5) -> str:
    """A pydantic ValidationError on one line: "field: message; ..." (the first `shown` of them)."""
    errors = exc.errors(include_url=False)
    text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors[:shown])
    return text + (f" (and {len(errors) - shown} more)" if len(errors) > shown else "")


@click.command("chaos")
@click.option("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0 = any free port).")
@click.option("--upstream", default=None, help="S3 endpoint to forward to (default: s3.endpoint).")
@click.option("--config", "config_json", default="{}",
              help='Fault rates as JSON, e.g. {"rate_429":0.05,"rate_503":0.05,"rate_500":0.02,'
                   '"latency_ms":20,"drop_rate":0.02,"truncate_rate":0.02,"seed":1}.')
def chaos_cmd(listen: str, upstream: str | None, config_json: str):
    """Run the fault-injection S3 proxy in the foreground (prints its URL)."""
    from pydantic import ValidationError

    from mover.chaos import ChaosConfig, serve_forever

    host, _, port = listen.rpartition(":")
    if not (port or "0").isdigit() or not 0 <= int(port or 0) <= 65535:
        raise click.BadParameter(f"expected host:port with a port from 0 to 65535, got {listen!r}",
                                 param_hint="--listen")
    try:
        cfg = ChaosConfig.model_validate_json(config_json)
    except ValidationError as exc:
        raise click.BadParameter(_problems(exc), param_hint="--config") from None
    try:
        serve_forever(host or "127.0.0.1", int(port or 0), upstream or _settings().s3.endpoint, cfg)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from None
