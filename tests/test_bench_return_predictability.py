"""bench/return_predictability.py's observations: which reads are idle checks, and what followed them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.return_predictability import observations


def _reads(rows: list[tuple[str, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["object", "t"])
    df["size"] = 1000
    return df.sort_values(["object", "t"], kind="stable").reset_index(drop=True)


def test_checks_count_only_their_objects_reads_in_the_following_window():
    # "a": read at 0, 1, then 10 (9 idle days), 12 and 45; "b" read at 5 and 9: within a's windows, never counted.
    # Trace ends at 100.
    df = _reads([("a", 0.0), ("a", 1.0), ("a", 10.0), ("a", 12.0), ("a", 45.0), ("b", 5.0), ("b", 9.0),
                 ("c", 100.0)])
    obs = observations(df, idle_days=7.0)
    got = {(round(r.check, 3), r.reads): r.future_reads for r in obs.itertuples()}
    # a@1 -> check 8: reads in (8, 38] = 10 and 12; a@12 -> check 19: (19, 49] = 45; a@45 -> check 52: none.
    # a@0 and a@10 are followed within 7 days (no check); b@9 -> check 16: none; c@100: window past the end.
    assert got == {(8.0, 2): 2, (19.0, 4): 1, (52.0, 5): 0, (16.0, 2): 0}


def test_history_features_use_only_the_past():
    df = _reads([("a", 0.0), ("a", 1.0), ("a", 10.0), ("a", 12.0), ("a", 45.0), ("z", 100.0)])
    row = observations(df, idle_days=7.0).set_index("reads").loc[4]  # the read at 12
    assert row.age == pytest.approx(12.0)
    assert row.last_gap == pytest.approx(2.0)
    assert row.max_gap == pytest.approx(9.0)
    assert row.long_returns == 1  # the return at 10 after 9 idle days; the read at 45 is the future
    assert row.mean_gap == pytest.approx(4.0)
    decay = math.log(2) / 7.0
    activity = ((1 * math.exp(-decay) + 1) * math.exp(-decay * 9) + 1) * math.exp(-decay * 2) + 1
    assert row.activity == pytest.approx(activity)
