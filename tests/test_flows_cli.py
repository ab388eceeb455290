"""`dim flow` argument checks (no flow is started: every case is rejected before run_flow)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flows.cli import flow_cmd


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "2"], "needs -a"),
        (["-a", "h1:1;h2:2"], "go together"),
        (["-a", "h1:1;h2:2", "-i", "2"], "not an index"),
        (["-a", "h1:1;h2:2", "-i", "0", "-p", "3"], "3 but 2 addresses"),
    ],
)
def test_bad_cluster_options_are_usage_errors(args, message):
    result = CliRunner().invoke(flow_cmd, args)
    assert result.exit_code == 2
    assert message in result.output


def test_zero_workers_is_rejected(monkeypatch, tmp_path):
    from dim.config import Settings
    from flows.run import run_flow

    with pytest.raises(ValueError, match="workers"):
        run_flow(Settings(stack={"data_dir": tmp_path}), workers=0)


def test_flow_state_without_a_recovery_store_is_a_clear_error(tmp_path):
    from flows.cli import flow_state_cmd

    result = CliRunner().invoke(flow_state_cmd, ["--recovery-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no flow recovery store" in result.output
