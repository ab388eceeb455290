"""Cost, savings and SLA views: /costs, /savings, /sla (SQL aggregates + the pure `api.ledger`)."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BeforeValidator

from api.deps import Config, Limit, Store
from api.ledger import DAYS_PER_MONTH, LocationUsage, all_hot_comparison, all_hot_location
from api.models import Costs, Savings, Sla
from api.store import AnalyticsStore
from schemas import tables as t

MAX_RANGE_DAYS = 366
MIN_DAY, MAX_DAY = dt.date(1970, 1, 1), dt.date(2149, 6, 1)  # ClickHouse Date
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    # pydantic's lax date parsing reads a number as Unix seconds: "?to_day=0" would mean 1970-01-01, and any
    # multiple of 86400 some other day. A day in a query is YYYY-MM-DD, nothing else.
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[dt.date, BeforeValidator(_iso_day)]
# group_by -> ledger column (a whitelist: the request value itself never reaches SQL)
COST_GROUPS = {"provider": "provider", "tier": "tier", "location": "location", "day": "toString(day)"}


def _latest_day(store: AnalyticsStore) -> dt.date | None:
    rows = store.query(f"SELECT toString(max(day)) AS d, count() AS n FROM {store.table(t.COST_LEDGER)}")
    return dt.date.fromisoformat(rows[0]["d"]) if rows and rows[0]["n"] else None


def _day_range(store: AnalyticsStore, from_day: dt.date | None, to_day: dt.date | None,
               default_days: int = 30) -> tuple[dt.date, dt.date] | None:
    for d in (from_day, to_day):
        if d is not None and not (MIN_DAY <= d <= MAX_DAY):
            raise HTTPException(400, f"days must lie between {MIN_DAY} and {MAX_DAY}")
    if to_day is None:
        to_day = _latest_day(store)
        if to_day is None:
            return None
    if from_day is None:
        from_day = max(MIN_DAY, to_day - dt.timedelta(days=default_days - 1))
    if from_day > to_day:
        raise HTTPException(400, "from_day is after to_day")
    if (to_day - from_day).days + 1 > MAX_RANGE_DAYS:
        raise HTTPException(400, f"the range may span at most {MAX_RANGE_DAYS} days")
    return from_day, to_day


def costs(store: AnalyticsStore, group_by: str, from_day: dt.date | None, to_day: dt.date | None) -> Costs:
    rng = _day_range(store, from_day, to_day)
    if rng is None:
        return Costs(group_by=group_by, from_day=None, to_day=None, rows=[], total_usd=0.0, run_rate_usd_month=0.0)
    params = {"f": rng[0].isoformat(), "t": rng[1].isoformat()}
    rows = store.query(
        f"""SELECT {COST_GROUPS[group_by]} AS group, sum(gb_days) AS gb_days,
                   sum(get_requests) AS get_requests, sum(put_requests) AS put_requests,
                   sum(storage_usd) AS storage_usd, sum(request_usd) AS request_usd,
                   sum(retrieval_usd) AS retrieval_usd, sum(egress_usd) AS egress_usd,
                   sum(early_deletion_usd) AS early_deletion_usd, sum(monitoring_usd) AS monitoring_usd,
                   sum(total_usd) AS total_usd
            FROM {store.table(t.COST_LEDGER)} FINAL
            WHERE day >= {{f:Date}} AND day <= {{t:Date}}
            GROUP BY group ORDER BY group""", params)
    last = store.query(
        f"""SELECT sum(total_usd) * {DAYS_PER_MONTH} AS rr FROM {store.table(t.COST_LEDGER)} FINAL
            WHERE day = (SELECT max(day) FROM {store.table(t.COST_LEDGER)} WHERE day <= {{t:Date}})""", params)
    return Costs(group_by=group_by, from_day=params["f"], to_day=params["t"], rows=rows,
                 total_usd=sum(r["total_usd"] for r in rows), run_rate_usd_month=float(last[0]["rr"] or 0.0))


def savings(store: AnalyticsStore, settings) -> Savings:
    from api.derive import catalogue_of

    cat = catalogue_of(settings)
    hot = {loc.id: all_hot_location(cat, loc.id) for loc in cat.locations}
    stored = {r["location"]: r for r in store.query(
        f"""SELECT loc AS location, count() AS objects,
                   sum(greatest(size, p.min_billable_bytes) + p.overhead_bytes) AS bytes,
                   sum(greatest(size, transform(loc, {{ids:Array(String)}}, {{hot_min:Array(UInt64)}}, 0))
                       + transform(loc, {{ids:Array(String)}}, {{hot_over:Array(UInt64)}}, 0)) AS hot_bytes
            FROM {store.table(t.PLACEMENTS)} FINAL ARRAY JOIN locations AS loc
            LEFT JOIN (SELECT location, min_billable_bytes, overhead_bytes
                       FROM {store.table(t.LOCATION_PRICES)} FINAL) AS p
              ON p.location = loc
            WHERE NOT deleted GROUP BY location""",
        {"ids": list(hot), "hot_min": [h.min_billable_bytes for h in hot.values()],
         "hot_over": [h.overhead_bytes for h in hot.values()]})}
    rng = _day_range(store, None, None)
    volume: dict[str, dict[str, Any]] = {}
    days = 1
    if rng is not None:
        days = (rng[1] - rng[0]).days + 1
        volume = {r["location"]: r for r in store.query(
            f"""SELECT location, sum(get_requests) AS gets, sum(put_requests) AS puts,
                       sum(retrieval_gb) AS retrieval_gb
                FROM {store.table(t.COST_LEDGER)} FINAL WHERE day >= {{f:Date}} AND day <= {{t:Date}}
                GROUP BY location""", {"f": rng[0].isoformat(), "t": rng[1].isoformat()})}
    scale = DAYS_PER_MONTH / days
    usage = [
        LocationUsage(
            location=loc, objects=int(stored.get(loc, {}).get("objects", 0)),
            billable_bytes=float(stored.get(loc, {}).get("bytes", 0)),
            baseline_bytes=float(stored.get(loc, {}).get("hot_bytes", 0)),
            gets_month=float(volume.get(loc, {}).get("gets", 0)) * scale,
            puts_month=float(volume.get(loc, {}).get("puts", 0)) * scale,
            retrieval_gb_month=float(volume.get(loc, {}).get("retrieval_gb", 0)) * scale,
        )
        for loc in sorted(set(stored) | set(volume))
    ]
    current, baseline = all_hot_comparison(usage, cat)
    planned = store.query(
        f"SELECT sum(cost_before_usd_month - cost_after_usd_month) AS s FROM {store.table(t.PLANS)} FINAL")
    objects = store.query(f"SELECT count() AS n FROM {store.table(t.PLACEMENTS)} FINAL WHERE NOT deleted")
    return Savings(current_usd_month=current, baseline_usd_month=baseline, saving_usd_month=baseline - current,
                   saving_fraction=(baseline - current) / baseline if baseline > 0 else None,
                   planned_saving_usd_month=float(planned[0]["s"] or 0.0), objects=int(objects[0]["n"]))


def sla(store: AnalyticsStore, settings, from_ts: float | None, to_ts: float | None, limit: int) -> Sla:
    if to_ts is None:
        rows = store.query(f"""SELECT toFloat64(toUnixTimestamp(max(hour))) + 3600 AS t, count() AS n
                               FROM {store.table(t.ACCESS_HOURLY)}""")
        to_ts = float(rows[0]["t"]) if rows[0]["n"] else None
    if to_ts is None:
        return Sla(sla_ms=settings.solver.sla_ms, from_ts=None, to_ts=None, violating_reads=0, total_reads=0,
                   by_location=[], events=[])
    if from_ts is None:
        from_ts = max(0.0, to_ts - 7 * 86400)
    if from_ts > to_ts:
        raise HTTPException(400, "from_ts is after to_ts")
    if to_ts - from_ts > MAX_RANGE_DAYS * 86400:
        raise HTTPException(400, f"the range may span at most {MAX_RANGE_DAYS} days")
    # hours that start in [from_ts, to_ts); a fractional to_ts includes the hour it falls in
    params = {"f": int(from_ts), "t": math.ceil(to_ts), "n": limit}
    rng = "hour >= toDateTime({f:UInt32}) AND hour < toDateTime({t:UInt32})"
    violations = f"{rng} AND {t.SLA_VIOLATION}"
    by_location = store.query(
        f"""SELECT location, sum(reads) AS reads, uniqExact(bucket, key) AS objects, max(latency_ms) AS latency_ms
            FROM (SELECT location, bucket, key, reads, latency_ms FROM {store.table(t.SLA_EVENTS)} FINAL
                  WHERE {violations})
            GROUP BY location ORDER BY reads DESC""", params)
    total = store.query(f"SELECT sum(gets) AS n FROM {store.table(t.ACCESS_HOURLY)} FINAL WHERE {rng}", params)
    events = store.query(
        f"""SELECT toFloat64(toUnixTimestamp(hour)) AS hour, bucket, key, location, reads, latency_ms, sla_ms
            FROM {store.table(t.SLA_EVENTS)} FINAL WHERE {violations}
            ORDER BY hour DESC, bucket, key LIMIT {{n:UInt32}}""", params)
    return Sla(sla_ms=settings.solver.sla_ms, from_ts=from_ts, to_ts=to_ts,
               violating_reads=sum(r["reads"] for r in by_location), total_reads=int(total[0]["n"] or 0),
               by_location=by_location, events=events)


def add_routes(app: FastAPI, guarded: list) -> None:
    @app.get("/costs", response_model=Costs, dependencies=guarded)
    def get_costs(
        store: Store,
        group_by: Literal["provider", "tier", "location", "day"] = "provider",
        from_day: Day | None = None,
        to_day: Day | None = None,
    ) -> Costs:
        return costs(store, group_by, from_day, to_day)

    @app.get("/savings", response_model=Savings, dependencies=guarded)
    def get_savings(store: Store, settings: Config) -> Savings:
        return savings(store, settings)

    @app.get("/sla", response_model=Sla, dependencies=guarded)
    def get_sla(
        store: Store, settings: Config, limit: Limit,
        from_ts: Annotated[float | None, Query(ge=0, le=1e10)] = None,
        to_ts: Annotated[float | None, Query(ge=0, le=1e10)] = None,
    ) -> Sla:
        return sla(store, settings, from_ts, to_ts, limit)
