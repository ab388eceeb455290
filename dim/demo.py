"""`dim demo`: the whole pipeline, end to end, on the real embedded stack.

up → replay the shipped trace sample (objects created for real) → flow (heat, p_hot, candidates) → solver (plans)
→ mover (copy, verify, commit, delete) → audit of the stores against the catalog (mover/audit.py) → ingestion
into ClickHouse (chDB) → summary (+ HTML report) → down.

Each stage runs bounded: it stops at the run's end markers (see dim/kafka.py). The flow and the solver append the
markers to their output topics when they finish; the orchestrator does it for the mover's outputs, so the next
stage knows when it has seen all.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click

from dim.config import Settings, get_settings
from dim.kafka import publish_end_markers
from schemas import topics

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "twitter52_sample.csv.zst"


@dataclass
class PipelineResult:
    run_id: str
    stages_s: dict[str, float] = field(default_factory=dict)
    replay: dict = field(default_factory=dict)
    flow: dict = field(default_factory=dict)
    solver: dict = field(default_factory=dict)
    mover: dict = field(default_factory=dict)
    audit: dict = field(default_factory=dict)
    ingest: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def run_pipeline(
    settings: Settings,
    trace: Path = SAMPLE,
    bucket: str = "demo",
    time_scale: float = 3600.0,
    size_scale: float = 10_000.0,
    limit: int | None = None,
    run_id: str | None = None,
    start: float | None = None,
    echo=lambda msg: None,
) -> PipelineResult:
    """Run every stage once over `trace` against an already running stack; returns what each stage reported."""
    from api.ingest import run_ingest
    from api.store import AnalyticsStore
    from dim.producers import ReplayOptions, replay
    from flows.run import run_flow
    from mover.service import run_mover
    from solver.service import run_solver

    run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
    res = PipelineResult(run_id=run_id)

    def stage(name: str):
        class _Timer:
            def __enter__(self):
                echo(f"▶ {name}")
                self.t0 = time.monotonic()

            def __exit__(self, *exc):
                res.stages_s[name] = round(time.monotonic() - self.t0, 2)

        return _Timer()

    with stage("replay"):
        opt = ReplayOptions(bucket=bucket, time_scale=time_scale, size_scale=size_scale, source=trace.stem,
                            **({"start": start} if start is not None else {}))
        res.replay = replay(settings, trace, opt, limit=limit, end_run=run_id).as_dict()
    with stage("flow"):
        run_flow(settings, workers=settings.flow.workers, until_run=run_id)  # closes its outputs itself
        res.flow = flow_summary(settings)
    with stage("solver"):
        plans = run_solver(settings, until_run=run_id)  # closes the plans and moves topics itself
        res.solver = {
            "plans": len(plans),
            "moves": sum(len(p.moves) for p in plans),
            "methods": sorted({p.method for p in plans}),
        }
    with stage("mover"):
        res.mover = dict(run_mover(settings, until_run=run_id))
        for t in (topics.MOVE_EVENTS, topics.PLACEMENTS):
            publish_end_markers(settings, t, run_id)
    with stage("audit"):
        from mover.reconcile import publish, run_audit

        record = run_audit(settings, bucket).record(max_findings=10)
        publish(settings, record)
        publish_end_markers(settings, topics.AUDITS, run_id)
        res.audit = record.model_dump(mode="json", include={"audit_id", "ok", "entries", "replicas", "replica_bytes",
                                                            "counts", "findings"})
    with stage("ingest"), AnalyticsStore.open(settings) as store:
        store.migrate()
        res.ingest = dict(run_ingest(settings, store, until_run=run_id))
        res.summary = summarize(settings, store, bucket, res)
    return res


def flow_summary(settings: Settings) -> dict:
    """What the flow's shards learnt (their recovered state, as `dim flow-state` shows it): events, labels, and
    what serves p_hot in how many shards - the heat prior, or a River model that beats it on the same labels."""
    from flows.run import load_shard_states

    shards = [state.summary() for state in load_shard_states(settings.recovery_dir).values()]
    return {"shards": len(shards), "events": sum(s["events"] for s in shards),
            "labels_learned": sum(s["labels_learned"] for s in shards),
            "p_hot_from": dict(Counter(s["p_hot_from"] for s in shards))}


def summarize(settings: Settings, store, bucket: str, res: PipelineResult) -> dict:
    """Numbers a person wants after a run, read back from the analytics store and the catalog."""
    from dim.estate import estate_cost

    t = store.table
    events = store.query(f"SELECT count() AS n FROM {t('access_events')} FINAL WHERE bucket = {{b:String}}",
                         {"b": bucket})[0]["n"]
    done = store.query(
        f"SELECT count() AS n, sum(bytes) AS b FROM {t('move_events')} FINAL "
        f"WHERE bucket = {{b:String}} AND state = 'deleted'", {"b": bucket})[0]
    # What the executed moves cost once (requests, retrieval, early deletion: the solver's transition costs), so
    # the monthly saving below is not read as free.
    spent = store.query(
        f"SELECT sum(transition_cost_usd) AS usd FROM {t('moves')} FINAL WHERE bucket = {{b:String}} AND move_id IN "
        f"(SELECT move_id FROM {t('move_events')} FINAL WHERE bucket = {{b:String}} AND state = 'deleted')",
        {"b": bucket})[0]["usd"] or 0.0
    before, after = estate_cost(settings, store, bucket)
    return {
        "events_ingested": int(events),
        "objects": res.replay.get("objects", 0),
        "flow": res.flow,
        "moves_planned": res.solver.get("moves", 0),
        "moves_done": int(done["n"]),
        "moves_failed": int(res.mover.get("failed", 0)),
        "bytes_moved": int(res.mover.get("bytes_moved", done["b"] or 0)),
        "monthly_cost_before_usd": round(before, 4),
        "monthly_cost_after_usd": round(after, 4),
        "moves_cost_usd": round(spent, 4),
        # months of the estimated saving that pay the moves back (None: nothing saved)
        "payback_months": round(spent / (before - after), 2) if before > after else None,
        "audit": res.audit,
    }


@click.command("demo")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=SAMPLE,
              show_default=True)
@click.option("--time-scale", default=3600.0, show_default=True)
@click.option("--size-scale", default=10_000.0, show_default=True)
@click.option("--limit", type=int, default=None)
@click.option("--keep/--no-keep", default=False, help="Leave the stack running afterwards.")
def demo_cmd(trace: Path, time_scale: float, size_scale: float, limit: int | None, keep: bool):
    """Start a fresh embedded stack in <data_dir>/demo (free ports), run every stage over the shipped trace
    sample, print a summary, write the HTML report and stop everything."""
    from dim import stack
    from dim.testing import scratch_settings

    data_dir = get_settings().stack.data_dir / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = scratch_settings(data_dir)
    t0 = time.monotonic()
    click.echo(f"starting the embedded stack in {data_dir} (S3 :{settings.stack.s3_port}, "
               f"Kafka :{settings.stack.kafka_port})")
    try:
        stack.up(settings)
        # Date the replayed trace so that it ends now: the mover and the analytics stamp what they do with the
        # wall clock, so event time and wall time then share one axis in the report.
        from dim.traces import read_trace

        span = max(r.time_s for r in read_trace(trace, limit=limit)) * time_scale
        res = run_pipeline(settings, trace, time_scale=time_scale, size_scale=size_scale, limit=limit,
                           start=time.time() - span, echo=click.echo)
        report_path = _write_report(settings)
    finally:
        if not keep:
            gc.collect()  # close Kafka clients the stages dropped, before their broker goes away
            stack.down(settings)
    summary = {**res.summary, "seconds": round(time.monotonic() - t0, 1), "stages_s": res.stages_s,
               "trace": str(trace), "time_scale": time_scale, "size_scale": size_scale}
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"report: {report_path.resolve()}")
    if summary["moves_done"] == 0:
        raise click.ClickException("the demo executed no move")
    if not summary["audit"]["ok"]:
        raise click.ClickException("the audit found a catalogued replica missing or changed (see 'audit')")


def _write_report(settings: Settings) -> Path:
    from api.report import write_report
    from api.store import AnalyticsStore

    with AnalyticsStore.open(settings) as store:
        return write_report(settings, store, settings.stack.data_dir / "report")
