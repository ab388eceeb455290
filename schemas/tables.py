"""ClickHouse tables of the analytics store, defined once, as versioned migrations.

The same DDL runs on embedded chDB and on a ClickHouse server. `{db}` is replaced by the configured database.
Every table that is fed from Kafka carries the record's (_partition, _offset) so ingestion can be at-least-once
and still exact: ReplacingMergeTree collapses a redelivered record, and queries read with FINAL (or argMax).
Derived tables (hourly rollups, cost ledger, SLA events) are *recomputed* from the deduplicated raw tables for
the hours/days a batch touched and replace their previous rows (ReplacingMergeTree by `computed_at`); they are
never fed by insert-triggered materialized views, which would count a redelivered record twice.
TTLs count from when we stored a row (`_ingested_at`, `computed_at`), not from event time: a replayed trace whose
event times lie in the past must not expire on arrival.
Migrations are append-only: never edit a released one, add the next version.
"""

from __future__ import annotations

from schemas import topics
from schemas.models import AUDIT_INTEGRITY_KINDS

# Fed from topics (raw, deduplicated on the Kafka coordinates).
ACCESS_EVENTS = "access_events"
OBJECT_HEAT = "object_heat"
CANDIDATES = "candidates"
PLANS = "plans"
MOVES = "moves"
MOVE_EVENTS = "move_events"
PLACEMENTS = "placements"
DEAD_LETTERS = "dead_letters"
AUDITS = "audits"  # one row per `dim audit` run (migration 5)
AUDIT_FINDINGS = "audit_findings"  # the findings an audit record carries, one row each
FLOW_STATUS = "flow_status"  # one row per flow shard per status interval of event time (migration 7)
# SQL over an sla_events row: whether it is a violation (the ingester also writes rows withdrawing one, api/derive).
SLA_VIOLATION = "latency_ms > sla_ms"
# SQL over an audits row: its integrity findings (the kinds that mean the mover's guarantee is broken).
AUDIT_INTEGRITY_SUM = " + ".join(f"counts['{kind}']" for kind in AUDIT_INTEGRITY_KINDS)
# Derived.
PLACEMENT_VERSIONS = "placement_versions"  # every catalog version of every object (history)
OBJECT_HEAT_LATEST = "object_heat_latest"  # the newest heat snapshot per object
ACCESS_HOURLY = "access_hourly"  # access rollup per object per hour
# Serving: everything the API shows about one object, in one primary-key range (migration 3).
OBJECT_TIMELINE = "object_timeline"
# Serving: the /objects listing in key order, placement and newest heat side by side (migration 4).
OBJECT_PAGE = "object_page"
COST_LEDGER = "cost_ledger"  # per location per day
SLA_EVENTS = "sla_events"  # reads served from a location slower than the SLA, per object per hour
# Reference data loaded from the price catalogue (replaced on every load).
LOCATION_PRICES = "location_prices"
EGRESS_PRICES = "egress_prices"
# Ingestion bookkeeping: the end markers each consumer group has seen (so a restarted bounded run still ends).
SCHEMA_MIGRATIONS = "schema_migrations"

# Which topic feeds which table.
TABLE_OF_TOPIC: dict[str, str] = {
    topics.ACCESS: ACCESS_EVENTS,
    topics.HEAT: OBJECT_HEAT,
    topics.CANDIDATES: CANDIDATES,
    topics.PLANS: PLANS,
    topics.MOVES: MOVES,
    topics.MOVE_EVENTS: MOVE_EVENTS,
    topics.PLACEMENTS: PLACEMENTS,
    topics.DEAD_LETTERS: DEAD_LETTERS,
    topics.AUDITS: AUDITS,
    topics.FLOW_STATUS: FLOW_STATUS,
}

_KAFKA_COLS = "_partition UInt16, _offset UInt64, _ingested_at DateTime DEFAULT now()"

_TIMELINE_COLS = "bucket, key, kind, id, seq, ts, version, payload"
# kind -> the SELECT of its object_timeline rows from its source table (used by a view and by the backfill).
_TIMELINE_SOURCES: tuple[tuple[str, str], ...] = (
    ("placement", f"""SELECT bucket, key, 'placement' AS kind, '' AS id, '' AS seq,
        toFloat64(updated_at) AS ts, version,
        formatRowNoNewline('JSONEachRow', bucket, key, version, replicas,
                           toFloat64(updated_at) AS updated_at, deleted) AS payload
        FROM {{db}}.{PLACEMENTS}"""),
    ("heat", f"""SELECT bucket, key, 'heat' AS kind, toString(toDecimal64(as_of, 3)) AS id,
        '' AS seq, toFloat64(as_of) AS ts, toUInt64(0) AS version,
        formatRowNoNewline('JSONEachRow', toFloat64(as_of) AS as_of, read_heat, write_heat,
                           reads, writes, p_hot) AS payload
        FROM {{db}}.{OBJECT_HEAT}"""),
    ("access", f"""SELECT bucket, key, 'access' AS kind, toString(toUnixTimestamp(hour)) AS id,
        '' AS seq, toFloat64(toUnixTimestamp(hour)) AS ts,
        toUInt64(toUnixTimestamp64Micro(computed_at)) AS version,
        formatRowNoNewline('JSONEachRow', toFloat64(toUnixTimestamp(hour)) AS hour, gets, puts,
                           heads, deletes, bytes_read, bytes_written) AS payload
        FROM {{db}}.{ACCESS_HOURLY}"""),
    ("move", f"""SELECT bucket, key, 'move' AS kind, move_id AS id, '' AS seq, 0.0 AS ts,
        toUInt64(0) AS version,
        formatRowNoNewline('JSONEachRow', move_id, plan_id, bucket, key, size, from_locations,
                           to_locations, expected_saving_usd, transition_cost_usd, reason,
                           expected_version) AS payload
        FROM {{db}}.{MOVES}"""),
    ("event", f"""SELECT bucket, key, 'event' AS kind, move_id AS id,
        concat(toString(_partition), '/', toString(_offset)) AS seq, toFloat64(ts) AS ts,
        _offset AS version,
        formatRowNoNewline('JSONEachRow', move_id, state, toFloat64(ts) AS at,
                           reason AS last_reason) AS payload
        FROM {{db}}.{MOVE_EVENTS}"""),
)

# kind -> the SELECT of its object_page rows (used by a view and by the backfill). `version` is what the source
# deduplicates on (placement version; heat as_of in milliseconds), so object_page FINAL keeps, per object, exactly
# the row placements FINAL and object_heat_latest FINAL keep.
_PAGE_COLS = "bucket, key, kind, version, deleted, payload"
_PAGE_SOURCES: tuple[tuple[str, str], ...] = (
    ("placement", f"""SELECT bucket, key, 'placement' AS kind, version, deleted,
        formatRowNoNewline('JSONEachRow', bucket, key, 'placement' AS kind, version, size, locations,
                           toFloat64(updated_at) AS updated_at) AS payload
        FROM {{db}}.{PLACEMENTS}"""),
    ("heat", f"""SELECT bucket, key, 'heat' AS kind, toUInt64(toUnixTimestamp64Milli(as_of)) AS version,
        false AS deleted,
        formatRowNoNewline('JSONEachRow', bucket, key, 'heat' AS kind, p_hot, reads,
                           toFloat64(last_access) AS last_access) AS payload
        FROM {{db}}.{OBJECT_HEAT}"""),
)

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial analytics model",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{ACCESS_EVENTS} (
                event_time DateTime64(3), bucket LowCardinality(String), key String,
                op LowCardinality(String), bytes UInt64, object_size UInt64,
                client_region LowCardinality(String), request_id String, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(event_time)
            ORDER BY (_partition, _offset)
            TTL _ingested_at + INTERVAL 90 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{OBJECT_HEAT} (
                as_of DateTime64(3), bucket LowCardinality(String), key String,
                read_heat Map(String, Float64), write_heat Map(String, Float64),
                reads UInt64, writes UInt64, bytes_read UInt64, size UInt64,
                first_seen DateTime64(3), last_access DateTime64(3), growing Bool,
                p_hot Nullable(Float64), late_events UInt64, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, as_of, _partition, _offset)
            TTL _ingested_at + INTERVAL 180 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{OBJECT_HEAT_LATEST} (
                bucket LowCardinality(String), key String, as_of DateTime64(3),
                read_heat Map(String, Float64), reads UInt64, writes UInt64, size UInt64,
                last_access DateTime64(3), p_hot Nullable(Float64)
            ) ENGINE = ReplacingMergeTree(as_of)
            ORDER BY (bucket, key)""",
            # Safe as a materialized view: a redelivered snapshot replaces itself (same as_of).
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{OBJECT_HEAT_LATEST}_mv
                TO {{db}}.{OBJECT_HEAT_LATEST} AS
                SELECT bucket, key, as_of, read_heat, reads, writes, size, last_access, p_hot
                FROM {{db}}.{OBJECT_HEAT}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{CANDIDATES} (
                as_of DateTime64(3), bucket LowCardinality(String), key String, size UInt64,
                read_heat Map(String, Float64), write_heat Map(String, Float64),
                p_hot Float64, expected_reads Float64, horizon_s Float64,
                first_seen DateTime64(3), last_access DateTime64(3), growing Bool,
                outlook LowCardinality(String), current_locations Array(String), {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, as_of, _partition, _offset)
            TTL _ingested_at + INTERVAL 180 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{PLANS} (
                plan_id String, created_at DateTime64(3), method LowCardinality(String),
                candidates UInt64, objective_usd Float64, lower_bound_usd Nullable(Float64),
                gap Nullable(Float64), cost_before_usd_month Float64, cost_after_usd_month Float64,
                moves UInt64, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (plan_id)""",
            # Fed by the moves topic and by the moves embedded in each plan: one row per move_id either way
            # (a move never changes object). Ordered by object: the object detail looks its moves up.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{MOVES} (
                move_id String, plan_id String, bucket LowCardinality(String), key String, size UInt64,
                from_locations Array(String), to_locations Array(String),
                expected_saving_usd Float64, transition_cost_usd Float64, reason String,
                expected_version Nullable(UInt64), {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, move_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{MOVE_EVENTS} (
                ts DateTime64(3), move_id String, plan_id String, bucket LowCardinality(String), key String,
                state LowCardinality(String), location LowCardinality(String), bytes UInt64,
                sha256 String, attempt UInt32, reason String, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (move_id, ts, _partition, _offset)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{PLACEMENTS} (
                bucket LowCardinality(String), key String, version UInt64, size UInt64,
                locations Array(String), replicas String, updated_at DateTime64(3), deleted Bool,
                {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (bucket, key)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{PLACEMENT_VERSIONS} (
                bucket LowCardinality(String), key String, version UInt64, size UInt64,
                locations Array(String), updated_at DateTime64(3), deleted Bool
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, version)""",
            # Safe as a materialized view: a redelivered version replaces itself (same bucket, key, version).
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{PLACEMENT_VERSIONS}_mv
                TO {{db}}.{PLACEMENT_VERSIONS} AS
                SELECT bucket, key, version, size, locations, updated_at, deleted FROM {{db}}.{PLACEMENTS}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{DEAD_LETTERS} (
                ts DateTime64(3), source_topic LowCardinality(String), partition Int32, offset Int64,
                reason String, payload String, _topic LowCardinality(String), {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (_topic, _partition, _offset)
            TTL _ingested_at + INTERVAL 30 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{ACCESS_HOURLY} (
                hour DateTime, bucket LowCardinality(String), key String,
                gets UInt64, puts UInt64, heads UInt64, deletes UInt64,
                bytes_read UInt64, bytes_written UInt64, object_size UInt64, computed_at DateTime64(6)
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(hour)
            ORDER BY (bucket, key, hour)
            TTL toDateTime(computed_at) + INTERVAL 730 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{SLA_EVENTS} (
                hour DateTime, bucket LowCardinality(String), key String, location LowCardinality(String),
                reads UInt64, latency_ms Float64, sla_ms Float64, computed_at DateTime64(6)
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(hour)
            ORDER BY (hour, bucket, key)
            TTL toDateTime(computed_at) + INTERVAL 365 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{COST_LEDGER} (
                day Date, location LowCardinality(String), provider LowCardinality(String),
                tier LowCardinality(String), objects UInt64, gb_days Float64,
                get_requests UInt64, put_requests UInt64, retrieval_gb Float64, egress_gb Float64,
                storage_usd Float64, request_usd Float64, retrieval_usd Float64, egress_usd Float64,
                early_deletion_usd Float64, monitoring_usd Float64, total_usd Float64,
                computed_at DateTime64(6)
            ) ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY (day, location)
            TTL toDateTime(computed_at) + INTERVAL 1095 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{LOCATION_PRICES} (
                location String, provider LowCardinality(String), region LowCardinality(String),
                tier LowCardinality(String), storage_usd_gb_month Float64, retrieval_usd_gb Float64,
                get_usd_per_1k Float64, put_usd_per_1k Float64, min_storage_days Float64,
                min_billable_bytes UInt64, overhead_bytes UInt64, first_byte_ms Float64, restore_hours Float64,
                read_latency_ms Float64, internet_egress_usd_gb Float64,
                monitoring_usd_per_1k_objects Float64, catalogue_version String, loaded_at DateTime64(6)
            ) ENGINE = ReplacingMergeTree(loaded_at)
            ORDER BY location""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{EGRESS_PRICES} (
                src String, dst String, usd_gb Float64, loaded_at DateTime64(6)
            ) ENGINE = ReplacingMergeTree(loaded_at)
            ORDER BY (src, dst)""",
        ],
    ),
    (
        2,
        "plans.catalogue_version",
        # Nullable: plans written before the field existed have none.
        [f"ALTER TABLE {{db}}.{PLANS} ADD COLUMN IF NOT EXISTS catalogue_version Nullable(String) AFTER method"],
    ),
    (
        3,
        "object_timeline: one primary-key range per object for the object detail",
        # Every row the object detail shows, pre-rendered as one JSON row, ordered by object: the detail is one
        # point lookup instead of five (chDB spends ~1-2 ms of CPU per table read before it reads anything).
        # The key of each kind is the key its source deduplicates on, so a redelivered row replaces itself and
        # insert-triggered materialized views stay exact: placement (one per object, newest `version` wins),
        # heat (per as_of), access (per hour, newest computed_at wins), move (per move_id), event (per Kafka
        # coordinates; `id` = move_id so the latest event of each move is one LIMIT 1 BY away).
        # TTLs follow the sources'.
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{OBJECT_TIMELINE} (
                bucket LowCardinality(String), key String, kind LowCardinality(String), id String, seq String,
                ts Float64, version UInt64, payload String, _ingested_at DateTime DEFAULT now()
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (bucket, key, kind, id, seq)
            TTL _ingested_at + INTERVAL 180 DAY WHERE kind = 'heat',
                _ingested_at + INTERVAL 730 DAY WHERE kind = 'access'""",
            *[f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{OBJECT_TIMELINE}_{kind}_mv
                   TO {{db}}.{OBJECT_TIMELINE} AS {select}""" for kind, select in _TIMELINE_SOURCES],
            # Backfill what was stored before the views existed (re-runnable: the same rows replace themselves).
            *[f"INSERT INTO {{db}}.{OBJECT_TIMELINE} ({_TIMELINE_COLS}) {select}" for _, select in _TIMELINE_SOURCES],
        ],
    ),
    (
        4,
        "object_page: the /objects listing in key order from one primary-key range",
        # A page in key order read placements and then the newest heat of the same keys: two statements, and
        # chDB's cost is per statement and per column read (~2-4 ms), not per row. Here each object has two rows
        # (kind 'heat' sorts before 'placement'), each pre-rendered as one JSON object, so a page is one range
        # read of one column, parsed in one go. No TTL: like placements, one row per object and kind.
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{OBJECT_PAGE} (
                bucket LowCardinality(String), key String, kind LowCardinality(String), version UInt64,
                deleted Bool, payload String
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (bucket, key, kind)""",
            *[f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{OBJECT_PAGE}_{kind}_mv
                   TO {{db}}.{OBJECT_PAGE} AS {select}""" for kind, select in _PAGE_SOURCES],
            *[f"INSERT INTO {{db}}.{OBJECT_PAGE} ({_PAGE_COLS}) {select}" for _, select in _PAGE_SOURCES],
        ],
    ),
    (
        5,
        "audits and audit_findings: `dim audit` runs (the stores checked against the placement catalog)",
        # One row per audit with the complete counts per kind; its findings (at most MAX_AUDIT_FINDINGS per
        # record, integrity first) one row each. A redelivered record replaces itself (same audit_id; same
        # audit_id + finding). Kept two years, like the other operational history.
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{AUDITS} (
                audit_id String, started_at DateTime64(3), finished_at DateTime64(3), scope String,
                grace_s Float64, verified_checksums Bool, ok Bool, entries UInt64, replicas UInt64,
                replica_bytes UInt64, stored_objects UInt64, unnamed_in_grace UInt64, orphan_bytes UInt64,
                counts Map(LowCardinality(String), UInt64), findings_total UInt64, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY audit_id
            TTL _ingested_at + INTERVAL 730 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{AUDIT_FINDINGS} (
                audit_id String, started_at DateTime64(3), kind LowCardinality(String),
                location LowCardinality(String), key String, size UInt64, age_s Float64, detail String,
                upload_id String, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (audit_id, kind, location, key, upload_id)
            TTL _ingested_at + INTERVAL 730 DAY""",
        ],
    ),
    (
        6,
        "audits.archive_replicas_unread",
        # With checksums verified, archive replicas are not read back (a restore each): their count.
        [f"""ALTER TABLE {{db}}.{AUDITS}
             ADD COLUMN IF NOT EXISTS archive_replicas_unread UInt64 DEFAULT 0 AFTER verified_checksums"""],
    ),
    (
        7,
        "flow_status: each flow shard's counters and its p_hot model against the heat prior, over event time",
        # One row per (shard, as_of): a recovered flow re-emits the same status, which replaces itself. `as_of`
        # is event time, like object_heat's; the TTL counts from storage, as everywhere.
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{FLOW_STATUS} (
                shard UInt16, as_of DateTime64(3), events UInt64, late_events UInt64, repeats UInt64,
                dead_letters UInt64, objects UInt64, objects_hot UInt64,
                labels_pending UInt64, labels_learned UInt64, p_hot_from LowCardinality(String),
                labels_scored UInt64, regression_logloss Nullable(Float64), prior_logloss Nullable(Float64),
                forest_labels_scored UInt64, forest_logloss Nullable(Float64),
                forest_share_regression_logloss Nullable(Float64), reads_states_calibrated UInt32,
                reads_states UInt32, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (shard, as_of)
            TTL _ingested_at + INTERVAL 730 DAY""",
        ],
    ),
]


def migration_statements(database: str) -> list[tuple[int, str, list[str]]]:
    """Migrations with the database name filled in, oldest first."""
    return [(v, desc, [s.replace("{db}", database) for s in stmts]) for v, desc, stmts in MIGRATIONS]


def bootstrap_statements(database: str) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"""CREATE TABLE IF NOT EXISTS {database}.{SCHEMA_MIGRATIONS} (
            version UInt32, description String, applied_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree ORDER BY version""",
    ]
