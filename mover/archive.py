"""Reading out of an archive tier: request a restore, then poll until the object is readable.

Real archive tiers (Glacier, Archive) answer a GET with InvalidObjectState until a RestoreObject request has
completed; HEAD then shows `Restore: ongoing-request="false", expiry-date=...`. SeaweedFS restores "at once"
(it has no archive tier and may not implement RestoreObject at all), which we treat as an immediately completed
restore, so the same code path runs on the embedded stack and on a real cloud.
"""

from __future__ import annotations

import time

from dim.config import MoverSettings
from mover.retry import backoff_s
from mover.s3ops import MoveError, PermanentError, ReplicaStore


def restore_state(restore_header: str | None) -> str:
    """'none' (no restore known), 'ongoing' or 'done', from the HEAD `Restore` header."""
    if not restore_header:
        return "none"
    return "ongoing" if 'ongoing-request="true"' in restore_header else "done"


def ensure_restored(store: ReplicaStore, location: str, key: str, m: MoverSettings,
                    sleep=time.sleep, clock=time.monotonic) -> float:
    """Make an archived replica readable; returns seconds waited. Raises MoveError on timeout."""
    bucket = store.bucket(location)
    endpoint = store.endpoint(location)
    store.stats["restores"] += 1
    try:
        store.call(endpoint, f"RESTORE {bucket}/{key}", lambda c: c.restore_object(
            Bucket=bucket, Key=key, RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}}))
    except PermanentError as exc:
        # Stores without archive tiers refuse the request (NotImplemented, InvalidObjectState for an object
        # that is not archived, ...): the bytes are readable now.
        # The code itself, not a substring of the reason: that names the key too ("logs/0501.parquet").
        if exc.code not in ("NotImplemented", "MethodNotAllowed", "InvalidObjectState", "InvalidRequest",
                            "RestoreAlreadyInProgress", "501", "400"):
            raise
        if exc.code != "RestoreAlreadyInProgress":
            return 0.0
    start = clock()
    attempt = 0
    while True:
        info = store.head(location, key)
        if info is None:
            raise PermanentError(f"restore {bucket}/{key}: object vanished")
        if restore_state(info.restore) != "ongoing":
            return clock() - start
        if clock() - start > m.restore_timeout_s:
            raise MoveError(f"restore_timeout: {bucket}/{key} not restored after {m.restore_timeout_s:.0f} s")
        sleep(backoff_s(attempt, m.restore_poll_base_s, 60.0) + m.restore_poll_base_s)
        attempt += 1
