"""`dim evaluate TRACE`: the offline evaluation as a command (register as `dim.evaluation.cli:evaluate_cmd`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from dim.evaluation.simulator import POLICIES


def _check_writable(path: Path, option: str) -> None:
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}", param_hint=option) from None


@click.command("evaluate")
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--time-scale", default=1.0, show_default=True, help="Event-time seconds per trace second.")
@click.option("--size-scale", default=1.0, show_default=True, help="Multiply every object size by this.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the results here.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML report with charts.")
@click.option("--slot-days", default=1.0, show_default=True, help="Simulated days per planning cycle.")
@click.option("--client", default="auto", show_default=True,
              help="Where readers are: a catalogue site (provider:region), 'internet', or 'auto' (the producers' "
                   "client region).")
@click.option("--policies", default=",".join(POLICIES), show_default=True, help="Comma-separated policies.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N requests.")
@click.option("--format", "fmt", type=click.Choice(["csv", "oracleGeneral"]), default=None,
              help="Trace format (default: from the file name).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes for the flow replay of `ours`.")
def evaluate_cmd(trace, time_scale, size_scale, json_out, html_out, slot_days, client, policies, limit, fmt,
                 workers):
    """Replay TRACE in simulated time under every policy (ours = the live flow + solver cores) and bill each with
    the shared cost model; write JSON (and HTML) results."""
    from dim.config import get_settings
    from dim.evaluation.simulator import evaluate
    from dim.traces import TraceError

    names = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = sorted(set(names) - set(POLICIES))
    if unknown:
        raise click.BadParameter(f"unknown {unknown}; choose from {', '.join(POLICIES)}", param_hint="--policies")
    if not all(math.isfinite(v) and v > 0 for v in (time_scale, size_scale, slot_days)):
        raise click.BadParameter("scales and --slot-days must be positive numbers")
    if not names:
        raise click.BadParameter("no policy given", param_hint="--policies")
    # Before a run of minutes, not after it: an output that cannot be written would lose every result.
    for option, path in (("--json", json_out), ("--html", html_out)):
        if path is not None:
            _check_writable(path, option)
    try:
        result = evaluate(trace, time_scale, size_scale, settings=get_settings(), slot_days=slot_days,
                          client=client, policies=names, limit=limit, fmt=fmt, progress=True, workers=workers)
    except (TraceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    if html_out:
        from dim.evaluation.report_html import write_html

        write_html(result, html_out)
    pol = result["policies"]
    summary = {name: round(r["total_cost_usd"], 4) for name, r in pol.items()}
    click.echo(json.dumps({"total_cost_usd": summary, "gap_closed": result.get("gap_closed"),
                           "wall_seconds": result["wall_seconds"]}))
