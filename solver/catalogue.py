"""The price catalogue: locations = provider x region x tier, with their prices and limits. Pure data, no I/O
beyond reading the shipped TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")


@dataclass(frozen=True)
class Location:
    id: str  # "provider:region:tier"
    storage_usd_gb_month: float
    retrieval_usd_gb: float
    get_usd_per_1k: float
    put_usd_per_1k: float
    min_storage_days: float
    min_billable_bytes: int
    first_byte_ms: float
    restore_hours: float = 0.0

    @property
    def provider(self) -> str:
        return self.id.split(":")[0]

    @property
    def region(self) -> str:
        return self.id.split(":")[1]

    @property
    def tier(self) -> str:
        return self.id.split(":")[2]

    @property
    def archive(self) -> bool:
        return self.restore_hours > 0

    @property
    def bucket(self) -> str:
        """The S3 bucket standing in for this location (SeaweedFS on the embedded stack)."""
        return "dim-" + self.id.replace(":", "-").lower()


@dataclass(frozen=True)
class Catalogue:
    version: str
    locations: tuple[Location, ...]
    egress: dict

    def location(self, location_id: str) -> Location:
        for loc in self.locations:
            if loc.id == location_id:
                return loc
        raise KeyError(f"unknown location {location_id!r}")

    def egress_usd_gb(self, src: str, dst: str) -> float:
        a, b = self.location(src), self.location(dst)
        if a.provider == b.provider and a.region == b.region:
            return float(self.egress["same_region"])
        if a.provider == b.provider:
            return float(self.egress["same_provider"])
        return float(self.egress["cross_provider"][a.provider])


@lru_cache(maxsize=8)
def load_catalogue(path: Path | None = None) -> Catalogue:
    data = tomllib.loads((path or DEFAULT_PATH).read_text())
    locs = tuple(Location(**row) for row in data["location"])
    return Catalogue(version=str(data["version"]), locations=locs, egress=data["egress_usd_gb"])
