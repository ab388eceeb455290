"""User errors on the command line get one clear message and a non-zero exit, never a traceback (found by a
review of every subcommand with bad input; the broker, configuration and catalogue cases are in test_config)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dim.cli import main


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("")
    return path


@pytest.mark.parametrize("args, fragment", [
    (["chaos", "--config", "notjson"], "Invalid JSON"),
    (["chaos", "--config", '{"rate_429": 5}'], "rate_429: Input should be less than or equal to 1"),
    (["chaos", "--config", '{"rate_492": 0.1}'], "rate_492: Extra inputs are not permitted"),
    (["chaos", "--config", '{"rate_429": 0.6, "rate_503": 0.6}'], "add up to 1.2, more than 1"),
    (["chaos", "--listen", "bad"], "expected host:port"),
    (["chaos", "--listen", "127.0.0.1:99999"], "expected host:port"),
])
def test_chaos_options(args, fragment):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and fragment in res.output, res.output


def test_output_directories_that_cannot_be_written(afile, tmp_path, monkeypatch):
    monkeypatch.setenv("DIM_CLICKHOUSE__CHDB_PATH", str(tmp_path / "chdb"))
    from dim import config

    config.get_settings.cache_clear()
    try:
        for args, fragment in ((["schemas", "export", str(afile / "sub")], "cannot write into"),
                               (["report", "--out", str(afile / "x")], "cannot write the report into")):
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 1 and fragment in res.output and "Not a directory" in res.output, res.output
    finally:
        config.get_settings.cache_clear()
    assert not (tmp_path / "chdb").exists()  # the report failed before opening the store


def test_flow_state_on_a_damaged_recovery_store(tmp_path):
    (tmp_path / "part-0.sqlite3").write_text("junk")
    res = CliRunner().invoke(main, ["flow-state", "--recovery-dir", str(tmp_path)])
    assert res.exit_code == 1 and "cannot be read (DatabaseError" in res.output, res.output


def test_move_names_what_is_wrong_with_a_plan_file(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('{"plan_id": 3}')
    res = CliRunner().invoke(main, ["move", "--plan-file", str(plan)])
    assert res.exit_code == 1 and "is not a PlacementPlan: plan_id: Input should be a valid string" in res.output
    assert "\n" not in res.output.strip(), res.output  # one line, not pydantic's multi-line dump
