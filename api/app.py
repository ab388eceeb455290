"""The read-only query API (GET only). Store and settings arrive as FastAPI dependencies; errors are RFC 9457
problem+json; page sizes and time ranges are bounded; an optional bearer token guards everything but /health."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated, Literal

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import analytics, queries
from api.deps import Config, Limit, Store, require_token
from api.models import (
    AuditPage,
    Costs,
    DeadLetterPage,
    FlowShards,
    Health,
    MovePage,
    ObjectDetail,
    ObjectPage,
    PlanDetail,
    PlanPage,
    Problem,
    Savings,
    ShardStatusPage,
    Sla,
)
from api.store import AnalyticsStore, StoreError
from dim.config import Settings
from schemas import AuditRecord, MoveState, topics

PROBLEM = "application/problem+json"
MAX_HISTORY = 500
PLAN_ITEMS = 10_000  # moves a /plans/{id} answer carries inline
# Strings a caller may send are bounded like the contracts bound them (S3 limits): nothing longer can match.
BucketStr = Annotated[str, Query(min_length=1, max_length=63)]
KeyStr = Annotated[str, Query(min_length=1, max_length=1024)]


def _problem(status: int, title: str, detail: str = "", headers: dict | None = None) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_RESPONSES = {s: {"model": Problem, "content": {PROBLEM: {}}} for s in (400, 401, 404, 422, 503)}


def create_app(settings: Settings, store: AnalyticsStore, ingest_stats=None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Routes are plain `def`s run in AnyIO's worker threads, 40 by default; only `chdb_sessions` statements
        # run at once. Extra threads only wait on the session pool, woken in no particular order while they
        # contend for the GIL: under 20 clients p99 was 3x p50 (258 vs 86 ms). With one thread per session the
        # requests wait in the event loop's FIFO instead: p99 145 ms at the same throughput (bench/api_latency.py).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.clickhouse.chdb_sessions
        yield

    app = FastAPI(
        title="Data-in-Motion query API", version="1", responses=_RESPONSES, lifespan=lifespan,
        description="Read-only views of the analytics store: objects, placements, plans, moves, costs, SLA.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.ingest_stats = ingest_stats
    if settings.api.cors_origins:  # off unless origins are configured
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["GET"],
                           allow_headers=["Authorization"])

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException):
        return _problem(exc.status_code, _title(exc.status_code), str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _problem(422, "Invalid request", detail[:2000])

    @app.exception_handler(queries.BadCursor)
    async def cursor_problem(request: Request, exc: queries.BadCursor):
        return _problem(400, "Bad cursor", str(exc))

    @app.exception_handler(StoreError)
    async def store_problem(request: Request, exc: StoreError):
        # The store's message may quote SQL: keep it in the log, not in the response.
        import logging

        logging.getLogger(__name__).error("store error on %s: %s", request.url.path, exc)
        return _problem(503, "Analytics store unavailable", "the query could not be answered")

    guarded = [Depends(require_token)]
    # Routes return plain dicts: FastAPI validates and serializes them once, through `response_model`.

    @app.get("/health", response_model=Health)
    def health(store: Store, settings: Config, request: Request) -> Health:
        try:
            versions = queries.schema_versions(store)
            ok = True
        except StoreError:
            versions, ok = [], False
        stats = request.app.state.ingest_stats
        ingest = {}
        if stats is not None:
            ingest = {"records": stats.records, "batches": stats.batches, "dead_letters": stats.dead_letters,
                      "last_batch_at": stats.last_batch_at, "error": stats.error}
        status = "ok" if ok and not (stats and stats.error) else "degraded"
        return Health(status=status, store=ok, database=settings.clickhouse.database,
                      schema_versions=versions, ingest=ingest)

    @app.get("/objects", response_model=ObjectPage, dependencies=guarded)
    def objects(
        store: Store, limit: Limit,
        bucket: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
        prefix: Annotated[str | None, Query(max_length=1024)] = None,
        provider: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        tier: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        min_p_hot: Annotated[float | None, Query(ge=0, le=1)] = None,
        max_p_hot: Annotated[float | None, Query(ge=0, le=1)] = None,
        sort: Literal["key", "size", "-size", "updated_at", "-updated_at"] = "key",
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> dict:
        if min_p_hot is not None and max_p_hot is not None and min_p_hot > max_p_hot:
            raise HTTPException(400, "min_p_hot is above max_p_hot")  # as /costs and /sla refuse inverted ranges
        items, nxt = queries.list_objects(
            store, bucket=bucket, prefix=prefix, provider=provider, tier=tier, min_p_hot=min_p_hot,
            max_p_hot=max_p_hot, sort=sort, cursor=cursor, limit=limit)
        return {"items": items, "next_cursor": nxt}

    @app.get("/objects/{bucket}/{key:path}", response_model=ObjectDetail, dependencies=guarded)
    def object_detail(
        store: Store,
        bucket: Annotated[str, Path(min_length=1, max_length=63)],
        key: Annotated[str, Path(min_length=1, max_length=1024)],
        history: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 100,
    ) -> dict:
        found = queries.object_detail(store, bucket, key, history, MAX_HISTORY)
        placement, heat, access, moves = found["placement"], found["heat"], found["access"], found["moves"]
        if placement is None and not heat and not access and not moves:
            raise HTTPException(404, f"no object {bucket}/{key} in the analytics store")
        return {"bucket": bucket, "key": key, "placement": placement,
                "replicas": placement["replicas"] if placement else [], "heat": heat, "access": access,
                "moves": moves}

    @app.get("/plans", response_model=PlanPage, dependencies=guarded)
    def plans(store: Store, limit: Limit, cursor: Annotated[str | None, Query(max_length=4096)] = None) -> dict:
        items, nxt = queries.list_plans(store, cursor=cursor, limit=limit)
        return {"items": items, "next_cursor": nxt}

    @app.get("/plans/{plan_id}", response_model=PlanDetail, dependencies=guarded)
    def plan(store: Store, plan_id: Annotated[str, Path(min_length=1, max_length=256)]) -> dict:
        header = queries.get_plan(store, plan_id)
        if header is None:
            raise HTTPException(404, f"no plan {plan_id}")
        # The first PLAN_ITEMS moves inline (the rest through /moves?plan_id=...&cursor=next_cursor); the status
        # counts cover every move of the plan.
        moves, nxt = queries.list_moves(store, status=None, plan_id=plan_id, bucket=None, key=None, cursor=None,
                                        limit=PLAN_ITEMS)
        statuses: dict[str, int] = {}
        page, cursor = moves, nxt
        while True:
            for m in page:
                statuses[m["status"]] = statuses.get(m["status"], 0) + 1
            if cursor is None:
                break
            page, cursor = queries.list_moves(store, status=None, plan_id=plan_id, bucket=None, key=None,
                                              cursor=cursor, limit=PLAN_ITEMS)
        return {**header, "move_statuses": statuses, "items": moves, "next_cursor": nxt}

    @app.get("/moves", response_model=MovePage, dependencies=guarded)
    def moves(
        store: Store, limit: Limit,
        status: MoveState | None = None,
        plan_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        bucket: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> dict:
        items, nxt = queries.list_moves(store, status=status.value if status else None, plan_id=plan_id,
                                        bucket=bucket, key=None, cursor=cursor, limit=limit)
        return {"items": items, "next_cursor": nxt}

    @app.get("/audits", response_model=AuditPage, dependencies=guarded)
    def audits(
        store: Store, limit: Limit,
        ok: Annotated[bool | None, Query(description="only clean (true) or failed (false) audits")] = None,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> dict:
        items, nxt = queries.list_audits(store, ok=ok, cursor=cursor, limit=limit)
        return {"items": items, "next_cursor": nxt}

    @app.get("/audits/{audit_id}", response_model=AuditRecord, dependencies=guarded)
    def audit(store: Store, audit_id: Annotated[str, Path(min_length=1, max_length=256)]) -> dict:
        found = queries.get_audit(store, audit_id)
        if found is None:
            raise HTTPException(404, f"no audit {audit_id}")
        return found

    @app.get("/dead-letters", response_model=DeadLetterPage, dependencies=guarded)
    def dead_letters(
        store: Store, limit: Limit,
        source_topic: Literal[topics.ALL_TOPICS] | None = None,  # type: ignore[valid-type]
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
        repeats: Annotated[bool | None, Query(
            description="true: only repeated accesses (valid, delivered twice, not counted again); "
                        "false: only refused input")] = None,
    ) -> dict:
        items, nxt = queries.list_dead_letters(store, source_topic=source_topic, cursor=cursor, limit=limit,
                                               repeats=repeats)
        return {"items": items, "next_cursor": nxt}

    @app.get("/flow/status", response_model=FlowShards, dependencies=guarded)
    def flow_status(store: Store) -> dict:
        """What each flow shard knows and how its p_hot model scores against the heat prior, newest status."""
        return {"items": queries.latest_shard_status(store)}

    @app.get("/flow/status/{shard}", response_model=ShardStatusPage, dependencies=guarded)
    def shard_status(
        store: Store, limit: Limit,
        shard: Annotated[int, Path(ge=0, le=65535)],
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> dict:
        items, nxt = queries.shard_status_history(store, shard, cursor=cursor, limit=limit)
        if not items and cursor is None:
            raise HTTPException(404, f"no status of flow shard {shard} in the analytics store")
        return {"items": items, "next_cursor": nxt}

    analytics.add_routes(app, guarded)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=guarded)
    def metrics(store: Store, settings: Config, request: Request) -> PlainTextResponse:
        from api.metrics import exposition

        body, content_type = exposition(store, settings, request.app.state.ingest_stats)
        return PlainTextResponse(body, media_type=content_type)

    return app


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


__all__ = ["Costs", "Savings", "Sla", "create_app"]
