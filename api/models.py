"""Response models of the query API, built on the contracts in `schemas/` (a move is a `schemas.Move`, a
replica a `schemas.Replica`, a dead letter a `schemas.DeadLetter`), plus what the analytics add to them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, create_model

from schemas import AuditRecord, DeadLetter, Move, MoveState, Placement, Replica, ShardStatus


class Problem(BaseModel):
    """RFC 9457 problem details (served as application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store: bool
    database: str
    schema_versions: list[int]
    ingest: dict[str, float | int | str] = Field(default_factory=dict)


class ObjectSummary(BaseModel):
    bucket: str
    key: str
    size: int
    version: int
    locations: list[str]
    updated_at: float
    p_hot: float | None = None
    reads: int | None = None
    last_access: float | None = None


class Page(BaseModel):
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")


class ObjectPage(Page):
    items: list[ObjectSummary]


class HeatPoint(BaseModel):
    as_of: float
    read_heat: dict[str, float]
    write_heat: dict[str, float]
    reads: int
    writes: int
    p_hot: float | None = None


class AccessHour(BaseModel):
    hour: float
    gets: int
    puts: int
    heads: int
    deletes: int
    bytes_read: int
    bytes_written: int


class MoveStatus(Move):
    """A planned move with its latest state from the move events."""

    status: MoveState
    status_at: float | None = None
    last_reason: str = ""


class ObjectDetail(BaseModel):
    bucket: str
    key: str
    placement: Placement | None
    replicas: list[Replica]
    heat: list[HeatPoint]
    access: list[AccessHour]
    moves: list[MoveStatus]


class PlanSummary(BaseModel):
    plan_id: str
    created_at: float
    method: str
    catalogue_version: str | None = Field(None, description="price catalogue the plan's costs come from")
    candidates: int
    objective_usd: float
    lower_bound_usd: float | None = None
    gap: float | None = None
    cost_before_usd_month: float
    cost_after_usd_month: float
    moves: int


class PlanPage(Page):
    items: list[PlanSummary]


class PlanDetail(PlanSummary):
    move_statuses: dict[str, int]  # over every move of the plan
    items: list[MoveStatus]  # the first 10,000 moves
    next_cursor: str | None = None  # the rest: GET /moves?plan_id=...&cursor=...


class MovePage(Page):
    items: list[MoveStatus]


class CostRow(BaseModel):
    group: str
    gb_days: float
    get_requests: int
    put_requests: int
    storage_usd: float
    request_usd: float
    retrieval_usd: float
    egress_usd: float
    early_deletion_usd: float
    monitoring_usd: float
    total_usd: float


class Costs(BaseModel):
    group_by: str
    from_day: str | None
    to_day: str | None
    rows: list[CostRow]
    total_usd: float
    run_rate_usd_month: float = Field(description="the latest ledger day x 30")


class Savings(BaseModel):
    baseline: Literal["all-hot"] = "all-hot"
    current_usd_month: float
    baseline_usd_month: float
    saving_usd_month: float
    saving_fraction: float | None
    planned_saving_usd_month: float = Field(description="sum over plans of cost before - cost after")
    objects: int


class SlaLocation(BaseModel):
    location: str
    reads: int
    objects: int
    latency_ms: float


class SlaEvent(BaseModel):
    hour: float
    bucket: str
    key: str
    location: str
    reads: int
    latency_ms: float
    sla_ms: float


class Sla(BaseModel):
    sla_ms: float
    from_ts: float | None
    to_ts: float | None
    violating_reads: int
    total_reads: int
    by_location: list[SlaLocation]
    events: list[SlaEvent]


class DeadLetterPage(Page):
    items: list[DeadLetter]


# An audit in a listing: the record without its findings (GET /audits/{audit_id} has them).
AuditSummary = create_model(
    "AuditSummary",
    **{name: (f.annotation, f) for name, f in AuditRecord.model_fields.items() if name not in ("schema_version",
                                                                                                "findings")})


class AuditPage(Page):
    items: list[AuditSummary]  # type: ignore[valid-type]


class FlowShards(BaseModel):
    """The newest status of every flow shard, by shard."""

    items: list[ShardStatus]


class ShardStatusPage(Page):
    """One shard's status over event time, newest first."""

    items: list[ShardStatus]
