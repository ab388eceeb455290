"""What the whole estate of a bucket costs per month, before and after the moves, by the solver's own cost model.

Sizes are the logical (scaled) sizes seen in the access log; reads are the GETs of the last 30 days of event time,
taken as the expected reads of the next 30. "Before" places every object in `solver.initial_locations`, "after"
where the placement catalog says it is now.
"""

from __future__ import annotations

from dim.config import Settings

MONTH_S = 30 * 86400.0


def estate_cost(settings: Settings, store, bucket: str) -> tuple[float, float]:
    from mover.catalog import PlacementCatalog
    from solver.catalogue import settings_catalogue
    from solver.costs import CostParams, horizon_cost

    rows = store.query(
        f"""SELECT key, max(object_size) AS size,
                   countIf(op = 'GET' AND event_time >= (SELECT max(event_time) FROM {store.table('access_events')}
                                                          WHERE bucket = {{b:String}}) - {MONTH_S}) AS reads
            FROM {store.table('access_events')} FINAL WHERE bucket = {{b:String}} GROUP BY key""",
        {"b": bucket},
    )
    cat = settings_catalogue(settings)
    params = CostParams(horizon_days=30.0, sla_ms=settings.solver.sla_ms,
                        sla_penalty_usd=settings.solver.sla_penalty_usd)
    catalog = PlacementCatalog(settings)
    before = after = 0.0
    for row in rows:
        size, reads = int(row["size"]), float(row["reads"])
        before += horizon_cost(cat, size, reads, list(settings.solver.initial_locations), params)
        entry = catalog.get(bucket, row["key"])
        now = entry[0].locations if entry else list(settings.solver.initial_locations)
        after += horizon_cost(cat, size, reads, now, params)
    return before, after
