"""FastAPI dependencies shared by the routes: the store, the settings, page limits and the bearer token.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a worker thread, and
these are too cheap to be worth a thread hop each (the worker threads are kept for the store's statements)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from api.store import AnalyticsStore
from dim.config import Settings


async def get_store(request: Request) -> AnalyticsStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


Store = Annotated[AnalyticsStore, Depends(get_store)]
Config = Annotated[Settings, Depends(get_settings)]


async def page_limit(request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> int:
    cap = request.app.state.settings.api.max_page_size
    if limit > cap:
        raise HTTPException(400, f"limit must be at most {cap}")
    return limit


Limit = Annotated[int, Depends(page_limit)]


async def require_token(request: Request) -> None:
    token = request.app.state.settings.api.token
    if token is None or not token.get_secret_value():
        return
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    # Constant-time comparison: the time taken does not reveal how much of a guessed token was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.get_secret_value().encode()
    ):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


