"""Event-time decayed heat of one object. Pure: no I/O, no wall clock.

Heat at time T for half-life h is the decayed count  sum_i 2^(-(T - t_i)/h)  over the object's accesses t_i
(1.0 right after a single access, halving every h of event time without new accesses).

Order independence. We never fold events into "heat as of the last event" (that would make the result depend
on arrival order). Instead each half-life keeps  S = sum_i exp(lam * (t_i - ref))  relative to a reference time
`ref`, and heat(T) = S * exp(-lam * (T - ref)). Addition is commutative, so any arrival order gives the same S up
to floating-point rounding (~1e-15 relative). `ref` is always floor(max event time seen / REBASE) * REBASE: a
function of the *set* of events, not their order; moving it forward multiplies S by exp(-lam * shift), which keeps
the exponent below lam * REBASE (= ln 2 * 64, e^44) so nothing overflows for event times in Unix seconds.
Querying at a later T makes idle objects cool down without new events.

Op semantics (documented in docs/flows.md):
- GET is a read: read heat, read count, bytes read, last access.
- HEAD is metadata only (no bytes retrieved, no retrieval fee on any tier): it updates last access and a head
  counter but adds no read heat, so a monitoring system polling HEAD cannot keep cold data on a hot tier.
- PUT is a write: write heat, write count, size, last write (the "growing" flag).
- DELETE marks the object gone (a later PUT revives it; on equal times the DELETE wins).
Late events (older than the object's max event time seen minus the allowed lateness) are still counted, and
tallied in `late_events`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import cached_property

LN2 = math.log(2.0)
# Reference times are multiples of REBASE_HALF_LIVES x the shortest half-life (see module docstring).
REBASE_HALF_LIVES = 64


def half_life_label(seconds: float) -> str:
    """3600 -> "1h", 86400 -> "1d", 604800 -> "7d", 90 -> "90s"."""
    s = float(seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if s >= size and (s / size).is_integer():
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


@dataclass(frozen=True)
class HeatParams:
    """The configuration every heat computation needs (shared, never stored per object)."""

    half_lives_s: tuple[float, ...] = (3600.0, 86400.0, 7 * 86400.0)
    allowed_lateness_s: float = 300.0
    growing_window_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.half_lives_s or any(h <= 0 for h in self.half_lives_s):
            raise ValueError("half_lives_s must be a non-empty list of positive seconds")

    @classmethod
    def from_flow_settings(cls, flow) -> HeatParams:
        return cls(
            half_lives_s=tuple(float(h) for h in flow.half_lives_s),
            allowed_lateness_s=float(flow.allowed_lateness_s),
            growing_window_s=float(flow.growing_window_s),
        )

    # Derived constants, computed once per params object (a frozen dataclass still has a __dict__ for these).
    @cached_property
    def labels(self) -> tuple[str, ...]:
        return tuple(half_life_label(h) for h in self.half_lives_s)

    @cached_property
    def lambdas(self) -> tuple[float, ...]:
        return tuple(LN2 / h for h in self.half_lives_s)

    @cached_property
    def rebase_s(self) -> float:
        return REBASE_HALF_LIVES * min(self.half_lives_s)

    @cached_property
    def horizon_index(self) -> dict[float, int]:
        """horizon -> index of the half-life closest to it (filled by expected_reads)."""
        return {}


NEVER = -math.inf


class HeatState:
    """Everything the flow knows about one object's accesses. Small (slots) because there are millions."""

    __slots__ = (
        "bytes_read",
        "deletes",
        "first_seen",
        "heads",
        "last_access",
        "last_delete",
        "last_write",
        "late_events",
        "max_seen",
        "read_sums",
        "reads",
        "ref",
        "size",
        "size_time",
        "write_sums",
        "writes",
    )

    def __init__(self, params: HeatParams):
        n = len(params.half_lives_s)
        self.ref: float | None = None
        self.read_sums = [0.0] * n
        self.write_sums = [0.0] * n
        self.reads = 0
        self.writes = 0
        self.heads = 0
        self.deletes = 0
        self.bytes_read = 0
        self.first_seen = math.inf
        self.last_access = NEVER
        self.max_seen = NEVER
        self.size = 0
        self.size_time = NEVER
        self.last_write = NEVER
        self.last_delete = NEVER
        self.late_events = 0

    # pickling (recovery snapshots) of a slotted class without __dict__
    def __getstate__(self):
        return _heat_state_of(self)

    def __setstate__(self, state):
        for s, v in zip(HeatState.__slots__, state):
            setattr(self, s, v)

    def add(self, params: HeatParams, t: float, op: str, nbytes: int, object_size: int) -> bool:
        """Account one access at event time `t`; op is "GET", "HEAD", "PUT" or "DELETE".
        Returns True if the event was late (still counted). The hot path of the flow: one call per event."""
        late = t < self.max_seen - params.allowed_lateness_s
        if late:
            self.late_events += 1
        elif t > self.max_seen:
            self.max_seen = t
        ref = self.ref
        # Rebase only when `t` may be in a later rebase period; inside the current one new_ref == ref (the margin
        # keeps floor(t / rebase) exact at the period's end, so this is the same test as _rebase_for's).
        if ref is None or t - ref >= params.rebase_s * 0.999999:
            self._rebase_for(params, t)
        self.first_seen = min(self.first_seen, t)
        self.last_access = max(self.last_access, t)
        if op == "GET":
            self.reads += 1
            self.bytes_read += nbytes
            sums = self.read_sums
        elif op == "PUT":
            self.writes += 1
            self.last_write = max(self.last_write, t)
            sums = self.write_sums
        elif op == "HEAD":
            self.heads += 1
            sums = None
        elif op == "DELETE":
            self.deletes += 1
            self.last_delete = max(self.last_delete, t)
            return late
        else:
            raise ValueError(f"unknown op {op!r}")
        # The size of the newest observation wins (ties: the larger) - order independent.
        if t > self.size_time or (t == self.size_time and object_size > self.size):
            self.size = object_size
            self.size_time = t
        if sums is not None:
            dt = t - self.ref
            exp = math.exp
            for i, lam in enumerate(params.lambdas):
                sums[i] += exp(lam * dt)
        return late

    def _rebase_for(self, params: HeatParams, t: float) -> None:
        rebase = params.rebase_s
        new_ref = math.floor(t / rebase) * rebase
        if self.ref is None:
            self.ref = new_ref
            return
        if new_ref <= self.ref:
            return
        shift = new_ref - self.ref
        for sums in (self.read_sums, self.write_sums):
            for i, lam in enumerate(params.lambdas):
                if sums[i]:
                    sums[i] *= math.exp(-lam * shift)
        self.ref = new_ref

    def _heat(self, params: HeatParams, sums: list[float], at: float) -> list[float]:
        if self.ref is None:
            return [0.0] * len(sums)
        dt = at - self.ref
        return [s * math.exp(-lam * dt) if s else 0.0 for s, lam in zip(sums, params.lambdas)]

    def read_heat(self, params: HeatParams, at: float) -> list[float]:
        """Decayed read counts at event time `at`, one per half-life (in `params.half_lives_s` order)."""
        return self._heat(params, self.read_sums, at)

    def write_heat(self, params: HeatParams, at: float) -> list[float]:
        return self._heat(params, self.write_sums, at)

    def heats(self, params: HeatParams, at: float) -> tuple[list[float], list[float]]:
        """(read_heat, write_heat) at `at`, equal to the two calls above but one exp per half-life for both, and
        none for an object never written (most objects of a read-heavy workload)."""
        n = len(params.lambdas)
        if self.ref is None:
            return [0.0] * n, [0.0] * n
        dt = at - self.ref
        exp = math.exp
        if n == 3:  # the default half-lives, unrolled: this runs for most events
            l0, l1, l2 = params.lambdas
            d0, d1, d2 = exp(-l0 * dt), exp(-l1 * dt), exp(-l2 * dt)
            r0, r1, r2 = self.read_sums
            rh = [r0 * d0 if r0 else 0.0, r1 * d1 if r1 else 0.0, r2 * d2 if r2 else 0.0]
            if not self.writes:
                return rh, [0.0, 0.0, 0.0]
            w0, w1, w2 = self.write_sums
            return rh, [w0 * d0 if w0 else 0.0, w1 * d1 if w1 else 0.0, w2 * d2 if w2 else 0.0]
        decay = [exp(-lam * dt) for lam in params.lambdas]
        rs, ws = self.read_sums, self.write_sums
        rh = [s * d if s else 0.0 for s, d in zip(rs, decay)]
        wh = [s * d if s else 0.0 for s, d in zip(ws, decay)] if self.writes else [0.0] * n
        return rh, wh

    def growing(self, params: HeatParams, at: float) -> bool:
        """A write within the growing window before `at`: the object may still be changing."""
        return self.last_write > NEVER and at - self.last_write <= params.growing_window_s and not self.gone

    @property
    def gone(self) -> bool:
        return self.last_delete > NEVER and self.last_delete >= self.last_write

    @property
    def seen(self) -> bool:
        return self.ref is not None or self.deletes > 0


# Recovery snapshots pickle every object's state: one C-level attrgetter call instead of a generator per object.
_heat_state_of = operator.attrgetter(*HeatState.__slots__)


def heat_dict(params: HeatParams, values: list[float]) -> dict[str, float]:
    return dict(zip(params.labels, values))


def expected_reads(params: HeatParams, state: HeatState, at: float, horizon_s: float,
                   read_heat: list[float] | None = None) -> float:
    """Expected reads over the next `horizon_s` if the recent read rate continues.

    A decayed count with decay rate lam of a Poisson stream of rate r tends to r / lam, so r ~= heat * lam. We use
    the half-life closest to the horizon (in log scale): short half-lives react fast but are noisy over long
    horizons, long ones lag. `read_heat`: the state's read heat at `at`, if the caller has it already."""
    if state.gone:
        return 0.0
    heats = read_heat if read_heat is not None else state.read_heat(params, at)
    i = params.horizon_index.get(horizon_s)
    if i is None:
        hl = params.half_lives_s
        i = params.horizon_index[horizon_s] = min(range(len(hl)), key=lambda j: abs(math.log(hl[j] / horizon_s)))
    return heats[i] * params.lambdas[i] * horizon_s


def poisson_at_least(mu: float, k: int) -> float:
    """P(N >= k) for N ~ Poisson(mu)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    if mu > 700.0:  # exp(-mu) underflows near 745: the terms in log space, the smaller side summed
        log_mu = math.log(mu)

        def term(j: int) -> float:
            return math.exp(j * log_mu - mu - math.lgamma(j + 1))

        if k <= mu:
            return min(1.0, max(0.0, 1.0 - math.fsum(term(j) for j in range(k))))
        total, j = 0.0, k  # the upper tail directly: 1 - (1 - tiny) would cancel to rounding noise
        while True:
            t = term(j)
            total += t
            if t <= total * 1e-17:
                return min(1.0, total)
            j += 1
    term = math.exp(-mu)
    below = term
    for j in range(1, k):
        term *= mu / j
        below += term
    return min(1.0, max(0.0, 1.0 - below))
