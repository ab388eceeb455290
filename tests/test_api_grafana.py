"""Every Grafana panel's SQL, with the ClickHouse plugin's macros expanded, runs on chDB with the real schema and
the sample data, and returns rows."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
import yaml

from api.ingest import run_ingest
from api.sample import publish_dataset
from api.store import AnalyticsStore
from api.views import dashboard, expand_macros
from dim.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["rawSql"]))
    return out


def test_committed_dashboard_is_the_generated_one():
    """grafana/dashboards/ is rendered from api.views (the report's views): regenerate with
    `python -c 'import json; from api.views import dashboard; print(json.dumps(dashboard(), indent=2))'`."""
    committed = json.loads((ROOT / "grafana/dashboards/data-in-motion.json").read_text())
    assert committed == dashboard()


def test_provisioning_points_at_the_dashboards():
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/clickhouse.yaml").read_text())
    assert ds["datasources"][0]["type"] == "grafana-clickhouse-datasource"
    uid = ds["datasources"][0]["uid"]
    prov = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dim.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_query_runs_on_chdb(stack_settings, tmp_path, path):
    ds = publish_dataset(stack_settings)
    settings = Settings(**{**stack_settings.model_dump(), "clickhouse": {"chdb_path": tmp_path / "chdb"}})
    dashboard = json.loads(path.read_text())
    queries = panel_queries(dashboard)
    assert len(queries) >= 10
    with AnalyticsStore.open(settings) as store:
        run_ingest(settings, store, until_run=ds.run_id, group=f"test-{uuid.uuid4().hex[:8]}")
        now = dt.datetime.now(dt.UTC).timestamp()
        empty = []
        for title, sql in queries:
            rows = store.query(expand_macros(sql, ds.start - 2 * 86400, now + 3600, 3600,
                                             settings.clickhouse.database))
            if not rows:
                empty.append(title)
        assert not empty, f"panels without data on the sample: {empty}"


def test_the_dead_letter_panel_shows_repeats_apart_from_refused_input(tmp_path):
    from api.ingest import insert_rows
    from api.rows import rows_of_record
    from flows.dataflow import dead_letter, repeat_reason
    from flows.shard import FlowParams, ShardState
    from schemas import topics

    settings = Settings(stack={"data_dir": tmp_path}, clickhouse={"chdb_path": tmp_path / "chdb"})
    letters = [dead_letter(0, 1, b"{}", "bucket: Field required"),
               dead_letter(0, 2, b"{}", repeat_reason(ShardState(FlowParams()), "R1", "GET")),
               dead_letter(0, 3, b"{}", repeat_reason(ShardState(FlowParams()), "R2", "GET"))]
    [sql] = [sql for title, sql in panel_queries(dashboard()) if title.startswith("Dead letters")]
    with AnalyticsStore.open(settings) as store:
        store.migrate()
        for offset, (topic, _key, value) in enumerate(letters):
            assert topic == topics.DEAD_LETTERS
            insert_rows(store, rows_of_record(topic, 0, offset, value))
        now = dt.datetime.now(dt.UTC).timestamp()
        rows = store.query(expand_macros(sql, now - 3600, now + 3600, 3600, settings.clickhouse.database))
    by_source = {r["source"]: r["records"] for r in rows}
    assert by_source == {topics.ACCESS: 1, f"{topics.ACCESS} repeats": 2}, rows
