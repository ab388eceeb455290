"""ClickHouse tables of the analytics store, defined once, as versioned migrations.

The same DDL runs on embedded chDB and on a ClickHouse server. `{db}` is replaced by the configured database.
Every table that is fed from Kafka carries the record's (_partition, _offset) so ingestion can be at-least-once
and still exact: ReplacingMergeTree collapses a redelivered record, and queries read with FINAL (or argMax).
Migrations are append-only: never edit a released one, add the next version.
"""

from __future__ import annotations

from schemas import topics

ACCESS_EVENTS = "access_events"
OBJECT_HEAT = "object_heat"
CANDIDATES = "candidates"
PLANS = "plans"
MOVES = "moves"
MOVE_EVENTS = "move_events"
PLACEMENTS = "placements"
DEAD_LETTERS = "dead_letters"
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
}

_KAFKA_COLS = "_partition UInt16, _offset UInt64"

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
            TTL toDateTime(event_time) + INTERVAL 90 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{OBJECT_HEAT} (
                as_of DateTime64(3), bucket LowCardinality(String), key String,
                read_heat Map(String, Float64), write_heat Map(String, Float64),
                reads UInt64, writes UInt64, bytes_read UInt64, size UInt64,
                first_seen DateTime64(3), last_access DateTime64(3), growing Bool,
                p_hot Nullable(Float64), late_events UInt64, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, as_of, _partition, _offset)
            TTL toDateTime(as_of) + INTERVAL 180 DAY""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{CANDIDATES} (
                as_of DateTime64(3), bucket LowCardinality(String), key String, size UInt64,
                read_heat Map(String, Float64), write_heat Map(String, Float64),
                p_hot Float64, expected_reads Float64, horizon_s Float64,
                first_seen DateTime64(3), last_access DateTime64(3), growing Bool,
                outlook LowCardinality(String), current_locations Array(String), {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (bucket, key, as_of, _partition, _offset)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{PLANS} (
                plan_id String, created_at DateTime64(3), method LowCardinality(String),
                candidates UInt64, objective_usd Float64, lower_bound_usd Nullable(Float64),
                gap Nullable(Float64), cost_before_usd_month Float64, cost_after_usd_month Float64,
                moves UInt64, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (plan_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{MOVES} (
                move_id String, plan_id String, bucket LowCardinality(String), key String, size UInt64,
                from_locations Array(String), to_locations Array(String),
                expected_saving_usd Float64, transition_cost_usd Float64, reason String,
                expected_version Nullable(UInt64), {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (move_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{MOVE_EVENTS} (
                ts DateTime64(3), move_id String, plan_id String, bucket LowCardinality(String), key String,
                state LowCardinality(String), location LowCardinality(String), bytes UInt64,
                sha256 String, attempt UInt32, reason String, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (move_id, ts, _partition, _offset)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{PLACEMENTS} (
                bucket LowCardinality(String), key String, version UInt64,
                locations Array(String), replicas String, updated_at DateTime64(3), deleted Bool,
                {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (bucket, key)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.{DEAD_LETTERS} (
                ts DateTime64(3), source_topic LowCardinality(String), partition Int32, offset Int64,
                reason String, payload String, {_KAFKA_COLS}
            ) ENGINE = ReplacingMergeTree
            ORDER BY (_partition, _offset)
            TTL toDateTime(ts) + INTERVAL 30 DAY""",
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
