"""The analytics views shown by Grafana and by `dim report`, defined once.

Each view is ClickHouse SQL with the macros of the Grafana ClickHouse plugin (`$__timeFilter(col)`,
`$__dateFilter(col)`, `$__timeInterval(col)`, `${database}`). `dashboard()` renders the Grafana dashboard JSON
(committed under grafana/dashboards/, kept equal by a test); `expand_macros` expands the macros exactly as the
plugin does, for the report and for the test that runs every panel on chDB.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from schemas import REPEAT_REASON_PREFIX
from schemas import tables as t

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "dim-clickhouse"}


@dataclass(frozen=True)
class View:
    title: str
    panel: str  # Grafana panel type: timeseries, barchart, table
    table: int  # 1: a table result, 0: a time series (column "time", label columns, value columns)
    sql: str


VIEWS: list[View] = [
    View("Ingest rate (rows stored per interval)", "timeseries", 0, f"""SELECT $__timeInterval(_ingested_at) AS time, 'access_events' AS table, count() AS rows
FROM ${{database}}.{t.ACCESS_EVENTS} WHERE $__timeFilter(_ingested_at) GROUP BY time
UNION ALL
SELECT $__timeInterval(_ingested_at) AS time, 'object_heat' AS table, count() AS rows
FROM ${{database}}.{t.OBJECT_HEAT} WHERE $__timeFilter(_ingested_at) GROUP BY time
UNION ALL
SELECT $__timeInterval(_ingested_at) AS time, 'move_events' AS table, count() AS rows
FROM ${{database}}.{t.MOVE_EVENTS} WHERE $__timeFilter(_ingested_at) GROUP BY time
ORDER BY time"""),
    View("Ingest delay: event time to stored (s); consumer lag is on /metrics", "timeseries", 0, f"""SELECT $__timeInterval(_ingested_at) AS time,
       avg(toFloat64(_ingested_at) - toFloat64(event_time)) AS delay_s,
       quantile(0.99)(toFloat64(_ingested_at) - toFloat64(event_time)) AS delay_p99_s
FROM ${{database}}.{t.ACCESS_EVENTS} WHERE $__timeFilter(_ingested_at)
GROUP BY time ORDER BY time"""),
    View("Reads per interval", "timeseries", 0, f"""SELECT $__timeInterval(hour) AS time, sum(gets) AS reads, sum(puts) AS writes
FROM ${{database}}.{t.ACCESS_HOURLY} FINAL WHERE $__timeFilter(hour)
GROUP BY time ORDER BY time"""),
    View("Heat distribution (p_hot of the latest snapshot per object)", "barchart", 1, f"""SELECT toString(floor(p_hot * 10) / 10) AS p_hot_bin, count() AS objects
FROM ${{database}}.{t.OBJECT_HEAT_LATEST} FINAL
WHERE p_hot IS NOT NULL
GROUP BY p_hot_bin ORDER BY p_hot_bin"""),
    View("Stored GB by tier", "timeseries", 0, f"""SELECT toDateTime(day) AS time, tier, sum(gb_days) AS gb
FROM ${{database}}.{t.COST_LEDGER} FINAL WHERE $__dateFilter(day)
GROUP BY time, tier HAVING gb > 0 ORDER BY time"""),
    View("Stored GB by provider", "timeseries", 0, f"""SELECT toDateTime(day) AS time, provider, sum(gb_days) AS gb
FROM ${{database}}.{t.COST_LEDGER} FINAL WHERE $__dateFilter(day)
GROUP BY time, provider HAVING gb > 0 ORDER BY time"""),
    View("Monthly cost run-rate (USD, day x 30)", "timeseries", 0, f"""SELECT toDateTime(day) AS time, sum(total_usd) * 30 AS run_rate_usd_month
FROM ${{database}}.{t.COST_LEDGER} FINAL WHERE $__dateFilter(day)
GROUP BY time ORDER BY time"""),
    View("Cost by component (USD per day)", "timeseries", 0, f"""SELECT toDateTime(day) AS time, sum(storage_usd) AS storage, sum(request_usd) AS requests,
       sum(retrieval_usd) AS retrieval, sum(egress_usd) AS egress, sum(early_deletion_usd) AS early_deletion,
       sum(monitoring_usd) AS monitoring
FROM ${{database}}.{t.COST_LEDGER} FINAL WHERE $__dateFilter(day)
GROUP BY time ORDER BY time"""),
    View("Planned savings (USD/month, cost before - after)", "timeseries", 0, f"""SELECT $__timeInterval(created_at) AS time,
       sum(cost_before_usd_month - cost_after_usd_month) AS planned_saving_usd_month
FROM ${{database}}.{t.PLANS} FINAL WHERE $__timeFilter(created_at)
GROUP BY time ORDER BY time"""),
    # uniqExact: a redelivered finished move re-publishes its last event (mover/executor.py), at a new offset
    View("Moves finished, by outcome", "timeseries", 0, f"""SELECT $__timeInterval(ts) AS time, state, uniqExact(move_id) AS moves
FROM ${{database}}.{t.MOVE_EVENTS} FINAL
WHERE $__timeFilter(ts) AND state IN ('deleted', 'failed', 'rolled_back', 'skipped')
GROUP BY time, state ORDER BY time"""),
    View("Move failures", "table", 1, f"""SELECT ts, bucket, key, move_id, state, reason
FROM ${{database}}.{t.MOVE_EVENTS} FINAL
WHERE $__timeFilter(ts) AND state IN ('failed', 'rolled_back')
ORDER BY ts DESC LIMIT 100"""),
    View("SLA violations: reads served slower than the SLA, by location", "timeseries", 0, f"""SELECT $__timeInterval(hour) AS time, location, sum(reads) AS violating_reads
FROM ${{database}}.{t.SLA_EVENTS} FINAL WHERE $__timeFilter(hour) AND {t.SLA_VIOLATION}
GROUP BY time, location ORDER BY time"""),
    # Repeats (an access delivered twice, valid and not counted again) apart from refused input, which needs a fix.
    View("Dead letters by source topic (repeats apart)", "timeseries", 0, f"""SELECT $__timeInterval(_ingested_at) AS time, concat(source_topic, if(startsWith(reason, '{REPEAT_REASON_PREFIX}'), ' repeats', '')) AS source, count() AS records
FROM ${{database}}.{t.DEAD_LETTERS} FINAL WHERE $__timeFilter(_ingested_at)
GROUP BY time, source ORDER BY time"""),
    # `dim audit` runs: integrity findings (a catalogued replica missing or changed, fewer than RF) should stay
    # at 0; orphans are storage paid for nothing until `dim audit --repair`.
    View("Audits: integrity findings and orphans", "timeseries", 0, f"""SELECT $__timeInterval(started_at) AS time, sum({t.AUDIT_INTEGRITY_SUM}) AS integrity_findings, sum(counts['orphan']) AS orphans, sum(counts['stale_upload']) AS stale_uploads
FROM ${{database}}.{t.AUDITS} FINAL WHERE $__timeFilter(started_at)
GROUP BY time ORDER BY time"""),
    # The flow's p_hot model is served only while it beats the heat prior (flows/model.py): both log losses, per
    # shard, over event time. A model line above its prior's means the prior serves that shard.
    View("p_hot: the model's rolling log loss against the heat prior's, per flow shard (lower is better)", "timeseries", 0, f"""SELECT $__timeInterval(as_of) AS time, concat('shard ', toString(shard)) AS shard,
       avg(regression_logloss) AS model, avg(prior_logloss) AS prior
FROM ${{database}}.{t.FLOW_STATUS} FINAL
WHERE $__timeFilter(as_of) AND regression_logloss IS NOT NULL
GROUP BY time, shard ORDER BY time"""),
    View("Flow shards: newest status", "table", 1, f"""SELECT shard, as_of, p_hot_from, labels_learned, labels_pending,
       round(regression_logloss, 3) AS model_logloss, round(prior_logloss, 3) AS prior_logloss, events,
       late_events, repeats, dead_letters, objects, objects_hot,
       concat(toString(reads_states_calibrated), ' / ', toString(reads_states)) AS reads_states_calibrated
FROM ${{database}}.{t.FLOW_STATUS} FINAL
ORDER BY shard, as_of DESC LIMIT 1 BY shard"""),
]


def expand_macros(sql: str, start: float, end: float, interval_s: int, database: str) -> str:
    """The grafana-clickhouse-datasource macros, expanded as the plugin expands them."""
    d0 = dt.datetime.fromtimestamp(start, dt.UTC).date().isoformat()
    d1 = dt.datetime.fromtimestamp(end, dt.UTC).date().isoformat()
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} >= toDateTime({int(start)}) AND {m[1]} <= toDateTime({int(end)})", sql)
    sql = re.sub(r"\$__dateFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} >= toDate('{d0}') AND {m[1]} <= toDate('{d1}')", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({int(start)})").replace("$__toTime", f"toDateTime({int(end)})")
    sql = sql.replace("$__interval_s", str(interval_s))
    sql = sql.replace("${database}", database).replace("$database", database)
    if "$" in sql:
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql


def dashboard() -> dict:
    """The Grafana dashboard of every view (two panels per row)."""
    panels = []
    for i, v in enumerate(VIEWS):
        panels.append({
            "id": i + 1, "title": v.title, "type": v.panel, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "targets": [{"refId": "A", "datasource": DATASOURCE, "editorType": "sql",
                         "queryType": "table" if v.table else "timeseries", "format": v.table, "rawSql": v.sql}],
            "options": {}, "fieldConfig": {"defaults": {}, "overrides": []},
        })
    return {
        "uid": "dim-overview", "title": "Data-in-Motion", "schemaVersion": 39, "version": 1, "editable": False,
        "tags": ["data-in-motion"], "timezone": "utc", "refresh": "30s", "time": {"from": "now-30d", "to": "now"},
        "templating": {"list": [{"name": "database", "type": "constant", "query": "dim", "hide": 2,
                                 "label": "ClickHouse database (DIM_CLICKHOUSE__DATABASE)"}]},
        "panels": panels,
    }
