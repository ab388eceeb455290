"""plan_placements: what moves it emits, what it skips, and properties that must hold for any input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dim.config import SolverPolicy, SolverSettings
from schemas import MAX_OBJECT_SIZE, Candidate, Placement, Replica
from solver.catalogue import load_catalogue
from solver.plan import plan_placements, plan_with_details, policy_for, policy_mask

CAT = load_catalogue()
NOW = 1_800_000_000.0
DAY = 86_400.0
GIB = 1 << 30
IDS = [loc.id for loc in CAT.locations]


def cand(key, size=GIB, reads=0.0, idle_days=40.0, p_hot=0.02, bucket="b", growing=False, as_of=NOW):
    return Candidate(
        bucket=bucket,
        key=key,
        as_of=as_of,
        size=size,
        read_heat={"1d": reads},
        write_heat={},
        p_hot=p_hot,
        expected_reads=reads,
        horizon_s=DAY,
        first_seen=NOW - 400 * DAY,
        last_access=NOW - idle_days * DAY,
        growing=growing,
    )


def placed(c, locations, age_days=400.0, version=4):
    return Placement(
        bucket=c.bucket,
        key=c.key,
        version=version,
        updated_at=NOW,
        replicas=[Replica(location=loc, size=c.size, created_at=NOW - age_days * DAY) for loc in locations],
    )


def test_cold_object_moves_with_a_readable_reason():
    s = SolverSettings()
    c = cand("cold")
    plan = plan_placements([c], {("b", "cold"): placed(c, s.initial_locations)}, CAT, s, NOW)
    assert plan.method == "milp-highs" and plan.gap is not None and plan.gap <= 1e-6
    [move] = plan.moves
    assert move.from_locations == s.initial_locations
    assert len(move.to_locations) == 2 and move.expected_version == 4 and move.plan_id == plan.plan_id
    assert move.expected_saving_usd > move.transition_cost_usd > 0
    assert "p_hot 0.02, 40 days since last read" in move.reason and "saves $" in move.reason
    assert plan.cost_after_usd_month < plan.cost_before_usd_month


def test_move_only_where_it_pays_off():
    s = SolverSettings()
    # a tiny object: moving it costs request fees that the storage saving never earns back in 30 days
    tiny = cand("tiny", size=100)
    # a freshly written Glacier IR replica: dropping it now costs its early-deletion charge
    fresh = cand("fresh", reads=0.0)
    current = {
        ("b", "tiny"): placed(tiny, s.initial_locations),
        ("b", "fresh"): placed(fresh, ["aws:us-east-1:glacier-ir", "gcp:us-east1:coldline"], age_days=1),
    }
    plan = plan_placements([tiny, fresh], current, CAT, s, NOW)
    assert [m.key for m in plan.moves] == []


def test_skips_are_counted_not_planned():
    s = SolverSettings()
    ok, growing, missing, unknown = cand("ok"), cand("g", growing=True), cand("missing"), cand("unknown")
    current = {
        ("b", "ok"): placed(ok, s.initial_locations),
        ("b", "g"): placed(growing, s.initial_locations),
        ("b", "unknown"): placed(unknown, ["aws:mars-1:standard", "gcp:us-east1:standard"]),
    }
    result = plan_with_details([ok, growing, missing, unknown], current, CAT, s, NOW)
    assert result.skipped == {"growing": 1, "no_catalog_entry": 1, "unknown_location": 1}
    assert [m.key for m in result.plan.moves] == ["ok"]
    assert result.plan.candidates == 4


@pytest.mark.parametrize("milp_max", [1000, 0])
@pytest.mark.parametrize("reads, size", [(1e300, GIB), (1e30, MAX_OBJECT_SIZE), (1e15, GIB)])
def test_an_object_with_absurd_costs_waits_and_the_batch_is_planned(milp_max, reads, size):
    # Before: the costs overflowed (or dwarfed every other one), HiGHS gave no answer and CBC raised - the solver
    # service stopped, and stopped again on the redelivered batch - or the decomposition planned nothing at all.
    s = SolverSettings(milp_max_objects=milp_max)
    cs = [cand("absurd", reads=reads, size=size), cand("cold")]
    result = plan_with_details(cs, {("b", c.key): placed(c, s.initial_locations) for c in cs}, CAT, s, NOW)
    assert result.skipped == {"cost_out_of_range": 1}
    assert [m.key for m in result.plan.moves] == ["cold"]


def test_newest_candidate_per_object_wins():
    s = SolverSettings()
    old = cand("x", reads=500.0, as_of=NOW - 100)
    new = cand("x", reads=0.0, as_of=NOW)
    plan = plan_placements([new, old], {("b", "x"): placed(new, s.initial_locations)}, CAT, s, NOW)
    [move] = plan.moves
    assert all(CAT.location(loc).tier_class in ("cold", "archive") for loc in move.to_locations)


def test_object_below_rf_is_repaired():
    s = SolverSettings()
    c = cand("lonely", reads=5.0)
    plan = plan_placements([c], {("b", "lonely"): placed(c, ["aws:us-east-1:standard"])}, CAT, s, NOW)
    [move] = plan.moves
    assert len(move.to_locations) == 2 and "break RF 2" in move.reason


def test_policies_longest_prefix_and_mask():
    pols = [
        SolverPolicy(prefix="b/", allowed_providers=["aws", "gcp"]),
        SolverPolicy(prefix="b/legal/", pinned_tier="hot", min_replication_factor=3, allow_archive=False),
    ]
    assert policy_for("b/legal/x", pols).prefix == "b/legal/"
    assert policy_for("b/other", pols).prefix == "b/"
    assert policy_for("c/other", pols) is None
    mask = policy_mask(CAT, pols[1])
    assert {CAT.locations[i].tier_class for i in np.flatnonzero(mask)} == {"hot"}
    s = SolverSettings(policies=pols)
    c = cand("legal/doc")
    plan = plan_placements([c], {("b", "legal/doc"): placed(c, s.initial_locations)}, CAT, s, NOW)
    [move] = plan.moves
    assert sorted(move.to_locations) == [
        "aws:us-east-1:standard",
        "azure:eastus:hot",
        "gcp:us-east1:standard",
    ]


# ---- properties ------------------------------------------------------------------------------------------------


@st.composite
def batches(draw):
    n = draw(st.integers(1, 12))
    rf = draw(st.integers(1, 3))
    policies = draw(
        st.lists(
            st.builds(
                SolverPolicy,
                prefix=st.sampled_from(["b/a", "b/b", "b/ab"]),
                allowed_providers=st.one_of(
                    st.none(), st.sampled_from([["aws", "gcp"], ["azure", "aws"], ["gcp"]])
                ),
                pinned_tier=st.one_of(st.none(), st.sampled_from(["hot", "cool", "cold", "glacier-ir"])),
                min_replication_factor=st.one_of(st.none(), st.integers(1, 3)),
                allow_archive=st.booleans(),
            ),
            max_size=3,
        )
    )
    caps = draw(st.dictionaries(st.sampled_from(IDS), st.integers(0, 8 * GIB), max_size=3))
    budget = draw(st.one_of(st.none(), st.integers(0, 6 * GIB)))
    s = SolverSettings(
        replication_factor=rf,
        policies=policies,
        capacity_bytes=caps,
        move_budget_bytes=budget,
        milp_max_objects=draw(st.sampled_from([0, 1000])),
    )  # both methods
    cands, current = [], {}
    for i in range(n):
        key = draw(st.sampled_from(["a", "b", "ab", "c"])) + str(i)
        c = cand(
            key,
            size=draw(st.integers(0, 2 * GIB)),
            reads=draw(st.sampled_from([0.0, 0.01, 0.5, 3.0, 200.0])),
            idle_days=draw(st.floats(0, 400)),
        )
        locs = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=3, unique=True))
        current[("b", key)] = placed(c, locs, age_days=draw(st.floats(0, 400)))
        cands.append(c)
    return s, cands, current


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_plans_keep_rf_policies_capacity_and_never_cost_more_than_staying(batch):
    s, cands, current = batch
    result = plan_with_details(cands, current, CAT, s, NOW)
    plan = result.plan
    final = {k: p.locations for k, p in current.items()}
    for m in plan.moves:
        policy = policy_for(f"{m.bucket}/{m.key}", s.policies)
        rf = max(s.replication_factor, (policy.min_replication_factor or 0) if policy else 0)
        assert len(m.to_locations) == rf == len(set(m.to_locations))
        mask = policy_mask(CAT, policy)
        assert all(mask[CAT.index(loc)] for loc in m.to_locations)
        providers = [CAT.location(loc).provider for loc in m.to_locations]
        n_prov = len({CAT.locations[i].provider for i in np.flatnonzero(mask)})
        if rf <= n_prov:
            assert len(set(providers)) == len(providers)
        assert m.from_locations == current[(m.bucket, m.key)].locations
        final[(m.bucket, m.key)] = m.to_locations
    sol = result.solution
    if sol is not None and np.isfinite(sol.objective):
        assert plan.objective_usd == pytest.approx(sol.objective)
        assert sol.lower_bound is None or sol.lower_bound <= sol.objective + 1e-9
    # capacity: the planned objects' bytes per location never grow past the capacity (a location that already
    # was over it may only shrink); the bytes copied stay within the move budget
    sizes = {(c.bucket, c.key): c.size for c in cands}
    for lid, cap in s.capacity_bytes.items():
        before = sum(sizes[k] for k in result.keys if lid in current[k].locations)
        after = sum(sizes[k] for k in result.keys if lid in final[k])
        assert after <= max(cap, before)
    if s.move_budget_bytes is not None:
        assert sum(m.size * len(m.added) for m in plan.moves) <= s.move_budget_bytes


@hsettings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4 * GIB), st.sampled_from([0.0, 0.3, 2.0, 50.0]), st.floats(0, 400)),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([0, 1000]),
)
def test_plan_never_costs_more_than_keeping_by_its_own_account(objs, milp_max):
    s = SolverSettings(milp_max_objects=milp_max, move_budget_bytes=2 * GIB)
    cands = [cand(f"k{i}", size=size, reads=reads) for i, (size, reads, _) in enumerate(objs)]
    current = {
        ("b", c.key): placed(c, s.initial_locations, age_days=age) for c, (_, _, age) in zip(cands, objs)
    }
    result = plan_with_details(cands, current, CAT, s, NOW)
    keep_cost = result.problem.objective(result.problem.current)
    assert result.plan.objective_usd <= keep_cost + 1e-9
    # in the plan's own figures: what the moves save over the horizon pays for their transitions
    saving = sum(m.expected_saving_usd for m in result.plan.moves)
    transitions = sum(m.transition_cost_usd for m in result.plan.moves)
    assert saving >= transitions - 1e-9


@pytest.mark.parametrize("milp_max", [0, 1000])
def test_capacity_setting_limits_where_objects_go(milp_max):
    s = SolverSettings(
        capacity_bytes={"aws:us-east-1:deep-archive": int(2.5 * GIB)}, milp_max_objects=milp_max
    )
    cands = [cand(f"c{i}") for i in range(4)]
    current = {("b", c.key): placed(c, s.initial_locations) for c in cands}
    plan = plan_placements(cands, current, CAT, s, NOW)
    into_deep = [m for m in plan.moves if "aws:us-east-1:deep-archive" in m.to_locations]
    assert len(plan.moves) == 4 and len(into_deep) == 2


@pytest.mark.parametrize("milp_max", [0, 1000])
def test_move_budget_in_dollars(milp_max):
    free = SolverSettings(milp_max_objects=milp_max)
    cands = [cand(f"d{i}", size=(i + 1) * GIB) for i in range(5)]
    current = {("b", c.key): placed(c, free.initial_locations) for c in cands}
    unbounded = plan_placements(cands, current, CAT, free, NOW)
    spent = sum(m.transition_cost_usd for m in unbounded.moves)
    assert len(unbounded.moves) == 5 and spent > 0
    tight = SolverSettings(milp_max_objects=milp_max, move_budget_usd=spent / 3)
    plan = plan_placements(cands, current, CAT, tight, NOW)
    assert 0 < len(plan.moves) < 5
    assert sum(m.transition_cost_usd for m in plan.moves) <= spent / 3 + 1e-9


@pytest.mark.parametrize("milp_max", [0, 1000])
def test_every_plan_names_its_catalogue_version(milp_max):
    s = SolverSettings(milp_max_objects=milp_max)
    c = cand("versioned")
    plan = plan_placements([c], {("b", "versioned"): placed(c, s.initial_locations)}, CAT, s, NOW)
    assert plan.moves and plan.catalogue_version == CAT.version
    # also the empty plan of a batch where nothing can be planned
    empty = plan_placements([cand("nowhere")], {}, CAT, s, NOW)
    assert empty.moves == [] and empty.catalogue_version == CAT.version


def _mixed_batch(n):
    s = SolverSettings(milp_max_objects=0)
    cands = [
        cand(f"m{i}", size=(i % 7 + 1) * GIB // 4, reads=[0.0, 0.3, 5.0][i % 3], idle_days=i % 300)
        for i in range(n)
    ]
    current = {
        ("b", c.key): placed(c, s.initial_locations, age_days=(37 * i) % 200) for i, c in enumerate(cands)
    }
    return s, cands, current


def test_moves_do_not_depend_on_the_batch_they_are_planned_in():
    # Without coupling constraints each object's move is its own optimum: planning 30 objects alone or inside a
    # batch of 300 must give the same move, saving and transition cost (the per-move figures come from one pass
    # over the batch's arrays, so nothing may leak between rows).
    s, cands, current = _mixed_batch(300)
    big = {m.key: m for m in plan_placements(cands, current, CAT, s, NOW).moves}
    small = {m.key: m for m in plan_placements(cands[:30], current, CAT, s, NOW).moves}
    assert small and set(small) == {k for k in big if int(k[1:]) < 30}
    for key, m in small.items():
        b = big[key]
        assert (m.to_locations, m.reason) == (b.to_locations, b.reason)
        assert m.expected_saving_usd == pytest.approx(b.expected_saving_usd, rel=1e-12)
        assert m.transition_cost_usd == pytest.approx(b.transition_cost_usd, rel=1e-12)


@pytest.mark.parametrize("milp_max", [0, 1000])
def test_plan_figures_do_not_depend_on_candidate_order(milp_max):
    # live, candidates arrive in the broker's order; offline, in the trace's: the plan's dollar figures must be
    # equal to the last bit, not merely close
    s, cands, current = _mixed_batch(60)
    s = s.model_copy(update={"milp_max_objects": milp_max})
    a = plan_placements(cands, current, CAT, s, NOW)
    b = plan_placements(cands[::-1], current, CAT, s, NOW)
    for field in ("objective_usd", "cost_before_usd_month", "cost_after_usd_month"):
        assert getattr(a, field) == getattr(b, field), field
    assert sorted((m.key, m.to_locations) for m in a.moves) == sorted(
        (m.key, m.to_locations) for m in b.moves
    )


ARCHIVE_IDS = {loc.id for loc in CAT.locations if loc.archive}


def test_archive_tiers_hold_backups_of_objects_that_are_read_but_never_serve_them():
    # read about once in two months / a little over once in two years: both above archive_max_reads (0.05)
    warm, rare = cand("warm", reads=0.5, idle_days=10), cand("rare", reads=0.06, idle_days=60, size=50 * GIB)
    current = {(c.bucket, c.key): placed(c, SolverSettings().initial_locations) for c in (warm, rare)}
    with_backups = plan_placements([warm, rare], current, CAT, SolverSettings(), NOW)
    without = plan_placements([warm, rare], current, CAT, SolverSettings(archive_backups=False), NOW)
    assert len(with_backups.moves) == 2
    for move in with_backups.moves:  # one backup in archive, one replica that serves
        assert sum(loc in ARCHIVE_IDS for loc in move.to_locations) == 1, move
    assert not any(loc in ARCHIVE_IDS for m in without.moves for loc in m.to_locations)
    # the figures are the real costs (no serve penalty in them), and lower with the archive backup
    assert with_backups.cost_after_usd_month < without.cost_after_usd_month < with_backups.cost_before_usd_month


def test_an_object_wholly_in_archive_tiers_that_is_read_again_moves_out():
    c = cand("back", reads=20.0, idle_days=0.5, p_hot=0.9)
    current = {("b", "back"): placed(c, ["aws:us-east-1:deep-archive", "gcp:us-east1:archive"])}
    [move] = plan_placements([c], current, CAT, SolverSettings(), NOW).moves
    assert any(loc not in ARCHIVE_IDS for loc in move.to_locations)
    assert "break RF" in move.reason or "policy" in move.reason


def test_a_repair_the_move_budget_cannot_pay_for_is_skipped_and_the_others_are_still_planned():
    s = SolverSettings(move_budget_bytes=10 * GIB)
    under = cand("under", size=100 * GIB)  # one replica: below RF, so staying put is not allowed
    cold = cand("cold")
    current = {("b", "under"): placed(under, s.initial_locations[:1]), ("b", "cold"): placed(cold, s.initial_locations)}
    result = plan_with_details([under, cold], current, CAT, s, NOW)
    assert result.skipped["repair_over_budget"] == 1
    assert [m.key for m in result.plan.moves] == ["cold"]
    assert result.keys == [("b", "cold")] and result.problem is not None and result.problem.n == 1

    alone = plan_with_details([under], current, CAT, s, NOW)
    assert alone.skipped["repair_over_budget"] == 1 and alone.plan.moves == [] and alone.problem is None


def test_the_lagrangian_method_finds_the_plan_when_its_first_candidate_lists_cannot_meet_the_capacities():
    # Found by the property test above with HiGHS 1.16. Every object is below RF 3; the cheapest sets of the one
    # that has bytes all use a location that is full, so on the first candidate lists the prices grew past
    # HiGHS's infinity (1e20) and its master LP came back empty (IndexError in solver.duals); before that, the
    # lists' infeasibility was reported as the whole batch's, and all 8 repairs were skipped.
    s = SolverSettings(
        replication_factor=3,
        capacity_bytes={"aws:us-east-1:standard": 0, "azure:eastus:cold": 0, "azure:eastus:archive": 208_445},
        milp_max_objects=0,  # the Lagrangian method
    )
    cands = [cand(f"a{i}", size=0, idle_days=0.0) for i in range(7)] + [cand("a7", size=1_894_839, idle_days=0.0)]
    current = {("b", c.key): placed(c, ["aws:us-east-1:standard"], age_days=0.0) for c in cands[:7]}
    current[("b", "a7")] = placed(cands[7], ["aws:us-east-1:standard-ia"], age_days=0.0)
    result = plan_with_details(cands, current, CAT, s, NOW)
    assert not result.skipped and len(result.plan.moves) == 8 and result.solution.method == "lagrangian"
    final = {k: p.locations for k, p in current.items()}
    final.update({(m.bucket, m.key): m.to_locations for m in result.plan.moves})
    for lid, cap in s.capacity_bytes.items():
        assert sum(c.size for c in cands if lid in final[("b", c.key)]) <= cap
    milp = plan_with_details(cands, current, CAT, s.model_copy(update={"milp_max_objects": 1000}), NOW)
    assert milp.solution.method == "milp-highs"
    assert result.solution.objective == pytest.approx(milp.solution.objective, rel=1e-9)


@pytest.mark.parametrize("milp_max", [0, 1000])
def test_a_repair_a_few_bytes_over_the_move_budget_waits(milp_max):
    # The repair (its policy allows only GCP; it sits on Azure) must copy its 1 GiB, and the budget is 818 bytes
    # short of that: inside a solver's relative tolerance (HiGHS accepted such a plan, 1e-6 over), but over the
    # budget. The repair waits for a later cycle, the other object is planned, the budget holds to the byte.
    s = SolverSettings(replication_factor=1, move_budget_bytes=GIB - 818, milp_max_objects=milp_max,
                       policies=[SolverPolicy(prefix="b/a", allowed_providers=["gcp"])])
    big, other = cand("a5", size=GIB, reads=0.01), cand("b1", size=2 * GIB)
    current = {("b", "a5"): placed(big, ["azure:eastus:hot"]), ("b", "b1"): placed(other, ["aws:us-east-1:standard"])}
    result = plan_with_details([big, other], current, CAT, s, NOW)
    assert sum(m.size * len(m.added) for m in result.plan.moves) <= s.move_budget_bytes
    assert [m.key for m in result.plan.moves] == []  # b1 would go cold, but its copy does not fit the budget either
    assert result.skipped["repair_over_budget"] == 1


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, MAX_OBJECT_SIZE),  # size
            st.one_of(st.floats(0, 1e308), st.sampled_from([0.0, 1e-300, 0.5, 3.0])),  # expected reads
            st.floats(-1e4, 1e6),  # days since the last read (negative: a clock ahead of ours)
            st.floats(-1e6, 1e6),  # replica age in days
            st.lists(st.sampled_from(IDS), min_size=1, max_size=4),  # replicas, duplicates allowed
            st.integers(0, MAX_OBJECT_SIZE),  # size recorded on the replicas
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([0, 1000]),
    st.one_of(st.none(), st.integers(0, 2**63)),
)
def test_any_valid_candidates_and_placements_give_a_plan_never_an_exception(objs, milp_max, budget):
    # The solver service must not stop on a batch (a redelivered batch would stop it again): whatever valid records
    # arrive, plan_with_details returns a plan, and moves only objects whose costs it could price.
    s = SolverSettings(milp_max_objects=milp_max, move_budget_bytes=budget)
    cands, current = [], {}
    for i, (size, reads, idle, age, locs, replica_size) in enumerate(objs):
        c = cand(f"k{i}", size=size, reads=reads, idle_days=idle)
        p = placed(c, locs, age_days=age)
        current[("b", c.key)] = p.model_copy(update={"replicas": [r.model_copy(update={"size": replica_size})
                                                                  for r in p.replicas]})
        cands.append(c)
    result = plan_with_details(cands, current, CAT, s, NOW)
    event(f"moves: {bool(result.plan.moves)}, skipped: {sorted(result.skipped)}")
    assert sum(result.skipped.values()) + len(result.keys) == len(cands)
    for m in result.plan.moves:
        assert len(set(m.to_locations)) == len(m.to_locations) >= s.replication_factor
