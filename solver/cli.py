"""`dim solve`: the placement solver stage (candidates topic -> plans and moves topics)."""

from __future__ import annotations

import json
import logging

import click


@click.command("solve")
@click.option("--until-run", default=None, help="Stop after this run's end markers on the candidates topic.")
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds to gather a batch of candidates (default: solver.batch_interval_s).",
)
@click.option(
    "--idle-timeout", type=float, default=None, help="Stop after this many seconds without candidates."
)
def solve_cmd(until_run: str | None, interval: float | None, idle_timeout: float | None):
    """Run the placement solver: candidates -> plans + moves."""
    from dim.config import get_settings
    from dim.kafka import require_broker
    from solver.service import run_solver

    logging.basicConfig(level=logging.INFO, format="%(asctime)s solver %(levelname)s %(message)s")
    settings = get_settings()
    require_broker(settings)
    if interval is not None:
        settings = settings.model_copy(
            update={"solver": settings.solver.model_copy(update={"batch_interval_s": interval})}
        )
    plans = run_solver(settings, until_run=until_run, idle_timeout_s=idle_timeout)
    click.echo(
        json.dumps(
            {
                "plans": len(plans),
                "moves": sum(len(p.moves) for p in plans),
                "cost_before_usd_month": round(sum(p.cost_before_usd_month for p in plans), 6),
                "cost_after_usd_month": round(sum(p.cost_after_usd_month for p in plans), 6),
            }
        )
    )
