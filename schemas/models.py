"""Every event and record that crosses a process boundary, defined once.

Each model carries `schema_version` so a consumer can reject (dead-letter) what it does not understand. Times are
float seconds since the Unix epoch in *event time* (the time the access happened, not when we saw it).
Bump the version of a model when a field changes meaning; add fields only with defaults.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# S3 limits keys to 1,024 bytes of UTF-8 and bucket names to 63 characters. A replica is stored in its location's
# bucket under "<bucket>/<key>", so the logical key may use what is left of the 1,024 bytes.
MAX_BUCKET_CHARS = 63
MAX_KEY_BYTES = 1024 - MAX_BUCKET_CHARS - 1
# No "/" in a bucket: "<bucket>/<key>" names the object everywhere (its replicas, its catalog entry, its Kafka key),
# so bucket "a/b" with key "c" and bucket "a" with key "b/c" would be one object - one would overwrite the other.
BUCKET_PATTERN = r"^[^/]+$"
# The latest time any record may carry: 2299-12-31T23:59:59Z, the end of ClickHouse's DateTime64 range. It also
# rejects the commonest producer mistake, milliseconds for seconds (now x 1000 lies ~50,000 years ahead), which
# would otherwise move a flow shard's event-time clock there and cool every object at once.
MAX_EVENT_TIME = 10_413_791_999.0
# The largest object any record may describe: 1 PiB, above every provider's limit (S3 and GCS 5 TiB, Azure blobs
# ~190 TiB). Sizes stay exact as floats and as int64 byte sums; 2^63 bytes wrapped negative in the solver's
# capacity check and let a plan overfill a location.
MAX_OBJECT_SIZE = 2**50


class _Contract(BaseModel):
    # Unknown fields are ignored so that a newer producer's additive fields do not break older consumers.
    model_config = ConfigDict(extra="ignore")


class Op(str, Enum):
    GET = "GET"
    PUT = "PUT"
    HEAD = "HEAD"
    DELETE = "DELETE"


class AccessEvent(_Contract):
    """One access to one object, as emitted by applications to the access topic."""

    schema_version: Literal[1] = 1
    event_time: float = Field(ge=0, le=MAX_EVENT_TIME, description="when the access happened, Unix seconds")
    bucket: str = Field(min_length=1, max_length=MAX_BUCKET_CHARS, pattern=BUCKET_PATTERN)
    key: str = Field(min_length=1, max_length=MAX_KEY_BYTES)
    op: Op
    bytes: int = Field(ge=0, le=MAX_OBJECT_SIZE, description="bytes transferred by this request")
    object_size: int = Field(ge=0, le=MAX_OBJECT_SIZE, description="size of the object after this request")
    client_region: str = Field(default="", max_length=64)
    request_id: str = Field(default="", max_length=128)

    @field_validator("key")
    @classmethod
    def _key_fits_s3(cls, key: str) -> str:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8")
        return key


class ObjectHeat(_Contract):
    """Decayed access heat of one object, evaluated at `as_of` (event time)."""

    schema_version: Literal[1] = 1
    bucket: str
    key: str
    as_of: float
    # Half-life label (e.g. "1h", "1d", "7d") -> decayed count of reads / writes at `as_of`.
    read_heat: dict[str, float]
    write_heat: dict[str, float]
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    size: int = 0
    first_seen: float
    last_access: float
    growing: bool = False
    p_hot: float | None = None
    late_events: int = 0


class Candidate(_Contract):
    """An object whose outlook changed: input to the solver."""

    # Infinity is no number of reads or heat: the solver's costs would be too (JSON has no Infinity; a producer
    # that writes it anyway gets a dead letter).
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    schema_version: Literal[1] = 1
    bucket: str
    key: str
    as_of: float
    size: int = Field(ge=0, le=MAX_OBJECT_SIZE)
    read_heat: dict[str, float]
    write_heat: dict[str, float]
    p_hot: float = Field(ge=0, le=1)
    expected_reads: float = Field(ge=0, description="expected reads over the flow's horizon")
    horizon_s: float = Field(gt=0)
    first_seen: float
    last_access: float
    growing: bool = False
    outlook: Literal["hot", "cold", "new", "gone"] = "new"
    current_locations: list[str] = Field(default_factory=list)


class ShardStatus(_Contract):
    """What one flow shard (one partition of the access topic) knows and how well its p_hot model does, as of
    `as_of` (the shard's event-time clock). Emitted every `flow.status_interval_s` of event time and at the end of
    a bounded run; a function of the partition's events alone, so a recovered flow re-emits identical records.
    Log losses are rolling over the model's window (`flow.model_window` labels) and None before the first label."""

    # A shard with no label yet has no log loss; JSON has no NaN.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    schema_version: Literal[1] = 1
    shard: int = Field(ge=0, description="the access-topic partition the shard owns")
    as_of: float
    events: int = Field(ge=0, description="accesses counted (repeats and dead letters apart)")
    late_events: int = Field(ge=0, description="counted later than flow.allowed_lateness_s allows")
    repeats: int = Field(ge=0, description="repeats of an access already counted (dead letters, not counted)")
    dead_letters: int = Field(ge=0, description="records of the partition refused, repeats included")
    # (objects deleted are not counted apart: that would scan every object per status; `dim flow-state` does)
    objects: int = Field(ge=0, description="objects the shard keeps state for, deleted ones included")
    objects_hot: int = Field(ge=0, description="objects whose outlook is hot and which the sweep re-evaluates")
    labels_pending: int = Field(ge=0, description="predictions waiting for their delayed label")
    labels_learned: int = Field(ge=0)
    p_hot_from: str = Field(description="what serves p_hot: 'prior' (the heat's Poisson prior) or a model's name")
    labels_scored: int = Field(ge=0, description="labels on which the regression was scored against the prior")
    regression_logloss: float | None = Field(default=None, ge=0)
    prior_logloss: float | None = Field(default=None, ge=0, description="the heat prior, on the same labels")
    forest_labels_scored: int = Field(default=0, ge=0, description="labels of the forest's share")
    forest_logloss: float | None = Field(default=None, ge=0)
    forest_share_regression_logloss: float | None = Field(
        default=None, ge=0, description="the regression on the forest's share of labels (what the forest must beat)")
    reads_states_calibrated: int = Field(default=0, ge=0, description="states (activity x idle time) in which the "
                                         "shard can estimate reads over the planning horizon: no move down before")
    reads_states: int = Field(default=0, ge=0)


class Replica(_Contract):
    location: str = Field(description="catalogue location id, provider:region:tier")
    etag: str = ""
    sha256: str = Field(default="", description="hex SHA-256 of the object's bytes")
    size: int = Field(default=0, ge=0, le=MAX_OBJECT_SIZE)
    created_at: float = 0.0
    verified_at: float = 0.0


class Placement(_Contract):
    """The catalog entry of one object: where its verified replicas are. Updated by compare-and-set on version."""

    schema_version: Literal[1] = 1
    bucket: str
    key: str
    version: int = Field(ge=0)
    replicas: list[Replica]
    updated_at: float
    deleted: bool = False

    @property
    def locations(self) -> list[str]:
        return [r.location for r in self.replicas]


class Move(_Contract):
    """Change one object's replica set from `from_locations` to `to_locations`."""

    move_id: str
    plan_id: str
    bucket: str = Field(min_length=1, max_length=MAX_BUCKET_CHARS, pattern=BUCKET_PATTERN)
    key: str = Field(min_length=1)
    size: int = Field(ge=0, le=MAX_OBJECT_SIZE)
    from_locations: list[str]
    to_locations: list[str]
    expected_saving_usd: float = 0.0
    transition_cost_usd: float = 0.0
    reason: str = ""
    # The catalog version the plan was made against: the commit is refused if the catalog moved on.
    expected_version: int | None = None

    @property
    def added(self) -> list[str]:
        return [loc for loc in self.to_locations if loc not in self.from_locations]

    @property
    def dropped(self) -> list[str]:
        return [loc for loc in self.from_locations if loc not in self.to_locations]


class PlacementPlan(_Contract):
    schema_version: Literal[1] = 1
    plan_id: str
    created_at: float
    method: str = Field(description="milp-highs, milp-cbc, lagrangian, ...")
    # Optional so plans written before it existed still parse: which price catalogue the costs come from.
    catalogue_version: str | None = Field(default=None, description="solver/catalogue.toml version used")
    candidates: int = Field(ge=0)
    objective_usd: float
    lower_bound_usd: float | None = None
    gap: float | None = None
    cost_before_usd_month: float = 0.0
    cost_after_usd_month: float = 0.0
    moves: list[Move]


class MoveState(str, Enum):
    PLANNED = "planned"
    COPYING = "copying"
    COPIED = "copied"
    VERIFIED = "verified"
    COMMITTED = "committed"
    DELETED = "deleted"  # old replicas removed: the move is complete
    SKIPPED = "skipped"  # e.g. file_growing, stale plan; may be retried later
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


TERMINAL_MOVE_STATES = frozenset({MoveState.DELETED, MoveState.SKIPPED, MoveState.FAILED, MoveState.ROLLED_BACK})


class MoveEvent(_Contract):
    """One state transition of one move (journal and move-events topic)."""

    schema_version: Literal[1] = 1
    move_id: str
    plan_id: str
    bucket: str
    key: str
    state: MoveState
    ts: float
    location: str = Field(default="", description="the replica this step concerns, if one")
    bytes: int = 0
    sha256: str = ""
    attempt: int = 0
    reason: str = ""


MAX_DEAD_LETTER_PAYLOAD = 4096  # bytes of the rejected record a DeadLetter keeps
# How the reason of a DeadLetter for a repeated access begins (flows/dedup.py): the record was valid, an access
# delivered twice, and was not counted again - dashboards tell these from refused input by this prefix.
REPEAT_REASON_PREFIX = "repeat of an access already counted"


def dead_letter_payload(raw: bytes | None) -> str:
    """DeadLetter.payload of a rejected record: its first 4 KiB, decoded as UTF-8 with replacement."""
    return (raw or b"")[:MAX_DEAD_LETTER_PAYLOAD].decode("utf-8", errors="replace")


class DeadLetter(_Contract):
    """Input we could not accept, kept with the reason instead of being dropped."""

    schema_version: Literal[1] = 1
    ts: float
    source_topic: str
    partition: int = -1
    offset: int = -1
    reason: str
    payload: str = Field(description="the raw record, truncated to 4 KiB, decoded as UTF-8 with replacement")


# `dim audit` (mover/audit.py): what a check of the stores against the placement catalog can find.
# integrity: the mover's guarantee is broken (the catalog names a replica that is not there as catalogued, or an
# object has fewer than RF replicas); waste: storage paid for nothing; information: not ours to judge.
AUDIT_INTEGRITY_KINDS = ("missing", "size_mismatch", "changed", "checksum_mismatch", "under_replicated")
AUDIT_WASTE_KINDS = ("orphan", "stale_upload")
AUDIT_INFO_KINDS = ("uncatalogued",)
AuditKind = Literal["missing", "size_mismatch", "changed", "checksum_mismatch", "under_replicated", "orphan",
                    "stale_upload", "uncatalogued"]
MAX_AUDIT_FINDINGS = 1000  # findings carried by one AuditRecord (integrity first); the counts are complete


class AuditFinding(_Contract):
    kind: AuditKind
    location: str = Field(description="catalogue location id; for under_replicated, the named locations")
    key: str = Field(description="the replica key, '<bucket>/<key>'")
    size: int = Field(default=0, ge=0, le=MAX_OBJECT_SIZE)
    age_s: float = Field(default=0.0, ge=0, description="since the stored object was last modified")
    detail: str = ""
    upload_id: str = ""


class AuditRecord(_Contract):
    """One run of `dim audit`: every location's bucket checked against the placement catalog."""

    schema_version: Literal[1] = 1
    audit_id: str
    started_at: float
    finished_at: float
    scope: str = Field(description="'<bucket>/<prefix>' audited; '' = every object")
    grace_s: float = Field(ge=0, description="unnamed replicas younger than this are not orphans")
    verified_checksums: bool = False
    archive_replicas_unread: int = Field(default=0, ge=0, description="with verified_checksums: archive replicas "
                                         "not read back (that needs a restore); size and ETag still checked")
    ok: bool = Field(description="no integrity finding")
    entries: int = Field(ge=0)
    replicas: int = Field(ge=0)
    replica_bytes: int = Field(ge=0)
    stored_objects: int = Field(ge=0)
    unnamed_in_grace: int = Field(ge=0)
    orphan_bytes: int = Field(ge=0)
    counts: dict[AuditKind, int] = Field(description="findings per kind (complete)")
    findings_total: int = Field(ge=0)
    findings: list[AuditFinding] = Field(default_factory=list, max_length=MAX_AUDIT_FINDINGS,
                                         description="integrity findings first")


ALL_MODELS: dict[str, type[BaseModel]] = {
    "AccessEvent": AccessEvent,
    "ObjectHeat": ObjectHeat,
    "Candidate": Candidate,
    "Placement": Placement,
    "Replica": Replica,
    "Move": Move,
    "PlacementPlan": PlacementPlan,
    "MoveEvent": MoveEvent,
    "DeadLetter": DeadLetter,
    "AuditFinding": AuditFinding,
    "AuditRecord": AuditRecord,
    "ShardStatus": ShardStatus,
}
