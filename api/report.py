"""`dim report`: an HTML page with PNG charts of the Grafana views (api.views), for users without Grafana."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections import defaultdict
from pathlib import Path

from api import analytics, queries
from api.store import AnalyticsStore
from api.views import VIEWS, View, expand_macros
from dim.config import Settings
from schemas import tables as t

MAX_POINTS = 200
PLAN_TIMES = frozenset({"created_at"})  # queries.list_plans returns it as toFloat64


def data_range(store: AnalyticsStore) -> tuple[float, float]:
    """From the first hour with accesses (or the first ledger day) to now."""
    rows = store.query(
        f"""SELECT toFloat64(toUnixTimestamp(min(hour))) AS h, count() AS n FROM {store.table(t.ACCESS_HOURLY)}""")
    ledger = store.query(f"SELECT toFloat64(toUnixTimestamp(toDateTime(min(day)))) AS d, count() AS n "
                         f"FROM {store.table(t.COST_LEDGER)}")
    starts = [r[k] for r, k in ((rows[0], "h"), (ledger[0], "d")) if r["n"]]
    now = time.time()
    return (min(starts) - 3600 if starts else now - 86400), now + 3600


def _interval(start: float, end: float) -> int:
    raw = max(60.0, (end - start) / MAX_POINTS)
    for step in (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400):
        if raw <= step:
            return step
    return 30 * 86400


def _chart(view: View, rows: list[dict], path: Path) -> bool:
    """Draw one view; False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return False
    cols = list(rows[0])
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        if view.table:  # categories on x, the first numeric column as bars
            x = [str(r[cols[0]]) for r in rows]
            y = [float(r[cols[1]]) for r in rows]
            ax.bar(x, y, color="#3b73b9")
            ax.set_xlabel(cols[0])
            ax.set_ylabel(cols[1])
        else:
            def as_time(v) -> dt.datetime:
                return dt.datetime.fromtimestamp(float(v), dt.UTC)

            labels = [c for c in cols[1:] if isinstance(rows[0][c], str)]
            values = [c for c in cols[1:] if c not in labels]
            series: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
            for r in rows:
                label = " ".join(str(r[c]) for c in labels)
                for c in values:
                    name = f"{label} {c}".strip() if len(values) > 1 or not label else label
                    series[name].append((as_time(r["time"]), float(r[c] or 0.0)))
            for name, points in sorted(series.items()):
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=name)
            if len(series) > 1:
                ax.legend(fontsize=7, loc="best")
            fig.autofmt_xdate()
        ax.set_title(view.title, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return True


def time_columns(store: AnalyticsStore, sql: str) -> frozenset[str]:
    """The columns of a query's result that are dates or times (the store returns them as Unix seconds)."""
    described = store.query(f"DESCRIBE ({sql})")
    return frozenset(d["name"] for d in described
                     if re.match(r"(Nullable\()?(LowCardinality\()?(Date|DateTime)(32|64)?\b", d["type"]))


def _cell(value, is_time: bool) -> str:
    if is_time and value is not None:  # DateTime64 comes as a quoted decimal ("1796308401.000")
        return f"{dt.datetime.fromtimestamp(float(value), dt.UTC):%Y-%m-%d %H:%M:%S}"
    return str(value)


def _table(rows: list[dict], times: frozenset[str] = frozenset()) -> str:
    """An HTML table; columns in `times` (Unix seconds) are shown as UTC date and time, like Grafana does."""
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(c))}{' (UTC)' if c in times else ''}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v, k in times))}</td>" for k, v in r.items())
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(settings: Settings, store: AnalyticsStore, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    start, end = data_range(store)
    interval = _interval(start, end)
    sections = []
    for n, view in enumerate(VIEWS, 1):
        sql = expand_macros(view.sql, start, end, interval, settings.clickhouse.database)
        rows = store.query(sql)
        if view.panel == "table":
            sections.append(f"<h2>{html.escape(view.title)}</h2>{_table(rows, time_columns(store, sql))}")
            continue
        png = out_dir / f"chart-{n:02d}.png"
        if _chart(view, rows, png):
            sections.append(f'<h2>{html.escape(view.title)}</h2><img src="{png.name}" alt="{html.escape(view.title)}">')
        else:
            sections.append(f"<h2>{html.escape(view.title)}</h2><p>no data in range</p>")
    savings = analytics.savings(store, settings)
    costs = analytics.costs(store, "provider", None, None)
    plans, _ = queries.list_plans(store, cursor=None, limit=20)
    summary = {
        "objects in the catalog": savings.objects,
        "monthly run-rate (USD, latest ledger day x 30)": f"{costs.run_rate_usd_month:.4f}",
        "current placement (USD/month)": f"{savings.current_usd_month:.4f}",
        "all-hot baseline (USD/month)": f"{savings.baseline_usd_month:.4f}",
        "saving vs all-hot (USD/month)": f"{savings.saving_usd_month:.4f}",
        "planned saving over all plans (USD/month)": f"{savings.planned_saving_usd_month:.4f}",
    }
    summary_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                           for k, v in summary.items())
    span = (f"{dt.datetime.fromtimestamp(start, dt.UTC):%Y-%m-%d %H:%M} – "
            f"{dt.datetime.fromtimestamp(end, dt.UTC):%Y-%m-%d %H:%M} UTC")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Data-in-Motion report</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}} img{{max-width:100%}}</style>
</head><body>
<h1>Data-in-Motion report</h1>
<p>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC from database <code>{html.escape(
        settings.clickhouse.database)}</code>; data {span}.</p>
<table>{summary_html}</table>
<h2>Latest plans</h2>{_table(plans, PLAN_TIMES)}
{''.join(sections)}
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index
