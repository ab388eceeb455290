"""S3 server access logs -> access events: the pure parser (dim/s3logs.py) and `dim ship-logs` against the real
broker and real S3 (dim/logship.py)."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from dim.s3logs import LogLineError, Skipped, parse_line, split_fields
from schemas import AccessEvent, DeadLetter, topics

OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(op="REST.GET.OBJECT", key="photos/cat.jpg", status="200", error="-", sent="2048", size="2048",
           bucket="media", when=T0, request_id="3E57427F3EXAMPLE", tail=True) -> str:
    """A server access log line in S3's format (the trailing fields S3 added over the years when `tail`)."""
    stamp = datetime.fromtimestamp(when, UTC).strftime("[%d/%b/%Y:%H:%M:%S +0000]")
    method = op.split(".")[1] if "." in op else "GET"
    line = (f'{OWNER} {bucket} {stamp} 192.0.2.3 {OWNER} {request_id} {op} {key} '
            f'"{method} /{bucket}/{key} HTTP/1.1" {status} {error} {sent} {size} 12 10 "-" '
            f'"aws-cli/2.15 \\"quoted\\" agent" -')
    if tail:
        line += (" s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6Uk= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader "
                 f"{bucket}.s3.us-east-1.amazonaws.com TLSv1.2 - Yes us-east-1")
    return line + "\n"


# -- the parser ---------------------------------------------------------------------------------------------
def test_a_read_becomes_a_get_with_the_bytes_sent_and_the_object_size():
    ev = parse_line(record(sent="512", size="2048"), client_region="eu-west-1")
    assert ev == AccessEvent(event_time=T0, bucket="media", key="photos/cat.jpg", op="GET", bytes=512,
                             object_size=2048, client_region="eu-west-1", request_id="3E57427F3EXAMPLE")


@pytest.mark.parametrize(("operation", "status", "op", "nbytes", "size"), [
    ("REST.HEAD.OBJECT", "200", "HEAD", 0, 2048),
    ("WEBSITE.GET.OBJECT", "200", "GET", 2048, 2048),
    ("REST.GET.OBJECT", "206", "GET", 2048, 2048),
    ("REST.GET.OBJECT", "304", "HEAD", 0, 2048),  # conditional read, nothing transferred
    ("REST.COPY.OBJECT_GET", "200", "GET", 2048, 2048),  # the source of a copy is read
    ("REST.PUT.OBJECT", "200", "PUT", 2048, 2048),
    ("REST.POST.OBJECT", "204", "PUT", 2048, 2048),
    ("REST.COPY.OBJECT", "200", "PUT", 2048, 2048),
    ("REST.POST.UPLOAD", "200", "PUT", 2048, 2048),  # CompleteMultipartUpload
    ("REST.DELETE.OBJECT", "204", "DELETE", 0, 0),
    ("BATCH.DELETE.OBJECT", "204", "DELETE", 0, 0),
    ("S3.EXPIRE.OBJECT", "-", "DELETE", 0, 0),  # lifecycle expiration: S3 logs no status
])
def test_object_operations_map_to_the_four_ops(operation, status, op, nbytes, size):
    ev = parse_line(record(op=operation, status=status))
    assert (ev.op, ev.bytes, ev.object_size) == (op, nbytes, size)


@pytest.mark.parametrize(("line", "reason"), [
    (record(op="REST.GET.BUCKET", key="-"), "not an object operation"),
    (record(op="REST.GET.VERSIONING", key="-"), "not an object operation"),
    (record(status="404", error="NoSuchKey"), "request failed (HTTP 404 NoSuchKey)"),
    (record(op="REST.PUT.OBJECT", status="503", error="SlowDown"), "request failed (HTTP 503 SlowDown)"),
    (record(op="REST.PUT.OBJECT", status="304"), "request failed (HTTP 304)"),
    (record(op="REST.PUT.PART"), "multipart upload step (the object counts at CompleteMultipartUpload)"),
    (record(op="S3.TRANSITION_SIA.OBJECT", status="-"), "S3 lifecycle transition or restore (not an application access)"),
    (record(op="REST.PUT.OBJECT", size="-"), "object size not logged (REST.PUT.OBJECT)"),
])
def test_valid_records_that_are_not_accesses_are_skipped_with_a_reason(line, reason):
    assert parse_line(line) == Skipped(reason)


@pytest.mark.parametrize(("line", "message"), [
    ("", "no \\[time\\] field"),
    ("hello world", "no \\[time\\] field"),
    (record().replace("[01/Jan/2026", "[01/Foo/2026"), "is not \\[dd/Mon/yyyy"),
    (record().replace("[01/Jan/2026", "[31/Feb/2026"), "day is out of range"),
    (record(status="OK"), "HTTP status 'OK'"),
    (record(op="REST.GET.OBJECT", status="-"), "no HTTP status"),
    (record(size="12kB"), "object size '12kB' is not a number"),
    (record(op="REST.GET.OBJECT", key="-"), "without a key"),
    (record(op="GETOBJECT"), "is not TYPE.METHOD.RESOURCE"),
    (record(bucket="two/parts"), "not a valid AccessEvent: bucket"),
    (record(key="k" * 1100), "not a valid AccessEvent: key"),
    (record().split('" 200 ')[0] + '" 200 - 2048', "12 fields, a record has at least 13"),
])
def test_what_is_not_a_record_is_an_error_with_the_reason(line, message):
    with pytest.raises(LogLineError, match=message):
        parse_line(line)


def test_older_records_without_the_newer_trailing_fields_parse_the_same():
    assert parse_line(record(tail=False)) == parse_line(record(tail=True))


def test_time_zones_and_quoted_fields():
    line = record().replace("+0000]", "-0130]")
    assert parse_line(line).event_time == T0 + 5400
    fields = split_fields('"GET /a b HTTP/1.1" "agent \\"x\\" y" - "-"')
    assert fields == ["GET /a b HTTP/1.1", 'agent "x" y', "-", "-"]


@given(
    # "-" is the format's "none": a key of just "-" cannot be told from a missing one (S3 does not encode it)
    key=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60).filter(lambda k: k != "-"),
    size=st.integers(0, 5 * 2**40),
    t=st.integers(0, 4_000_000_000),
    op=st.sampled_from(["REST.GET.OBJECT", "REST.HEAD.OBJECT", "REST.PUT.OBJECT", "REST.DELETE.OBJECT"]),
)
def test_any_key_time_and_size_survive_the_log_format(key, size, t, op):
    """S3 logs keys URL-encoded: whatever the key (spaces, '+', '%', unicode), the event names it exactly."""
    ev = parse_line(record(op=op, key=quote(key, safe="/"), sent=str(size), size=str(size), when=float(t)))
    assert ev.key == key and ev.event_time == t
    assert ev.object_size == (0 if op == "REST.DELETE.OBJECT" else size)


# -- the shipper, on the real broker and S3 -----------------------------------------------------------------
def _read(settings, topic, model, run):
    from dim.testing import valid_records

    return valid_records(settings, topic, model, f"test-ship-{uuid.uuid4().hex[:6]}", run)


def test_ship_logs_from_s3_ships_each_file_once_and_dead_letters_bad_lines(stack_settings, tmp_path):
    from dim.config import s3_client
    from dim.kafka import publish_end_markers
    from dim.logship import ShipState, open_sources, ship

    bucket = f"logs-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(stack_settings)
    s3.create_bucket(Bucket=bucket)
    mine = f"ship{uuid.uuid4().hex[:8]}"  # the events' bucket: this test's own
    first = record(bucket=mine, key="a.bin") + record(bucket=mine, key="b.bin", op="REST.PUT.OBJECT")
    s3.put_object(Bucket=bucket, Key="access/2026-01-01-00-00-00-AAAA", Body=first.encode())
    s3.put_object(Bucket=bucket, Key="access/2026-01-01-01-00-00-BBBB", Body=gzip.compress(
        (record(bucket=mine, key="a.bin", when=T0 + 3600) + "garbage line\n"
         + record(bucket=mine, op="REST.GET.BUCKET", key="-")).encode()))
    s3.put_object(Bucket=bucket, Key="other/2026-01-01-00-00-00-CCCC", Body=first.encode())  # not in the prefix

    state = ShipState(tmp_path / "state.json")
    run1 = uuid.uuid4().hex
    sources = open_sources(stack_settings, (f"s3://{bucket}/access/",), None)
    summary = ship(stack_settings, sources, state, end_run=run1)
    assert (summary.files, summary.lines, summary.events, summary.dead_letters) == (2, 5, 3, 1)
    assert summary.events_by_op == {"GET": 2, "PUT": 1}
    assert summary.skipped == {"not an object operation": 1}
    events = [e for e in _read(stack_settings, topics.ACCESS, AccessEvent, run1) if e.bucket == mine]
    assert sorted((e.key, e.op.value, e.event_time) for e in events) == [
        ("a.bin", "GET", T0), ("a.bin", "GET", T0 + 3600), ("b.bin", "PUT", T0)]
    publish_end_markers(stack_settings, topics.DEAD_LETTERS, run1)  # after ship's flush: behind its dead letters
    letters = [d for d in _read(stack_settings, topics.DEAD_LETTERS, DeadLetter, run1)
               if bucket in d.reason]
    assert len(letters) == 1 and letters[0].payload == "garbage line"
    assert "2026-01-01-01-00-00-BBBB:2: no [time] field" in letters[0].reason

    # A second pass (new state object, same file) ships only the file that appeared since.
    s3.put_object(Bucket=bucket, Key="access/2026-01-01-02-00-00-DDDD",
                  Body=record(bucket=mine, key="c.bin").encode())
    run2 = uuid.uuid4().hex
    again = ship(stack_settings, sources, ShipState(tmp_path / "state.json"), end_run=run2)
    assert (again.files, again.files_already_shipped, again.events) == (1, 2, 1)
    events = [e for e in _read(stack_settings, topics.ACCESS, AccessEvent, run2) if e.bucket == mine]
    assert sorted(e.key for e in events) == ["a.bin", "a.bin", "b.bin", "c.bin"]  # nothing shipped twice

    # Files that are gone drop out of the state.
    s3.delete_object(Bucket=bucket, Key="access/2026-01-01-00-00-00-AAAA")
    ship(stack_settings, sources, ShipState(tmp_path / "state.json"))
    saved = json.loads((tmp_path / "state.json").read_text())["done"][f"s3://{bucket}/access/"]
    assert saved == ["access/2026-01-01-01-00-00-BBBB", "access/2026-01-01-02-00-00-DDDD"]


def test_ship_logs_command_on_local_files(stack_settings, tmp_path):
    from dim.logship import ship_logs_cmd

    logs = tmp_path / "logs"
    logs.mkdir()
    mine = f"cli{uuid.uuid4().hex[:8]}"
    (logs / "2026-01-01-00").write_text(record(bucket=mine) + record(bucket=mine, status="403", error="AccessDenied"))
    (logs / ".partial").write_text("not shipped: hidden")
    run = uuid.uuid4().hex
    args = [str(logs), "--state", str(tmp_path / "s.json"), "--end-run", run, "--client-region", "us-west-2"]
    result = CliRunner().invoke(ship_logs_cmd, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert (out["files"], out["events"], out["skipped"]) == (1, 1, {"request failed (HTTP 403 AccessDenied)": 1})
    events = [e for e in _read(stack_settings, topics.ACCESS, AccessEvent, run) if e.bucket == mine]
    assert [(e.key, e.client_region) for e in events] == [("photos/cat.jpg", "us-west-2")]
    again = CliRunner().invoke(ship_logs_cmd, args[:3], catch_exceptions=False)
    assert json.loads(again.output.strip().splitlines()[-1])["files_already_shipped"] == 1


def test_an_unreadable_state_or_source_is_a_clear_error(tmp_path):
    from dim.logship import ship_logs_cmd

    (tmp_path / "s.json").write_text("{not json")
    result = CliRunner().invoke(ship_logs_cmd, [str(tmp_path), "--state", str(tmp_path / "s.json")])
    assert result.exit_code == 1 and "state" in result.output and "unreadable" in result.output
    result = CliRunner().invoke(ship_logs_cmd, [str(tmp_path / "missing"), "--state", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "does not exist" in result.output
