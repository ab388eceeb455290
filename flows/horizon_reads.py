"""Expected reads over the solver's planning horizon, calibrated on the shard's own past. Pure: no I/O, no clock.

The solver compares, per object, storage saved against reads paid over its planning horizon H (30 days), so what
it needs is E[reads in (t, t + H] | what the flow knows at t]. Scaling the decayed heat (flows.heat.expected_reads)
to H is wrong in both directions on real traces: right after a read it extrapolates a burst over a month (a
one-hit object "expects" ~20 reads), and after a week idle it says ~0 while such objects are still read again.

So each shard estimates it from its own history, grouped by state = (size class, activity, idle time), where
activity = the object's reads decayed to its last access with the flow's longest half-life (recent reads count, old
ones fade: an object back after a month idle looks like a new one, not like one read twice in a day), and the size
class is the object's size in powers of 4 from 256 KiB to 16 MiB. Size matters: on the Twitter trace an object idle
for 7 days is read again within the next 30 days with probability 0.04 below 256 KiB, 0.39 at 256 KiB-1 MiB, 0.25
at 1-4 MiB and 0.33 at 4-16 MiB (bench/return_rates.py), and the big ones are the bytes a tier decision is about. Every observation also counts
in its state pooled over sizes, which a size class without enough observations of its own falls back to, and in
its idle time alone (pooled over sizes and activities), which a pooled state without enough observations falls
back to in turn (a fresh shard sees enough idle objects long before it sees enough of each activity; on the demo's
small sample this level took ours from 2 % to 15 % below all_hot, and it left the full trace's cost as it was):
- an *observation* is the state of a sampled object when the shard evaluates it (sampling by a hash of the key,
  so the estimate is a function of the shard's event sequence, identical for any worker count and after recovery);
- its reads are counted per *development period* after the observation ([0, 1 d), [1 d, 3 d), ... up to H), by
  checkpoints taken when the shard clock passes each period's end (the reads counter of the object then);
- E[reads in H | state] = sum over periods of the mean reads in that period among observations of that state whose
  period is complete (the actuaries' chain ladder: every period uses every observation old enough to show it,
  so estimates exist long before an observation is H old, without waiting for - or peeking at - the future).
A period with too few complete observations (early in a run) extrapolates the last known period's daily rate,
decayed in proportion to 1 / idle age (the heavy-tailed re-access gaps of cache traces: the longer an object has
been idle, the slower it returns; carrying the rate forward undecayed turned a one-day read burst into ~100
expected reads a month); a state with no complete first period borrows the estimate of the next-shorter idle time
of the same activity (more reads: conservative); with none at any level, `estimate` returns None and the caller
falls back to the heat.
"""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_right

SECONDS_PER_DAY = 86_400.0
# ~ 0 (written, not read lately), 1, 2, 3-5, 6-20, > 20 recent reads. Activity is 0 for an object written and never
# read (a backup) and exactly 1 at a single read's own time, so the first edge sets write-only objects apart.
ACTIVITY_BUCKETS = (0.5, 1.5, 2.5, 5.5, 20.5)
SIZE_BUCKETS = (256 * 1024, 1024**2, 4 * 1024**2, 16 * 1024**2)  # bytes: < 256 KiB, < 1 MiB, ... >= 16 MiB


def bucket(value: float, edges: tuple[float, ...]) -> int:
    """How many of the increasing `edges` `value` has reached: 0 below the first, len(edges) from the last."""
    return bisect_right(edges, value)


def period_ends(horizon_s: float, steps_s: tuple[float, ...]) -> tuple[float, ...]:
    """Ends of the development periods: the idle steps below the horizon, then the horizon."""
    return tuple(sorted({s for s in steps_s if 0 < s < horizon_s} | {horizon_s}))


class HorizonReads:
    """Chain-ladder estimate of reads over `horizon_s` per (size class, activity bucket, idle bucket), with the
    states pooled over sizes as the fallback; see the module docstring."""

    def __init__(self, horizon_s: float, idle_steps_s: tuple[float, ...], sample_every: int = 2,
                 min_count: int = 100):
        self.horizon_s = horizon_s
        self.steps_s = tuple(sorted(idle_steps_s))
        self.ends = period_ends(horizon_s, self.steps_s)
        self.sample_every = max(1, int(sample_every))
        self.min_count = min_count
        # state = size class * pooled_states + activity bucket * (idle buckets) + idle bucket; size class
        # len(SIZE_BUCKETS) + 1 (one past the last) is the pooled one
        self.pooled_states = (len(ACTIVITY_BUCKETS) + 1) * (len(self.steps_s) + 1)
        self.pooled_base = (len(SIZE_BUCKETS) + 1) * self.pooled_states
        # then one state per idle bucket, pooled over sizes and activities: the last fallback
        self.idle_base = self.pooled_base + self.pooled_states
        n_states = self.idle_base + self.idle_width
        self.reads_sum = [[0] * len(self.ends) for _ in range(n_states)]
        self.complete = [[0] * len(self.ends) for _ in range(n_states)]
        # (checkpoint time, key, observed at, state, period, reads counter at the period's start)
        self.pending: list[tuple[float, str, float, int, int, int]] = []
        self._cache: dict[int, float | None] = {}

    def state(self, activity: float, idle_s: float, size: int) -> int:
        return (bucket(size, SIZE_BUCKETS) * self.pooled_states
                + bucket(activity, ACTIVITY_BUCKETS) * (len(self.steps_s) + 1) + bucket(idle_s, self.steps_s))

    def sampled(self, key: str) -> bool:
        # Not CRC32: the partitioner routes keys by CRC32, and CRC32 is affine, so a CRC32 sample would be
        # correlated with the shard (all or none of a shard's objects).
        digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"horizon-reads").digest()
        return int.from_bytes(digest, "little") % self.sample_every == 0

    def observe(self, key: str, at: float, activity: float, idle_s: float, reads: int, size: int) -> None:
        """An evaluation of object `key` at `at` (caller checks `sampled`) in state (size, activity, idle_s);
        `reads`: its reads counter now. Its reads are followed from now on."""
        heapq.heappush(self.pending, (at + self.ends[0], key, at, self.state(activity, idle_s, size), 0, reads))

    def advance(self, clock: float, reads_of) -> None:
        """Close every development period that ended by `clock`; `reads_of(key)` is the object's reads counter."""
        pending = self.pending
        changed = False
        while pending and pending[0][0] <= clock:
            _, key, at, st, period, start_reads = heapq.heappop(pending)
            now_reads = reads_of(key)
            for counted in (st, self.pooled_base + st % self.pooled_states, self.idle_base + st % self.idle_width):
                self.reads_sum[counted][period] += max(0, now_reads - start_reads)
                self.complete[counted][period] += 1
            changed = True
            if period + 1 < len(self.ends):
                heapq.heappush(pending, (at + self.ends[period + 1], key, at, st, period + 1, now_reads))
        if changed:
            self._cache.clear()

    def estimate(self, activity: float, idle_s: float, size: int) -> float | None:
        """E[reads in the next horizon_s] for an object of this size and activity, idle for `idle_s`: its size
        class's estimate; that of all sizes while the class has too few observations; that of its idle time alone
        while that has too few too; None while all three have."""
        st = self.state(activity, idle_s, size)
        cache = self._cache
        if st not in cache:
            e = self._estimate(st)
            cache[st] = e if e is not None else self._pooled_estimate(st % self.pooled_states)
        return cache[st]

    def _pooled_estimate(self, s: int) -> float | None:
        """Pooled state `s` (activity x idle bucket): its estimate over all sizes, else its idle time's alone."""
        e = self._estimate(self.pooled_base + s)
        return e if e is not None else self._estimate(self.idle_base + s % self.idle_width)

    @property
    def idle_width(self) -> int:
        """States per activity bucket: one per idle bucket."""
        return len(self.steps_s) + 1

    def add_idle_level(self) -> None:
        """Grow a ladder pickled before the idle-only level existed (shard state format 4): that level starts
        empty and fills with the observations completed from now on."""
        if hasattr(self, "idle_base"):
            return
        self.idle_base = self.pooled_base + self.pooled_states
        for table in (self.reads_sum, self.complete):
            table.extend([0] * len(self.ends) for _ in range(self.idle_width))
        self._cache = {}

    def add_unread_activity(self) -> None:
        """Re-index a ladder pickled before the "not read lately" activity bucket existed (shard state format 5:
        buckets from "~1 read" up): every state keeps its counts under its new index, the new bucket starts
        empty and fills with the observations of objects written and not read from now on."""
        width, old_ps = self.idle_width, self.pooled_states
        new_ps = (len(ACTIVITY_BUCKETS) + 1) * width
        if new_ps == old_ps:
            return
        old_idle_base = self.idle_base

        def moved(st: int) -> int:
            if st >= old_idle_base:  # the idle-time-only level: one state per idle bucket, as before
                return (len(SIZE_BUCKETS) + 2) * new_ps + st - old_idle_base
            size, rest = divmod(st, old_ps)
            return size * new_ps + rest + width  # one activity bucket up

        self.pooled_states = new_ps
        self.pooled_base = (len(SIZE_BUCKETS) + 1) * new_ps
        self.idle_base = self.pooled_base + new_ps
        for name in ("reads_sum", "complete"):
            old, table = getattr(self, name), [[0] * len(self.ends) for _ in range(self.idle_base + width)]
            for st, row in enumerate(old):
                table[moved(st)] = row
            setattr(self, name, table)
        self.pending = [(due, key, at, moved(st), period, reads) for due, key, at, st, period, reads in self.pending]
        heapq.heapify(self.pending)
        self._cache = {}

    def calibrated_states(self) -> tuple[int, int]:
        """(states pooled over sizes that have an estimate, of their own or their idle time's; all of them): until
        a state has one, no object in it is moved down (flows.shard)."""
        ready = sum(1 for s in range(self.pooled_states) if self._pooled_estimate(s) is not None)
        return ready, self.pooled_states

    def _estimate(self, st: int) -> float | None:
        width = self.idle_width
        base = st - st % width
        prior = None
        # Right after an access (idle bucket 0) reads come in bursts: that state stands alone. Idle ones chain:
        # each shrinks towards the next-shorter idle bucket's estimate.
        for s in range(base if st == base else base + 1, st + 1):
            if self.complete[s][0] >= self.min_count or (prior is not None and self.complete[s][0]):
                prior = self._chain(s, prior)
        return None if prior is None else sum(prior)

    def _chain(self, st: int, prior: list[float] | None) -> list[float]:
        """Mean reads per development period of state `st`. `prior`: the next-shorter idle bucket's means, which
        each period's mean is shrunk towards with the weight of `min_count` observations (small samples of rare
        returns are often all zeros). A period without complete observations is the last known period's rate,
        decayed as 1 / idle age (the first period, without any: the prior's first)."""
        # idle time at observation (lower edge of the state's idle bucket): the return rate decays with idle age
        b = st % (len(self.steps_s) + 1)
        idle = self.steps_s[b - 1] if b else 0.0
        means: list[float] = []
        rate, rate_mid, start = 0.0, 0.0, 0.0
        for p, end in enumerate(self.ends):
            n, mid = self.complete[st][p], (start + end) / 2
            if n and (prior is not None or n >= self.min_count):
                w = self.min_count if prior is not None else 0
                mean = (self.reads_sum[st][p] + w * (prior[p] if prior is not None else 0.0)) / (n + w)
                rate, rate_mid = mean / (end - start), mid
            elif p:  # not seen yet: the last known rate, decayed as 1 / idle age
                mean = rate * (idle + rate_mid) / (idle + mid) * (end - start)
            else:
                mean = prior[0]
            means.append(mean)
            start = end
        return means

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state
