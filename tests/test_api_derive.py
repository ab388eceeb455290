"""The derived analytics (hourly rollups, SLA events, the cost ledger, savings) against hand-computed answers, on
real chDB fed record by record the way the ingester feeds it (api.rows -> insert_rows -> derive.refresh), across
topics arriving in any order. Found by a review of api/derive.py; each test fails on the code before its fix."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import pytest

from api import analytics, derive
from api.ingest import insert_rows
from api.ledger import GB
from api.rows import rows_of_record
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import AccessEvent, Move, MoveEvent, Placement, Replica, topics
from schemas import tables as t

D = 1_700_006_400  # 2023-11-15 00:00 UTC
DAY, HOUR = 86_400, 3_600
HOT, ARC = "aws:us-east-1:standard", "aws:us-east-1:glacier-flexible"
GIB = 1 << 30


class Feed:
    """One store, fed like the ingester: each call is one batch of records (any topics), then the refresh."""

    def __init__(self, tmp_path):
        self.settings = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
        self.store = AnalyticsStore.open(self.settings)
        self.store.migrate()
        derive.load_prices(self.store, self.settings)
        self.offsets = itertools.count(1)

    def __call__(self, *records: tuple[str, object]) -> None:
        rows: dict = {}
        for topic, model in records:
            for table, rs in rows_of_record(topic, 0, next(self.offsets), model.model_dump_json().encode()).items():
                rows.setdefault(table, []).extend(rs)
        insert_rows(self.store, rows)
        derive.refresh(self.store, self.settings, rows)

    def q(self, sql: str) -> list[dict]:
        return self.store.query(sql)


@pytest.fixture
def feed(tmp_path):
    f = Feed(tmp_path)
    yield f
    f.store.close()


def placed(ts, version, locations, key="k", size=GIB):
    return topics.PLACEMENTS, Placement(bucket="b", key=key, version=version, updated_at=ts,
                                        replicas=[Replica(location=loc, size=size, created_at=ts) for loc in locations])


def read(ts, key="k", size=GIB):
    return topics.ACCESS, AccessEvent(event_time=ts, bucket="b", key=key, op="GET", bytes=size, object_size=size)


def ledger(feed, day, location=HOT) -> dict:
    rows = feed.q(f"""SELECT objects, gb_days, get_requests, egress_usd FROM {feed.store.table(t.COST_LEDGER)} FINAL
                      WHERE day = toDate({day}) AND location = '{location}'""")
    return rows[0] if rows else {}


def test_an_hour_judged_again_compliant_withdraws_its_sla_violation(feed):
    feed(placed(D - 100, 1, [ARC]), read(D + 60), read(D + 120))
    assert analytics.sla(feed.store, feed.settings, D, D + DAY, 10).violating_reads == 2
    # the move back to the standard tier was committed before the hour ended, and arrives late
    feed(placed(D + 1800, 2, [HOT]))
    sla = analytics.sla(feed.store, feed.settings, D, D + DAY, 10)
    assert sla.violating_reads == 0 and sla.events == [] and sla.total_reads == 2


def test_sla_range_ends_before_to_ts(feed):
    feed(placed(D - 100, 1, [ARC]), read(D + 60), read(D + HOUR + 60))
    assert analytics.sla(feed.store, feed.settings, D, D + HOUR, 10).violating_reads == 1  # was 2: one hour more
    assert analytics.sla(feed.store, feed.settings, D, D + HOUR + 0.5, 10).violating_reads == 2


def test_days_no_batch_touched_are_billed_for_storage(feed):
    feed(placed(D - 100, 1, [HOT]), read(D + 60))
    feed(read(D + 5 * DAY + 60))
    gb_days = [ledger(feed, D + n * DAY).get("gb_days") for n in range(6)]
    assert gb_days == [pytest.approx(1.0)] * 6  # days 1-4 had no row: their storage was never billed


def test_a_copy_ingested_before_its_move_is_priced_when_the_move_arrives(feed):
    azure = "azure:eastus:hot"
    feed(placed(D - 100, 1, [HOT]))
    feed((topics.MOVE_EVENTS, MoveEvent(move_id="m1", plan_id="p", bucket="b", key="k", state="copied",
                                        ts=D + 100, location=azure, bytes=GIB)))
    assert ledger(feed, D)["egress_usd"] == 0  # the move is not known yet
    feed((topics.MOVES, Move(move_id="m1", plan_id="p", bucket="b", key="k", size=GIB, from_locations=[HOT],
                             to_locations=[azure])))
    assert ledger(feed, D)["egress_usd"] == pytest.approx(0.09)  # AWS -> Azure, billed by the source


def test_a_placement_from_midnight_does_not_serve_the_day_before(feed):
    feed(placed(D - 100, 1, [HOT]), read(D + 23 * HOUR + 60), placed(D + DAY, 2, [ARC]))
    assert analytics.sla(feed.store, feed.settings, D, D + DAY, 10).violating_reads == 0
    assert ledger(feed, D)["get_requests"] == 1 and ledger(feed, D, ARC).get("get_requests", 0) == 0


def test_savings_price_the_all_hot_baseline_with_the_hot_tier_s_own_minimum_and_overhead(feed):
    # 1,000 objects of 1 KiB in Glacier Flexible: ~40 KB of billed metadata each there, none in the hot tier
    feed(*(placed(D, 1, [ARC], key=f"k{i}", size=1024) for i in range(1000)))
    s = analytics.savings(feed.store, feed.settings)
    hot_month = 1000 * 1024 / GB * 0.023  # S3 Standard $/GB-month
    assert s.baseline_usd_month == pytest.approx(hot_month, rel=1e-6)
    assert s.saving_usd_month < 0  # archive is dearer for such small objects (it read +84 % before)


_TZ_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.test_api_derive import D, DAY, HOUR, Feed, ledger, placed, read
    feed = Feed(Path({path!r}))
    feed(placed(D - 100, 1, ["aws:us-east-1:standard"]), read(D + 60), read(D + 5 * HOUR + 60))
    hourly = feed.q("SELECT toUInt32(hour) AS h FROM dim.access_hourly FINAL ORDER BY h")
    print(json.dumps({{"hours": [r["h"] for r in hourly], "gets": ledger(feed, D).get("get_requests")}}))
""")


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kolkata"])
def test_hours_and_days_are_utc_whatever_the_process_time_zone(tmp_path, tz):
    """chDB follows the process's time zone: in Berlin the ledger lost its requests, in Kolkata the hourly rollup
    (and with it SLA events and the ledger's requests) was empty."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _TZ_SCRIPT.format(root=root, path=str(tmp_path))],
                         env={**os.environ, "TZ": tz}, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"hours": [D, D + 5 * HOUR], "gets": 2}


def test_a_late_placement_re_judges_every_later_hour_it_governs(feed):
    """It re-judged only its own hour and the next: reads 5-8 hours later stayed judged against the old tier."""
    feed(placed(D - 100, 1, [HOT]), *(read(D + h * HOUR + 60) for h in range(5, 9)))
    feed(placed(D + HOUR + 5, 2, [ARC]))  # moved to Glacier Flexible in hour 1; the catalog update arrives late
    sla = analytics.sla(feed.store, feed.settings, D, D + DAY, 10)
    assert sla.violating_reads == 4 and sorted(e.hour for e in sla.events) == [D + h * HOUR for h in range(5, 9)]
    assert ledger(feed, D, ARC)["get_requests"] == 4 and ledger(feed, D)["get_requests"] == 0


def test_a_copy_out_of_an_archive_tier_pays_its_retrieval_and_requests(feed):
    """The ledger billed a copy its egress only: $0 for restoring 1 GiB out of Glacier Flexible."""
    feed(placed(D - 100, 1, [ARC]))
    feed((topics.MOVES, Move(move_id="m2", plan_id="p", bucket="b", key="k", size=GIB, from_locations=[ARC],
                             to_locations=[HOT])),
         (topics.MOVE_EVENTS, MoveEvent(move_id="m2", plan_id="p", bucket="b", key="k", state="copied",
                                        ts=D + 100, location=HOT, bytes=GIB)))
    row = feed.q(f"""SELECT retrieval_usd, request_usd, get_requests FROM {feed.store.table(t.COST_LEDGER)} FINAL
                     WHERE day = toDate({D}) AND location = '{ARC}'""")[0]
    assert row["retrieval_usd"] == pytest.approx(0.01) and row["request_usd"] == pytest.approx(0.05 / 1000)
    assert row["get_requests"] == 0  # the volumes stay the clients' reads (/savings prices them)
    hot = feed.q(f"""SELECT request_usd FROM {feed.store.table(t.COST_LEDGER)} FINAL
                     WHERE day = toDate({D}) AND location = '{HOT}'""")[0]
    assert hot["request_usd"] == pytest.approx(0.005 / 1000)  # one PUT at S3 Standard
