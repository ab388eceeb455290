"""The API's serving tables give exactly what the raw tables give: `object_page` (migration 4) for /objects in key
order, and `object_timeline` (migration 3) read whole or cut by the query, on real chDB."""

from __future__ import annotations

import random

import pytest

from api import queries
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import tables as t

BUCKETS = ["alpha", "beta"]


def _placement(bucket: str, key: str, version: int, deleted: bool, offset: int) -> dict:
    return {"bucket": bucket, "key": key, "version": version, "size": 1000 * version + len(key),
            "locations": [f"aws:us-east-1:{'standard' if version % 2 else 'glacier-ir'}"], "replicas": "[]",
            "updated_at": 1_700_000_000 + version, "deleted": deleted, "_partition": 0, "_offset": offset}


def _heat(bucket: str, key: str, as_of: float, offset: int) -> dict:
    return {"as_of": as_of, "bucket": bucket, "key": key, "read_heat": {"1h": 1.0}, "write_heat": {"1h": 0.0},
            "reads": int(as_of) % 97, "writes": 0, "bytes_read": 0, "size": 1, "first_seen": 1_600_000_000,
            "last_access": as_of - 5, "growing": False, "p_hot": round((as_of % 1000) / 1000, 3),
            "late_events": 0, "_partition": 0, "_offset": offset}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Objects of every shape, inserted out of order and partly twice: placed with heat, placed without heat,
    heat without a placement (runs of them, longer than a read), deleted at their newest version, deleted and
    then re-created."""
    tmp = tmp_path_factory.mktemp("serving")
    s = Settings(stack={"data_dir": tmp}, clickhouse={"chdb_path": tmp / "chdb"})
    rng = random.Random(11)
    placements, heats = [], []
    offset = 0
    for b in BUCKETS:
        for i in range(140):
            key = f"{'dir/' if i % 5 == 0 else ''}k{i:03d}"
            shape = "heat-only" if 40 <= i < 75 else rng.choice(["both", "both", "placement", "deleted", "revived"])
            if shape != "heat-only":
                versions = list(range(1, rng.randint(1, 4) + 1))
                last = versions[-1]
                for v in versions:
                    deleted = (shape == "deleted" and v == last) or (shape == "revived" and v == last - 1)
                    placements.append(_placement(b, key, v, deleted, offset := offset + 1))
            if shape != "placement":
                for _ in range(rng.randint(1, 3)):
                    heats.append(_heat(b, key, 1_700_000_000 + rng.randrange(10_000) + 0.125, offset := offset + 1))
    moves, events = [], []
    for b in BUCKETS:
        for i in (0, 3, 77):  # moves with their events (the latest per move is the status), out of order
            key = f"{'dir/' if i % 5 == 0 else ''}k{i:03d}"
            for m in range(3):
                move_id = f"{b}-{i}-m{m}"
                moves.append({"move_id": move_id, "plan_id": "p", "bucket": b, "key": key, "size": 1,
                              "from_locations": [], "to_locations": [], "expected_saving_usd": 0.0,
                              "transition_cost_usd": 0.0, "reason": "cold", "expected_version": 1,
                              "_partition": 0, "_offset": (offset := offset + 1)})
                for step, state in enumerate(["copying", "copied", "committed", "deleted"][:m + 2]):
                    events.append({"ts": 1_700_000_000 + 10 * m + step, "move_id": move_id, "plan_id": "p",
                                   "bucket": b, "key": key, "state": state, "location": "", "bytes": 0,
                                   "sha256": "", "attempt": 0, "reason": "", "_partition": 0,
                                   "_offset": (offset := offset + 1)})
    rng.shuffle(placements)
    rng.shuffle(heats)
    rng.shuffle(events)
    with AnalyticsStore.open(s) as st:
        st.migrate()
        # In several inserts (several parts, as ingestion leaves them), the last one a redelivery of the first.
        for chunk in range(0, len(placements), 100):
            st.insert(t.PLACEMENTS, placements[chunk:chunk + 100])
        for chunk in range(0, len(heats), 100):
            st.insert(t.OBJECT_HEAT, heats[chunk:chunk + 100])
        st.insert(t.MOVES, moves)
        for chunk in range(0, len(events), 7):
            st.insert(t.MOVE_EVENTS, events[chunk:chunk + 7])
        st.insert(t.PLACEMENTS, placements[:100])
        st.insert(t.OBJECT_HEAT, heats[:100])
        yield st


def _reference(store: AnalyticsStore, bucket: str | None, prefix: str | None) -> list[dict]:
    """The listing as the raw tables give it: placements FINAL that are not deleted, with the newest heat."""
    rows = store.query(
        f"""SELECT bucket, key, version, size, locations, toFloat64(updated_at) AS updated_at
            FROM {store.table(t.PLACEMENTS)} FINAL WHERE NOT deleted ORDER BY bucket, key""")
    heat = {(h["bucket"], h["key"]): h for h in store.query(
        f"""SELECT bucket, key, p_hot, reads, toFloat64(last_access) AS last_access
            FROM {store.table(t.OBJECT_HEAT_LATEST)} FINAL""")}
    out = []
    for r in rows:
        if (bucket is not None and r["bucket"] != bucket) or (prefix and not r["key"].startswith(prefix)):
            continue
        h = heat.get((r["bucket"], r["key"]))
        out.append({**r, "p_hot": h["p_hot"] if h else None, "reads": h["reads"] if h else None,
                    "last_access": h["last_access"] if h else None})
    return out


@pytest.mark.parametrize("bucket,prefix,limit", [(None, None, 1), ("alpha", None, 2), ("beta", None, 7),
                                                 (None, None, 50), ("alpha", "dir/", 3)])
def test_pages_in_key_order_equal_the_raw_tables(store, bucket, prefix, limit):
    listed, cursor = [], None
    while True:
        items, cursor = queries.list_objects(store, bucket=bucket, prefix=prefix, provider=None, tier=None,
                                             min_p_hot=None, max_p_hot=None, sort="key", cursor=cursor, limit=limit)
        assert len(items) <= limit
        listed += items
        if cursor is None:
            break
    expected = _reference(store, bucket, prefix)
    assert len(expected) > 10
    assert listed == expected


def test_pages_read_on_past_objects_without_a_placement(store):
    """35 heat-only objects in a row take more rows than one read of a 2-object page asks for."""
    items, cursor = queries.list_objects(store, bucket="alpha", prefix=None, provider=None, tier=None,
                                         min_p_hot=None, max_p_hot=None, sort="key",
                                         cursor=queries.encode_cursor(["alpha", "k039"]), limit=2)
    assert [i["key"] for i in items] == [r["key"] for r in _reference(store, "alpha", None)
                                         if r["key"] > "k039"][:2]
    assert all(i["key"] >= "k075" for i in items) and cursor is not None


def test_timeline_read_whole_equals_the_timeline_cut_by_the_query(store):
    for b in BUCKETS:
        for i in (0, 3, 41, 77, 139):
            key = f"{'dir/' if i % 5 == 0 else ''}k{i:03d}"
            for per_kind in (1, 2, 10):
                whole = queries._timeline_rows(store, b, key, per_kind)
                cut = queries._timeline_rows(store, b, key, per_kind, read_whole=0)
                assert whole == cut, (b, key, per_kind)
                assert whole, (b, key)
                if i in (0, 3, 77):
                    statuses = [p for kind, p in whole if kind == "event"]
                    assert len(statuses) == min(3, per_kind) and all('"deleted"' in p or '"committed"' in p
                                                                      or '"copied"' in p for p in statuses)
