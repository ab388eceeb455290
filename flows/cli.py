"""`dim flow`: run the Bytewax dataflow (decayed heat, p_hot, candidates)."""

from __future__ import annotations

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
    run_flow(
        settings,
        workers=workers or settings.flow.workers,
        until_run=until_run,
        recovery=recovery,
        addresses=addr_list,
        process_id=process_id,
    )
