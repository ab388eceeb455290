from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from dim.config import Settings


def test_defaults_are_the_embedded_stack(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("DIM_"):
            monkeypatch.delenv(k)
    s = Settings()
    assert s.s3.endpoint == "http://127.0.0.1:8333"
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.clickhouse.mode == "chdb"


def test_env_overrides_toml_overrides_default(tmp_path, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("DIM_"):
            monkeypatch.delenv(k)
    toml = tmp_path / "dim.toml"
    toml.write_text('[stack]\ns3_port = 9100\nkafka_port = 9200\n[solver]\nreplication_factor = 3\n')
    monkeypatch.setenv("DIM_CONFIG", str(toml))
    monkeypatch.setenv("DIM_STACK__KAFKA_PORT", "9300")
    s = Settings()
    assert s.stack.s3_port == 9100 and s.s3.endpoint == "http://127.0.0.1:9100"
    assert s.stack.kafka_port == 9300 and s.kafka.bootstrap == "127.0.0.1:9300"
    assert s.solver.replication_factor == 3


def test_to_env_round_trips_secrets(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("DIM_"):
            monkeypatch.delenv(k)
    s = Settings(s3={"secret_key": "hunter2"}, stack={"s3_port": 1234})
    for name, value in s.to_env().items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.s3.secret_key.get_secret_value() == "hunter2"
    assert again.s3.endpoint == "http://127.0.0.1:1234"


def test_dim_config_masks_secrets(monkeypatch):
    monkeypatch.setenv("DIM_S3__SECRET_KEY", "hunter2")
    monkeypatch.setenv("DIM_API__TOKEN", "tok")
    from dim import config

    config.get_settings.cache_clear()
    from dim.cli import main

    try:
        out = CliRunner().invoke(main, ["config"])
    finally:
        config.get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "hunter2" not in out.output and "tok" not in out.output.replace("token", "")
    data = json.loads(out.output)
    assert data["s3"]["secret_key"] == "****" and data["api"]["token"] == "****"


def test_help_lists_every_subcommand():
    from dim.cli import SUBCOMMANDS, main

    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for name in SUBCOMMANDS:
        assert f"  {name}" in out.output


def test_a_subcommand_that_cannot_load_says_why(monkeypatch):
    from dim import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "ghost", ("no_such_module_xyz:cmd", "a missing command"))
    out = CliRunner().invoke(cli.main, ["ghost"])
    assert out.exit_code != 0
    assert "not available" in out.output and "no_such_module_xyz" in out.output


@pytest.mark.parametrize("env, value, fragment", [
    ("DIM_KAFKA__PARTITIONS", "0", "greater than or equal to 1"),
    ("DIM_MOVER__CONCURRENCY", "0", "greater than or equal to 1"),
    ("DIM_MOVER__PART_SIZE", "1000", "greater than or equal to 5242880"),  # S3's smallest part
    ("DIM_FLOW__LABEL_FRACTION", "0", "greater than 0"),
    ("DIM_FLOW__HOT_THRESHOLD", "0.1", "cold_threshold (0.2) must be below hot_threshold (0.1)"),
    ("DIM_FLOW__HALF_LIVES_S", "[3600, 0]", "each > 0"),
    ("DIM_FLOW__IDLE_RECHECK_DAYS", "[3, 1]", "strictly increasing"),
    ("DIM_SOLVER__REPLICATION_FACTOR", "0", "greater than or equal to 1"),
    ("DIM_SOLVER__CAPACITY_BYTES", '{"aws:us-east-1:standard": -1}', "greater than or equal to 0"),
    ("DIM_API__PORT", "70000", "less than or equal to 65535"),
    ("DIM_FLOW__SWEEP_INTERVAL_S", "0", "greater than 0"),  # the sweep drives idle re-checks: never off
    ("DIM_FLOW__ALLOWED_LATENESS_S", "86400", "at most 512 x the shortest half-life"),  # heat would overflow
    ("DIM_FLOW__DEDUP_WINDOW_S", "inf", "finite number"),
    ("DIM_FLOW__STATUS_INTERVAL", "5", "unknown setting of section 'flow'"),  # misspelt: not silently ignored
])
def test_a_bad_setting_is_a_one_line_error_naming_it(monkeypatch, env, value, fragment):
    # Not a traceback, and not a value that hangs or breaks a stage later (a semaphore of 0, a 1 kB S3 part).
    from dim.cli import main

    for k in list(__import__("os").environ):
        if k.startswith("DIM_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv(env, value)
    if env == "DIM_FLOW__ALLOWED_LATENESS_S":
        monkeypatch.setenv("DIM_FLOW__HALF_LIVES_S", "[60, 3600]")
    with pytest.raises(ValidationError):
        Settings()
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert "invalid configuration" in result.output and fragment in result.output
    assert (env + ":") in result.output or env.split("__")[0].removeprefix("DIM_").lower() + ":" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("env, toml, fragment", [
    ({"DIM_API__CORS_ORIGINS": "https://a.example"}, None, "DIM_API__CORS_ORIGINS='https://a.example' is not JSON"),
    ({"DIM_FLOW": "notjson"}, None, "DIM_FLOW='notjson' is not JSON"),
    ({}, "[flow\n", "not valid TOML"),
    ({}, "[flwo]\nhot_reads = 3\n", "unknown section(s) 'flwo'"),
    ({}, "[flow]\nhot_read = 3\n", "flow.hot_read: unknown setting of section 'flow'"),
    ({"DIM_CONFIG": "/nonexistent/dim.toml"}, None, "DIM_CONFIG=/nonexistent/dim.toml: no such file"),
])
def test_an_unreadable_configuration_is_one_message_not_a_traceback(monkeypatch, tmp_path, env, toml, fragment):
    from dim.cli import main

    for k in list(__import__("os").environ):
        if k.startswith("DIM_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    if toml is not None:
        (tmp_path / "dim.toml").write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "invalid configuration" in result.output and fragment in result.output, result.output
    assert "Traceback" not in result.output


def test_a_command_without_a_broker_says_so_at_once(monkeypatch):
    """Before: `dim replay` waited 60 s while librdkafka logged ~600 reconnects, then said "1 events not delivered;
    errors: []"; `dim ingest` ended with exit 0 and nothing read."""
    import socket
    import time

    from dim import config
    from dim.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DIM_KAFKA__BOOTSTRAP", f"127.0.0.1:{port}")
    config.get_settings.cache_clear()
    try:
        t0 = time.monotonic()
        result = CliRunner().invoke(main, ["ingest", "--idle-timeout", "5"])
        took = time.monotonic() - t0
    finally:
        config.get_settings.cache_clear()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"no Kafka broker answered at 127.0.0.1:{port} (DIM_KAFKA__BOOTSTRAP)" in result.output
    assert "dim up" in result.output and took < 30


@pytest.mark.parametrize("solver, fragment", [
    ({"initial_locations": ["aws:us-east-1:standrad"]}, "INITIAL_LOCATIONS: unknown location(s) ['aws:us-east-1:standrad']"),
    ({"initial_locations": []}, "INITIAL_LOCATIONS: empty"),
    ({"replication_factor": 50}, "REPLICATION_FACTOR: 50 replicas but the catalogue has 13 locations"),
    ({"capacity_bytes": {"aws:us-east-1:nope": 1}}, "CAPACITY_BYTES: unknown location(s)"),
    ({"policies": [{"prefix": "b/", "pinned_tier": "nonsense"}]}, "pinned_tier 'nonsense' is neither"),
    ({"policies": [{"prefix": "b/", "allowed_providers": ["nope"]}]}, "allowed_providers ['nope'] not in"),
    ({"policies": [{"prefix": "b/", "allowed_regions": ["mars-1"]}]}, "allowed_regions ['mars-1'] not in"),
    ({"catalogue_path": "/nonexistent/catalogue.toml"}, "/nonexistent/catalogue.toml (DIM_SOLVER__CATALOGUE_PATH)"),
])
def test_solver_settings_that_name_nothing_in_the_catalogue_are_refused(solver, fragment):
    """Before: a misspelt location was a KeyError traceback in `dim evaluate`; a misspelt tier or provider in a
    policy silently kept its objects where they were (0 moves); RF 50 was billed as RF 2."""
    from solver.catalogue import CatalogueError, settings_catalogue

    with pytest.raises(CatalogueError, match=re.escape(fragment)):
        settings_catalogue(Settings(solver=solver))
    ok = {"policies": [{"prefix": "b/", "pinned_tier": "cold", "allowed_providers": ["aws"],
                        "allowed_regions": ["us-east-1", "gcp:us-east1"]}]}
    assert settings_catalogue(Settings(solver=ok)).has("aws:us-east-1:standard")


def test_a_bad_solver_setting_stops_evaluate_with_one_line(monkeypatch, tmp_path):
    from dim import config
    from dim.cli import main

    monkeypatch.setenv("DIM_SOLVER__INITIAL_LOCATIONS", '["foo:bar:baz"]')
    config.get_settings.cache_clear()
    try:
        trace = Path(__file__).parent.parent / "data" / "twitter52_sample.csv.zst"
        result = CliRunner().invoke(main, ["evaluate", str(trace), "--json", str(tmp_path / "o.json")])
    finally:
        config.get_settings.cache_clear()
    assert result.exit_code == 1 and "unknown location(s) ['foo:bar:baz']" in result.output, result.output
    assert "Traceback" not in result.output
