"""The read-only API against real chDB populated from the real broker."""

from __future__ import annotations

import urllib.parse
import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.ingest import run_ingest
from api.sample import ARCHIVE, HOT, SAMPLE_CATALOGUE, ApiDataset, publish_dataset
from api.store import AnalyticsStore
from dim.config import Settings
from schemas import tables as t


@pytest.fixture(scope="module")
def populated(stack_settings, tmp_path_factory):
    ds = publish_dataset(stack_settings)
    path = tmp_path_factory.mktemp("api-chdb") / "chdb"
    settings = Settings(**{**stack_settings.model_dump(), "clickhouse": {"chdb_path": path}})
    store = AnalyticsStore.open(settings)
    run_ingest(settings, store, until_run=ds.run_id, group=f"test-{uuid.uuid4().hex[:8]}")
    yield settings, store, ds
    store.close()


@pytest.fixture(scope="module")
def client(populated):
    settings, store, _ = populated
    with TestClient(create_app(settings, store)) as c:
        yield c


def _object_url(ds: ApiDataset, key: str) -> str:
    return f"/objects/{ds.bucket}/{urllib.parse.quote(key, safe='/')}"


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["schema_versions"] == [v for v, _, _ in t.MIGRATIONS]


def test_objects_pages_cover_every_object_once(client, populated):
    _, _, ds = populated
    seen, cursor, pages = [], None, 0
    while True:
        params = {"bucket": ds.bucket, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = client.get("/objects", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [o["key"] for o in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ds.keys) and len(seen) == len(set(seen)) and pages == 3


def test_objects_filters_and_sort(client, populated):
    _, _, ds = populated
    by_size = client.get("/objects", params={"bucket": ds.bucket, "sort": "-size", "limit": 2}).json()
    assert [o["size"] for o in by_size["items"]] == [5_000_000, 4_000_000]
    rest = client.get("/objects", params={"bucket": ds.bucket, "sort": "-size", "cursor": by_size["next_cursor"]})
    assert [o["size"] for o in rest.json()["items"]] == [3_000_000, 2_000_000, 1_000_000]
    archived = client.get("/objects", params={"bucket": ds.bucket, "tier": "glacier-flexible"}).json()["items"]
    assert [o["key"] for o in archived] == [ds.moved_key] and archived[0]["locations"] == ARCHIVE
    azure = client.get("/objects", params={"bucket": ds.bucket, "provider": "azure"}).json()["items"]
    assert [o["key"] for o in azure] == [ds.moved_key]
    prefixed = client.get("/objects", params={"bucket": ds.bucket, "prefix": "dir/"}).json()["items"]
    assert [o["key"] for o in prefixed] == ["dir/sub/file with space.bin"]
    hot = client.get("/objects", params={"bucket": ds.bucket, "min_p_hot": 0.3}).json()["items"]
    assert sorted(o["key"] for o in hot) == sorted(ds.keys[3:])  # p_hot 0.1*i + 0.05 at the latest snapshot
    assert all(o["p_hot"] is not None and o["reads"] == 6 for o in hot)


def test_object_detail_for_awkward_keys(client, populated):
    _, _, ds = populated
    for key in ds.keys:
        r = client.get(_object_url(ds, key))
        assert r.status_code == 200, (key, r.text)
        body = r.json()
        assert body["key"] == key and len(body["heat"]) == 2 and body["heat"][0]["as_of"] < body["heat"][1]["as_of"]
        assert sum(h["gets"] for h in body["access"]) >= 6
    moved = client.get(_object_url(ds, ds.moved_key)).json()
    assert [r["location"] for r in moved["replicas"]] == ARCHIVE and moved["placement"]["version"] == 2
    assert [(m["move_id"], m["status"]) for m in moved["moves"]] == [(f"{ds.plan_id}-m1", "deleted")]
    other = client.get(_object_url(ds, ds.keys[2])).json()
    assert [r["location"] for r in other["replicas"]] == HOT and other["moves"] == []


def test_unknown_object_is_a_problem_404(client, populated):
    _, _, ds = populated
    r = client.get(f"/objects/{ds.bucket}/no-such-key")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404 and r.json()["title"] == "Not Found"


def test_plans_and_moves(client, populated):
    _, _, ds = populated
    plans = client.get("/plans", params={"limit": 1000}).json()["items"]
    assert ds.plan_id in [p["plan_id"] for p in plans]
    plan = client.get(f"/plans/{ds.plan_id}").json()
    assert plan["moves"] == 2 and plan["move_statuses"] == {"deleted": 1, "failed": 1}
    assert plan["cost_before_usd_month"] == 2.0
    assert plan["catalogue_version"] == SAMPLE_CATALOGUE  # migration 2: plans.catalogue_version is ingested
    assert {p["plan_id"]: p["catalogue_version"] for p in plans}[ds.plan_id] == SAMPLE_CATALOGUE
    failed = client.get("/moves", params={"status": "failed", "plan_id": ds.plan_id}).json()["items"]
    assert [(m["key"], m["last_reason"]) for m in failed] == [(ds.failed_key, "checksum mismatch")]
    done = client.get("/moves", params={"status": "deleted", "bucket": ds.bucket}).json()["items"]
    assert [m["key"] for m in done] == [ds.moved_key]
    assert client.get("/moves", params={"status": "bogus"}).status_code == 422
    assert client.get("/plans/no-such-plan").status_code == 404
    assert plan["next_cursor"] is None and len(plan["items"]) == 2


def test_a_plan_larger_than_its_inline_moves_counts_them_all(client, populated, monkeypatch):
    """Inline moves stop at PLAN_ITEMS (10,000): the status counts stopped there too, with no way to the rest."""
    from api import app as app_module

    _, _, ds = populated
    monkeypatch.setattr(app_module, "PLAN_ITEMS", 1)
    plan = client.get(f"/plans/{ds.plan_id}").json()
    assert len(plan["items"]) == 1 and plan["move_statuses"] == {"deleted": 1, "failed": 1}
    rest = client.get("/moves", params={"plan_id": ds.plan_id, "cursor": plan["next_cursor"]}).json()["items"]
    assert sorted(m["key"] for m in plan["items"] + rest) == sorted([ds.moved_key, ds.failed_key])


def test_dead_letters_page(client, populated):
    _, _, ds = populated
    items, cursor = [], None
    while True:
        r = client.get("/dead-letters", params={"limit": 50, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    mine = [d for d in items if ds.bucket in d["payload"]]
    assert len(mine) == ds.bad_records + 1
    assert all(d["reason"] for d in mine)


def test_dead_letters_of_repeated_accesses_apart_from_refused_input(client, populated):
    from api.ingest import insert_rows
    from api.rows import rows_of_record
    from flows.dataflow import dead_letter, repeat_reason
    from flows.shard import FlowParams, ShardState

    _, store, ds = populated
    tag = f"repeat-{uuid.uuid4().hex}"  # not the data set's bucket: other tests count the data set's letters
    topic, _, value = dead_letter(3, 7, tag.encode(), repeat_reason(ShardState(FlowParams()), tag, "GET"))
    insert_rows(store, rows_of_record(topic, 3, 10**12, value))  # an offset no published record has

    def payloads(**params):
        return [d["payload"] for d in client.get("/dead-letters", params={"limit": 500, **params}).json()["items"]]

    assert payloads(repeats="true") == [tag]
    refused = payloads(repeats="false")
    assert tag not in refused and len([p for p in refused if ds.bucket in p]) == ds.bad_records + 1
    assert tag in payloads() and client.get("/dead-letters", params={"repeats": "maybe"}).status_code == 422


def test_audits_list_and_detail(client, populated):
    _, _, ds = populated
    listed = {a["audit_id"]: a for a in client.get("/audits", params={"limit": 1000}).json()["items"]}
    mine = listed[ds.audit_id]
    assert mine["ok"] is False and mine["counts"] == {"missing": 1, "orphan": 1} and "findings" not in mine
    assert mine["scope"] == f"{ds.bucket}/" and mine["findings_total"] == 2
    assert mine["verified_checksums"] is True and mine["archive_replicas_unread"] == 1  # migration 6
    assert ds.audit_id not in {a["audit_id"] for a in client.get("/audits", params={"ok": True}).json()["items"]}
    page = client.get("/audits", params={"limit": 1})
    assert page.status_code == 200 and len(page.json()["items"]) == 1
    detail = client.get(f"/audits/{ds.audit_id}").json()
    assert [f["kind"] for f in detail["findings"]] == ["missing", "orphan"]  # integrity findings first
    assert detail["findings"][0]["key"] == f"{ds.bucket}/{ds.keys[3]}" and detail["started_at"] == ds.start + 7000
    assert client.get("/audits/no-such-audit").status_code == 404


def test_flow_status_newest_per_shard_and_a_shards_history(client, populated):
    _, _, ds = populated
    newest = {s["shard"]: s for s in client.get("/flow/status").json()["items"]}
    mine = newest[ds.shard]  # the data set's second status: the regression beat the prior
    assert mine["as_of"] == ds.start + 7200 and mine["p_hot_from"] == "logreg_binned"
    assert (mine["regression_logloss"], mine["prior_logloss"], mine["labels_learned"]) == (0.41, 0.62, 150)
    assert mine["dead_letters"] == ds.bad_records and mine["reads_states_calibrated"] == 3
    history = client.get(f"/flow/status/{ds.shard}", params={"limit": 1}).json()
    assert [s["as_of"] for s in history["items"]] == [ds.start + 7200] and history["next_cursor"]
    older = client.get(f"/flow/status/{ds.shard}", params={"limit": 1, "cursor": history["next_cursor"]}).json()
    assert older["next_cursor"] is None
    assert [(s["as_of"], s["p_hot_from"], s["regression_logloss"]) for s in older["items"]] == [
        (ds.start + 3600, "prior", None)]  # no label yet: no log loss, not 0
    assert client.get("/flow/status/65535").status_code == 404
    assert client.get("/flow/status/-1").status_code == 422
    assert client.get(f"/flow/status/{ds.shard}", params={"cursor": "x' OR 1=1"}).status_code == 400


def test_costs_savings_sla(client, populated):
    _, _, ds = populated
    r = client.get("/costs", params={"group_by": "tier"})
    assert r.status_code == 200, r.text
    costs = r.json()
    tiers = {r["group"]: r for r in costs["rows"]}
    assert tiers["standard"]["storage_usd"] > 0 and costs["total_usd"] > 0 and costs["run_rate_usd_month"] > 0
    assert client.get("/costs", params={"from_day": "2020-01-01", "to_day": "2026-01-01"}).status_code == 400
    # A number is no day (pydantic alone would read "0" or "86400" as Unix seconds), nor is a datetime.
    for bad in ("0", "86400", "2026-01-01T00:00:00", "2026-1-1"):
        assert client.get("/costs", params={"to_day": bad}).status_code == 422, bad
    savings = client.get("/savings").json()
    # Reads served from archive tiers can make the current placement dearer than all-hot: no sign is assumed.
    assert savings["baseline_usd_month"] > 0 and savings["current_usd_month"] > 0
    assert savings["saving_usd_month"] == pytest.approx(savings["baseline_usd_month"] - savings["current_usd_month"])
    assert savings["planned_saving_usd_month"] >= 0.5
    sla = client.get("/sla", params={"from_ts": ds.start, "to_ts": ds.start + 7200}).json()
    mine = [e for e in sla["events"] if e["bucket"] == ds.bucket]
    assert [(e["key"], e["reads"], e["location"]) for e in mine] == [(ds.moved_key, 4, ds.archive_location)]
    assert sla["violating_reads"] >= 4 and sla["total_reads"] >= ds.gets


def test_metrics_exposition(client, populated):
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'dim_store_rows{table="access_events"}' in r.text and "dim_moves{" in r.text
    # The newest audit drives the dim_audit_* gauges: store one newer than any (other tests publish real ones).
    import time

    from api.rows import model_rows
    from schemas import AuditRecord

    _, store, _ = populated
    newest = AuditRecord(audit_id=f"newest-{uuid.uuid4().hex[:6]}", started_at=time.time() + 3600,
                         finished_at=time.time() + 3601, scope="", grace_s=0.0, ok=False, entries=3, replicas=6,
                         replica_bytes=60, stored_objects=7, unnamed_in_grace=0, orphan_bytes=7_000_000,
                         counts={"missing": 2, "changed": 1, "orphan": 1}, findings_total=4)
    for table, rows in model_rows(newest, {"_partition": 0, "_offset": 0}).items():
        store.insert(table, rows)
    text = client.get("/metrics").text
    assert "dim_audit_ok 0.0" in text and "dim_audit_integrity_findings 3.0" in text
    assert "dim_audit_orphan_bytes 7e+06" in text and "dim_audit_age_seconds -" in text
    _, _, ds = populated
    assert f'dim_flow_model_serving{{shard="{ds.shard}"}} 1.0' in text
    assert f'dim_flow_logloss{{scorer="prior",shard="{ds.shard}"}} 0.62' in text
    assert f'dim_flow_labels_learned{{shard="{ds.shard}"}} 150.0' in text


def test_only_get_is_allowed(client):
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/objects").status_code == 405


def test_cors_is_off_by_default(client):
    r = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_bearer_token(populated):
    settings, store, _ = populated
    guarded = Settings(**{**settings.model_dump(), "api": {"token": "s3cret-token"}})
    with TestClient(create_app(guarded, store)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/objects").status_code == 401
        assert c.get("/objects", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/objects", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        r = c.get("/objects", headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200


INJECTIONS = [
    "' OR 1=1 --",
    "x') UNION ALL SELECT name, name FROM system.tables --",
    "'; DROP TABLE dim.placements; --",
    "{bucket:String}",
    "\\' OR \\'1\\'=\\'1",
    "a\nb",
    "%' OR key LIKE '%",
]


def test_a_crafted_cursor_is_a_400_problem_on_every_paged_endpoint(client, populated):
    """Cursors are base64 JSON: well-formed ones with values this API never issues (NaN, infinity, negative or
    fractional offsets) were a 500, a 503 "store unavailable", or an empty page that looked like the end."""
    import base64

    _, _, ds = populated

    def cursor(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    crafted = {
        "/dead-letters": ['["a",NaN,1]', '["a",Infinity,1]', '["a",0,-5]', '["a",0.5,1]', '["a",0,1e400]'],
        "/plans": ['[NaN,"p"]', '[1e400,"p"]'],
        "/audits": ['[NaN,"a"]'],
        f"/flow/status/{ds.shard}": ["[NaN]", "[-Infinity]"],
        "/objects?sort=size": ['[NaN,"b","k"]'],
    }
    for path, texts in crafted.items():
        for text in texts:
            r = client.get(path, params={"cursor": cursor(text)})
            assert r.status_code == 400, (path, text, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json"), (path, text)
    inverted = client.get("/objects", params={"min_p_hot": 0.8, "max_p_hot": 0.2})
    assert inverted.status_code == 400 and "min_p_hot" in inverted.json()["detail"]


def test_sql_injection_in_every_string_parameter(client, populated):
    _, store, ds = populated
    string_params = {
        "/objects": ["bucket", "prefix", "provider", "tier", "cursor"],
        "/moves": ["plan_id", "bucket", "cursor"],
        "/plans": ["cursor"],
        "/dead-letters": ["cursor", "source_topic"],
        "/audits": ["cursor"],
        f"/flow/status/{ds.shard}": ["cursor"],
        "/costs": ["group_by", "from_day", "to_day"],
        "/sla": ["from_ts", "to_ts"],
    }
    for path, names in string_params.items():
        for name in names:
            for payload in INJECTIONS:
                r = client.get(path, params={name: payload})
                assert r.status_code < 500, (path, name, payload, r.text)
                if r.status_code == 200 and "items" in r.json():
                    assert r.json()["items"] == [], (path, name, payload)
    for payload in INJECTIONS:
        for url in (f"/objects/{urllib.parse.quote(payload, safe='')}/x",
                    f"/objects/{ds.bucket}/{urllib.parse.quote(payload, safe='')}",
                    f"/plans/{urllib.parse.quote(payload, safe='')}",
                    f"/audits/{urllib.parse.quote(payload, safe='')}"):
            r = client.get(url)
            assert r.status_code in (404, 422), (url, r.status_code, r.text)
    # Nothing was dropped or altered.
    assert store.query(f"SELECT count() AS n FROM {store.table(t.PLACEMENTS)} FINAL WHERE bucket = {{b:String}}",
                       {"b": ds.bucket})[0]["n"] == len(ds.keys)


def test_report_writes_html_with_charts(populated, tmp_path):
    from api.report import write_report

    settings, store, ds = populated
    index = write_report(settings, store, tmp_path / "report")
    page = index.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert len(pngs) >= 8 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(f'src="{p.name}"' in page for p in pngs)
    assert ds.plan_id in page and "checksum mismatch" in page and "all-hot baseline" in page
    # Times in tables read as UTC dates, as Grafana shows them, not as Unix seconds.
    import datetime as dt
    import re

    def utc(s: float) -> str:
        return f"{dt.datetime.fromtimestamp(s, dt.UTC):%Y-%m-%d %H:%M:%S}"
    failed_row = next(row for row in re.findall(r"<tr>.*?</tr>", page) if "checksum mismatch" in row)
    assert f"<td>{utc(ds.start + 2001)}</td>" in failed_row, failed_row  # Move failures: ts
    assert f"<td>{utc(ds.start + 1500)}</td>" in page  # Latest plans: created_at
    assert f">{int(ds.start + 1500)}" not in page and f">{int(ds.start + 2001)}" not in page
