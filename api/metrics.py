"""Prometheus exposition for /metrics: ingest progress and consumer lag, rows per table, moves by state,
failures, the newest audit, each flow shard's clock and model. Built per scrape in a fresh registry (values come
from the store and the in-process ingester)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.store import AnalyticsStore, StoreError
from dim.config import Settings
from schemas import tables as t


def _consumer_lag(settings: Settings, positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Lag per partition from the broker's high watermark. On Tansu the watermark is the first offset of the
    last record batch, so this under-reports by at most one batch: good enough for a dashboard."""
    from confluent_kafka import Consumer, TopicPartition

    from dim.config import kafka_consumer_config

    if not positions:
        return {}
    cons = Consumer(kafka_consumer_config(settings, "api-metrics-probe"))
    try:
        lag = {}
        for (topic, part), offset in positions.items():
            _low, high = cons.get_watermark_offsets(TopicPartition(topic, part), timeout=1.0, cached=False)
            lag[(topic, part)] = max(0, high - (offset + 1))
        return lag
    finally:
        cons.close()


def _last_audit(store: AnalyticsStore, reg: CollectorRegistry) -> None:
    """The newest `dim audit` run: alert on dim_audit_ok == 0 (a catalogued replica missing or changed)."""
    last = store.query(
        f"""SELECT toFloat64(started_at) AS started_at, ok, {t.AUDIT_INTEGRITY_SUM} AS integrity, orphan_bytes
            FROM {store.table(t.AUDITS)} FINAL ORDER BY started_at DESC, audit_id DESC LIMIT 1""")
    if not last:
        return
    a = last[0]
    Gauge("dim_audit_ok", "1 if the newest audit found no integrity problem", registry=reg).set(int(a["ok"]))
    Gauge("dim_audit_integrity_findings", "Integrity findings of the newest audit", registry=reg).set(a["integrity"])
    Gauge("dim_audit_orphan_bytes", "Bytes in orphaned replicas at the newest audit", registry=reg).set(
        a["orphan_bytes"])
    Gauge("dim_audit_age_seconds", "Seconds since the newest audit started", registry=reg).set(
        time.time() - a["started_at"])


def _flow_shards(store: AnalyticsStore, reg: CollectorRegistry) -> None:
    """The newest ShardStatus of every flow shard: alert on an event-time clock that stops, or on a model that no
    longer beats the heat prior (dim_flow_model_serving == 0 after warm-up)."""
    from api.queries import latest_shard_status

    shards = latest_shard_status(store)
    if not shards:
        return
    clock = Gauge("dim_flow_event_time_seconds", "Event time a flow shard has reached (its clock)", ["shard"],
                  registry=reg)
    serving = Gauge("dim_flow_model_serving", "1 if a learned model serves p_hot, 0 if the heat prior does",
                    ["shard"], registry=reg)
    learned = Gauge("dim_flow_labels_learned", "Delayed labels the shard's model has learned", ["shard"],
                    registry=reg)
    late = Gauge("dim_flow_late_events", "Events counted later than the allowed lateness", ["shard"], registry=reg)
    loss = Gauge("dim_flow_logloss", "Rolling log loss of p_hot on the same delayed labels", ["shard", "scorer"],
                 registry=reg)
    for s in shards:
        shard = str(s["shard"])
        clock.labels(shard).set(s["as_of"])
        serving.labels(shard).set(int(s["p_hot_from"] != "prior"))
        learned.labels(shard).set(s["labels_learned"])
        late.labels(shard).set(s["late_events"])
        for scorer, column in (("model", "regression_logloss"), ("prior", "prior_logloss")):
            if s[column] is not None:
                loss.labels(shard, scorer).set(s[column])


def exposition(store: AnalyticsStore, settings: Settings, stats) -> tuple[bytes, str]:
    reg = CollectorRegistry()
    rows = Gauge("dim_store_rows", "Rows per analytics table (deduplicated)", ["table"], registry=reg)
    moves = Gauge("dim_moves", "Moves by latest state", ["state"], registry=reg)
    failures = Gauge("dim_move_failures", "Moves whose latest state is failed or rolled_back", registry=reg)
    dead = Gauge("dim_dead_letters", "Dead-letter records in the store", registry=reg)
    up = Gauge("dim_store_up", "1 if the analytics store answered", registry=reg)
    try:
        for table in (t.ACCESS_EVENTS, t.OBJECT_HEAT, t.PLANS, t.MOVES, t.MOVE_EVENTS, t.PLACEMENTS,
                      t.DEAD_LETTERS):
            n = store.query(f"SELECT count() AS n FROM {store.table(table)} FINAL")[0]["n"]
            rows.labels(table).set(n)
            if table == t.DEAD_LETTERS:
                dead.set(n)
        states = store.query(
            f"""SELECT state, count() AS n FROM (
                    SELECT m.move_id, if(e.move_id = '', 'planned', e.state) AS state
                    FROM (SELECT move_id FROM {store.table(t.MOVES)} FINAL) AS m
                    LEFT JOIN (SELECT move_id, argMax(state, (ts, _offset)) AS state
                               FROM {store.table(t.MOVE_EVENTS)} GROUP BY move_id) AS e ON e.move_id = m.move_id)
                GROUP BY state""")
        for r in states:
            moves.labels(r["state"]).set(r["n"])
        failures.set(sum(r["n"] for r in states if r["state"] in ("failed", "rolled_back")))
        _last_audit(store, reg)
        _flow_shards(store, reg)
        up.set(1)
    except StoreError:
        up.set(0)
    if stats is not None:
        records = Counter("dim_ingest_records", "Records consumed by the ingester", registry=reg)
        records.inc(stats.records)
        batches = Counter("dim_ingest_batches", "Batches inserted by the ingester", registry=reg)
        batches.inc(stats.batches)
        rate = Gauge("dim_ingest_events_per_second", "Records per second since the ingester started",
                     registry=reg)
        rate.set(stats.records / max(1e-9, time.time() - stats.started_at))
        age = Gauge("dim_ingest_last_batch_age_seconds", "Seconds since the last inserted batch", registry=reg)
        age.set(time.time() - stats.last_batch_at if stats.last_batch_at else -1)
        lag = Gauge("dim_consumer_lag", "Records behind the broker's high watermark", ["topic", "partition"],
                    registry=reg)
        try:
            for (topic, part), n in _consumer_lag(settings, dict(stats.positions)).items():
                lag.labels(topic, str(part)).set(n)
        except Exception as exc:  # noqa: BLE001 - the broker being away must not break the scrape
            stats_error = Gauge("dim_consumer_lag_unknown", "1 if the lag could not be read", registry=reg)
            stats_error.set(1)
            del exc
    return generate_latest(reg), CONTENT_TYPE_LATEST
