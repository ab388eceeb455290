"""EXPERIMENT, not the live flow: what if the flow re-emitted a "cold" candidate for idle objects?

The live shard core (flows.shard) emits a candidate only when an object's outlook changes, and its sweep
re-evaluates only "hot" objects; a cold object is therefore planned once, on the heat it had when it turned cold.
`ColdRefresher` adds, around the unchanged ShardState, a re-evaluation of every "cold" object when its idle time
reaches each of `refresh_days` (e.g. 1, 2, 4, ... days): it calls the shard's own evaluation and candidate
construction (ShardState._evaluate / _emit) at the slot boundary, one second before the slot starts, so the
planner sees decayed heat. Used only by the `ours_refresh` policy, to measure what such a flow change would buy.
"""

from __future__ import annotations

import math
from collections import defaultdict

SECONDS_PER_DAY = 86_400.0


class ColdRefresher:
    def __init__(self, shards: dict, names: list[str], shard_of: list[int], t0: float, slot_s: float,
                 refresh_days: tuple[float, ...]):
        self.shards, self.names, self.shard_of = shards, names, shard_of
        self.t0, self.slot_s = t0, slot_s
        self.steps = sorted(d * SECONDS_PER_DAY for d in refresh_days)
        self.due: dict[int, list[int]] = defaultdict(list)  # slot boundary index -> objects to look at
        self.seen: set[int] = set()
        self.next_boundary = 1
        self.refreshed = 0

    def _boundary_after(self, t: float) -> int:
        return math.floor((t - self.t0) / self.slot_s) + 1

    def _schedule(self, i: int, last_access: float, now: float) -> None:
        for step in self.steps:
            if last_access + step > now:
                self.due[max(self._boundary_after(last_access + step - 1e-9), self._boundary_after(now))].append(i)
                return

    def before_event(self, t: float, i: int, out: list) -> None:
        self.until(t, out)
        if i not in self.seen:
            self.seen.add(i)
            self._schedule(i, t, t)

    def until(self, t: float, out: list) -> None:
        """Run every refresh due at slot boundaries up to event time t."""
        while self.t0 + self.next_boundary * self.slot_s <= t or (t == math.inf and self.due):
            b = self.next_boundary
            at = self.t0 + b * self.slot_s - 1.0
            for i in self.due.pop(b, []):
                shard = self.shards[self.shard_of[i]]
                key = self.names[i]
                rec = shard.objects.get(key)
                if rec is None or rec.gone:
                    continue
                if rec.outlook == "cold" and at - rec.last_access >= self.steps[0] - 1.0:
                    evaluation = shard._evaluate(key, rec, at)  # (p_hot, expected reads, read heat, write heat)
                    if evaluation[0] <= shard.params.cold_threshold:
                        shard._emit(key, rec, at, "cold", evaluation, out)
                        self.refreshed += 1
                self._schedule(i, rec.last_access, at)
            self.next_boundary += 1
            if t == math.inf and not self.due:
                break
