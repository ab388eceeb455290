"""Run the flow: in this process, through Bytewax's production entry point (`cli_main`, what `python -m
bytewax.run` calls), so `dim flow` is one ordinary process that SIGKILL, systemd or Kubernetes can manage, and
tests can call `run_flow` directly. Multi-process runs start one `dim flow -p/-a/-i` per process."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from dim.config import Settings
from dim.kafka import publish_end_markers
from flows.gctune import few_gc_passes
from schemas import topics

log = logging.getLogger(__name__)

# Topics the flow writes: a bounded run appends its end markers to each, so the next stage can stop there too.
OUTPUT_TOPICS = (topics.CANDIDATES, topics.HEAT, topics.FLOW_STATUS, topics.DEAD_LETTERS)
RECOVERY_PARTITIONS = 1


def ensure_recovery_dir(path: Path) -> Path:
    """Create and initialise Bytewax's recovery store once; later runs resume from it."""
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    if not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, RECOVERY_PARTITIONS)
    return path


def run_flow(
    settings: Settings,
    workers: int = 1,
    until_run: str | None = None,
    recovery: bool = True,
    addresses: list[str] | None = None,
    process_id: int | None = None,
) -> None:
    """Run the dataflow until `until_run`'s end markers were seen on every access partition (or forever when
    None). Blocking. With `recovery`, state and offsets are snapshotted every `flow.snapshot_interval_s` into
    `settings.recovery_dir` and a restarted flow resumes from the last snapshot."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    from flows.dataflow import build_dataflow

    if workers < 1:
        raise ValueError("workers must be >= 1")
    if (addresses is None) != (process_id is None):
        raise ValueError("multi-process mode needs both addresses and process_id")
    recovery_config = RecoveryConfig(ensure_recovery_dir(settings.recovery_dir)) if recovery else None
    flow = build_dataflow(settings, until_run=until_run)
    with few_gc_passes():
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.flow.snapshot_interval_s),
            recovery_config=recovery_config,
        )
    # In one process every worker's sink has flushed once cli_main returns, so the run is closed on the outputs
    # here. Across processes no process knows when the others' sinks are done: the launcher publishes the
    # markers (dim.kafka.publish_end_markers on OUTPUT_TOPICS) after every process exited.
    if until_run and addresses is None:
        close_outputs(settings, until_run)


def close_outputs(settings: Settings, run_id: str) -> None:
    """Append `run_id`'s end markers to every topic the flow writes."""
    for topic in OUTPUT_TOPICS:
        publish_end_markers(settings, topic, run_id)


def load_shard_states(recovery_dir: Path) -> dict[int, ShardState]:  # noqa: F821
    """The latest recovered ShardState of every shard in a recovery store (inspection and tests; read-only)."""
    import pickle
    import sqlite3

    from flows.dataflow import FLOW_NAME
    from flows.shard import restore_shard

    latest: dict[str, tuple[int, bytes | None]] = {}
    for part in sorted(Path(recovery_dir).glob("part-*.sqlite3")):
        con = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ?", (f"{FLOW_NAME}.shard",)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            rows = []  # a store still being initialised by a starting flow: nothing recovered yet
        finally:
            con.close()
        for key, epoch, blob in rows:
            if key not in latest or epoch > latest[key][0]:
                latest[key] = (epoch, blob)
    # Bytewax pickles the value our snapshot() returned, which is itself a pickled ShardState.
    return {int(k): restore_shard(pickle.loads(blob), f"{recovery_dir} (shard {k})")
            for k, (_, blob) in latest.items() if blob is not None}
