"""The placement catalog: one JSON document per object in the catalog bucket, changed only by compare-and-set.

S3 conditional writes make the commit atomic without another database: a new entry is created with
`If-None-Match: *`, an update carries `If-Match: <etag of the version we read>`. A writer that lost a race gets
`PreconditionFailed` (CatalogConflict) and must re-read. The catalog only ever names verified replicas.
"""

from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError

from dim.config import Settings, s3_client
from mover.s3ops import listed_objects
from schemas import Placement, Replica


class CatalogConflict(RuntimeError):
    """The entry changed since it was read (or already exists on create)."""


def replica_key(bucket: str, key: str) -> str:
    """Where a replica of (bucket, key) lives inside a location's bucket."""
    return f"{bucket}/{key}"


class PlacementCatalog:
    """`call(what, fn)` runs `fn(client)`; the mover passes its resilient caller (retries, breaker), which must
    raise CatalogConflict for a failed precondition. Default: call the client directly."""

    def __init__(self, settings: Settings, client=None, read_attempts: int = 5, call=None):
        self.bucket = settings.s3.catalog_bucket
        self.s3 = client or s3_client(settings)
        self.read_attempts = read_attempts
        self._call = call or (lambda what, fn: fn(self.s3))

    def get(self, bucket: str, key: str) -> tuple[Placement, str] | None:
        """The entry and its ETag (the CAS token), or None."""
        rkey = replica_key(bucket, key)

        def fetch(c):
            try:
                obj = c.get_object(Bucket=self.bucket, Key=rkey)
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise
            return obj["Body"].read(), obj["ETag"]

        for attempt in range(self.read_attempts):
            try:
                got = self._call(f"CATALOG GET {rkey}", fetch)
            except (BotoCoreError, OSError):
                # botocore retries the request, not the reading of its body: a cut body is retried here.
                if attempt + 1 == self.read_attempts:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            if got is None:
                return None
            return Placement.model_validate_json(got[0]), got[1]
        raise AssertionError("unreachable")

    def create(self, placement: Placement) -> str:
        return self._put(placement, IfNoneMatch="*")

    def compare_and_set(self, placement: Placement, etag: str) -> str:
        """Write `placement` only if the stored entry still has `etag`; returns the new ETag."""
        return self._put(placement, IfMatch=etag)

    def _put(self, placement: Placement, **condition) -> str:
        rkey = replica_key(placement.bucket, placement.key)
        body = placement.model_dump_json().encode()
        try:
            resp = self._call(f"CATALOG PUT {rkey}", lambda c: c.put_object(
                Bucket=self.bucket, Key=rkey, Body=body, ContentType="application/json", **condition))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise CatalogConflict(f"{placement.bucket}/{placement.key}: catalog entry changed") from exc
            raise
        return resp["ETag"]

    def update(self, bucket: str, key: str, change) -> Placement:
        """Read-modify-write with CAS, retried on conflict: `change(old) -> new` (old may be None)."""
        for _ in range(20):
            current = self.get(bucket, key)
            old, etag = current if current else (None, None)
            new = change(old)
            try:
                if etag is None:
                    self.create(new)
                else:
                    self.compare_and_set(new, etag)
                return new
            except CatalogConflict:
                time.sleep(0.01)
        raise CatalogConflict(f"{bucket}/{key}: too many concurrent updates")

    def keys(self, prefix: str = ""):
        """The replica keys ("bucket/key") of every entry under `prefix`, in key order, page by page."""
        for item in listed_objects(lambda t: self._call(f"CATALOG LIST {prefix}", lambda c: c.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, **t))):
            yield item["Key"]


def new_placement(bucket: str, key: str, replicas: list[Replica], now: float | None = None) -> Placement:
    return Placement(bucket=bucket, key=key, version=1, replicas=replicas, updated_at=now or time.time())
