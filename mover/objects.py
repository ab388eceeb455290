"""Creating workload objects: real bytes in their initial locations plus the catalog entry (version 1).

The producers (`dim replay`, `dim generate`) call these so the mover has real data to move. Replicas are
written first and the catalog entry last (If-None-Match), so the catalog never names a replica that is not
there. An object that already has a catalog entry is left as it is (re-running a replay is harmless).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dim.config import Settings
from mover.catalog import CatalogConflict, PlacementCatalog, new_placement, replica_key
from mover.executor import resilient_catalog
from mover.s3ops import ReplicaStore
from schemas import Placement, Replica


@dataclass
class Seeder:
    """Shared clients for seeding many objects (boto3 clients are thread-safe)."""

    settings: Settings
    store: ReplicaStore
    catalog: PlacementCatalog

    @classmethod
    def open(cls, settings: Settings, catalog: PlacementCatalog | None = None) -> Seeder:
        store = ReplicaStore(settings)
        return cls(settings, store, catalog or resilient_catalog(settings, store))

    def seed(self, bucket: str, key: str, data: bytes, locations: list[str]) -> Placement:
        existing = self.catalog.get(bucket, key)
        if existing is not None:
            return existing[0]
        if len(set(locations)) != len(locations) or not locations:
            raise ValueError(f"locations must be distinct and non-empty: {locations}")
        sha = hashlib.sha256(data).hexdigest()
        rkey = replica_key(bucket, key)
        now = time.time()
        replicas = []
        for loc in locations:
            info = self.store.put(loc, rkey, data, sha256=sha)
            replicas.append(Replica(location=loc, etag=info.etag, sha256=sha, size=len(data), created_at=now,
                                    verified_at=now))
        placement = new_placement(bucket, key, replicas, now)
        try:
            self.catalog.create(placement)
        except CatalogConflict:  # someone seeded it concurrently: theirs stands (same bytes by construction)
            got = self.catalog.get(bucket, key)
            return got[0] if got else placement
        return placement


def seed_object(settings: Settings, bucket: str, key: str, data: bytes, locations: list[str],
                catalog: PlacementCatalog | None = None) -> Placement:
    """Write `data` as a replica in each location's bucket and create the catalog entry (version 1)."""
    return Seeder.open(settings, catalog).seed(bucket, key, data, locations)


def seed_objects(settings: Settings, items: list[tuple[str, str, bytes]], locations: list[str],
                 concurrency: int = 16, catalog: PlacementCatalog | None = None) -> list[Placement]:
    """`seed_object` for many (bucket, key, data) items, concurrently, with shared clients; results in order."""
    seeder = Seeder.open(settings, catalog)
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        return list(pool.map(lambda it: seeder.seed(it[0], it[1], it[2], locations), items))
