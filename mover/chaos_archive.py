"""An archive tier for the chaos proxy: objects in the configured buckets behave like Glacier/Archive objects.

SeaweedFS has no archive tier, so the proxy models one in front of it, with the S3 semantics the mover relies
on (mover/archive.py):

* a GET of an archived object that was not restored is refused: 403 `InvalidObjectState`;
* `POST ?restore` starts a restore (202); asked again while it runs: 409 `RestoreAlreadyInProgress`; once
  restored: 200;
* a HEAD shows `x-amz-storage-class: GLACIER` and, once a restore was requested, `x-amz-restore:
  ongoing-request="true"` for the first `restore_polls` HEADs, then `ongoing-request="false", expiry-date=...`;
* a PUT (or a completed multipart upload) writes a new, archived object; a DELETE forgets it.

Pure state, no I/O: the proxy asks it what to answer and forwards everything else to SeaweedFS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Verdict:
    """What the proxy does with one request: answer it itself (`status`, `code`), or forward it and add
    `headers` to the answer."""

    status: int | None = None
    code: str = ""
    headers: tuple[tuple[str, str], ...] = ()


FORWARD = Verdict()


def _target(path: str) -> tuple[str, str, dict[str, list[str]]]:
    parts = urlsplit(path)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key), parse_qs(parts.query, keep_blank_values=True)


class ArchiveModel:
    """Restore state per (bucket, key) of the archive buckets; thread-safe."""

    def __init__(self, buckets: list[str], restore_polls: int):
        self.buckets = frozenset(buckets)
        self.restore_polls = max(0, restore_polls)
        self._polls_left: dict[tuple[str, str], int] = {}  # restore requested; HEADs until it completes
        self._lock = threading.Lock()

    def decide(self, method: str, path: str) -> Verdict:
        bucket, key, query = _target(path)
        if bucket not in self.buckets or not key:
            return FORWARD
        obj = (bucket, key)
        with self._lock:
            left = self._polls_left.get(obj)
            if method == "POST" and "restore" in query:
                if left is None:
                    self._polls_left[obj] = self.restore_polls
                    return Verdict(202)
                return Verdict(409, "RestoreAlreadyInProgress") if left > 0 else Verdict(200)
            if method == "HEAD":
                headers = [("x-amz-storage-class", "GLACIER")]
                if left is not None:
                    if left > 0:
                        self._polls_left[obj] = left - 1
                        headers.append(("x-amz-restore", 'ongoing-request="true"'))
                    else:
                        expiry = formatdate(usegmt=True)
                        headers.append(("x-amz-restore", f'ongoing-request="false", expiry-date="{expiry}"'))
                return Verdict(headers=tuple(headers))
            if method == "GET" and (left is None or left > 0):
                return Verdict(403, "InvalidObjectState")
            if method in ("PUT", "DELETE") or (method == "POST" and "uploadId" in query):
                self._polls_left.pop(obj, None)  # a new object (or none): archived, not restored
            return FORWARD
