"""Where the readers are, and the catalogue helpers every policy needs. Pure.

The shared cost model (solver.costs) prices every read as leaving the serving provider to the internet
(`Catalogue.internet_egress_usd_gb`). The trace's readers are not on the internet: every AccessEvent the producers
publish says `client_region="us-east-1"`, i.e. the application runs next to the AWS us-east-1 buckets. A read
served from there costs no transfer; one served from GCS us-east1 pays GCP's egress to AWS. `client_catalogue`
expresses exactly that *inside* the shared model, by giving each provider the egress price from its site to the
client site as its "internet" price, so the solver, the planner and the ledger all see the same prices through the
same code. (The catalogue has one region per provider, which this requires; the request to make the cost model
client-aware natively is in docs/evaluation.md.)
"""

from __future__ import annotations

import dataclasses

from solver.catalogue import Catalogue

INTERNET = "internet"


def client_site_for_region(catalogue: Catalogue, region: str) -> str:
    """The catalogue site (provider:region) of a client region name such as "us-east-1"."""
    sites = sorted({loc.site for loc in catalogue.locations if loc.region == region})
    if not sites:
        raise ValueError(f"no catalogue location is in region {region!r}")
    return sites[0]


def client_catalogue(catalogue: Catalogue, client: str) -> Catalogue:
    """The catalogue as seen by readers at site `client` ("provider:region"), or unchanged for "internet"."""
    if client == INTERNET:
        return catalogue
    at_client = [loc for loc in catalogue.locations if loc.site == client]
    if not at_client:
        raise ValueError(f"client site {client!r} is not a catalogue site")
    dst = at_client[0].id
    per_provider: dict[str, float] = {}
    for loc in catalogue.locations:
        price = catalogue.egress_usd_gb(loc.id, dst)
        if per_provider.setdefault(loc.provider, price) != price:
            raise ValueError(f"provider {loc.provider} has sites with different egress to {client}: the cost "
                             "model prices reads per provider, so a client-aware model is needed for this catalogue")
    egress = dict(catalogue.egress)
    egress["internet"] = per_provider
    return dataclasses.replace(catalogue, egress=egress)


def location_of_class(catalogue: Catalogue, site: str, tier_class: str) -> int:
    """Index of the first location at `site` with `tier_class`, falling back to colder then warmer classes."""
    from solver.catalogue import TIER_CLASSES

    order = list(TIER_CLASSES)
    k = order.index(tier_class)
    for cls in order[k:] + order[:k][::-1]:
        for i, loc in enumerate(catalogue.locations):
            if loc.site == site and loc.tier_class == cls:
                return i
    raise ValueError(f"no location at {site}")
