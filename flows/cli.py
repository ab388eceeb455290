"""`dim flow`: run the Bytewax dataflow (decayed heat, p_hot, candidates); `dim flow-state`: what its shards know."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("flow")
@click.option("-w", "--workers", type=int, default=None, help="Worker threads per process [flow.workers].")
@click.option("--until-run", default=None, help="Stop after this run's end markers on every access partition.")
@click.option("--recovery/--no-recovery", default=True, show_default=True,
              help="Snapshot state and offsets to flow.recovery_dir and resume from them.")
@click.option("-p", "--processes", type=int, default=None,
              help="Number of processes of a multi-process cluster (needs -a and -i).")
@click.option("-a", "--addresses", default=None,
              help='host:port of every process, separated by ";" (e.g. "h1:2101;h2:2101").')
@click.option("-i", "--process-id", type=int, default=None, help="Index of this process in --addresses.")
def flow_cmd(workers, until_run, recovery, processes, addresses, process_id):
    """Run the flow: access topic -> heat, p_hot -> candidates, heat snapshots, dead letters."""
    from dim.config import get_settings
    from dim.kafka import require_broker
    from flows.run import run_flow

    settings = get_settings()
    addr_list = [a.strip() for a in addresses.split(";") if a.strip()] if addresses else None
    if (addr_list is None) != (process_id is None):
        raise click.UsageError("-a/--addresses and -i/--process-id go together")
    if addr_list is not None:
        if processes is not None and processes != len(addr_list):
            raise click.UsageError(f"-p {processes} but {len(addr_list)} addresses given")
        if not 0 <= process_id < len(addr_list):
            raise click.UsageError(f"-i {process_id} is not an index into the {len(addr_list)} addresses")
    elif processes not in (None, 1):
        raise click.UsageError("-p N > 1 needs -a with N addresses and -i (one `dim flow` per process)")
    require_broker(settings)
    run_flow(
        settings,
        workers=workers or settings.flow.workers,
        until_run=until_run,
        recovery=recovery,
        addresses=addr_list,
        process_id=process_id,
    )


@click.command("flow-state")
@click.option("--recovery-dir", type=click.Path(path_type=Path), default=None,
              help="Recovery store to read [flow.recovery_dir].")
def flow_state_cmd(recovery_dir):
    """Print what each shard of the flow knows, from its latest recovery snapshot (read-only; the flow may run):
    event-time clock, events, late events, repeats, dead letters, objects, pending and learned labels, model."""
    import json
    import pickle
    import sqlite3

    from dim.config import get_settings
    from flows.run import load_shard_states
    from flows.shard import StateFormatError

    path = recovery_dir or get_settings().recovery_dir
    if not any(Path(path).glob("part-*.sqlite3")):
        raise click.ClickException(f"no flow recovery store in {path} (flow.recovery_dir): has `dim flow` run with "
                                   "recovery on?")
    try:
        shards = load_shard_states(path)
    except StateFormatError as exc:
        raise click.ClickException(str(exc)) from None
    except (sqlite3.Error, pickle.UnpicklingError, EOFError) as exc:
        raise click.ClickException(f"the recovery store in {path} cannot be read ({type(exc).__name__}: {exc}): "
                                   "is it a Bytewax recovery store of `dim flow`?") from None
    if not shards:
        raise click.ClickException(f"the recovery store in {path} holds no shard snapshot yet")
    for shard_id, shard in sorted(shards.items()):
        click.echo(json.dumps({"shard": shard_id, **shard.summary()}, sort_keys=True))
