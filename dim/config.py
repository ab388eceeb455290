"""The one configuration object.

Read from environment variables (prefix ``DIM_``, nested sections joined by ``__``, e.g.
``DIM_KAFKA__BOOTSTRAP=broker:9092``) and an optional TOML file (``DIM_CONFIG=path.toml`` or ``./dim.toml``).
Precedence: explicit keyword arguments > environment > TOML file > defaults. The defaults are the embedded stack
on loopback (`dim up`), so a fresh checkout needs no configuration at all.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ConfigError(ValueError):
    """A configuration that cannot be read (a missing or malformed DIM_CONFIG file, an unknown section in it, a
    list or table setting in the environment that is not JSON): the CLI prints it as one message."""


class _Section(BaseModel):
    # A misspelt setting (`DIM_FLOW__STATUS_INTERVAL`, `stauts_interval_s` in dim.toml) is an error, not a default
    # silently kept.
    # Infinity and NaN are not settings: "never" is spelt 0 or left unset where a field allows it.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# S3's limits on the size of one part of a multipart upload (the last part may be smaller).
S3_MIN_PART, S3_MAX_PART = 5 * 1024 * 1024, 5 * 1024**3


class StackSettings(_Section):
    """Ports and binaries of the embedded stack started by `dim up`."""

    data_dir: Path = Path(".dim")
    s3_port: int = Field(default=8333, ge=1, le=65535)
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    # SeaweedFS `weed mini` runs a master, volume server, filer, WebDAV and admin besides S3; each needs ports.
    # They are taken from this base: base+0 .. base+9, and base+10008 (the admin's worker dials admin + 10000).
    seaweed_port_base: int = Field(default=19330, ge=1, le=65535 - 10008)
    kafka_storage_bucket: str = "dim-kafka"
    startup_timeout_s: float = Field(default=60.0, gt=0)


class S3Settings(_Section):
    endpoint: str | None = None  # default: the embedded SeaweedFS, http://127.0.0.1:<stack.s3_port>
    access_key: str = "dim"
    secret_key: SecretStr = SecretStr("dim-secret-key")
    region: str = "us-east-1"
    # Bucket holding the placement catalog: one JSON document per object, updated by compare-and-set (If-Match).
    catalog_bucket: str = "dim-catalog"
    # Cap on the bytes created per object by producers (real bytes, scaled size, capped so demos stay small).
    max_object_bytes: int = Field(default=64 * 1024, ge=0)


class KafkaSettings(_Section):
    bootstrap: str | None = None  # default: the embedded Tansu broker, 127.0.0.1:<stack.kafka_port>
    partitions: int = Field(default=4, ge=1)
    # Tansu needs these to be low/short for fast group joins and low-latency fetches (measured on this machine).
    fetch_wait_max_ms: int = Field(default=10, ge=0)
    session_timeout_ms: int = Field(default=6000, ge=1)
    group_prefix: str = "dim"


class ClickHouseSettings(_Section):
    # "chdb": embedded ClickHouse in-process (one process per data directory);
    # "server": a ClickHouse server through clickhouse-connect.
    mode: Literal["chdb", "server"] = "chdb"
    chdb_path: Path | None = None  # default: <stack.data_dir>/chdb
    url: str = "http://127.0.0.1:8123"
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "dim"
    # Connections to the one embedded chDB server of the process: chDB releases the GIL while a query runs, so
    # API requests are answered in parallel up to this many at a time.
    chdb_sessions: int = Field(default=4, ge=1, le=64)


MAX_LATENESS_HALF_LIVES = 512


class FlowSettings(_Section):
    half_lives_s: list[float] = Field(default_factory=lambda: [3600.0, 86400.0, 7 * 86400.0])
    allowed_lateness_s: float = Field(default=300.0, ge=0)
    # An access whose event time is more than this ahead of its Kafka record's timestamp is a dead letter: a
    # producer with a wrong clock would otherwise advance its shard's event-time clock and cool every object of
    # the shard. The record timestamp is stored with the record, so a re-run decides the same. Off (None) by
    # default: `dim replay --time-scale` publishes event times on the trace's own axis, ahead of the wall clock.
    max_event_lead_s: float | None = Field(default=None, gt=0)
    # Repeats of an access already counted (same request_id, op, object and time: at-least-once producers) are
    # recognised for this long of event time behind the shard clock and sent to the dead letters instead of being
    # counted twice (flows/dedup.py). None: allowed_lateness_s. Memory per shard ~270 B x rate of events with a
    # request id x this window; 0 turns it off.
    dedup_window_s: float | None = Field(default=None, ge=0)
    # p_hot = P(>= hot_reads reads within horizon_s)
    hot_reads: int = Field(default=2, ge=1)
    horizon_s: float = Field(default=86400.0, gt=0)
    # Hysteresis on the outlook: an object becomes a "hot" candidate above `hot_threshold` and a "cold" one
    # below `cold_threshold`; between them nothing is emitted.
    hot_threshold: float = Field(default=0.6, ge=0, le=1)
    cold_threshold: float = Field(default=0.2, ge=0, le=1)
    growing_window_s: float = Field(default=3600.0, ge=0)
    # Bytewax epoch length (wall seconds): recovery snapshots are taken at every epoch end.
    snapshot_interval_s: float = Field(default=30.0, gt=0)
    recovery_dir: Path | None = None  # default: <stack.data_dir>/recovery
    workers: int = Field(default=1, ge=1)
    # Event-time cadences of the flow (docs/flows.md): an object is evaluated (p_hot, hysteresis) at most once per
    # eval_interval_s; "hot" objects are re-evaluated every sweep_interval_s so idle ones cool; ObjectHeat
    # snapshots of touched objects go to the heat topic every heat_interval_s; each shard's ShardStatus (counters,
    # model against the heat prior) goes to the flow-status topic every status_interval_s.
    eval_interval_s: float = Field(default=3600.0, ge=0)
    # The sweep also closes the read estimate's periods and runs the idle re-checks: it cannot be off.
    sweep_interval_s: float = Field(default=6 * 3600.0, gt=0)
    heat_interval_s: float = Field(default=86400.0, ge=0)  # 0: off
    status_interval_s: float = Field(default=3600.0, ge=0)  # 0: only at the end of a bounded run
    # Idle re-checks (docs/flows.md "Decisions"): an idle object is offered to the solver again when its idle time
    # reaches each of these days, with the reads expected over the solver's planning horizon at that idle time
    # (calibrated per shard on 1 in `reads_sample_every` objects, `reads_min_count` complete observations per
    # estimate). Objects below `recheck_min_bytes` are not re-checked: at catalogue 2026-11-22.1 prices no tier
    # change of an object under ~1 MB pays its PUT back within a 30-day horizon (cheapest: $0.01/1k PUT for
    # $0.0105/GB-month saved), so the solver would only say "stay".
    idle_recheck_days: list[float] = Field(default_factory=lambda: [1.0, 3.0, 7.0, 14.0, 30.0, 60.0])
    recheck_min_bytes: int = Field(default=1_000_000, ge=0)
    reads_sample_every: int = Field(default=2, ge=1)
    reads_min_count: int = Field(default=100, ge=1)
    # Max records the source hands to the flow per poll of one partition.
    source_batch_size: int = Field(default=5000, ge=1)
    # p_hot model (flows/model.py): the forest learns from this share of labelled predictions. A model serves once
    # it has `model_warmup` labels (the forest: that many of its share) and only while it scores better than the
    # heat prior on the same labels (rolling log loss over `model_window` labels); otherwise the prior serves.
    # Share of evaluations queued for a delayed label and learned (a seeded random sample).
    label_fraction: float = Field(default=0.25, gt=0, le=1)
    forest_fraction: float = Field(default=0.05, ge=0, le=1)
    forest_models: int = Field(default=5, ge=1)
    forest_kind: Literal["amf", "arf"] = "amf"
    model_warmup: int = Field(default=100, ge=0)
    model_window: int = Field(default=2000, ge=1)
    model_seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> FlowSettings:
        if not self.half_lives_s or min(self.half_lives_s) <= 0:
            raise ValueError(f"half_lives_s needs at least one half-life, each > 0 (got {self.half_lives_s})")
        limit = MAX_LATENESS_HALF_LIVES * min(self.half_lives_s)
        if self.allowed_lateness_s > limit:
            # An on-time event that far back is evaluated before the heat's reference time: 2^(lateness / half-life)
            # overflows a float near 1,024 half-lives (flows/heat.py).
            raise ValueError(f"allowed_lateness_s ({self.allowed_lateness_s:g}) must be at most "
                             f"{MAX_LATENESS_HALF_LIVES} x the shortest half-life ({limit:g} s): lower it, or "
                             "lengthen the shortest half-life")
        if self.cold_threshold >= self.hot_threshold:
            raise ValueError(f"cold_threshold ({self.cold_threshold}) must be below hot_threshold "
                             f"({self.hot_threshold}): the band between them is the hysteresis")
        days = self.idle_recheck_days
        if days and (min(days) <= 0 or days != sorted(set(days))):
            raise ValueError(f"idle_recheck_days must be > 0 and strictly increasing (got {days})")
        return self


class SolverPolicy(_Section):
    """Per-prefix placement policy, always honoured. `prefix` matches "<bucket>/<key>"; the longest match wins."""

    prefix: str
    allowed_providers: list[str] | None = None
    allowed_regions: list[str] | None = None  # provider:region, or bare region names
    pinned_tier: str | None = None  # a tier name ("glacier-ir") or a tier class ("hot", "cool", "cold", "archive")
    min_replication_factor: int | None = None
    allow_archive: bool = True  # False: the data may not wait hours for a restore


class SolverSettings(_Section):
    replication_factor: int = Field(default=2, ge=1)
    provider_diversity: bool = True
    planning_horizon_days: float = Field(default=30.0, gt=0)
    sla_ms: float = Field(default=100.0, ge=0)
    sla_penalty_usd: float = Field(default=0.001, ge=0)  # lambda per expected violating read
    batch_max: int = Field(default=10_000, ge=1)
    batch_interval_s: float = Field(default=5.0, ge=0)
    catalogue_path: Path | None = None  # default: the catalogue shipped in solver/
    # Where objects start (the producers create real replicas here).
    initial_locations: list[str] = Field(
        default_factory=lambda: ["aws:us-east-1:standard", "gcp:us-east1:standard"]
    )
    policies: list[SolverPolicy] = Field(default_factory=list)
    # Replicas per provider when provider_diversity is on (raised automatically when RF exceeds the providers).
    max_replicas_per_provider: int = Field(default=1, ge=1)
    # The SLA applies to objects expecting more than this many reads over the horizon.
    sla_min_reads: float = Field(default=1.0, ge=0)
    # Archive tiers only for objects expecting at most this many reads over the horizon...
    archive_max_reads: float = Field(default=0.05, ge=0)
    # ...except as backups: with archive_backups an object expecting more may keep a replica in an archive tier
    # as long as another replica serves its reads (the archive one is never the serving replica).
    archive_backups: bool = True
    # A move must improve the model's objective by at least this much (dollars over the horizon).
    min_net_saving_usd: float = Field(default=1e-6, ge=0)
    # Coupling constraints of one cycle. capacity: location id -> bytes available to the batch's objects.
    capacity_bytes: dict[str, NonNegativeInt] = Field(default_factory=dict)
    move_budget_bytes: NonNegativeInt | None = None
    move_budget_usd: NonNegativeFloat | None = None  # transition dollars (egress + retrieval + PUTs + early deletion)
    # Method by size: the exact MILP up to this many objects, the Lagrangian decomposition above.
    milp_max_objects: int = Field(default=1_000, ge=0)
    milp_backend: Literal["highs", "cbc"] = "highs"
    milp_time_limit_s: float = Field(default=60.0, gt=0)
    milp_rel_gap: float = Field(default=1e-6, ge=0)


class MoverSettings(_Section):
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    concurrency: int = Field(default=8, ge=1)
    # Moves of objects up to part_size (one GET + one PUT each) wait on request latency, not on bandwidth or
    # buffers: this many run at once (larger moves stay limited to `concurrency`; endpoint limits still apply).
    small_concurrency: int = Field(default=24, ge=1)
    # Moves deleting dropped replicas in the same bucket at the same time share one DeleteObjects request.
    batch_deletes: bool = True
    # Kafka linger for move events and placements: fewer, bigger produce batches (Tansu stores each in S3).
    events_linger_ms: int = Field(default=500, ge=0)
    part_size: int = Field(default=8 * 1024 * 1024, ge=S3_MIN_PART, le=S3_MAX_PART)
    journal_dir: Path | None = None  # default: <stack.data_dir>/journal
    dry_run: bool = False
    group: str = "mover"  # consumer group (prefixed by kafka.group_prefix) on the moves topic
    # Each mover process owns one journal file (flock'd): give parallel movers on one host distinct instances.
    instance: str = "0"
    journal_fsync: bool = True
    # Minimum time between two journal fsyncs (group commit): concurrent moves share one fsync.
    journal_sync_interval_s: float = Field(default=0.005, ge=0)
    # location id (or provider, e.g. "gcp") -> S3 endpoint URL; unset ones use s3.endpoint. Locations on the
    # same endpoint are copied server-side; across endpoints the bytes are streamed through the mover.
    endpoints: dict[str, str] = Field(default_factory=dict)
    # A source modified less than this long ago is skipped as file_growing (0 = only catalog/during-copy checks).
    growing_window_s: float = Field(default=0.0, ge=0)
    # A move skipped as file_growing is retried (as "<move_id>~retry<n>") this often, this long apart.
    growing_retries: int = Field(default=2, ge=0)
    growing_retry_s: float = Field(default=30.0, ge=0)
    # Parts of one streamed copy in flight, and the process-wide cap on buffered part bytes (bounded memory).
    part_concurrency: int = Field(default=4, ge=1)
    max_buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Server-side copies above this size use UploadPartCopy in parts of copy_part_size.
    multipart_copy_threshold: int = Field(default=256 * 1024 * 1024, ge=0)
    copy_part_size: int = Field(default=64 * 1024 * 1024, ge=S3_MIN_PART, le=S3_MAX_PART)
    read_timeout_s: float = Field(default=60.0, gt=0)
    # GET/HEAD/PUT/DELETE of the per-object hot path through mover/s3lite.py (SigV4 on urllib3) instead of boto3.
    lite_client: bool = True
    # Per endpoint: requests in flight, bytes/s (0 = unlimited), breaker opens after N consecutive failures.
    endpoint_concurrency: int = Field(default=32, ge=1)
    bandwidth_bytes_s: float = Field(default=0.0, ge=0)
    breaker_threshold: int = Field(default=8, ge=1)
    breaker_cooldown_s: float = Field(default=1.0, ge=0)
    # Restores out of archive tiers: poll with backoff up to this long.
    restore_poll_base_s: float = Field(default=0.2, gt=0)
    # 48 h: the catalogue's archive tiers restore in 5-15 h (Glacier Flexible, Deep Archive, Azure Archive);
    # a timeout below that fails every move out of them after paying for the restore.
    restore_timeout_s: float = Field(default=48 * 3600.0, gt=0)
    # Multipart uploads older than this found at start-up are crash leftovers and are aborted (a mover's own
    # interrupted uploads are aborted from its journal at once). 24 h, not 1 h: another mover instance's live
    # upload of a large object (a 700 GiB stream takes hours) must not be taken for a leftover.
    stale_upload_s: float = Field(default=24 * 3600.0, ge=0)
    # Finished moves stay in the journal this long, so a redelivered move is recognised and not re-run.
    journal_keep_finished_s: float = Field(default=7 * 86400.0, ge=0)
    # `dim audit`: a replica no catalog entry names is only an orphan (deletable by --repair) once older than
    # this. A copy whose commit is in flight is unnamed too: keep this far above the longest move.
    audit_grace_s: float = Field(default=7 * 86400.0, ge=0)

    @model_validator(mode="after")
    def _buffer_holds_a_part(self) -> MoverSettings:
        if self.part_size > self.max_buffer_bytes:
            # a streamed copy holds whole parts in its buffer: one part above the budget breaks the memory bound
            raise ValueError(f"part_size ({self.part_size}) must not exceed max_buffer_bytes ({self.max_buffer_bytes})")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    token: SecretStr | None = None  # bearer token; auth is off when unset
    cors_origins: list[str] = Field(default_factory=list)
    max_page_size: int = Field(default=1000, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DIM_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    stack: StackSettings = Field(default_factory=StackSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    flow: FlowSettings = Field(default_factory=FlowSettings)
    solver: SolverSettings = Field(default_factory=SolverSettings)
    mover: MoverSettings = Field(default_factory=MoverSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @model_validator(mode="after")
    def _endpoints_follow_stack_ports(self) -> Settings:
        if self.s3.endpoint is None:
            self.s3.endpoint = f"http://127.0.0.1:{self.stack.s3_port}"
        if self.kafka.bootstrap is None:
            self.kafka.bootstrap = f"127.0.0.1:{self.stack.kafka_port}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        _check_env_json(settings_cls)
        toml_path = os.environ.get("DIM_CONFIG") or ("dim.toml" if Path("dim.toml").exists() else None)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            _check_toml(Path(toml_path), set(settings_cls.model_fields))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # Derived paths: every piece of local state lives under the one data directory unless set explicitly.
    @property
    def chdb_path(self) -> Path:
        return self.clickhouse.chdb_path or self.stack.data_dir / "chdb"

    @property
    def recovery_dir(self) -> Path:
        return self.flow.recovery_dir or self.stack.data_dir / "recovery"

    @property
    def journal_dir(self) -> Path:
        return self.mover.journal_dir or self.stack.data_dir / "journal"

    def to_env(self) -> dict[str, str]:
        """These settings as DIM_* environment variables (secrets revealed), for child processes."""
        import json

        def reveal(value: Any) -> Any:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, dict):
                return {k: reveal(v) for k, v in value.items()}
            if isinstance(value, list):
                return [reveal(v) for v in value]
            if isinstance(value, Path):
                return str(value.resolve())
            return value

        dumped = self.model_dump(mode="python")
        return {f"DIM_{section.upper()}": json.dumps(reveal(values)) for section, values in dumped.items()}

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets replaced by '****'."""
        return _mask(self.model_dump(mode="python"))


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "****" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _check_toml(path: Path, sections: set[str]) -> None:
    import tomllib

    where = f"DIM_CONFIG={path}" if os.environ.get("DIM_CONFIG") else str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - sections)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(map(repr, unknown))}; "
                          f"the sections are {', '.join(sorted(sections))}")


def _check_env_json(settings_cls) -> None:
    """Sections (`DIM_FLOW`) and list or table settings (`DIM_API__CORS_ORIGINS`) are JSON in the environment:
    name the variable that is not, instead of pydantic-settings' traceback."""
    bad = []
    for section, field in settings_cls.model_fields.items():
        name = f"DIM_{section.upper()}"
        json_vars = [name] + [f"{name}__{sub.upper()}" for sub, info in field.annotation.model_fields.items()
                              if _takes_json(info.annotation)]
        bad += [var for var in json_vars if var in os.environ and not _is_json(os.environ[var])]
    if bad:
        raise ConfigError(
            "; ".join(f"{var}={os.environ[var][:60]!r} is not JSON" for var in bad)
            + " (sections and list or table settings take JSON in the environment, e.g. "
              "DIM_API__CORS_ORIGINS='[\"https://a.example\"]')")


def _takes_json(annotation) -> bool:
    """Whether pydantic-settings reads this field's environment value as JSON (lists, tables, models)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(f"{word}[" in str(annotation) for word in ("list", "dict", "tuple", "set"))


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (FastAPI dependency style: override in tests via `Settings(...)`)."""
    return Settings()


def kafka_client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """confluent-kafka configuration shared by every producer and consumer."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka.bootstrap}
    conf.update(extra)
    return conf


def kafka_consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    conf = kafka_client_config(
        settings,
        **{
            "group.id": f"{settings.kafka.group_prefix}-{group}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.kafka.fetch_wait_max_ms,
            "session.timeout.ms": settings.kafka.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.kafka.session_timeout_ms // 3),
        },
    )
    conf.update(extra)
    return conf


def s3_client(settings: Settings, endpoint: str | None = None, attempts: int = 3, **config: Any):
    """A boto3 S3 client for the configured endpoint (path-style addressing: works on MinIO/SeaweedFS/AWS)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or settings.s3.endpoint,
        aws_access_key_id=settings.s3.access_key,
        aws_secret_access_key=settings.s3.secret_key.get_secret_value(),
        region_name=settings.s3.region,
        config=Config(
            s3={"addressing_style": "path"},
            # The mover passes attempts=1 and retries itself (backoff, breaker); other callers get botocore's.
            retries={"total_max_attempts": attempts, "mode": "standard"},
            **config,
        ),
    )
