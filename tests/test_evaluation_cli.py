"""`dim evaluate` writes valid JSON and HTML with every policy; bad input gets a clear error."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from dim.evaluation.cli import evaluate_cmd
from dim.evaluation.simulator import POLICIES

COMPONENTS = {"storage", "retrieval", "requests", "transfer", "early_deletion", "monitoring"}


def write_trace(path, n=2000, objects=60, seconds=120, seed=3):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 3000, objects)
    pop = 1.0 / np.arange(1, objects + 1)
    obj = rng.choice(objects, n, p=pop / pop.sum())
    t = np.sort(rng.integers(0, seconds, n))
    lines = ["time_s,object,size_bytes"] + [f"{a},{1000 + b},{sizes[b]}" for a, b in zip(t, obj)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_writes_json_and_html(tmp_path):
    trace = write_trace(tmp_path / "small.csv")
    out_json, out_html = tmp_path / "out.json", tmp_path / "out.html"
    res = CliRunner().invoke(evaluate_cmd, [str(trace), "--time-scale", "3600", "--size-scale", "10000",
                                            "--json", str(out_json), "--html", str(out_html), "--workers", "1"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    data = json.loads(out_json.read_text())
    assert set(data["policies"]) == set(POLICIES)
    for name, p in data["policies"].items():
        assert set(p["breakdown"]) == COMPONENTS
        assert abs(p["total_cost_usd"] - sum(p["breakdown"].values())) < 1e-9
        for key in ("sla_violating_read_fraction", "bytes_moved", "moves"):
            assert key in p, (name, key)
    for key in ("gap_closed", "trace", "time_scale", "size_scale", "catalogue_version"):
        assert key in data
    assert data["time_scale"] == 3600 and data["size_scale"] == 10000 and data["requests"] == 2000
    page = out_html.read_text()
    assert page.count("<img") == 3 and "Cumulative cost" in page and "intelligent_tiering" in page
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["total_cost_usd"]["all_hot"] > 0


def test_evaluate_rejects_bad_trace_and_policy(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,object,size_bytes\n0,1,oops\n")
    res = CliRunner().invoke(evaluate_cmd, [str(bad), "--json", str(tmp_path / "o.json")])
    assert res.exit_code != 0 and "bad.csv:2" in res.output
    good = write_trace(tmp_path / "g.csv", n=50)
    res = CliRunner().invoke(evaluate_cmd, [str(good), "--json", str(tmp_path / "o.json"), "--policies", "nope"])
    assert res.exit_code != 0 and "unknown" in res.output
    assert not (tmp_path / "o.json").exists()


def test_evaluate_refuses_what_it_cannot_do_before_running(tmp_path, monkeypatch):
    """An output it could not write was found only after the whole run (minutes on the full trace)."""
    from dim.evaluation import simulator

    ran = []
    monkeypatch.setattr(simulator, "evaluate", lambda *a, **k: ran.append(1))
    good = write_trace(tmp_path / "g.csv", n=50)
    (tmp_path / "afile").write_text("")
    cases = [
        (["--json", str(tmp_path / "afile" / "o.json")], "cannot write"),
        (["--json", str(tmp_path / "o.json"), "--html", str(tmp_path / "afile" / "o.html")], "--html"),
        (["--json", str(tmp_path / "o.json"), "--time-scale", "nan"], "positive numbers"),
        (["--json", str(tmp_path / "o.json"), "--size-scale", "inf"], "positive numbers"),
        (["--json", str(tmp_path / "o.json"), "--limit", "0"], "--limit"),
        (["--json", str(tmp_path / "o.json"), "--workers", "0"], "--workers"),
        (["--json", str(tmp_path / "o.json"), "--policies", ","], "no policy given"),
    ]
    for args, fragment in cases:
        res = CliRunner().invoke(evaluate_cmd, [str(good), *args])
        assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output, (args, res.output)
    assert ran == [] and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "g.csv"]  # no probe file left
