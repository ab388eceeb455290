"""The price catalogue: locations = provider x region x tier, with their prices, limits and the source of every
number. Pure data, no I/O beyond reading the versioned TOML file shipped next to this module."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")

TIER_CLASSES = ("hot", "cool", "cold", "archive")
# Field groups of a location that must each name a source.
SOURCED_GROUPS = ("storage", "retrieval", "requests", "limits", "latency")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class CatalogueError(ValueError):
    """The catalogue file is inconsistent (unknown source, bad id, duplicate location, ...)."""


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
    name: str = ""
    tier_class: str = "hot"
    # Per-object metadata billed on top of the object (Glacier Flexible / Deep Archive keep ~40 KB per object).
    overhead_bytes: int = 0
    src: dict = field(default_factory=dict, compare=False, hash=False)

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
    def site(self) -> str:
        """provider:region, the unit egress is priced between."""
        return f"{self.provider}:{self.region}"

    @property
    def archive(self) -> bool:
        return self.tier_class == "archive" or self.restore_hours > 0

    @property
    def read_latency_ms(self) -> float:
        """Time to first byte of a read that finds only this replica (restore time for offline archives)."""
        return self.first_byte_ms + self.restore_hours * 3_600_000.0

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def bucket(self) -> str:
        """The S3 bucket standing in for this location (SeaweedFS on the embedded stack)."""
        return "dim-" + self.id.replace(":", "-").lower()


@dataclass(frozen=True)
class Catalogue:
    version: str
    locations: tuple[Location, ...]
    egress: dict
    pairs: dict = field(default_factory=dict)  # (src site, dst site) -> $/GB
    sources: dict = field(default_factory=dict)

    def __hash__(self) -> int:  # frozen dataclass with dict fields: identity is the version + ids
        return hash((self.version, self.ids))

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(loc.id for loc in self.locations)

    @cached_property
    def _position(self) -> dict[str, int]:
        # looked up once per replica of every planned object: a dict, not a scan of the locations
        return {lid: i for i, lid in enumerate(self.ids)}

    def index(self, location_id: str) -> int:
        try:
            return self._position[location_id]
        except KeyError:
            raise ValueError(f"unknown location {location_id!r}") from None

    def has(self, location_id: str) -> bool:
        return location_id in self._position

    def location(self, location_id: str) -> Location:
        i = self._position.get(location_id)
        if i is None:
            raise KeyError(f"unknown location {location_id!r}")
        return self.locations[i]

    def egress_usd_gb(self, src: str, dst: str) -> float:
        """$/GB to copy from location `src` to location `dst` (0 within one provider region)."""
        a, b = self.location(src), self.location(dst)
        if a.site == b.site:
            return float(self.egress["same_region"])
        if (a.site, b.site) in self.pairs:
            return float(self.pairs[(a.site, b.site)])
        if a.provider == b.provider:
            return float(self.egress["same_provider"])
        return float(self.egress["cross_provider"][a.provider])

    def internet_egress_usd_gb(self, location_id: str) -> float:
        """$/GB of a read served from `location_id` to a client on the internet."""
        return float(self.egress["internet"][self.location(location_id).provider])


def parse_catalogue(data: dict) -> Catalogue:
    """Validate and build a catalogue from parsed TOML."""
    sources = dict(data.get("sources", {}))
    locs: list[Location] = []
    seen: set[str] = set()
    for row in data["location"]:
        loc = Location(**row)
        parts = loc.id.split(":")
        if len(parts) != 3 or not all(parts):
            raise CatalogueError(f"location id {loc.id!r} is not provider:region:tier")
        if loc.id in seen:
            raise CatalogueError(f"duplicate location {loc.id!r}")
        seen.add(loc.id)
        if loc.tier_class not in TIER_CLASSES:
            raise CatalogueError(f"{loc.id}: tier_class {loc.tier_class!r} not in {TIER_CLASSES}")
        if not _BUCKET_NAME.match(loc.bucket):
            raise CatalogueError(f"{loc.id}: bucket name {loc.bucket!r} is not a valid S3 bucket name")
        for group in SOURCED_GROUPS:
            if loc.src.get(group) not in sources:
                raise CatalogueError(
                    f"{loc.id}: {group} numbers have no known source ({loc.src.get(group)!r})"
                )
        numbers = (
            loc.storage_usd_gb_month,
            loc.retrieval_usd_gb,
            loc.get_usd_per_1k,
            loc.put_usd_per_1k,
            loc.min_storage_days,
            loc.min_billable_bytes,
            loc.first_byte_ms,
            loc.restore_hours,
        )
        if any(n < 0 for n in numbers):
            raise CatalogueError(f"{loc.id}: negative price or limit")
        locs.append(loc)
    egress = dict(data["egress_usd_gb"])
    for group, source in egress.get("src", {}).items():
        if source not in sources:
            raise CatalogueError(f"egress {group}: unknown source {source!r}")
    pairs = {}
    for row in data.get("egress", []):
        if row.get("source") not in sources:
            raise CatalogueError(
                f"egress {row.get('src')}->{row.get('dst')}: unknown source {row.get('source')!r}"
            )
        pairs[(row["src"], row["dst"])] = float(row["usd_gb"])
    providers = {loc.provider for loc in locs}
    for table in ("cross_provider", "internet"):
        missing = providers - set(egress[table])
        if missing:
            raise CatalogueError(f"egress {table} has no price for {sorted(missing)}")
    return Catalogue(
        version=str(data["version"]), locations=tuple(locs), egress=egress, pairs=pairs, sources=sources
    )


@lru_cache(maxsize=8)
def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or DEFAULT_PATH
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogueError(f"price catalogue {path} (DIM_SOLVER__CATALOGUE_PATH): {exc.strerror or exc}") from None
    try:
        return parse_catalogue(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"price catalogue {path}: not valid TOML: {exc}") from None


def check_solver_settings(cat: Catalogue, solver) -> None:
    """The solver settings that name catalogue entries name existing ones: a misspelt location, provider or tier
    would otherwise make every object infeasible or unconstrained without a word (a policy that allows no
    location leaves its objects where they are; an unknown capacity key limits nothing)."""
    problems = []
    unknown = [lid for lid in solver.initial_locations if not cat.has(lid)]
    if unknown:
        problems.append(f"DIM_SOLVER__INITIAL_LOCATIONS: unknown location(s) {unknown}")
    if not solver.initial_locations:
        problems.append("DIM_SOLVER__INITIAL_LOCATIONS: empty (new objects need somewhere to start)")
    if solver.replication_factor > len(cat.locations):
        problems.append(f"DIM_SOLVER__REPLICATION_FACTOR: {solver.replication_factor} replicas but the catalogue "
                        f"has {len(cat.locations)} locations")
    unknown = sorted(lid for lid in solver.capacity_bytes if not cat.has(lid))
    if unknown:
        problems.append(f"DIM_SOLVER__CAPACITY_BYTES: unknown location(s) {unknown}")
    providers = {loc.provider for loc in cat.locations}
    regions = {loc.site for loc in cat.locations} | {loc.region for loc in cat.locations}
    tiers = {loc.tier for loc in cat.locations} | {loc.tier_class for loc in cat.locations}
    for i, policy in enumerate(solver.policies):
        where = f"DIM_SOLVER__POLICIES[{i}] (prefix {policy.prefix!r})"
        for name, given, known in (("allowed_providers", policy.allowed_providers, providers),
                                   ("allowed_regions", policy.allowed_regions, regions)):
            bad = sorted(set(given or ()) - known)
            if bad:
                problems.append(f"{where}: {name} {bad} not in the catalogue ({', '.join(sorted(known))})")
        if policy.pinned_tier is not None and policy.pinned_tier not in tiers:
            problems.append(f"{where}: pinned_tier {policy.pinned_tier!r} is neither a tier nor a tier class of the "
                            f"catalogue ({', '.join(sorted(tiers))})")
    if problems:
        raise CatalogueError(f"solver settings against catalogue {cat.version}: " + "; ".join(problems))


def settings_catalogue(settings) -> Catalogue:
    """The catalogue `settings` name, checked against their solver settings: what every stage loads."""
    cat = load_catalogue(settings.solver.catalogue_path)
    check_solver_settings(cat, settings.solver)
    return cat
