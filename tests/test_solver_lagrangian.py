"""The Lagrangian decomposition's parts against brute force: exact prices, fixed objects, certified bounds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dim.config import SolverSettings
from solver import duals
from solver import enumeration as en
from solver import lagrangian as lg
from solver.catalogue import load_catalogue
from solver.milp import solve_milp
from solver.synthetic import random_problem

CAT = load_catalogue()


def _usage_at(base, b, mu):
    """Usage at price mu with ties broken towards the smaller use, by brute force."""
    val = base + mu * b
    best = val.min(axis=1, keepdims=True)
    tied = val <= best + 1e-12 * np.abs(best)
    return np.where(tied, b, np.inf).min(axis=1).sum()


@hsettings(max_examples=80, deadline=None)
@given(st.integers(1, 30), st.integers(2, 5), st.integers(0, 10_000), st.floats(0.05, 0.95))
def test_exact_price_is_the_smallest_feasible_price(n, m, seed, share):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 10, (n, m))
    b = rng.integers(0, 5, (n, m)).astype(float)
    lo, hi = b.min(axis=1).sum(), b.max(axis=1).sum()
    rhs = lo + share * (hi - lo)
    mu = duals.exact_price(base, b, rhs)
    assert _usage_at(base, b, mu) <= rhs + 1e-9
    if mu > 0:  # any smaller price breaks the constraint
        assert _usage_at(base, b, mu * (1 - 1e-7)) > rhs


def test_exact_price_reports_infeasible():
    base = np.array([[0.0, 1.0]])
    b = np.array([[3.0, 2.0]])
    with pytest.raises(duals.Infeasible):
        duals.exact_price(base, b, 1.0)


@pytest.mark.parametrize("seed", [11, 13])
def test_certified_bound_below_milp_optimum_and_gap_small(seed):
    pb = random_problem(
        CAT,
        SolverSettings(),
        600,
        seed=seed,
        budget_fraction=0.03,
        capacity_fraction={"gcp:us-east1:coldline": 0.02, "aws:us-east-1:standard-ia": 0.01},
    )
    exact = solve_milp(pb)
    sol = lg.solve_lagrangian(pb)
    assert pb.violations(sol.chosen) == []
    assert sol.lower_bound <= exact.objective * (1 + 1e-9)
    assert sol.gap <= 1e-3
    assert sol.objective <= exact.objective * (1 + 1e-3)


@pytest.mark.parametrize("diversity", [True, False])
def test_pair_shortcut_equals_the_enumeration(diversity):
    settings = SolverSettings(provider_diversity=diversity)
    pb = random_problem(
        CAT, settings, 2000, seed=9, budget_fraction=0.05, capacity_fraction={"azure:eastus:cool": 0.1}
    )
    rng = np.random.default_rng(1)
    pb.allowed &= (
        rng.random(pb.allowed.shape) < 0.25
    )  # policy-like holes; some objects are left without a pair
    pb.allowed[:, CAT.index("aws:us-east-1:standard")] = False  # barred for all: its sets are skipped
    cons = en.coupling_constraints(pb)
    tb = en.tables(pb, cons)
    for mu in (np.zeros(len(cons)), rng.uniform(0, 1e-10, len(cons))):
        fast_val, fast_locs, _ = en.full_pass(pb, tb, mu)
        slow_val, _, _ = en.full_pass(pb, tb, mu, pairs=False)
        assert np.isinf(slow_val).any() and np.array_equal(np.isinf(fast_val), np.isinf(slow_val))
        ok = np.isfinite(slow_val)
        assert np.allclose(fast_val[ok], slow_val[ok], rtol=1e-12, atol=0)
        # the shortcut's pair is feasible and priced at its value
        cost, use = en.evaluate_sets(pb, tb, fast_locs[:, None, :])
        priced = cost[:, 0] + mu @ use[:, :, 0]
        assert np.allclose(priced[ok], fast_val[ok], rtol=1e-12, atol=0)
        x = en.to_assignment(fast_locs[ok], pb.n_locations)
        assert (x.sum(axis=1) == 2).all() and not (x & ~pb.allowed[ok]).any()
        for p in range(len(pb.la.providers)):
            assert (x[:, pb.la.provider_of == p].sum(axis=1) <= pb.max_per_provider[ok]).all()


def test_presolve_fixes_only_objects_no_price_can_move():
    # the fixed objects' choice at zero prices must also be each one's choice at any prices, over the full
    # enumeration: check it at random prices with the plain enumeration
    pb = random_problem(
        CAT,
        SolverSettings(),
        3000,
        seed=4,
        budget_fraction=0.05,
        capacity_fraction={"gcp:us-east1:coldline": 0.02},
    )
    pb.budget_usd = 1.0  # a dollar budget too: its weights (minus early-deletion charges) can be negative
    cons = en.coupling_constraints(pb)
    tb = en.tables(pb, cons)
    val0, best0, _ = en.full_pass(pb, tb, np.zeros(len(cons)))
    use0 = lg.set_usage(pb, cons, best0)
    _, use_tables = en.evaluate_sets(pb, tb, best0[:, None, :])  # the same usage through the weight tables
    assert np.allclose(use0, use_tables[:, :, 0], rtol=1e-12, atol=1e-18)
    fixed = (use0 <= lg.least_usage(pb, cons)).all(axis=0)
    assert 0 < fixed.sum() < pb.n
    rng = np.random.default_rng(2)
    for _ in range(3):
        mu = rng.uniform(0, 1e-9, len(cons)) * np.array([1e0] * (len(cons) - 1) + [1e9])
        val, _, _ = en.full_pass(pb, tb, mu, pairs=False)
        assert np.allclose(val[fixed], val0[fixed] + mu @ use0[:, fixed], rtol=1e-12, atol=1e-15)


def test_the_master_lp_reports_prices_past_highs_infinity_instead_of_failing():
    # The bundle ascent widens its region by 4x per serious step; where the dual grows without bound its bounds
    # pass 1e20, which HiGHS takes as infinite and rejects as a lower bound (empty model, no solution).
    cut = (np.array([1.0]), 1.0, np.array([0.5]))
    assert duals._master([cut], np.array([5e21]), np.array([6e21])) is None
    nu, theta, _ = duals._master([cut], np.array([0.0]), np.array([2.0]))
    assert nu == pytest.approx([2.0]) and theta == pytest.approx(1.5)
    # and the ascent on such a dual ends at finite prices: one object, sets A and B each using one of two
    # constraints, limits no mix of A and B can meet
    cands = en.Candidates(np.zeros((1, 2, 1), dtype=np.int64), np.array([[1.0, 2.0]]),
                          np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))
    assert np.isfinite(duals.dual_ascent(cands, np.array([0.4, 0.4]), np.zeros(2)).mu).all()


def test_a_milp_solve_after_a_lagrangian_one_in_the_same_process_still_runs():
    # HiGHS sizes its thread scheduler once per process; a master LP at the default size used to make every
    # later MILP solve of the process fail (kError). A fresh interpreter, so the order is exactly that one.
    script = textwrap.dedent("""
        import numpy as np
        from dim.config import SolverSettings
        from solver import duals, enumeration as en
        from solver.catalogue import load_catalogue
        from solver.milp import solve_milp
        from solver.synthetic import random_problem

        cands = en.Candidates(np.zeros((1, 2, 1), dtype=np.int64), np.array([[1.0, 2.0]]),
                              np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))
        duals.dual_ascent(cands, np.array([0.6, 0.6]), np.zeros(2))  # two constraints: the master LP runs
        print("STATUS", solve_milp(random_problem(load_catalogue(), SolverSettings(), 30, seed=3)).status)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert "STATUS optimal" in out.stdout, out.stdout + out.stderr


def test_highs_prints_nothing_on_stdout():
    # highspy 1.16 prints a banner on stdout at the first instance; `dim solve`'s stdout is one JSON line.
    script = "from solver.highs import new_highs\nnew_highs().run()\nnew_highs()\nprint('OUT')"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stdout == "OUT\n", out.stdout + out.stderr


def _tight_batch(seed: int):
    """Two capacities clamped to current usage (as solver.plan does), a byte budget and seven forced repairs."""
    import dataclasses

    settings = SolverSettings()
    rng = np.random.default_rng(seed + 10_000)
    locs = rng.choice(CAT.ids, 2, replace=False)
    cap = {str(lid): float(rng.uniform(0.05, 0.6)) for lid in locs}
    pb = random_problem(CAT, settings, 24, seed=seed, budget_fraction=float(rng.uniform(0.2, 1.0)),
                        capacity_fraction=cap)
    used = (pb.current * pb.size[:, None]).sum(axis=0)
    allowed = pb.allowed.copy()
    for i in rng.choice(pb.n, 7, replace=False):
        allowed[i, rng.choice(np.flatnonzero(pb.current[i]))] = False
    return dataclasses.replace(pb, capacity=np.maximum(pb.capacity, used), allowed=allowed), settings


def test_a_batch_the_decomposition_calls_infeasible_is_checked_with_the_milp():
    """The decomposition's "infeasible" means no combination of its listed sets fits; on this batch the MILP finds
    a plan (a review found ~1.5 % of such random batches). An infeasible batch plans nothing - not even its repairs
    - so solve() asks the MILP before giving it up."""
    from solver.solve import solve

    pb, settings = _tight_batch(156)
    assert lg.solve_lagrangian(pb).status == "infeasible"
    exact = solve_milp(pb, "highs", 30, 1e-6)
    assert exact.status == "optimal"
    sol = solve(pb, settings, method="lagrangian")
    assert sol.status in ("optimal", "feasible") and "lagrangian_infeasible" in sol.info
    assert sol.objective == pytest.approx(exact.objective, rel=1e-6)
    assert (sol.chosen & ~pb.allowed).sum() == 0  # the repairs are made
