"""The cost model and the catalogue, checked against numbers worked out by hand."""

from __future__ import annotations

import tomllib

import pytest

from solver.catalogue import DEFAULT_PATH, CatalogueError, load_catalogue, parse_catalogue
from solver.costs import GB, CostParams, horizon_cost, object_costs, transition_cost

CAT = load_catalogue()
P = CostParams(horizon_days=30.0, sla_ms=100.0, sla_penalty_usd=0.001, sla_min_reads=1.0)
GIB = 1 << 30


def test_catalogue_has_every_tier_with_sources():
    tiers = {loc.id for loc in CAT.locations}
    for expected in (
        "aws:us-east-1:standard",
        "aws:us-east-1:standard-ia",
        "aws:us-east-1:glacier-ir",
        "aws:us-east-1:glacier-flexible",
        "aws:us-east-1:deep-archive",
        "azure:eastus:hot",
        "azure:eastus:cool",
        "azure:eastus:cold",
        "azure:eastus:archive",
        "gcp:us-east1:standard",
        "gcp:us-east1:nearline",
        "gcp:us-east1:coldline",
        "gcp:us-east1:archive",
    ):
        assert expected in tiers
    assert CAT.version
    for loc in CAT.locations:
        assert len(loc.bucket) <= 63 and loc.bucket == loc.bucket.lower()
    assert CAT.location("aws:us-east-1:standard-ia").min_billable_bytes == 128 * 1024
    assert CAT.location("gcp:us-east1:archive").min_storage_days == 365
    assert CAT.location("azure:eastus:archive").restore_hours == 15


def test_initial_locations_exist():
    from dim.config import SolverSettings

    for loc in SolverSettings().initial_locations:
        assert CAT.has(loc)


def test_catalogue_refuses_unsourced_numbers():
    data = tomllib.loads(DEFAULT_PATH.read_text())
    data["location"][0]["src"] = {**data["location"][0]["src"], "storage": "nowhere"}
    with pytest.raises(CatalogueError, match="no known source"):
        parse_catalogue(data)


def test_egress_prices():
    assert CAT.egress_usd_gb("aws:us-east-1:standard", "aws:us-east-1:glacier-ir") == 0.0
    assert CAT.egress_usd_gb("aws:us-east-1:standard", "azure:eastus:hot") == 0.09
    assert CAT.egress_usd_gb("gcp:us-east1:standard", "aws:us-east-1:standard") == 0.12
    assert CAT.egress_usd_gb("azure:eastus:cool", "gcp:us-east1:archive") == 0.0875
    assert CAT.internet_egress_usd_gb("gcp:us-east1:nearline") == 0.12


def test_storage_over_horizon_by_hand():
    assert horizon_cost(CAT, GIB, 0.0, ["aws:us-east-1:standard"], P) == pytest.approx(0.023)
    assert horizon_cost(
        CAT, GIB, 0.0, ["aws:us-east-1:standard"], CostParams(horizon_days=90)
    ) == pytest.approx(0.069)
    # 10 KB in Standard-IA is billed as 128 KiB
    assert horizon_cost(CAT, 10_000, 0.0, ["aws:us-east-1:standard-ia"], P) == pytest.approx(
        131072 / GB * 0.0125
    )
    # Deep Archive adds 40 KB of per-object overhead
    assert horizon_cost(CAT, 0, 0.0, ["aws:us-east-1:deep-archive"], P) == pytest.approx(40960 / GB * 0.00099)


def test_reads_are_served_by_the_cheapest_replica():
    # 10 reads of 1 GiB: GET 0.0004/1000 each + internet egress 0.09/GB from AWS (Azure would be 0.087)
    aws = horizon_cost(CAT, GIB, 10.0, ["aws:us-east-1:standard"], P)
    assert aws == pytest.approx(0.023 + 10 * (0.0004 / 1000 + 0.09))
    both = horizon_cost(CAT, GIB, 10.0, ["aws:us-east-1:standard", "azure:eastus:hot"], P)
    assert both == pytest.approx(0.023 + 0.0208 + 10 * (0.0004 / 1000 + 0.087))


def test_sla_penalty_per_violating_read():
    # only an offline archive replica: 5 reads each wait for a restore -> 5 * lambda on top of the read cost
    cost = horizon_cost(CAT, GIB, 5.0, ["aws:us-east-1:deep-archive"], P)
    storage = (GIB + 40960) / GB * 0.00099
    reads = 5 * (0.10 / 1000 + 1 * (0.02 + 0.09))
    assert cost == pytest.approx(storage + reads + 5 * 0.001)
    # below sla_min_reads there is no penalty
    cost_one = horizon_cost(CAT, GIB, 0.5, ["aws:us-east-1:deep-archive"], P)
    assert cost_one == pytest.approx(storage + 0.5 * (0.10 / 1000 + 0.11))


def test_transition_costs_by_hand():
    # add GCS Nearline copying from S3 Standard: egress 0.09 + GET 0.0004/1000 + PUT 0.01/1000
    t = transition_cost(
        CAT, GIB, {"aws:us-east-1:standard": 100.0}, ["aws:us-east-1:standard", "gcp:us-east1:nearline"], P
    )
    assert t == pytest.approx(0.09 + 0.0004 / 1000 + 0.01 / 1000)
    # copy source is the cheapest current replica: from S3 Standard (0.09) rather than GCS Coldline (0.12+0.02)
    t = transition_cost(
        CAT,
        GIB,
        {"aws:us-east-1:standard": 100.0, "gcp:us-east1:coldline": 100.0},
        ["aws:us-east-1:standard", "gcp:us-east1:coldline", "azure:eastus:hot"],
        P,
    )
    assert t == pytest.approx(0.09 + 0.0004 / 1000 + 0.005 / 1000)
    # dropping a 30-day-old Glacier IR replica: 60 remaining days of 0.004/GB-month
    t = transition_cost(
        CAT,
        GIB,
        {"aws:us-east-1:glacier-ir": 30.0, "aws:us-east-1:standard": 1.0},
        ["aws:us-east-1:standard"],
        P,
    )
    assert t == pytest.approx(0.004 * 60 / 30)
    # ... and nothing once it is older than its 90-day minimum
    assert transition_cost(CAT, GIB, {"aws:us-east-1:glacier-ir": 91.0}, [], P) == 0.0


def test_cost_matrices_shapes_and_keep_is_free():
    cm = object_costs(CAT, GIB, 3.0, {"aws:us-east-1:standard": 5.0}, P)
    i = CAT.index("aws:us-east-1:standard")
    assert cm.hold.shape == (1, len(CAT.locations))
    assert cm.add[0, i] == 0.0 and cm.drop[0, i] == 0.0
    assert (cm.add[0] >= 0).all() and (cm.serve[0] > 0).all()
