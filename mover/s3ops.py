"""The S3 adapter of the mover: copy a replica between location buckets, verify it, delete it.

Every request goes through `ReplicaStore.call`: per-endpoint concurrency slots, a bandwidth token bucket, a
circuit breaker, and retries with exponential backoff and full jitter on throttling / transient errors
(boto3's own retries are off). Permanent errors (403, 404, validation) raise `PermanentError` at once.

Copy paths:
* source and target on the same endpoint: server-side CopyObject (UploadPartCopy above a size threshold),
  conditional on the source ETag so an object that changes under us fails as `SourceChanged`;
* different endpoints: ranged GETs (If-Match the source ETag) streamed into a multipart upload, several parts in
  flight, with a process-wide cap on buffered bytes; SHA-256 and the multipart ETag are computed on the way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import ClientError

from dim.config import S3_MAX_PART, S3_MIN_PART, Settings, s3_client
from mover.batching import KeyBatcher
from mover.limits import EndpointGuard
from mover.retry import ErrorKind, backoff_s, classify, error_code, error_reason
from mover.s3lite import LiteS3Client
from solver.catalogue import settings_catalogue

log = logging.getLogger(__name__)

SHA256_META = "sha256"  # x-amz-meta-sha256 on every replica we write
MIN_PART_SIZE = S3_MIN_PART  # S3 (and SeaweedFS) refuse smaller parts except the last
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
MiB = 1024 * 1024


def part_step(size: int, configured: int) -> int:
    """The part size for an object of `size` bytes: the configured one, or - for an object that would need more
    than MAX_PARTS of those - the smallest whole MiB that fits it in MAX_PARTS (a 700 GiB object asked for part
    11,200 and could never be moved)."""
    if size <= configured * MAX_PARTS:
        return configured
    need = -(-size // MAX_PARTS)
    step = -(-need // MiB) * MiB
    if step > S3_MAX_PART:  # above 10,000 x 5 GiB (S3's own object limit is 5 TiB)
        raise PermanentError(f"object of {size} bytes: more than S3 can hold ({MAX_PARTS} parts of 5 GiB)")
    return step


class MoveError(Exception):
    """A step of a move could not be done; `reason` goes into the MoveEvent."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PermanentError(MoveError):
    """`code`: the S3 error code ("AccessDenied", "NotImplemented", ...) or "" when there was none."""

    def __init__(self, reason: str, code: str = ""):
        super().__init__(reason)
        self.code = code


class RetriesExhausted(MoveError):
    pass


class SourceChanged(MoveError):
    """The source object is not the one we started copying (precondition failed): file_growing."""


class VerificationFailed(MoveError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    last_modified: float
    sha256: str = ""
    storage_class: str = ""
    restore: str | None = None


@dataclass(frozen=True)
class CopyResult:
    size: int
    etag: str
    sha256: str  # computed from the bytes streamed; "" for a server-side copy (verify reads it back)
    server_side: bool
    parts: int = 1
    single_put: bool = False  # one PUT whose answered ETag was checked against the MD5 of the bytes sent


def _etag(value: str) -> str:
    return value.strip('"')


_M_MMAP_THRESHOLD = -3


def pin_mmap_threshold(nbytes: int = 1024 * 1024) -> bool:
    """Serve every buffer above `nbytes` from its own mmap, returned to the OS when freed.

    glibc raises its mmap threshold each time such a buffer is freed, after which part-sized buffers come from
    per-thread heap arenas that keep their pages: with a dozen threads that tripled the mover's resident memory
    over its buffer budget. Setting the threshold explicitly turns that adjustment off (glibc only; a no-op
    elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the parts' md5 digests, '-', part count."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def listed_objects(request: Callable[[dict], dict]):
    """Every object of a ListObjectsV2 listing, page by page: `request(continuation)` sends one page's request
    with `continuation` (empty for the first page) among its arguments."""
    continuation: dict = {}
    while True:
        resp = request(continuation)
        yield from resp.get("Contents", []) or []
        if not resp.get("IsTruncated"):
            return
        continuation = {"ContinuationToken": resp["NextContinuationToken"]}


class ReplicaStore:
    def __init__(self, settings: Settings, catalogue=None, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.m = settings.mover
        self.catalogue = catalogue or settings_catalogue(settings)
        self.sleep = sleep
        pin_mmap_threshold()
        self.part_size = max(MIN_PART_SIZE, self.m.part_size)
        self.copy_part_size = max(MIN_PART_SIZE, self.m.copy_part_size)
        self._clients: dict[str, object] = {}
        self._guards: dict[str, EndpointGuard] = {}
        self._delete_batchers: dict[tuple[str, str], KeyBatcher] = {}
        self._lock = threading.Lock()
        # Bounded memory: a streamed copy may only hold this many parts in memory, across all moves.
        self.buffer_slots = threading.BoundedSemaphore(max(1, self.m.max_buffer_bytes // self.part_size))
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------- topology

    def endpoint(self, location: str) -> str:
        eps = self.m.endpoints
        return eps.get(location) or eps.get(location.split(":")[0]) or self.settings.s3.endpoint

    def bucket(self, location: str) -> str:
        return self.catalogue.location(location).bucket

    def is_archive(self, location: str) -> bool:
        return self.catalogue.location(location).archive

    def same_endpoint(self, a: str, b: str) -> bool:
        return self.endpoint(a) == self.endpoint(b)

    def client(self, endpoint: str):
        with self._lock:
            c = self._clients.get(endpoint)
            if c is None:
                pool = max(self.m.concurrency * (self.m.part_concurrency + 1), self.m.small_concurrency) + 8
                c = s3_client(self.settings, endpoint=endpoint, attempts=1, max_pool_connections=pool,
                              connect_timeout=5, read_timeout=self.m.read_timeout_s)
                if self.m.lite_client:
                    c = LiteS3Client(endpoint, self.settings.s3.access_key,
                                     self.settings.s3.secret_key.get_secret_value(), self.settings.s3.region,
                                     fallback=c, max_connections=pool, read_timeout=self.m.read_timeout_s)
                self._clients[endpoint] = c
            return c

    def guard(self, endpoint: str) -> EndpointGuard:
        with self._lock:
            g = self._guards.get(endpoint)
            if g is None:
                g = EndpointGuard(self.m.endpoint_concurrency, self.m.bandwidth_bytes_s,
                                  self.m.breaker_threshold, self.m.breaker_cooldown_s)
                self._guards[endpoint] = g
            return g

    # ------------------------------------------------------------------------------------- resilient call

    def call(self, endpoint: str, what: str, fn: Callable[[object], object], nbytes: int = 0):
        """Run `fn(client)` against `endpoint` with limits, breaker and retries. Precondition failures raise
        SourceChanged, permanent errors PermanentError, exhausted retries RetriesExhausted."""
        guard = self.guard(endpoint)
        client = self.client(endpoint)
        last: BaseException | None = None
        for attempt in range(self.m.max_attempts):
            while (wait := guard.breaker.wait_s()) > 0:
                self.stats["breaker_waits"] += 1
                self.sleep(wait)
            with guard.slots:
                self.stats["requests"] += 1
                if nbytes:
                    guard.bandwidth.acquire(nbytes)
                try:
                    result = fn(client)
                except Exception as exc:
                    kind = classify(exc)
                    if kind is ErrorKind.RETRY:
                        guard.breaker.failure()
                        last = exc
                        self.stats["retries"] += 1
                    else:
                        guard.breaker.success()  # the endpoint answered sensibly
                        if kind is ErrorKind.PRECONDITION:
                            raise SourceChanged(f"{what}: {error_reason(exc)}") from exc
                        raise PermanentError(f"{what}: {error_reason(exc)}", error_code(exc)) from exc
                else:
                    guard.breaker.success()
                    return result
            self.sleep(backoff_s(attempt, self.m.backoff_base_s, self.m.backoff_max_s))
        raise RetriesExhausted(f"{what}: gave up after {self.m.max_attempts} attempts: {error_reason(last)}")

    # ------------------------------------------------------------------------------------- single objects

    def head(self, location: str, key: str) -> ObjectInfo | None:
        bucket = self.bucket(location)

        def fn(c):
            try:
                return c.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

        h = self.call(self.endpoint(location), f"HEAD {bucket}/{key}", fn)
        if h is None:
            return None
        return ObjectInfo(size=h["ContentLength"], etag=_etag(h["ETag"]), last_modified=h["LastModified"].timestamp(),
                          sha256=h.get("Metadata", {}).get(SHA256_META, ""), storage_class=h.get("StorageClass", ""),
                          restore=h.get("Restore"))

    def put(self, location: str, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        """Write a whole replica (seeding); the SHA-256 goes into the object's metadata."""
        bucket = self.bucket(location)
        sha = sha256 or hashlib.sha256(data).hexdigest()
        resp = self.call(self.endpoint(location), f"PUT {bucket}/{key}",
                         lambda c: c.put_object(Bucket=bucket, Key=key, Body=data, Metadata={SHA256_META: sha}),
                         nbytes=len(data))
        etag = _etag(resp["ETag"])
        if etag != hashlib.md5(data).hexdigest():
            raise VerificationFailed(f"PUT {bucket}/{key}: ETag {etag} is not the MD5 of the bytes sent")
        return ObjectInfo(size=len(data), etag=etag, last_modified=time.time(), sha256=sha)

    def delete(self, location: str, key: str, batched: bool = False) -> None:
        """Delete one replica (absent counts as deleted). `batched`: share one DeleteObjects request with the
        other moves deleting in the same bucket right now (mover/batching.py); returns when this key is gone."""
        bucket = self.bucket(location)
        if batched and self.m.batch_deletes:
            ident = (self.endpoint(location), bucket)
            with self._lock:
                batcher = self._delete_batchers.get(ident)
                if batcher is None:
                    batcher = self._delete_batchers[ident] = KeyBatcher(
                        lambda keys: self._delete_keys(location, keys))
            batcher.run(key)
            return
        self.call(self.endpoint(location), f"DELETE {bucket}/{key}",
                  lambda c: c.delete_object(Bucket=bucket, Key=key))

    def delete_if_unchanged(self, location: str, key: str, etag: str) -> None:
        """Delete one replica only if it still has `etag` (S3 conditional delete; a store that ignores the
        condition deletes unconditionally). PreconditionFailed if it was rewritten since it was listed."""
        bucket = self.bucket(location)
        self.call(self.endpoint(location), f"DELETE {bucket}/{key} if {etag}",
                  lambda c: c.delete_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"'))

    def _delete_keys(self, location: str, keys: list[str]) -> dict[str, BaseException | None]:
        if len(keys) == 1:  # nobody to share with: the plain request
            self.delete(location, keys[0])
            return {}
        bucket = self.bucket(location)
        resp = self.call(self.endpoint(location), f"DELETE-OBJECTS {bucket} ({len(keys)} keys)",
                         lambda c: c.delete_objects(Bucket=bucket, Delete={
                             "Objects": [{"Key": k} for k in keys], "Quiet": True}))
        self.stats["delete_batches"] += 1
        self.stats["batched_deletes"] += len(keys)
        errors: dict[str, BaseException | None] = {}
        for err in resp.get("Errors") or []:
            # A key the batch could not delete gets a request of its own, with the usual retries and reasons.
            try:
                self.delete(location, err["Key"])
            except MoveError as exc:
                errors[err["Key"]] = exc
        return errors

    def read_range(self, location: str, key: str, start: int, end: int, if_match: str | None = None) -> bytes:
        """Bytes [start, end] (inclusive) read completely; a short or cut body is retried."""
        bucket = self.bucket(location)
        want = end - start + 1

        def fn(c):
            kw = {"IfMatch": f'"{if_match}"'} if if_match else {}
            body = c.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", **kw)["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if len(data) != want:
                raise ConnectionError(f"short read: {len(data)} of {want} bytes")
            return data

        return self.call(self.endpoint(location), f"GET {bucket}/{key} [{start}-{end}]", fn, nbytes=want)

    def read_sha256(self, location: str, key: str, size: int,
                    progress: Callable[[int], None] | None = None) -> str:
        """SHA-256 of a replica as stored, read back in parts (verification of a server-side copy)."""
        h = hashlib.sha256()
        step = self.part_size
        for start in range(0, size, step):
            end = min(size, start + step) - 1
            with self.buffer_slots:
                h.update(self.read_range(location, key, start, end))
            if progress:
                progress(end - start + 1)
        return h.hexdigest()

    # ------------------------------------------------------------------------------------- copy

    def copy(self, src_loc: str, dst_loc: str, key: str, source: ObjectInfo, sha256: str,
             progress: Callable[[int], None] | None = None) -> CopyResult:
        """Copy replica `key` from `src_loc` to `dst_loc`. `source` is the HEAD taken before the copy (its ETag
        guards every read); `sha256` is the expected digest, written into the target's metadata."""
        if self.same_endpoint(src_loc, dst_loc):
            if source.size > self.m.multipart_copy_threshold:
                return self._multipart_server_copy(src_loc, dst_loc, key, source, sha256, progress)
            return self._server_copy(src_loc, dst_loc, key, source, progress)
        if source.size <= self.part_size:
            return self._stream_small(src_loc, dst_loc, key, source, sha256, progress)
        return self._stream_multipart(src_loc, dst_loc, key, source, sha256, progress)

    def single_request_copy(self, src_loc: str, dst_loc: str, size: int) -> bool:
        """Whether a copy is one GET + one PUT (small, across endpoints)."""
        return not self.same_endpoint(src_loc, dst_loc) and 0 < size <= self.part_size

    def copy_small(self, src_loc: str, dst_loc: str, key: str, etag: str, sha256: str,
                   admit: Callable[[object], None], progress: Callable[[int], None] | None = None) -> CopyResult:
        """GET the whole source If-Match `etag`, let `admit(SourceView)` veto it (growing window), PUT it.
        The digest is computed from the bytes read; the PUT's ETag must be their MD5."""
        from mover.protocol import SourceView

        sb, db = self.bucket(src_loc), self.bucket(dst_loc)

        def get(c):
            resp = c.get_object(Bucket=sb, Key=key, IfMatch=f'"{etag}"')
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if len(data) != resp["ContentLength"]:
                raise ConnectionError(f"short read: {len(data)} of {resp['ContentLength']} bytes")
            return data, SourceView(len(data), _etag(resp["ETag"]), resp["LastModified"].timestamp())

        with self.buffer_slots:
            data, view = self.call(self.endpoint(src_loc), f"GET {sb}/{key}", get)
            admit(view)
            digest = hashlib.sha256(data).hexdigest()
            md5 = hashlib.md5(data).hexdigest()
            resp = self.call(self.endpoint(dst_loc), f"PUT {db}/{key}", lambda c: c.put_object(
                Bucket=db, Key=key, Body=data, Metadata={SHA256_META: sha256}), nbytes=len(data))
        if _etag(resp["ETag"]) != md5:
            raise VerificationFailed(f"PUT {db}/{key}: stored ETag {resp['ETag']} != MD5 of the bytes sent {md5}")
        self.stats["streamed_copies"] += 1
        if progress:
            progress(len(data))
        return CopyResult(len(data), md5, digest, server_side=False, single_put=True)

    def _server_copy(self, src_loc, dst_loc, key, source, progress) -> CopyResult:
        sb, db = self.bucket(src_loc), self.bucket(dst_loc)
        resp = self.call(self.endpoint(dst_loc), f"COPY {sb}/{key} -> {db}",
                         lambda c: c.copy_object(Bucket=db, Key=key, CopySource={"Bucket": sb, "Key": key},
                                                 CopySourceIfMatch=f'"{source.etag}"'))
        self.stats["server_copies"] += 1
        if progress:
            progress(source.size)
        return CopyResult(source.size, _etag(resp["CopyObjectResult"]["ETag"]), "", server_side=True)

    def _multipart_server_copy(self, src_loc, dst_loc, key, source, sha256, progress) -> CopyResult:
        sb, db = self.bucket(src_loc), self.bucket(dst_loc)
        ep = self.endpoint(dst_loc)
        upload = self.call(ep, f"CREATE-MPU {db}/{key}", lambda c: c.create_multipart_upload(
            Bucket=db, Key=key, Metadata={SHA256_META: sha256}))["UploadId"]
        step = part_step(source.size, self.copy_part_size)
        ranges = [(i + 1, s, min(source.size, s + step) - 1) for i, s in enumerate(range(0, source.size, step))]

        def part(n, s, e):
            r = self.call(ep, f"UPLOAD-PART-COPY {db}/{key} #{n}", lambda c: c.upload_part_copy(
                Bucket=db, Key=key, UploadId=upload, PartNumber=n, CopySource={"Bucket": sb, "Key": key},
                CopySourceRange=f"bytes={s}-{e}", CopySourceIfMatch=f'"{source.etag}"'))
            if progress:
                progress(e - s + 1)
            return {"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(self.m.part_concurrency) as pool:
                parts = list(pool.map(lambda r: part(*r), ranges))
            etag = self._complete(dst_loc, key, upload, parts, source.size)
        except BaseException:
            self._abort_all(dst_loc, key, upload)
            raise
        self.stats["server_copies"] += 1
        return CopyResult(source.size, etag, "", server_side=True, parts=len(parts))

    def _stream_small(self, src_loc, dst_loc, key, source, sha256, progress) -> CopyResult:
        with self.buffer_slots:
            data = self.read_range(src_loc, key, 0, source.size - 1, if_match=source.etag) if source.size else b""
            digest = hashlib.sha256(data).hexdigest()
            db = self.bucket(dst_loc)
            resp = self.call(self.endpoint(dst_loc), f"PUT {db}/{key}", lambda c: c.put_object(
                Bucket=db, Key=key, Body=data, Metadata={SHA256_META: sha256}), nbytes=len(data))
            md5 = hashlib.md5(data).hexdigest()
        if _etag(resp["ETag"]) != md5:
            raise VerificationFailed(f"PUT {db}/{key}: stored ETag {resp['ETag']} != MD5 of the bytes sent {md5}")
        self.stats["streamed_copies"] += 1
        if progress:
            progress(source.size)
        return CopyResult(source.size, md5, digest, server_side=False, single_put=True)

    def _stream_multipart(self, src_loc, dst_loc, key, source, sha256, progress) -> CopyResult:
        db = self.bucket(dst_loc)
        ep = self.endpoint(dst_loc)
        step = part_step(source.size, self.part_size)
        ranges = [(i + 1, s, min(source.size, s + step) - 1) for i, s in enumerate(range(0, source.size, step))]
        upload = self.call(ep, f"CREATE-MPU {db}/{key}", lambda c: c.create_multipart_upload(
            Bucket=db, Key=key, Metadata={SHA256_META: sha256}))["UploadId"]
        # A part larger than a buffer slot (objects above MAX_PARTS x part_size): one at a time, so the memory
        # bound is the buffer budget plus one such part.
        window = max(1, self.m.part_concurrency) if step == self.part_size else 1
        sha = hashlib.sha256()
        md5s: list[bytes] = []
        parts: list[dict] = []
        reads: dict[int, Future] = {}
        uploads: list[Future] = []

        def upload_part(n: int, data: bytes) -> dict:
            try:
                r = self.call(ep, f"UPLOAD-PART {db}/{key} #{n}", lambda c: c.upload_part(
                    Bucket=db, Key=key, UploadId=upload, PartNumber=n, Body=data), nbytes=len(data))
            finally:
                self.buffer_slots.release()
            if progress:
                progress(len(data))
            return {"PartNumber": n, "ETag": r["ETag"]}

        def read_part(s: int, e: int) -> bytes:
            try:
                return self.read_range(src_loc, key, s, e, if_match=source.etag)
            except BaseException:
                self.buffer_slots.release()
                raise

        pool = ThreadPoolExecutor(2 * window)
        try:
            submitted = 0
            for i, (n, s, e) in enumerate(ranges):
                # Keep up to `window` reads ahead; each holds one buffer slot until its upload is done. Only the
                # read we need next may wait for a slot: then this copy holds nothing but uploads in flight,
                # which finish on their own. Waiting for read-ahead slots while holding unconsumed reads
                # would deadlock concurrent copies that each hold part of the budget.
                while submitted < len(ranges) and submitted < i + window:
                    if not self.buffer_slots.acquire(blocking=submitted == i):
                        break
                    _, ss, ee = ranges[submitted]
                    reads[submitted] = pool.submit(read_part, ss, ee)
                    submitted += 1
                data = reads.pop(i).result()
                sha.update(data)  # in order: the digest of the whole object
                md5s.append(hashlib.md5(data).digest())
                uploads.append(pool.submit(upload_part, n, data))
                del data
                for f in uploads:  # fail fast if an upload already failed
                    if f.done() and f.exception():
                        raise f.exception()
            parts = [f.result() for f in uploads]
            etag = self._complete(dst_loc, key, upload, parts, source.size, multipart_etag(md5s))
        except BaseException:
            # Give back the buffer slots of parts that will never be uploaded, then abort the upload.
            for f in [*reads.values(), *uploads]:
                if f.cancel():
                    self.buffer_slots.release()
            pool.shutdown(wait=True)
            for f in reads.values():
                if not f.cancelled() and f.exception() is None:
                    self.buffer_slots.release()
            self._abort_all(dst_loc, key, upload)
            raise
        finally:
            pool.shutdown(wait=True)
        expected = multipart_etag(md5s)
        if etag != expected:
            raise VerificationFailed(f"{db}/{key}: multipart ETag {etag} != {expected} of the parts sent")
        self.stats["streamed_copies"] += 1
        return CopyResult(source.size, expected, sha.hexdigest(), server_side=False, parts=len(parts))

    # ------------------------------------------------------------------------------------- multipart hygiene

    def _complete(self, location: str, key: str, upload: str, parts: list[dict], size: int,
                  expected_etag: str | None = None) -> str:
        """Complete an upload; returns the object's ETag. Then abort any other upload of the key: a
        CreateMultipartUpload whose answer was lost (and retried) leaves one behind that nobody knows."""
        bucket = self.bucket(location)
        try:
            resp = self.call(self.endpoint(location), f"COMPLETE-MPU {bucket}/{key}",
                             lambda c: c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                                                   MultipartUpload={"Parts": parts}))
            etag = _etag(resp["ETag"])
        except PermanentError as exc:
            # A retried complete whose first answer was lost finds the upload gone because it completed.
            if "NoSuchUpload" not in exc.reason:
                raise
            info = self.head(location, key)
            if info is None or info.size != size or (expected_etag and info.etag != expected_etag):
                raise
            etag = info.etag
        self._sweep_uploads(location, key)
        return etag

    def _abort_all(self, location: str, key: str, upload: str) -> None:
        self.abort_upload(location, key, upload)
        self._sweep_uploads(location, key)

    def _sweep_uploads(self, location: str, key: str) -> None:
        try:
            n = self.abort_uploads(location, key)
        except MoveError as exc:  # recovery's sweep will find them again
            log.warning("could not list uploads of %s: %s", key, exc.reason)
            return
        self.stats["orphan_uploads_aborted"] += n

    def abort_upload(self, location: str, key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False (logged) if the store would not: the next sweep finds it again."""
        bucket = self.bucket(location)
        try:
            self.call(self.endpoint(location), f"ABORT-MPU {bucket}/{key}", lambda c: c.abort_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id))
        except MoveError as exc:
            log.warning("could not abort upload %s of %s/%s: %s", upload_id, bucket, key, exc.reason)
            return False
        return True

    def open_uploads(self, location: str, prefix: str = "") -> list[dict]:
        bucket = self.bucket(location)
        out: list[dict] = []
        marker: dict = {}
        while True:
            resp = self.call(self.endpoint(location), f"LIST-MPU {bucket}", lambda c, mk=marker: c.list_multipart_uploads(
                Bucket=bucket, Prefix=prefix, **mk))
            out.extend(resp.get("Uploads", []) or [])
            if not resp.get("IsTruncated"):
                return out
            marker = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}

    def list_replicas(self, location: str, prefix: str = ""):
        """(key, size, etag, last modified) of every object under `prefix` in the location's bucket, page by page."""
        bucket = self.bucket(location)
        for item in listed_objects(lambda t: self.call(self.endpoint(location), f"LIST {bucket}/{prefix}",
                                                       lambda c: c.list_objects_v2(Bucket=bucket, Prefix=prefix, **t))):
            yield item["Key"], item["Size"], _etag(item["ETag"]), item["LastModified"].timestamp()

    def abort_uploads(self, location: str, key: str) -> int:
        """Abort every open multipart upload of exactly `key` (the owner of the object is the only writer)."""
        n = 0
        for up in self.open_uploads(location, prefix=key):
            if up["Key"] == key:
                self.abort_upload(location, key, up["UploadId"])
                n += 1
        return n

    def abort_stale_uploads(self, older_than_s: float, locations: list[str] | None = None) -> int:
        """Abort uploads started more than `older_than_s` ago in every location bucket (crash leftovers)."""
        n = 0
        now = time.time()
        seen: set[tuple[str, str]] = set()
        for loc in locations or [l.id for l in self.catalogue.locations]:
            ident = (self.endpoint(loc), self.bucket(loc))
            if ident in seen:
                continue
            seen.add(ident)
            for up in self.open_uploads(loc):
                if now - up["Initiated"].timestamp() >= older_than_s:
                    self.abort_upload(loc, up["Key"], up["UploadId"])
                    n += 1
        return n
