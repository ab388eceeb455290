"""`dim audit`'s adapter: list the catalog and every location's bucket, run the pure audit (mover/audit.py) and,
with repair, remove what it calls waste.

Repair deletes an orphan only after re-reading its catalog entry (still not named there) and its HEAD (still
older than the grace period), with a delete conditional on the ETag it saw, so a copy written in between - a move
adding this very location - is not deleted. It never deletes a named replica or an object without an entry.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dim.config import Settings
from mover.audit import INTEGRITY, AuditReport, OpenUpload, StoredReplica, audit, repairs
from mover.catalog import PlacementCatalog
from mover.executor import resilient_catalog
from mover.s3ops import MoveError, ReplicaStore, SourceChanged
from schemas import AuditRecord, Placement

READ_WORKERS = 16


def _scope(bucket: str | None, prefix: str) -> str:
    if bucket is None:
        if prefix:
            raise ValueError("a prefix needs a bucket")
        return ""
    if not bucket or "/" in bucket:
        raise ValueError(f"not a bucket name: {bucket!r}")
    return f"{bucket}/{prefix}"


def _ordered(pool: ThreadPoolExecutor, fn, items, window: int):
    """`pool.map(fn, items)` with at most `window` results in flight: Executor.map submits every item at once."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass
class _ReadBack:
    """Replicas read back for their SHA-256 (--verify-checksums), by several workers at once. An archive replica
    is not read - that needs a restore, billed and hours long - but counted."""

    store: ReplicaStore
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    archive_unread: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, location: str, rkey: str, size: int) -> None:
        if self.store.is_archive(location):
            with self._lock:
                self.archive_unread += 1
            return
        self.digests[(location, rkey)] = self.store.read_sha256(location, rkey, size)


def _entries(catalog: PlacementCatalog, scope: str, stored: dict[str, dict[str, StoredReplica]],
             read_back: _ReadBack | None):
    """Every catalog entry of the scope, read in parallel and yielded in listing order, none kept. With
    `read_back`, each of its replicas stored at the catalogued size is read back first."""
    def get(rkey: str) -> Placement | None:
        bucket, _, key = rkey.partition("/")
        got = catalog.get(bucket, key)
        if got is None:  # deleted between the listing and the read
            return None
        if read_back is not None and not got[0].deleted:
            for r in got[0].replicas:
                s = stored.get(r.location, {}).get(rkey)  # read only: audit() takes this key out after us
                if s is not None and s.size == r.size:
                    read_back.read(r.location, rkey, s.size)
        return got[0]

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        for entry in _ordered(pool, get, catalog.keys(scope), 4 * READ_WORKERS):
            if entry is not None:
                yield entry


def run_audit(settings: Settings, bucket: str | None = None, prefix: str = "", verify_checksums: bool = False,
              grace_s: float | None = None, store: ReplicaStore | None = None,
              catalog: PlacementCatalog | None = None) -> AuditReport:
    """Audit the objects under `bucket`/`prefix` (everything without a bucket) in every catalogue location."""
    scope = _scope(bucket, prefix)
    store = store or ReplicaStore(settings)
    catalog = catalog or resilient_catalog(settings, store)
    started = time.time()
    stored: dict[str, dict[str, StoredReplica]] = {}
    uploads: list[OpenUpload] = []
    for loc in store.catalogue.locations:
        stored[loc.id] = {key: StoredReplica(loc.id, key, size, etag, modified)
                          for key, size, etag, modified in store.list_replicas(loc.id, scope)}
        uploads += [OpenUpload(loc.id, u["Key"], u["UploadId"], u["Initiated"].timestamp())
                    for u in store.open_uploads(loc.id, prefix=scope)]
    read_back = _ReadBack(store) if verify_checksums else None
    entries = _entries(catalog, scope, stored, read_back)
    digests = read_back.digests if read_back is not None else None
    m = settings.mover
    grace = m.audit_grace_s if grace_s is None else grace_s
    rf = settings.solver.replication_factor
    report = audit(entries, stored, rf, started, grace, uploads,
                   upload_grace_s=m.stale_upload_s if grace_s is None else grace_s, digests=digests)
    _confirm(report, store, catalog, rf, grace, verify_checksums)
    report.audit_id = f"audit-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{uuid.uuid4().hex[:8]}"
    report.scope, report.verified_checksums, report.finished_at = scope, verify_checksums, time.time()
    report.archive_replicas_unread = read_back.archive_unread if read_back is not None else 0
    return report


def publish(settings: Settings, record: AuditRecord) -> None:
    """The audit's record to the audits topic (analytics, the API, Grafana)."""
    from dim.kafka import produce, producer
    from schemas import topics

    prod = producer(settings)
    produce(prod, topics.AUDITS, record.model_dump_json().encode(), record.audit_id.encode())
    if prod.flush(10):
        raise RuntimeError(f"the audit record was not delivered to {topics.AUDITS}")


def _confirm(report: AuditReport, store: ReplicaStore, catalog: PlacementCatalog, rf: int, grace: float,
             verify_checksums: bool) -> None:
    """A second look at every object with an integrity finding. The listings and the catalog are read at
    different moments, so a move committing in between looks like a missing replica (named now, copied after
    its location was listed; or named when read, deleted before it was listed). Each suspect is re-audited
    from its entry read now and a HEAD of every location it names: only what is still wrong is reported."""
    suspects = sorted({f.key for f in report.findings if f.kind in INTEGRITY})
    if not suspects:
        return
    known = {loc.id for loc in store.catalogue.locations}
    confirmed = []
    for rkey in suspects:
        bucket, _, key = rkey.partition("/")
        got = catalog.get(bucket, key)
        if got is None:
            continue
        entry = got[0]
        stored: dict[str, dict[str, StoredReplica]] = {}
        read_back = _ReadBack(store) if verify_checksums else None
        for r in entry.replicas:
            info = store.head(r.location, rkey) if r.location in known else None
            if info is None:
                continue
            stored[r.location] = {rkey: StoredReplica(r.location, rkey, info.size, info.etag, info.last_modified)}
            if read_back is not None and info.size == r.size:
                read_back.read(r.location, rkey, info.size)
        again = audit([entry], stored, rf, time.time(), grace,
                      digests=read_back.digests if read_back is not None else None)
        confirmed += [f for f in again.findings if f.kind in INTEGRITY]
    report.findings[:] = [f for f in report.findings if f.kind not in INTEGRITY] + confirmed


def repair(settings: Settings, report: AuditReport, grace_s: float | None = None,
           store: ReplicaStore | None = None, catalog: PlacementCatalog | None = None) -> dict[str, int]:
    """Delete the report's orphans and abort its stale uploads, each re-checked first (module docstring)."""
    store = store or ReplicaStore(settings)
    catalog = catalog or resilient_catalog(settings, store)
    grace = settings.mover.audit_grace_s if grace_s is None else grace_s
    done = {"orphans_deleted": 0, "orphan_bytes_deleted": 0, "uploads_aborted": 0, "kept": 0, "errors": 0}
    for f in repairs(report):
        try:
            if f.kind == "stale_upload":
                done["uploads_aborted" if store.abort_upload(f.location, f.key, f.upload_id) else "errors"] += 1
                continue
            bucket, _, key = f.key.partition("/")
            got = catalog.get(bucket, key)
            info = store.head(f.location, f.key)
            if (got is None or (not got[0].deleted and f.location in got[0].locations) or info is None
                    or time.time() - info.last_modified < grace):
                done["kept"] += 1  # named, unknown, gone or rewritten since the listing
                continue
            store.delete_if_unchanged(f.location, f.key, info.etag)
            done["orphans_deleted"] += 1
            done["orphan_bytes_deleted"] += info.size
        except SourceChanged:
            done["kept"] += 1
        except MoveError:
            done["errors"] += 1
    return done
