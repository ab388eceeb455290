"""Which access events are repeats of one already counted. Pure: no I/O, no wall clock.

Access events are delivered at least once: a producer retrying after a timeout, `dim ship-logs` re-shipping the
log file it was publishing when it crashed, a log pipeline replaying a batch. A repeat carries the same
`request_id` (an S3 server access log's RequestID, a replayed trace's line). Counting it again would heat the
object twice, so a shard remembers the identity of every event with a request id for as long as that event is
within the window (`flow.dedup_window_s`; by default the allowed lateness) of the shard clock, and a repeat within
that time is not counted (the flow sends it to
the dead-letter topic with the reason, so nothing disappears unseen).

The identity is (request_id, op, object, event time): one S3 request can log several records (a multi-object
delete: one per key, a copy: the source's GET and the target's PUT), and a producer whose request ids are not unique
(a replay looped over the same trace, a per-connection counter) must not lose distinct accesses - a true repeat
carries the same time. It is remembered as that tuple of the event's own strings and float: ~1 us per event
(a 128-bit BLAKE2b digest would save ~150 bytes per event but cost ~3 us, 10-15 % of the flow's core). Python's
hash() of a string differs between processes; the set of tuples is rebuilt with the new process's hashes when a
recovered shard is unpickled.

Memory lasts as long as the window: an event that arrives when its time is already more than the window behind
the shard clock is neither checked nor remembered (it is counted, and tallied as late if beyond the lateness). Memory
is therefore ~270 bytes x event rate (of events with a request id) x window per shard: 300 s at 1,000
events/s is ~80 MB. Everything is a function of the shard's events in offset order, so results do not depend on
batching, workers or restarts.
"""

from __future__ import annotations

import math

# Remembered identities are grouped by time buckets of window / BUCKETS_PER_WINDOW, so expiry drops whole groups.
BUCKETS_PER_WINDOW = 4

Identity = tuple[str, str, float, str]


class RequestMemory:
    """Identities of the events with a request id counted within the last `window_s` of event time."""

    __slots__ = ("_by_bucket", "_seen", "bucket_s", "expire_at", "window_s")

    def __init__(self, window_s: float):
        self.window_s = float(window_s)
        self.bucket_s = self.window_s / BUCKETS_PER_WINDOW if self.window_s > 0 else math.inf
        self._seen: set[Identity] = set()
        self._by_bucket: dict[int, list[Identity]] = {}  # for expiry
        self.expire_at = -math.inf if self.window_s > 0 else math.inf  # the clock at which expire() next drops one

    def __len__(self) -> int:
        return len(self._seen)

    def __getstate__(self):
        # the identities once (the set is rebuilt on load, with that process's string hashes)
        return (self.window_s, self.bucket_s, self._by_bucket, self.expire_at)

    def __setstate__(self, state):
        self.window_s, self.bucket_s, self._by_bucket, self.expire_at = state
        self._seen = {ident for idents in self._by_bucket.values() for ident in idents}

    def repeat(self, request_id: str, op: str, key: str, t: float, clock: float) -> bool:
        """True when this (request_id, op, key, t) was remembered already (a repeat: do not count it); otherwise
        remember it when it is within the window of `clock` (the shard clock before this event) and return False."""
        window = self.window_s
        if window <= 0 or t < clock - window:
            return False
        ident = (request_id, op, t, key)
        seen = self._seen
        if ident in seen:
            return True
        seen.add(ident)
        b = int(t // self.bucket_s)
        idents = self._by_bucket.get(b)
        if idents is None:
            self._by_bucket[b] = [ident]
        else:
            idents.append(ident)
        return False

    def expire(self, clock: float) -> None:
        """Forget what is older than the window at `clock` (call when the shard clock reaches `expire_at`)."""
        if clock < self.expire_at:
            return
        keep_from = math.floor((clock - self.window_s) / self.bucket_s)
        # the clock at which the next bucket falls out of the window
        self.expire_at = (keep_from + 1) * self.bucket_s + self.window_s
        seen = self._seen
        for b in [b for b in self._by_bucket if b < keep_from]:
            seen.difference_update(self._by_bucket.pop(b))
