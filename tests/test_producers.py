"""Producers: trace readers, the synthetic workload, and replay through the real broker with real objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from dim.producers import ReplayOptions, object_bytes, replay, to_event
from dim.traces import TraceError, read_trace, write_oracle
from dim.workload import WorkloadSpec, generate
from schemas import AccessEvent, topics

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "twitter52_sample.csv.zst"


def test_csv_plain_and_zst_agree(tmp_path):
    text = "time_s,object,size_bytes\n0,11,100\n1,12,50,PUT\n2,11,100\n"
    plain = tmp_path / "t.csv"
    plain.write_text(text)
    zst = tmp_path / "t.csv.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    a, b = list(read_trace(plain)), list(read_trace(zst))
    assert a == b
    assert [(r.time_s, r.object, r.size, r.op) for r in a] == [(0, "11", 100, "GET"), (1, "12", 50, "PUT"),
                                                                (2, "11", 100, "GET")]


def test_oracle_general_binary(tmp_path):
    path = tmp_path / "t.oracleGeneral"
    write_oracle(path, [(0, 2**63 + 5, 10), (3, 7, 20)])
    recs = list(read_trace(path))
    assert [(r.time_s, r.object, r.size) for r in recs] == [(0, str(2**63 + 5), 10), (3, "7", 20)]
    # random bytes are not a trace (they "replayed" as a $61.75 all_hot bill): a next access time below -1 or 0
    noise = tmp_path / "noise.oracleGeneral"
    noise.write_bytes(bytes(range(200, 248)))
    with pytest.raises(TraceError, match="record 1 is not oracleGeneral"):
        list(read_trace(noise))


@pytest.mark.parametrize("line", ["1,abc", "x,1,2", "1,2,-5", "1,2,3,COPY"])
def test_bad_trace_lines_give_clear_errors(tmp_path, line):
    path = tmp_path / "bad.csv"
    path.write_text("0,1,1\n" + line + "\n")
    with pytest.raises(TraceError, match="bad.csv:2"):
        list(read_trace(path))


@pytest.mark.parametrize("name, payload, match", [
    ("junk.csv.zst", b"time_s,object,size_bytes\n0,1,1\n", "not a readable zstd file"),
    ("latin.csv", "0,caf\u00e9,1\n".encode("latin-1"), "not UTF-8 text"),
])
def test_an_undecodable_trace_is_a_trace_error_not_a_traceback(tmp_path, name, payload, match):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(TraceError, match=f"{name}: {match}"):
        list(read_trace(path))


def test_a_trace_path_may_be_given_as_a_string():
    assert list(read_trace(str(SAMPLE), limit=3)) == list(read_trace(SAMPLE, limit=3))


def test_to_event_scales_time_and_size():
    rec = next(read_trace(SAMPLE, limit=1))
    ev = to_event(rec, ReplayOptions(time_scale=3600, size_scale=10, start=1000.0))
    assert ev.event_time == 1000.0 + rec.time_s * 3600
    assert ev.object_size == rec.size * 10 and ev.bytes == rec.size * 10 and ev.op == "GET"


def test_a_scaling_that_breaks_the_contract_is_a_trace_error_naming_the_record():
    rec = next(r for r in read_trace(SAMPLE, limit=50) if r.time_s > 0)
    with pytest.raises(TraceError, match=rf"record {rec.line}: .*event_time"):
        to_event(rec, ReplayOptions(time_scale=1e12, start=1000.0))  # events after 2299


def test_sample_is_the_documented_slice():
    recs = list(read_trace(SAMPLE))
    assert len(recs) == 4550 and len({r.object for r in recs}) == 1166
    assert all(int(r.object) % 300 == 7 for r in recs)


def test_workload_is_seeded_and_plausible():
    spec = WorkloadSpec(objects=300, events=5000, seed=7)
    a, b = list(generate(spec)), list(generate(spec))
    assert a == b and len(a) == 5000
    assert list(generate(WorkloadSpec(objects=300, events=5000, seed=8))) != a
    times = [r.time_s for r in a]
    assert times == sorted(times)
    first_put = {}
    for r in a:
        first_put.setdefault(r.object, r)
    assert all(r.op == "PUT" for r in first_put.values())  # every object is uploaded before it is read
    counts: dict[str, int] = {}
    for r in a:
        counts[r.object] = counts.get(r.object, 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert sum(top[:30]) > 0.3 * len(a)  # Zipf skew: top 10% of objects take a large share


def test_replay_reaches_the_broker_and_creates_objects(stack_settings):
    from dim.config import s3_client
    from dim.testing import valid_records
    from mover.catalog import PlacementCatalog, replica_key
    from solver.catalogue import load_catalogue

    opt = ReplayOptions(bucket="replaytest", time_scale=3600, size_scale=10)
    summary = replay(stack_settings, SAMPLE, opt, limit=200, end_run="replay-1")
    assert summary.events == 200 and sum(summary.per_partition.values()) == 200
    events = valid_records(stack_settings, topics.ACCESS, AccessEvent, "test-replay", "replay-1")
    mine = [e for e in events if e.bucket == "replaytest"]
    assert len(mine) == 200
    assert [e.request_id for e in mine[:1]]  # request ids are set

    # Every object exists, with real bytes of the (capped) scaled size, in each initial location.
    cat = PlacementCatalog(stack_settings)
    s3 = s3_client(stack_settings)
    catalogue = load_catalogue(stack_settings.solver.catalogue_path)
    key = mine[0].key
    placement, _etag = cat.get("replaytest", key)
    assert sorted(placement.locations) == sorted(stack_settings.solver.initial_locations)
    size = min(stack_settings.s3.max_object_bytes, mine[0].object_size)
    for loc in placement.locations:
        body = s3.get_object(Bucket=catalogue.location(loc).bucket, Key=replica_key("replaytest", key))["Body"]
        assert body.read() == object_bytes("replaytest", key, size)


@pytest.mark.parametrize("command, args, fragment", [
    ("generate", ["--objects", "0"], "--objects"),
    ("generate", ["--events", "5"], "every object is uploaded once"),
    ("generate", ["--days", "0"], "--days"),
    ("replay", [str(SAMPLE), "--limit", "0"], "--limit"),
    ("replay", [str(SAMPLE), "--time-scale", "-1"], "positive numbers"),
    ("api", ["--port", "70000"], "--port"),
])
def test_producer_and_api_options_are_checked_before_connecting(command, args, fragment):
    """Before: tracebacks (--objects 0, --days 0), 2,000 events for --events 0, one request for --limit 0, and
    an API on port 70000 mod 65536."""
    from click.testing import CliRunner

    from dim.cli import main

    res = CliRunner().invoke(main, [command, *args])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output, res.output
