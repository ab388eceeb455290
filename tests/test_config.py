from __future__ import annotations

import json

from click.testing import CliRunner

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
