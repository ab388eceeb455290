"""The API's reads from the analytics store. Every value from a request is a `{name:Type}` parameter; the only
things spliced into SQL text are table names from `schemas.tables` and fixed fragments chosen from whitelists."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

from api.store import AnalyticsStore
from schemas import AUDIT_INTEGRITY_KINDS, REPEAT_REASON_PREFIX
from schemas import tables as t

# A point lookup or a keyset page reads a few granules: more threads only add scheduling cost, and 20
# concurrent requests already keep both cores busy (measured: page CPU 6.0 -> 3.8 ms with one thread).
# Small blocks let LIMIT stop a FINAL read early: with the 65,536-row default, a page of a table whose parts are
# not yet merged read to the end of the key range (300k objects in 3 parts: 18.7 ms a page; 7.4 ms with 1,024).
SMALL_READ = {"max_threads": 1, "max_block_size": 1024}


class BadCursor(ValueError):
    pass


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def keyset_page(rows: list[dict], limit: int, cursor_of: Callable[[dict], list[Any]]) -> tuple[list[dict], str | None]:
    """The page out of `rows` read with LIMIT limit + 1: its first `limit` rows and, if there was one more, the
    cursor of the next page (`cursor_of` the page's last row)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(cursor_of(rows[-1]))


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API issued") from exc
    if not isinstance(values, list) or len(values) != len(shape):
        raise BadCursor("cursor is not one this API issued")
    out = []
    for v, ty in zip(values, shape):
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ty is float and number:  # never NaN or infinity (JSON's 1e400): no cursor this API issues has them
            out.append(float(v))
        elif ty is int and number and v == int(v) and 0 <= v < 2**63:  # Kafka partitions and offsets
            out.append(int(v))
        elif ty is str and isinstance(v, str):
            out.append(v)
        else:
            raise BadCursor("cursor is not one this API issued")
    return out


def schema_versions(store: AnalyticsStore) -> list[int]:
    return [r["version"] for r in store.query(
        f"SELECT version FROM {store.table(t.SCHEMA_MIGRATIONS)} FINAL ORDER BY version")]


# --- objects -------------------------------------------------------------------------------------------------
# sort name -> SQL expression of the numeric sort value (None: by bucket, key only)
OBJECT_SORTS: dict[str, str | None] = {
    "key": None,
    "size": "toFloat64(size)",
    "-size": "-toFloat64(size)",
    "updated_at": "toFloat64(updated_at)",
    "-updated_at": "-toFloat64(updated_at)",
}


def list_objects(store: AnalyticsStore, *, bucket: str | None, prefix: str | None, provider: str | None,
                 tier: str | None, min_p_hot: float | None, max_p_hot: float | None, sort: str,
                 cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    sort_expr = OBJECT_SORTS[sort]
    if sort_expr is None and provider is None and tier is None and min_p_hot is None and max_p_hot is None:
        # The default listing: a page in key order with no filter that can skip many rows is one short range.
        after = tuple(decode_cursor(cursor, (str, str))) if cursor else None
        return _page_in_key_order(store, bucket, prefix, after, limit)
    where = ["NOT deleted"]
    params: dict[str, Any] = {"limit": limit + 1}
    _scope(where, params, bucket, prefix)
    if provider is not None:
        where.append("arrayExists(l -> splitByChar(':', l)[1] = {provider:String}, locations)")
        params["provider"] = provider
    if tier is not None:
        where.append("arrayExists(l -> splitByChar(':', l)[3] = {tier:String}, locations)")
        params["tier"] = tier
    if min_p_hot is not None or max_p_hot is not None:
        cond = []
        if min_p_hot is not None:
            cond.append("p_hot >= {min_p_hot:Float64}")
            params["min_p_hot"] = min_p_hot
        if max_p_hot is not None:
            cond.append("p_hot <= {max_p_hot:Float64}")
            params["max_p_hot"] = max_p_hot
        where.append(f"(bucket, key) IN (SELECT bucket, key FROM {store.table(t.OBJECT_HEAT_LATEST)} FINAL "
                     f"WHERE {' AND '.join(cond)})")
    sv = sort_expr or "0.0"
    if cursor:
        if sort_expr is None:
            cb, ck = decode_cursor(cursor, (str, str))
            _after_key(where, params, bucket, cb, ck, inclusive=False)
        else:
            cv, cb, ck = decode_cursor(cursor, (float, str, str))
            where.append(f"({sv}, bucket, key) > ({{cv:Float64}}, {{cb:String}}, {{ck:String}})")
            params["cv"], params["cb"], params["ck"] = cv, cb, ck
    order = "bucket, key" if sort_expr is None else f"{sv}, bucket, key"
    # FINAL with the primary key's order: the page is read in order from the cursor and stops at the limit.
    rows = store.query(
        f"""SELECT bucket, key, version, size, locations, toFloat64(updated_at) AS updated_at, {sv} AS sort_value
            FROM {store.table(t.PLACEMENTS)} FINAL WHERE {' AND '.join(where)}
            ORDER BY {order} LIMIT {{limit:UInt32}}""", params)
    rows, next_cursor = keyset_page(rows, limit, lambda last: [last["bucket"], last["key"]] if sort_expr is None
                                    else [last["sort_value"], last["bucket"], last["key"]])
    heat = _latest_heat(store, rows, contiguous=sort_expr is None)
    for r in rows:
        r.pop("sort_value", None)
        h = heat.get((r["bucket"], r["key"]))
        r["p_hot"], r["reads"], r["last_access"] = (h["p_hot"], h["reads"], h["last_access"]) if h else (None,) * 3
    return rows, next_cursor


def _scope(where: list[str], params: dict[str, Any], bucket: str | None, prefix: str | None) -> None:
    """The conditions of a listing's bucket and key prefix."""
    if bucket is not None:
        where.append("bucket = {bucket:String}")
        params["bucket"] = bucket
    if prefix:
        where.append("startsWith(key, {prefix:String})")
        params["prefix"] = prefix


def _after_key(where: list[str], params: dict[str, Any], bucket: str | None, cb: str, ck: str,
               inclusive: bool) -> None:
    """The condition of a listing in (bucket, key) order that starts after (or at) the object (cb, ck)."""
    op = ">=" if inclusive else ">"
    # Spelled out rather than as a tuple comparison, which the primary-key analysis uses less well.
    where.append(f"key {op} {{ck:String}}" if bucket is not None and cb == bucket
                 else f"bucket >= {{cb:String}} AND (bucket > {{cb:String}} OR key {op} {{ck:String}})")
    params["cb"], params["ck"] = cb, ck


def _page_in_key_order(store: AnalyticsStore, bucket: str | None, prefix: str | None,
                       after: tuple[str, str] | None, limit: int) -> tuple[list[dict], str | None]:
    """A page of objects in (bucket, key) order after the cursor `after`, each with its newest heat, from
    `object_page` (migration 4): one range read where placements + object_heat_latest took two.

    Each object has up to two rows there, 'heat' before 'placement'. A read asks for enough rows for the page
    when every object has both; when objects without a placement (deleted, or heat only) take rows, it reads
    on from where it stopped. A full read may end between an object's two rows: that object is read again."""
    items: list[dict] = []
    rows_per_read = 2 * (limit + 1) + 8
    resume: tuple[str, str, bool] | None = (*after, False) if after else None  # (bucket, key, inclusive)
    while True:
        where = ["(kind = 'heat' OR NOT deleted)"]
        params: dict[str, Any] = {"n": rows_per_read}
        _scope(where, params, bucket, prefix)
        if resume is not None:
            _after_key(where, params, bucket, *resume)
        rows = store.json_column(
            f"""SELECT payload FROM {store.table(t.OBJECT_PAGE)} FINAL
                WHERE {' AND '.join(where)} ORDER BY bucket, key, kind LIMIT {{n:UInt32}}""", params, SMALL_READ)
        full = len(rows) == rows_per_read
        if full:
            last = (rows[-1]["bucket"], rows[-1]["key"])
            while rows and (rows[-1]["bucket"], rows[-1]["key"]) == last:
                rows.pop()
            resume = (*last, True)
        heat: dict | None = None
        for r in rows:
            if r.pop("kind") == "heat":
                heat = r
                continue
            item = r
            h = heat if heat is not None and (heat["bucket"], heat["key"]) == (r["bucket"], r["key"]) else None
            item["p_hot"], item["reads"], item["last_access"] = \
                (h["p_hot"], h["reads"], h["last_access"]) if h else (None,) * 3
            items.append(item)
            if len(items) > limit:
                break
        if len(items) > limit or not full:
            break
    return keyset_page(items, limit, lambda last: [last["bucket"], last["key"]])


def _latest_heat(store: AnalyticsStore, rows: list[dict], contiguous: bool) -> dict[tuple[str, str], dict]:
    """The newest heat of the objects of a page. A page in key order is one primary-key range of the heat table;
    any other page is looked up object by object in one query."""
    if not rows:
        return {}
    cols = f"""bucket, key, p_hot, reads, toFloat64(last_access) AS last_access
               FROM {store.table(t.OBJECT_HEAT_LATEST)} FINAL"""
    if contiguous and rows[0]["bucket"] == rows[-1]["bucket"]:
        found = store.query(
            f"SELECT {cols} WHERE bucket = {{b:String}} AND key >= {{k0:String}} AND key <= {{k1:String}}",
            {"b": rows[0]["bucket"], "k0": rows[0]["key"], "k1": rows[-1]["key"]}, SMALL_READ)
    else:
        params: dict[str, Any] = {}
        cond = []
        for i, r in enumerate(rows):
            cond.append(f"(bucket = {{b{i}:String}} AND key = {{k{i}:String}})")
            params[f"b{i}"], params[f"k{i}"] = r["bucket"], r["key"]
        found = store.query(f"SELECT {cols} WHERE {' OR '.join(cond)}", params)
    return {(h["bucket"], h["key"]): h for h in found}


def object_detail(store: AnalyticsStore, bucket: str, key: str, history: int,
                  max_moves: int) -> dict[str, Any]:
    """Placement (newest version, or None), the last `history` heat snapshots and access hours (oldest first),
    and the first `max_moves` moves (by id) with their status, of one object.

    One point lookup on `object_timeline` (schemas/tables.py, migration 3), which holds every row of an object
    in one primary-key range, pre-rendered as JSON: chDB spends about a millisecond of CPU per table read before
    it reads a row, so one read instead of five is what makes the detail cheap. FINAL collapses redelivered
    rows; of the rows left, the latest of each (kind, id) counts (the latest event of each move), and each kind
    is cut to its newest `max(history, max_moves)`."""
    cap = max(history, max_moves)
    rows = _timeline_rows(store, bucket, key, cap + 1)
    parts: dict[str, list[dict]] = {"placement": [], "heat": [], "access": [], "move": [], "event": []}
    for kind, payload in rows:
        parts[kind].append(json.loads(payload))
    placement = parts["placement"][0] if parts["placement"] else None
    if placement is not None:
        placement["replicas"] = json.loads(placement["replicas"])
    moves = parts["move"][:max_moves]  # ordered by id (their ts is 0)
    if len(parts["event"]) > cap and moves:
        # More moves than one read returns the latest event of: ask for exactly the listed moves' events.
        latest = {e["move_id"]: e for e in _latest_events(store, [m["move_id"] for m in moves])}
    else:
        latest = {e["move_id"]: e for e in parts["event"]}
    for m in moves:
        e = latest.get(m["move_id"])
        m["status"], m["status_at"], m["last_reason"] = (e["state"], e["at"], e["last_reason"]) if e \
            else ("planned", None, "")
    # Newest first in the read (so the limit keeps the newest); the response is oldest first.
    return {"placement": placement, "heat": parts["heat"][:history][::-1], "access": parts["access"][:history][::-1],
            "moves": moves}


# An object with up to this many timeline rows is read whole and cut in Python; a bigger one is cut by the query.
# Doing the LIMIT BYs in SQL costs ~1.5 ms of CPU more per detail than reading a typical object's few rows.
TIMELINE_READ_WHOLE = 2000


def _timeline_rows(store: AnalyticsStore, bucket: str, key: str, per_kind: int,
                   read_whole: int = TIMELINE_READ_WHOLE) -> list[tuple[str, str]]:
    """(kind, payload) of the latest row of each (kind, id) of one object, per kind newest first (ts descending,
    then id), at most `per_kind` of each kind."""
    params = {"b": bucket, "k": key}
    rows = store.query(
        f"""SELECT kind, id, ts, version, payload FROM {store.table(t.OBJECT_TIMELINE)} FINAL
            WHERE bucket = {{b:String}} AND key = {{k:String}} LIMIT {{n:UInt32}}""",
        {**params, "n": read_whole + 1}, SMALL_READ)
    if len(rows) > read_whole:
        found = store.query(
            f"""SELECT kind, payload FROM (
                    SELECT kind, id, ts, version, payload FROM {store.table(t.OBJECT_TIMELINE)} FINAL
                    WHERE bucket = {{b:String}} AND key = {{k:String}}
                    ORDER BY kind, id, ts DESC, version DESC LIMIT 1 BY kind, id)
                ORDER BY kind, ts DESC, id LIMIT {{cap:UInt32}} BY kind""",
            {**params, "cap": per_kind}, SMALL_READ)
        return [(r["kind"], r["payload"]) for r in found]
    latest: dict[tuple[str, str], dict] = {}
    for r in rows:
        seen = latest.get((r["kind"], r["id"]))
        if seen is None or (r["ts"], r["version"]) > (seen["ts"], seen["version"]):
            latest[(r["kind"], r["id"])] = r
    out: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for r in sorted(latest.values(), key=lambda r: (r["kind"], -r["ts"], r["id"])):
        if counts.get(r["kind"], 0) < per_kind:
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
            out.append((r["kind"], r["payload"]))
    return out


def _latest_events(store: AnalyticsStore, move_ids: list[str]) -> list[dict]:
    return store.query(
        f"""SELECT move_id, argMax(state, (ts, _offset)) AS state, toFloat64(max(ts)) AS at,
                   argMax(reason, (ts, _offset)) AS last_reason
            FROM {store.table(t.MOVE_EVENTS)} WHERE move_id IN {{ids:Array(String)}} GROUP BY move_id""",
        {"ids": move_ids})


# --- moves and plans ------------------------------------------------------------------------------------------
_MOVE_COLS = """m.move_id AS move_id, m.plan_id AS plan_id, m.bucket AS bucket, m.key AS key, m.size AS size,
    m.from_locations AS from_locations, m.to_locations AS to_locations,
    m.expected_saving_usd AS expected_saving_usd, m.transition_cost_usd AS transition_cost_usd,
    m.reason AS reason, m.expected_version AS expected_version,
    if(e.move_id = '', 'planned', e.state) AS status, if(e.move_id = '', NULL, toFloat64(e.at)) AS status_at,
    e.last_reason AS last_reason"""


def _moves_sql(store: AnalyticsStore, move_where: str, status_filter: bool) -> str:
    return f"""
        SELECT {_MOVE_COLS}
        FROM (SELECT * FROM {store.table(t.MOVES)} FINAL WHERE {move_where}) AS m
        LEFT JOIN (SELECT move_id, argMax(state, (ts, _offset)) AS state, max(ts) AS at,
                          argMax(reason, (ts, _offset)) AS last_reason
                   FROM {store.table(t.MOVE_EVENTS)}
                   WHERE move_id IN (SELECT move_id FROM {store.table(t.MOVES)} WHERE {move_where})
                   GROUP BY move_id) AS e
          ON e.move_id = m.move_id
        {"WHERE status = {status:String}" if status_filter else ""}"""


def list_moves(store: AnalyticsStore, *, status: str | None, plan_id: str | None, bucket: str | None,
               key: str | None, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    where = ["1"]
    params: dict[str, Any] = {"limit": limit + 1}
    for name, value in (("plan_id", plan_id), ("bucket", bucket), ("key", key)):
        if value is not None:
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
    if cursor:
        (after,) = decode_cursor(cursor, (str,))
        where.append("move_id > {after:String}")
        params["after"] = after
    if status is not None:
        # The status is the latest move event: filtering on it needs the join before the limit.
        params["status"] = status
        rows = store.query(_moves_sql(store, " AND ".join(where), True)
                           + " ORDER BY move_id LIMIT {limit:UInt32}", params)
    else:
        rows = store.query(f"""SELECT move_id, plan_id, bucket, key, size, from_locations, to_locations,
                                      expected_saving_usd, transition_cost_usd, reason, expected_version
                               FROM {store.table(t.MOVES)} FINAL WHERE {" AND ".join(where)}
                               ORDER BY move_id LIMIT {{limit:UInt32}}""", params)
    rows, next_cursor = keyset_page(rows, limit, lambda last: [last["move_id"]])
    if status is None and rows:
        latest = {r["move_id"]: r for r in _latest_events(store, [r["move_id"] for r in rows])}
        for r in rows:
            e = latest.get(r["move_id"])
            r["status"], r["status_at"], r["last_reason"] = (e["state"], e["at"], e["last_reason"]) if e \
                else ("planned", None, "")
    return rows, next_cursor


_PLAN_COLS = """plan_id, toFloat64(created_at) AS created_at, method, catalogue_version, candidates, objective_usd,
    lower_bound_usd, gap, cost_before_usd_month, cost_after_usd_month, moves"""


def list_plans(store: AnalyticsStore, *, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    where = "1"
    params: dict[str, Any] = {"limit": limit + 1}
    if cursor:
        c_at, c_id = decode_cursor(cursor, (float, str))
        where = "(toFloat64(created_at), plan_id) < ({c_at:Float64}, {c_id:String})"
        params.update(c_at=c_at, c_id=c_id)
    rows = store.query(
        f"""SELECT {_PLAN_COLS} FROM {store.table(t.PLANS)} FINAL WHERE {where}
            ORDER BY created_at DESC, plan_id DESC LIMIT {{limit:UInt32}}""", params)
    return keyset_page(rows, limit, lambda last: [last["created_at"], last["plan_id"]])


def get_plan(store: AnalyticsStore, plan_id: str) -> dict | None:
    rows = store.query(f"SELECT {_PLAN_COLS} FROM {store.table(t.PLANS)} FINAL WHERE plan_id = {{p:String}}",
                       {"p": plan_id})
    return rows[0] if rows else None


# --- audits ---------------------------------------------------------------------------------------------------
_AUDIT_COLS = """audit_id, toFloat64(started_at) AS started_at, toFloat64(finished_at) AS finished_at, scope, grace_s,
    verified_checksums, archive_replicas_unread, ok, entries, replicas, replica_bytes, stored_objects,
    unnamed_in_grace, orphan_bytes, counts, findings_total"""


def list_audits(store: AnalyticsStore, *, ok: bool | None, cursor: str | None,
                limit: int) -> tuple[list[dict], str | None]:
    """`dim audit` runs, newest first."""
    where = ["1"]
    params: dict[str, Any] = {"limit": limit + 1}
    if ok is not None:
        where.append("ok = {ok:Bool}")
        params["ok"] = ok
    if cursor:
        c_at, c_id = decode_cursor(cursor, (float, str))
        where.append("(toFloat64(started_at), audit_id) < ({c_at:Float64}, {c_id:String})")
        params.update(c_at=c_at, c_id=c_id)
    rows = store.query(
        f"""SELECT {_AUDIT_COLS} FROM {store.table(t.AUDITS)} FINAL WHERE {' AND '.join(where)}
            ORDER BY started_at DESC, audit_id DESC LIMIT {{limit:UInt32}}""", params)
    return keyset_page(rows, limit, lambda last: [last["started_at"], last["audit_id"]])


def get_audit(store: AnalyticsStore, audit_id: str) -> dict | None:
    """One audit with the findings its record carried (integrity findings first)."""
    rows = store.query(f"SELECT {_AUDIT_COLS} FROM {store.table(t.AUDITS)} FINAL WHERE audit_id = {{a:String}}",
                       {"a": audit_id})
    if not rows:
        return None
    findings = store.query(
        f"""SELECT kind, location, key, size, age_s, detail, upload_id
            FROM {store.table(t.AUDIT_FINDINGS)} FINAL WHERE audit_id = {{a:String}}
            ORDER BY kind NOT IN {{integrity:Array(String)}}, kind, location, key, upload_id""",
        {"a": audit_id, "integrity": list(AUDIT_INTEGRITY_KINDS)})
    return {**rows[0], "findings": findings}


# --- flow status ---------------------------------------------------------------------------------------------
_STATUS_COLS = """shard, toFloat64(as_of) AS as_of, events, late_events, repeats, dead_letters, objects, objects_hot,
    labels_pending, labels_learned, p_hot_from, labels_scored, regression_logloss, prior_logloss,
    forest_labels_scored, forest_logloss, forest_share_regression_logloss, reads_states_calibrated, reads_states"""


def latest_shard_status(store: AnalyticsStore) -> list[dict]:
    """The newest ShardStatus of every flow shard, by shard."""
    return store.query(
        f"""SELECT {_STATUS_COLS} FROM {store.table(t.FLOW_STATUS)} FINAL
            ORDER BY shard, as_of DESC LIMIT 1 BY shard""")


def shard_status_history(store: AnalyticsStore, shard: int, *, cursor: str | None,
                         limit: int) -> tuple[list[dict], str | None]:
    """One shard's statuses, newest first."""
    where = ["shard = {s:UInt16}"]
    params: dict[str, Any] = {"s": shard, "limit": limit + 1}
    if cursor:
        (c_at,) = decode_cursor(cursor, (float,))
        where.append("toFloat64(as_of) < {c_at:Float64}")
        params["c_at"] = c_at
    rows = store.query(
        f"""SELECT {_STATUS_COLS} FROM {store.table(t.FLOW_STATUS)} FINAL WHERE {' AND '.join(where)}
            ORDER BY as_of DESC LIMIT {{limit:UInt32}}""", params, settings=SMALL_READ)
    return keyset_page(rows, limit, lambda last: [last["as_of"]])


# --- dead letters ---------------------------------------------------------------------------------------------
def list_dead_letters(store: AnalyticsStore, *, source_topic: str | None, cursor: str | None,
                      limit: int, repeats: bool | None = None) -> tuple[list[dict], str | None]:
    """`repeats`: True for repeated accesses only (valid, not counted again), False for refused input only."""
    where = ["1"]
    params: dict[str, Any] = {"limit": limit + 1}
    if source_topic is not None:
        where.append("source_topic = {topic:String}")
        params["topic"] = source_topic
    if repeats is not None:
        where.append(("" if repeats else "NOT ") + "startsWith(reason, {repeat:String})")
        params["repeat"] = REPEAT_REASON_PREFIX
    if cursor:
        c_topic, c_part, c_off = decode_cursor(cursor, (str, int, int))
        where.append("(_topic, _partition, _offset) > ({ct:String}, {cp:UInt64}, {co:UInt64})")
        params.update(ct=c_topic, cp=c_part, co=c_off)
    rows = store.query(
        f"""SELECT toFloat64(ts) AS ts, source_topic, partition, offset, reason, payload,
                   _topic AS t, _partition AS p, _offset AS o
            FROM {store.table(t.DEAD_LETTERS)} FINAL WHERE {' AND '.join(where)}
            ORDER BY _topic, _partition, _offset LIMIT {{limit:UInt32}}""", params)
    rows, next_cursor = keyset_page(rows, limit, lambda last: [last["t"], last["p"], last["o"]])
    for r in rows:
        del r["t"], r["p"], r["o"]
    return rows, next_cursor
