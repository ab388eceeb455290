"""Derived analytics tables, recomputed from the deduplicated raw tables for the hours and days a batch touched.

Recomputing (instead of adding up in an insert-triggered view) keeps them exact under redelivery: the new rows
replace the old ones (ReplacingMergeTree by `computed_at`). SQL here only aggregates; prices and the ledger
arithmetic are the pure `api.ledger`.
"""

from __future__ import annotations

import time
from typing import Any

from api.ledger import GB, Copy, DroppedReplica, LedgerInput, LocationDay, ledger_rows
from api.rows import Rows
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import tables as t
from solver.catalogue import Catalogue, settings_catalogue

HOUR = 3600
DAY = 86400
# A day the ledger fills in when a batch jumps over days nobody touched (storage is billed every day), at most:
# a bogus far-future event time must not make one batch recompute centuries.
MAX_FILL_DAYS = 366


def catalogue_of(settings: Settings) -> Catalogue:
    return settings_catalogue(settings)


def load_prices(store: AnalyticsStore, settings: Settings) -> None:
    """Replace the price tables with the configured catalogue (for SQL joins and Grafana)."""
    cat = catalogue_of(settings)
    now = time.time()
    store.command(f"TRUNCATE TABLE IF EXISTS {store.table(t.LOCATION_PRICES)}")
    store.command(f"TRUNCATE TABLE IF EXISTS {store.table(t.EGRESS_PRICES)}")
    store.insert(t.LOCATION_PRICES, [{
        "location": loc.id, "provider": loc.provider, "region": loc.region, "tier": loc.tier,
        "storage_usd_gb_month": loc.storage_usd_gb_month, "retrieval_usd_gb": loc.retrieval_usd_gb,
        "get_usd_per_1k": loc.get_usd_per_1k, "put_usd_per_1k": loc.put_usd_per_1k,
        "min_storage_days": loc.min_storage_days, "min_billable_bytes": loc.min_billable_bytes,
        "overhead_bytes": loc.overhead_bytes, "first_byte_ms": loc.first_byte_ms,
        "restore_hours": loc.restore_hours, "read_latency_ms": loc.read_latency_ms,
        "internet_egress_usd_gb": cat.internet_egress_usd_gb(loc.id),
        "monitoring_usd_per_1k_objects": float(getattr(loc, "monitoring_usd_per_1k_objects", 0.0) or 0.0),
        "catalogue_version": cat.version, "loaded_at": now,
    } for loc in cat.locations])
    store.insert(t.EGRESS_PRICES, [
        {"src": a.id, "dst": b.id, "usd_gb": cat.egress_usd_gb(a.id, b.id), "loaded_at": now}
        for a in cat.locations for b in cat.locations if a.id != b.id
    ])


def touched(rows: Rows) -> tuple[set[int], set[int]]:
    """(hours, days) as Unix seconds of their start, touched by a batch's rows."""
    hours: set[int] = set()
    days: set[int] = set()
    for r in rows.get(t.ACCESS_EVENTS, []):
        hours.add(int(r["event_time"]) // HOUR * HOUR)
    for r in rows.get(t.PLACEMENTS, []):
        days.add(int(r["updated_at"]) // DAY * DAY)  # (the hours it governs: _read_hours_after_new_placements)
    for r in rows.get(t.MOVE_EVENTS, []):
        days.add(int(r["ts"]) // DAY * DAY)
    days |= {h // DAY * DAY for h in hours}
    return hours, days


def refresh(store: AnalyticsStore, settings: Settings, rows: Rows) -> None:
    hours, days = touched(rows)
    governed = _read_hours_after_new_placements(store, rows)
    hours |= governed
    days |= {h // DAY * DAY for h in governed}
    days |= _copy_days_of_new_moves(store, rows)
    if days:
        days |= _quiet_days_before(store, max(days))
    if hours:
        refresh_hourly(store, sorted(hours))
        refresh_sla(store, settings, sorted(hours))
    if days:
        refresh_ledger(store, settings, sorted(days))


# How far after a placement's time its late arrival re-judges the object's reads (SLA, requests in the ledger).
REJUDGE_S = 31 * DAY


def _read_hours_after_new_placements(store: AnalyticsStore, rows: Rows) -> set[int]:
    """Hours with reads of an object whose placement version arrives in this batch, from that version on: a
    placement may arrive after the reads it governs (another topic), and it governs every later hour until the
    next version, not only its own (bounded by REJUDGE_S)."""
    since: dict[str, int] = {}
    for r in rows.get(t.PLACEMENTS, []):
        oid = f"{r['bucket']}/{r['key']}"
        hour = int(r["updated_at"]) // HOUR * HOUR
        since[oid] = min(since.get(oid, hour), hour)
    if not since:
        return set()
    found = store.query(
        f"""SELECT concat(bucket, '/', key) AS oid, toUInt32(hour) AS h FROM {store.table(t.ACCESS_HOURLY)} FINAL
            WHERE hour >= toDateTime({{lo:UInt32}}) AND hour < toDateTime({{hi:UInt32}}) AND gets > 0
              AND has({{ids:Array(String)}}, concat(bucket, '/', key))""",
        {"lo": min(since.values()), "hi": max(since.values()) + REJUDGE_S, "ids": sorted(since)})
    return {int(r["h"]) for r in found if since[r["oid"]] <= r["h"] < since[r["oid"]] + REJUDGE_S}


def _copy_days_of_new_moves(store: AnalyticsStore, rows: Rows) -> set[int]:
    """Days with copies of moves that arrive in this batch: their `copied` events may have been ingested first
    (topics are not ordered with each other), and the ledger prices a copy only once it knows the move."""
    move_ids = sorted({r["move_id"] for r in rows.get(t.MOVES, [])})
    if not move_ids:
        return set()
    found = store.query(
        f"""SELECT DISTINCT toUInt32(toStartOfDay(ts)) AS d FROM {store.table(t.MOVE_EVENTS)} FINAL
            WHERE state = 'copied' AND has({{ids:Array(String)}}, move_id)""", {"ids": move_ids})
    return {int(r["d"]) for r in found}


def _quiet_days_before(store: AnalyticsStore, last: int) -> set[int]:
    """The days between the ledger's newest day and `last` that no batch touched: their storage is billed too."""
    newest = store.query(f"SELECT toUInt32(max(day)) AS d, count() AS n FROM {store.table(t.COST_LEDGER)}")[0]
    if not newest["n"]:
        return set()
    start = max(int(newest["d"]) + DAY, last - MAX_FILL_DAYS * DAY)
    return set(range(start, last, DAY))


# An access delivered twice (same request id, op, object and time: an at-least-once producer) is one access, as
# for the flow (flows/dedup.py, which dead-letters the repeat): one row per identity; rows without a request id
# are each their own access (their Kafka coordinates keep them apart). Unlike the flow's, this holds however late
# the repeat arrives.
_ONE_ROW_PER_ACCESS = ("LIMIT 1 BY request_id, op, bucket, key, event_time, "
                       "if(request_id = '', _partition, 0), if(request_id = '', _offset, 0)")


def refresh_hourly(store: AnalyticsStore, hours: list[int]) -> None:
    store.command(
        f"""INSERT INTO {store.table(t.ACCESS_HOURLY)}
        SELECT toStartOfHour(event_time) AS hour, bucket, key,
               countIf(op = 'GET'), countIf(op = 'PUT'), countIf(op = 'HEAD'), countIf(op = 'DELETE'),
               sumIf(bytes, op = 'GET'), sumIf(bytes, op = 'PUT'), max(object_size), now64(6)
        FROM (SELECT event_time, bucket, key, op, bytes, object_size FROM {store.table(t.ACCESS_EVENTS)} FINAL
              WHERE event_time >= toDateTime({{lo:UInt32}}) AND event_time < toDateTime({{hi:UInt32}})
                AND has({{hours:Array(UInt32)}}, toUInt32(toStartOfHour(event_time)))
              {_ONE_ROW_PER_ACCESS})
        GROUP BY hour, bucket, key""",
        {"lo": hours[0], "hi": hours[-1] + HOUR, "hours": hours},
    )


def _serving_sql(store: AnalyticsStore, usage_sql: str, cols: list[str], asof_col: str) -> str:
    """Join per-object usage rows (bucket, key, <asof_col> DateTime, ...) to every replica of the placement version
    in force at `asof_col`, with what a read costs there. As in solver.costs, reads are served by the replica
    where a read is cheapest: GET + size x (retrieval + internet egress)."""
    return f"""
        SELECT {", ".join(f"u.{c} AS {c}" for c in cols)}, loc AS location, p.read_latency_ms AS latency_ms,
               p.get_usd_per_1k / 1000 + v.size / {GB} * (p.retrieval_usd_gb + p.internet_egress_usd_gb)
                   AS serve_usd
        FROM ({usage_sql}) AS u
        ASOF INNER JOIN (SELECT bucket, key, updated_at, locations, size, deleted
                         FROM {store.table(t.PLACEMENT_VERSIONS)} FINAL) AS v
          ON u.bucket = v.bucket AND u.key = v.key AND u.{asof_col} > v.updated_at
        ARRAY JOIN v.locations AS loc
        INNER JOIN (SELECT location, read_latency_ms, get_usd_per_1k, retrieval_usd_gb, internet_egress_usd_gb
                    FROM {store.table(t.LOCATION_PRICES)} FINAL) AS p
          ON p.location = loc
        WHERE NOT v.deleted"""


def refresh_sla(store: AnalyticsStore, settings: Settings, hours: list[int]) -> None:
    """Re-judge the hours: a violation is a row with latency_ms > sla_ms; an earlier violation of an hour that now
    complies (its placement arrived late) is replaced by a compliant row, which every reader filters out
    (`schemas.tables.SLA_VIOLATION`). Rows are never deleted: ReplacingMergeTree keeps the newest per (hour, object)."""
    usage = f"""SELECT hour, bucket, key, gets, toDateTime64(hour + 3600, 3) AS hour_end
                FROM {store.table(t.ACCESS_HOURLY)} FINAL
                WHERE hour >= toDateTime({{lo:UInt32}}) AND hour < toDateTime({{hi:UInt32}})
                  AND has({{hours:Array(UInt32)}}, toUInt32(hour)) AND gets > 0"""
    store.command(
        f"""INSERT INTO {store.table(t.SLA_EVENTS)}
        SELECT hour, bucket, key, argMin(location, (serve_usd, location)),
               any(gets), argMin(latency_ms, (serve_usd, location)) AS served_ms, {{sla:Float64}}, now64(6)
        FROM ({_serving_sql(store, usage, ["hour", "bucket", "key", "gets"], "hour_end")})
        GROUP BY hour, bucket, key
        HAVING served_ms > {{sla:Float64}} OR (hour, bucket, key) IN (
            SELECT hour, bucket, key FROM {store.table(t.SLA_EVENTS)} FINAL
            WHERE hour >= toDateTime({{lo:UInt32}}) AND hour < toDateTime({{hi:UInt32}}))""",
        {"lo": hours[0], "hi": hours[-1] + HOUR, "hours": hours, "sla": float(settings.solver.sla_ms)},
    )


def ledger_input(store: AnalyticsStore, days: list[int]) -> LedgerInput:
    inp = LedgerInput()
    params: dict[str, Any] = {"days": days}
    # Storage: every replica of every object as of the end of each day.
    for r in store.query(
        f"""SELECT d, loc AS location, count() AS objects,
                   sum(greatest(size, p.min_billable_bytes) + p.overhead_bytes) / {GB} AS gb_days
            FROM (
                SELECT d, bucket, key, argMax(locations, version) AS locs, argMax(size, version) AS size,
                       argMax(deleted, version) AS del
                FROM {store.table(t.PLACEMENT_VERSIONS)} FINAL
                ARRAY JOIN {{days:Array(UInt32)}} AS d
                WHERE updated_at < toDateTime(d + 86400)
                GROUP BY d, bucket, key
            ) ARRAY JOIN locs AS loc
            INNER JOIN (SELECT location, min_billable_bytes, overhead_bytes
                        FROM {store.table(t.LOCATION_PRICES)} FINAL) AS p
              ON p.location = loc
            WHERE NOT del
            GROUP BY d, location""", params):
        u = inp.usage.setdefault((r["d"] // DAY, r["location"]), LocationDay())
        u.objects, u.gb_days = int(r["objects"]), float(r["gb_days"])
    # Requests: GETs (and their bytes) at the serving replica, PUTs at every replica.
    usage = f"""SELECT toUInt32(toStartOfDay(hour)) AS d, bucket, key, sum(gets) AS n_gets, sum(puts) AS n_puts,
                       sum(bytes_read) AS n_bytes_read, toDateTime64(d + 86400, 3) AS day_end
                FROM {store.table(t.ACCESS_HOURLY)} FINAL
                WHERE has({{days:Array(UInt32)}}, toUInt32(toStartOfDay(hour)))
                GROUP BY d, bucket, key"""
    for r in store.query(
        f"""SELECT d, location, sum(if(serving, n_gets, 0)) AS get_requests, sum(n_puts) AS put_requests,
                   sum(if(serving, n_bytes_read, 0)) / {GB} AS retrieval_gb
            FROM (SELECT *, row_number() OVER (PARTITION BY d, bucket, key ORDER BY serve_usd, location) = 1
                            AS serving
                  FROM ({_serving_sql(store, usage, ["d", "bucket", "key", "n_gets", "n_puts", "n_bytes_read"], "day_end")}))
            GROUP BY d, location""", params):
        u = inp.usage.setdefault((r["d"] // DAY, r["location"]), LocationDay())
        u.get_requests, u.put_requests = int(r["get_requests"]), int(r["put_requests"])
        # Bytes read leave through the serving replica: retrieval there, and internet egress to the client.
        u.retrieval_gb = u.read_egress_gb = float(r["retrieval_gb"])
    # Egress: bytes copied to a new location, from the move's first source.
    for r in store.query(
        f"""SELECT toUInt32(toStartOfDay(e.ts)) AS d, m.from_locations[1] AS src, e.location AS dst,
                   sum(e.bytes) AS bytes, count() AS copies
            FROM (SELECT * FROM {store.table(t.MOVE_EVENTS)} FINAL WHERE state = 'copied'
                  AND has({{days:Array(UInt32)}}, toUInt32(toStartOfDay(ts)))) AS e
            INNER JOIN (SELECT move_id, from_locations FROM {store.table(t.MOVES)} FINAL) AS m
              ON m.move_id = e.move_id
            WHERE length(m.from_locations) > 0 AND e.location != ''
            GROUP BY d, src, dst""", params):
        inp.copies.append(Copy(r["d"] // DAY, r["src"], r["dst"], int(r["bytes"]), int(r["copies"])))
    # Early deletion: a location present in one catalog version and gone in the next.
    for r in store.query(
        f"""SELECT toUInt32(toStartOfDay(updated_at)) AS d, loc AS location, size,
                   (toFloat64(updated_at) - toFloat64(since)) / 86400 AS days_held
            FROM (
                SELECT bucket, key, version, updated_at, size, locations,
                       lagInFrame(locations) OVER w AS prev,
                       lagInFrame(updated_at) OVER w AS prev_at
                FROM {store.table(t.PLACEMENT_VERSIONS)} FINAL
                WINDOW w AS (PARTITION BY bucket, key ORDER BY version ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            ) AS cur
            ARRAY JOIN arrayFilter(l -> NOT has(cur.locations, l), cur.prev) AS loc
            INNER JOIN (SELECT bucket, key, l AS location, min(updated_at) AS since
                        FROM {store.table(t.PLACEMENT_VERSIONS)} FINAL ARRAY JOIN locations AS l
                        GROUP BY bucket, key, location) AS first
              ON first.bucket = cur.bucket AND first.key = cur.key AND first.location = loc
            WHERE has({{days:Array(UInt32)}}, d)""", params):
        inp.dropped.append(DroppedReplica(r["d"] // DAY, r["location"], int(r["size"]), float(r["days_held"])))
    return inp


def refresh_ledger(store: AnalyticsStore, settings: Settings, days: list[int]) -> None:
    cat = catalogue_of(settings)
    inp = ledger_input(store, days)
    # Every location gets a row for every recomputed day, so a location emptied since the last run reads 0.
    for day in days:
        for loc in cat.locations:
            inp.usage.setdefault((day // DAY, loc.id), LocationDay())
    rows = ledger_rows(inp, cat)
    now = time.time()
    store.insert(t.COST_LEDGER, [{**r, "computed_at": now} for r in rows])
