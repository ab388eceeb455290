"""`dim api`, `dim ingest`, `dim report`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import click


class _Stopped(Exception):
    pass


def _raise_stopped(signum, frame):
    raise _Stopped()


def _settings():
    from dim.config import get_settings

    return get_settings()


@click.command("api")
@click.option("--host", default=None, help="Bind address (default: api.host).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: api.port).")
@click.option("--no-ingest", is_flag=True, help="Serve only; do not consume the topics.")
def api_cmd(host, port, no_ingest):
    """Serve the read-only API, and ingest the topics in a background thread of the same process (a chDB data
    directory can be open in one process only)."""
    import uvicorn

    from api.app import create_app
    from api.derive import load_prices
    from api.ingest import BackgroundIngester
    from api.store import AnalyticsStore

    settings = _settings()
    if not no_ingest:
        from dim.kafka import require_broker

        require_broker(settings)
    store = AnalyticsStore.open(settings)
    store.migrate()
    load_prices(store, settings)
    ingester = None if no_ingest else BackgroundIngester(settings, store).start()
    app = create_app(settings, store, ingester.stats if ingester else None)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal: turn that into an exception so
    # the ingester is stopped between batches and the store closed before the process exits (status 0).
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        uvicorn.run(app, host=host or settings.api.host, port=settings.api.port if port is None else port, log_level="info")
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        if ingester:
            ingester.stop()
        store.close()


@click.command("ingest")
@click.option("--until-run", default=None, help="Stop after this run's end markers on every input partition.")
@click.option("--idle-timeout", default=None, type=float, help="Stop after this many seconds without records.")
def ingest_cmd(until_run, idle_timeout):
    """Ingest every topic into the analytics store (batches, insert, then commit: at-least-once, deduplicated)."""
    import logging

    from api.ingest import run_ingest
    from api.store import AnalyticsStore
    from dim.kafka import require_broker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = _settings()
    require_broker(settings)
    with AnalyticsStore.open(settings) as store:
        counts = run_ingest(settings, store, until_run=until_run, idle_timeout_s=idle_timeout)
    click.echo(json.dumps({"rows": counts}))


@click.command("report")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write into (default: <data_dir>/report).")
def report_cmd(out_dir):
    """Write an HTML report with PNG charts from the analytics store; prints the path of index.html."""
    from api.report import write_report
    from api.store import AnalyticsStore

    settings = _settings()
    out_dir = out_dir or settings.stack.data_dir / "report"
    try:  # before opening the store: a report directory that cannot be written fails fast
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    with AnalyticsStore.open(settings) as store:
        store.migrate()
        path = write_report(settings, store, out_dir)
    click.echo(str(path))
