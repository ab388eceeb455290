"""The estate audited against the placement catalog. Pure: mover/reconcile.py lists the stores and the catalog.

The mover's guarantee is that the catalog only names verified replicas and that an object never has fewer than
RF of them. The audit checks it from the outside, as an operator (or a test) would:

integrity findings (the guarantee is broken; `dim audit` exits 2):
  missing            the catalog names a replica that is not stored
  size_mismatch      the stored replica's size is not the catalogued one
  changed            its ETag is not the catalogued one: the bytes were replaced since they were verified
  checksum_mismatch  its SHA-256, read back (only with digests), is not the catalogued one
  under_replicated   the entry names fewer replicas than the replication factor
waste findings (storage paid for nothing; repairable once older than the grace period):
  orphan             stored where the object's entry does not name it (a rolled-back copy, a replica left by a
                     move cut short, an object deleted since)
  stale_upload       a multipart upload left open
and for information only, never repaired:
  uncatalogued       stored under a key no catalog entry has (not ours, or seeding in progress: replicas are
                     written before their entry)

A replica younger than the grace period is never called an orphan: it may be a copy whose commit is in flight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from mover.catalog import replica_key
from schemas import (
    AUDIT_INFO_KINDS,
    AUDIT_INTEGRITY_KINDS,
    AUDIT_WASTE_KINDS,
    MAX_AUDIT_FINDINGS,
    AuditFinding,
    AuditRecord,
    Placement,
    Replica,
)

INTEGRITY, WASTE, INFO = AUDIT_INTEGRITY_KINDS, AUDIT_WASTE_KINDS, AUDIT_INFO_KINDS


@dataclass(frozen=True, slots=True)
class StoredReplica:
    """One object as listed in a location's bucket."""

    location: str
    key: str  # the replica key, mover.catalog.replica_key(bucket, key)
    size: int
    etag: str
    last_modified: float


@dataclass(frozen=True, slots=True)
class OpenUpload:
    location: str
    key: str
    upload_id: str
    initiated: float


@dataclass
class AuditReport:
    entries: int = 0
    replicas: int = 0
    replica_bytes: int = 0
    stored_objects: int = 0
    unnamed_in_grace: int = 0  # unnamed replicas younger than the grace period (moves in flight, seeding)
    findings: list[AuditFinding] = field(default_factory=list)
    # What was audited and when (set by the adapter, carried into the record).
    audit_id: str = ""
    scope: str = ""
    grace_s: float = 0.0
    verified_checksums: bool = False
    archive_replicas_unread: int = 0  # with checksums verified: archive replicas not read back (need a restore)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        """No integrity finding: every catalogued replica is there, as catalogued."""
        return not any(f.kind in INTEGRITY for f in self.findings)

    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c.get(k, 0) for k in INTEGRITY + WASTE + INFO}

    def waste_bytes(self) -> int:
        return sum(f.size for f in self.findings if f.kind == "orphan")

    def record(self, max_findings: int = MAX_AUDIT_FINDINGS) -> AuditRecord:
        """The report as its contract (the JSON `dim audit` prints and publishes): integrity findings first."""
        ranked = sorted(self.findings, key=lambda f: (f.kind not in INTEGRITY, f.kind, f.location, f.key))
        return AuditRecord(
            audit_id=self.audit_id, started_at=self.started_at, finished_at=self.finished_at, scope=self.scope,
            grace_s=self.grace_s, verified_checksums=self.verified_checksums,
            archive_replicas_unread=self.archive_replicas_unread, ok=self.ok, entries=self.entries,
            replicas=self.replicas, replica_bytes=self.replica_bytes, stored_objects=self.stored_objects,
            unnamed_in_grace=self.unnamed_in_grace, orphan_bytes=self.waste_bytes(), counts=self.counts(),
            findings_total=len(self.findings), findings=ranked[:max_findings])


def audit(entries: Iterable[Placement], stored: MutableMapping[str, dict[str, StoredReplica]], rf: int,
          now: float, grace_s: float, uploads: Iterable[OpenUpload] = (), upload_grace_s: float | None = None,
          digests: Mapping[tuple[str, str], str] | None = None) -> AuditReport:
    """Compare the catalog `entries` with what every location stores (`stored[location][replica key]`, the
    complete listing of the audited scope) at wall time `now`. Unnamed replicas are orphans once `grace_s` old,
    open uploads stale once `upload_grace_s` old (default `grace_s`). `digests[(location, replica key)]`: SHA-256
    read back from the store, for the replicas whose bytes were checked (looked up when the entry comes).

    One pass over `entries`, none of them kept: every stored replica an entry accounts for (named, or an orphan of
    it) is taken out of `stored`, so memory is the listings', and what is left at the end has no entry."""
    report = AuditReport(grace_s=grace_s, started_at=now)
    report.stored_objects = sum(len(listing) for listing in stored.values())
    findings = report.findings
    for entry in entries:
        report.entries += 1
        rkey = replica_key(entry.bucket, entry.key)
        replicas = [] if entry.deleted else entry.replicas
        if not entry.deleted and len(replicas) < rf:
            findings.append(AuditFinding(kind="under_replicated", location=",".join(entry.locations), key=rkey,
                                         detail=f"{len(replicas)} replicas named, replication factor {rf}"))
        for r in replicas:
            report.replicas += 1
            report.replica_bytes += r.size
            got = stored.get(r.location, {}).pop(rkey, None)
            problem = _replica_problem(r, rkey, got, digests)
            if problem is not None:
                findings.append(problem)
        named = {r.location for r in replicas}
        for location, listing in stored.items():  # stored where the entry does not name it
            got = listing.pop(rkey, None) if location not in named else None
            if got is None:
                continue
            age = max(0.0, now - got.last_modified)
            if age < grace_s:
                report.unnamed_in_grace += 1
            else:
                findings.append(AuditFinding(kind="orphan", location=location, key=rkey, size=got.size, age_s=age,
                                             detail="not named by its catalog entry"))
    for location, listing in stored.items():
        for rkey, got in listing.items():
            findings.append(AuditFinding(kind="uncatalogued", location=location, key=rkey, size=got.size,
                                         age_s=max(0.0, now - got.last_modified), detail="no catalog entry"))
    upload_grace_s = grace_s if upload_grace_s is None else upload_grace_s
    for up in uploads:
        age = max(0.0, now - up.initiated)
        if age >= upload_grace_s:
            findings.append(AuditFinding(kind="stale_upload", location=up.location, key=up.key, age_s=age,
                                         detail="multipart upload left open", upload_id=up.upload_id))
    return report


def _replica_problem(r: Replica, rkey: str, got: StoredReplica | None,
                     digests: Mapping[tuple[str, str], str] | None) -> AuditFinding | None:
    """What is wrong with the catalogued replica `r`, stored as `got` (None: not stored), if anything."""
    if got is None:
        return AuditFinding(kind="missing", location=r.location, key=rkey, size=r.size,
                            detail="catalogued, not stored")
    if got.size != r.size:
        return AuditFinding(kind="size_mismatch", location=r.location, key=rkey, size=got.size,
                            detail=f"stored {got.size} bytes, catalogued {r.size}")
    if r.etag and got.etag != r.etag:
        return AuditFinding(kind="changed", location=r.location, key=rkey, size=got.size,
                            detail=f"stored ETag {got.etag}, catalogued {r.etag}")
    digest = digests.get((r.location, rkey)) if digests is not None else None
    if digest is not None and r.sha256 and digest != r.sha256:
        return AuditFinding(kind="checksum_mismatch", location=r.location, key=rkey, size=got.size,
                            detail=f"stored sha256 {digest}, catalogued {r.sha256}")
    return None


def repairs(report: AuditReport) -> list[AuditFinding]:
    """What a repair may remove: orphans and stale uploads (both older than the grace period by construction).
    Never a named replica, never an uncatalogued object."""
    return [f for f in report.findings if f.kind in WASTE]
