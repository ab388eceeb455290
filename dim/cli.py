"""`dim`: the command line of Data-in-Motion.

Subcommands live next to the code they drive (flows/cli.py, solver/cli.py, ...) and are imported only when run,
so `dim --help` stays fast and one stage's dependencies never slow another's start-up.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

# name -> (module:attribute, one-line help). The help text is here so `dim --help` needs no imports.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "config": ("dim.cli:config_cmd", "Print the effective configuration (secrets masked)."),
    "schemas": ("dim.cli:schemas_cmd", "Export the contracts: JSON Schema, ClickHouse DDL, topics."),
    "up": ("dim.cli:up_cmd", "Start the embedded stack (SeaweedFS S3 + Tansu Kafka) and provision it."),
    "down": ("dim.cli:down_cmd", "Stop the embedded stack; leaves no process behind."),
    "status": ("dim.cli:status_cmd", "Report the embedded stack's processes and health."),
    "provision": ("dim.cli:provision_cmd", "Create topics, buckets and ClickHouse tables on configured services."),
    "replay": ("dim.producers:replay_cmd", "Publish a trace (CSV[.zst] or oracleGeneral) to the access topic."),
    "ship-logs": ("dim.logship:ship_logs_cmd", "Publish S3 server access logs (files or s3://) to the access topic."),
    "generate": ("dim.producers:generate_cmd", "Publish a seeded synthetic workload to the access topic."),
    "flow": ("flows.cli:flow_cmd", "Run the Bytewax dataflow: decayed heat, p_hot, candidates."),
    "flow-state": ("flows.cli:flow_state_cmd", "Print each flow shard's counters, clock and model from its snapshot."),
    "solve": ("solver.cli:solve_cmd", "Run the placement solver: candidates -> plans."),
    "move": ("mover.cli:move_cmd", "Run the mover: execute plans against the S3 stores."),
    "audit": ("mover.cli:audit_cmd", "Check the stores against the placement catalog (and repair waste)."),
    "chaos": ("mover.cli:chaos_cmd", "Run the fault-injection S3 proxy."),
    "api": ("api.cli:api_cmd", "Serve the read-only query API (and ingest the topics into ClickHouse)."),
    "ingest": ("api.cli:ingest_cmd", "Ingest the topics into the analytics store."),
    "report": ("api.cli:report_cmd", "Write an HTML report with charts from the analytics store."),
    "evaluate": ("dim.evaluation.cli:evaluate_cmd", "Replay a trace in simulated time under every policy; cost + SLA."),
    "demo": ("dim.demo:demo_cmd", "Start the stack, replay a trace slice and run every stage end to end."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        target, _ = SUBCOMMANDS[name]
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            reason = str(exc)  # `exc` itself is unbound once the except block ends

            @click.command(name, help=SUBCOMMANDS[name][1])
            def missing():
                raise click.ClickException(f"'dim {name}' is not available: {reason}")

            return missing

    def invoke(self, ctx):
        from pydantic import ValidationError

        from api.store import StoreUnavailable
        from dim.config import ConfigError
        from dim.kafka import BrokerUnavailable
        from solver.catalogue import CatalogueError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            raise click.ClickException(configuration_error(exc)) from None
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration: {exc}") from None
        except (BrokerUnavailable, CatalogueError, StoreUnavailable) as exc:
            raise click.ClickException(str(exc)) from None

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Data-in-Motion: decide, object by object, where data should live across clouds and storage tiers,
    and move it there without losing a byte. Defaults run against the embedded stack (`dim up`)."""


def configuration_error(exc) -> str:
    """A bad setting, named as the user set it (environment variable or TOML key), instead of a traceback."""
    import os

    lines = ["invalid configuration (environment DIM_*, DIM_CONFIG or ./dim.toml):"]
    for err in exc.errors(include_url=False):
        path = [str(part) for part in err["loc"]]
        env = "DIM_" + "__".join(p.upper() for p in path[:2])
        where = env if env in os.environ else ".".join(path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":  # a misspelt name: say so, and where the real names are listed
            msg = f"unknown setting of section '{path[0]}' (`dim config` lists them all)"
        got = "" if isinstance(err["input"], dict) else f" (got {repr(err['input'])[:80]})"  # a section: msg says
        lines.append(f"  {where}: {msg}{got}")
    return "\n".join(lines)


def settings():
    from dim.config import get_settings

    return get_settings()


@click.command("config")
def config_cmd():
    """Print the effective configuration (environment + TOML + defaults), secrets masked."""
    click.echo(json.dumps(settings().masked(), indent=2, default=str))


@click.group("schemas")
def schemas_cmd():
    """The data contracts."""


@schemas_cmd.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(out_dir: Path):
    """Write JSON Schema for every model, the ClickHouse DDL and the topic list into OUT_DIR."""
    from schemas.export import export

    try:
        paths = export(out_dir, settings().clickhouse.database)
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out_dir}: {exc.strerror or exc}") from None
    for path in paths:
        click.echo(str(path))


@click.command("up")
def up_cmd():
    """Start SeaweedFS and Tansu under a supervisor, wait until healthy, create topics and buckets."""
    from dim import stack

    try:
        click.echo(json.dumps(stack.up(settings()), indent=2))
    except stack.StackError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("down")
def down_cmd():
    """Stop the embedded stack."""
    from dim import stack

    if not stack.down(settings()):
        raise click.ClickException("some stack processes could not be stopped")
    click.echo("stopped")


@click.command("status")
def status_cmd():
    """Health of the embedded stack (exit 1 when unhealthy)."""
    from dim import stack

    st = stack.status(settings())
    click.echo(json.dumps(st, indent=2))
    if not (st["s3"]["healthy"] and st["kafka"]["healthy"]):
        sys.exit(1)


@click.command("provision")
@click.option("--analytics/--no-analytics", default=True, help="Also apply the ClickHouse migrations.")
def provision_cmd(analytics: bool):
    """Idempotently create the topics, one bucket per catalogue location, the catalog bucket and (optionally) the
    analytics tables on the configured services (a server deployment; `dim up` does this for the embedded one)."""
    from dim import stack

    s = settings()
    stack.ensure_buckets(s, [s.s3.catalog_bucket, *stack.location_buckets(s)])
    stack.ensure_topics(s)
    if analytics:
        from api.derive import load_prices
        from api.store import AnalyticsStore

        with AnalyticsStore.open(s) as store:
            store.migrate()
            load_prices(store, s)
    click.echo("provisioned")


if __name__ == "__main__":
    main()
