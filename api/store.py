"""The analytics store: one small interface over embedded chDB and a ClickHouse server (clickhouse-connect).

Both backends speak the same SQL and exchange rows as JSONEachRow, so callers never see which one they use.
Queries take ClickHouse `{name:Type}` parameters only: user input is never formatted into SQL text.

chDB passes parameter values in ClickHouse's *escaped* text form (as the HTTP interface does), so a backslash,
tab or newline inside a string would be read as an escape sequence: `_chdb_param` escapes them, which makes a
key like `a\\nb` match itself and not `a<newline>b`.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, Self

from dim.config import Settings
from schemas.tables import SCHEMA_MIGRATIONS, bootstrap_statements, migration_statements

# Hours and days are UTC everywhere (api.derive computes them as multiples of 3600 / 86400 of Unix time):
# without this, toStartOfDay and friends follow the process's (chDB) or the server's time zone, and a ledger built
# on a laptop in Berlin or Kolkata lost its requests or its hours.
SESSION_TIMEZONE = "UTC"

# Integers as JSON numbers (not quoted strings), times as Unix seconds with fractions.
_OUTPUT_SETTINGS = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
    "date_time_output_format": "unix_timestamp",
}


class StoreError(RuntimeError):
    """A statement failed in the analytics store."""


class StoreUnavailable(StoreError):
    """The analytics store could not be opened (a chDB directory held by another process, a server not answering)."""


class Backend(Protocol):
    def execute(self, sql: str, params: Mapping[str, Any], fmt: str = "JSONEachRow") -> bytes: ...

    def insert_json_rows(self, table: str, payload: bytes) -> None: ...

    def close(self) -> None: ...


def _escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            .replace("\r", "\\r").replace("\0", "\\0"))


def _array_element(value: Any) -> str:
    if isinstance(value, str):
        return "'" + _escape_text(value).replace("'", "\\'") + "'"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"unsupported array element type {type(value).__name__}")


def _chdb_param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _escape_text(value)
    if isinstance(value, (list, tuple)):
        # An array is parsed as a literal (no escaped-text layer): strings are quoted and escaped inside it.
        return "[" + ",".join(_array_element(v) for v in value) + "]"
    if value is None:
        return "\\N"
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


class ChdbBackend:
    """Embedded chDB: connections to the one embedded server of this process (a data directory can be open in
    one process only). Each statement checks a connection out of a small pool: chDB releases the GIL while it
    works, so queries run in parallel, and a streaming insert never interleaves with a query on its connection."""

    def __init__(self, path: str, sessions: int = 1):
        from chdb import session

        self._sessions = [session.Session(path) for _ in range(max(1, sessions))]
        for sess in self._sessions:  # see SESSION_TIMEZONE
            sess.query(f"SET session_timezone = '{SESSION_TIMEZONE}'")
        self._idle: queue.LifoQueue = queue.LifoQueue()
        for sess in self._sessions:
            self._idle.put(sess)

    @contextmanager
    def _session(self):
        sess = self._idle.get()
        try:
            yield sess
        finally:
            self._idle.put(sess)

    def execute(self, sql: str, params: Mapping[str, Any], fmt: str = "JSONEachRow") -> bytes:
        from chdb._exceptions import ChdbError

        encoded = {k: _chdb_param(v) for k, v in params.items()}
        with self._session() as sess:
            try:
                res = sess.query(sql, fmt, params=encoded)
            except (ChdbError, RuntimeError) as exc:
                raise StoreError(str(exc)) from exc
            return res.bytes() if hasattr(res, "bytes") else bytes(res or b"")

    def insert_json_rows(self, table: str, payload: bytes) -> None:
        with self._session() as sess:
            try:
                with sess.send_insert(f"INSERT INTO {table}", "JSONEachRow") as ins:
                    ins.append(payload)
                    ins.finish()
            except RuntimeError as exc:
                raise StoreError(str(exc)) from exc

    def close(self) -> None:
        for _ in self._sessions:  # wait until every connection is back, then close them all
            self._idle.get()
        for sess in self._sessions:
            sess.close()


class ServerBackend:
    """A ClickHouse server over HTTP (clickhouse-connect); server-side parameter binding."""

    def __init__(self, settings: Settings):
        from urllib.parse import urlparse

        import clickhouse_connect

        ch = settings.clickhouse
        url = urlparse(ch.url)
        self._client = clickhouse_connect.get_client(
            host=url.hostname or "127.0.0.1", port=url.port or 8123, secure=url.scheme == "https",
            username=ch.user, password=ch.password.get_secret_value(), autogenerate_session_id=False,
            settings={"session_timezone": SESSION_TIMEZONE},
        )
        self._lock = threading.Lock()  # a clickhouse-connect client is not safe for concurrent use

    def execute(self, sql: str, params: Mapping[str, Any], fmt: str = "JSONEachRow") -> bytes:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        with self._lock:
            try:
                return self._client.raw_query(sql, parameters=dict(params), fmt=fmt)
            except ClickHouseError as exc:
                raise StoreError(str(exc)) from exc

    def insert_json_rows(self, table: str, payload: bytes) -> None:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        with self._lock:
            try:
                self._client.raw_insert(table, insert_block=payload, fmt="JSONEachRow")
            except ClickHouseError as exc:
                raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()


def _settings_clause(sql: str, extra: Mapping[str, int] | None = None) -> str:
    if " SETTINGS " in sql.upper() or not sql.lstrip().upper().startswith(("SELECT", "WITH")):
        return sql
    return sql + " SETTINGS " + ", ".join(
        f"{k} = {v if isinstance(v, int) else repr(v)}" for k, v in {**_OUTPUT_SETTINGS, **(extra or {})}.items()
    )


class AnalyticsStore:
    """Tables are named without the database; the store qualifies them (`table(name)`)."""

    def __init__(self, backend: Backend, database: str):
        self.backend = backend
        self.database = database

    @classmethod
    def open(cls, settings: Settings) -> AnalyticsStore:
        if settings.clickhouse.mode == "server":
            from clickhouse_connect.driver.exceptions import ClickHouseError

            try:
                return cls(ServerBackend(settings), settings.clickhouse.database)
            except ClickHouseError as exc:
                raise StoreUnavailable(
                    f"cannot reach ClickHouse at {settings.clickhouse.url} (DIM_CLICKHOUSE__URL): "
                    f"{str(exc).splitlines()[0][:300]}") from None
        path = settings.chdb_path
        try:
            path.mkdir(parents=True, exist_ok=True)
            backend = ChdbBackend(str(path), settings.clickhouse.chdb_sessions)
        except (OSError, RuntimeError) as exc:
            # chDB says only "Error initializing EmbeddedServer" when another process holds the directory
            raise StoreUnavailable(
                f"cannot open the chDB data directory {path} ({exc}). A chDB directory can be open in one process "
                "only: is `dim api`, `dim ingest` or `dim demo` running on it? Stop it, read through its API, or "
                "set DIM_CLICKHOUSE__CHDB_PATH to another directory") from None
        return cls(backend, settings.clickhouse.database)

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- schema -----------------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded in schema_migrations; returns the versions applied now."""
        for stmt in bootstrap_statements(self.database):
            self.command(stmt)
        done = {r["version"] for r in self.query(
            f"SELECT version FROM {self.table(SCHEMA_MIGRATIONS)} FINAL")}
        applied = []
        for version, description, stmts in migration_statements(self.database):
            if version in done:
                continue
            for stmt in stmts:  # each statement is idempotent (IF NOT EXISTS): a crash mid-way is re-runnable
                self.command(stmt)
            self.insert(SCHEMA_MIGRATIONS, [{"version": version, "description": description}])
            applied.append(version)
        return applied

    # --- data -------------------------------------------------------------------------------------------
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.backend.execute(sql, params or {})

    def query(self, sql: str, params: Mapping[str, Any] | None = None,
              settings: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts. `settings`: integer query settings (fixed names from the caller's code, never input)."""
        raw = self.backend.execute(_settings_clause(sql, settings), params or {})
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def json_column(self, sql: str, params: Mapping[str, Any] | None = None,
                    settings: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """Rows of a query selecting ONE String column that holds a JSON object per row (pre-rendered in the
        store, e.g. by formatRowNoNewline): the objects, parsed in one call instead of twice per row."""
        raw = self.backend.execute(_settings_clause(sql, settings), params or {}, "TabSeparatedRaw")
        lines = raw.splitlines()
        return json.loads(b"[" + b",".join(lines) + b"]") if lines else []

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert dict rows (column -> JSON-able value) into `table` (unqualified name)."""
        lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False, allow_nan=False) for r in rows]
        if not lines:
            return 0
        self.backend.insert_json_rows(self.table(table), ("\n".join(lines) + "\n").encode())
        return len(lines)
