"""The flow's core for one shard (= one partition of the access topic). Pure: no I/O, no wall clock.

Every object's events live in one Kafka partition (producers key by object), so a shard owns its objects outright
and sees them in offset order. Everything a shard emits is a function of that sequence alone - never of batch
boundaries, arrival timing or the number of workers - which is what makes the results identical whatever `-w` is
and lets a recovered run reproduce an uninterrupted one.

Per event: heat update; "new"/"gone" candidates on creation/deletion; at most once per object per
`eval_interval_s` of event time an evaluation (p_hot, expected reads) with hysteresis; the prediction is queued for
its delayed label. When the shard clock (max event time seen) crosses a multiple of `sweep_interval_s`, the
objects whose last outlook was "hot" are re-evaluated so idle ones cool into "cold" candidates, and idle objects
are re-checked when their idle time reaches each of `idle_recheck_s` (1, 3, 7, ... days): a "cold" candidate with
the reads expected at that idle time lets the solver move an object down once - and only once - its expected
reads no longer pay for a hot tier (objects too small for any tier change to pay are not re-checked); when it
crosses a multiple of `heat_interval_s`, an ObjectHeat snapshot of every object touched since the last one is
emitted; when it crosses a multiple of `status_interval_s`, a ShardStatus (the shard's counters and its model
against the heat prior) is emitted. `finish()` (end of a bounded run) evaluates every object at the shard clock and
emits both once more.

Candidate.expected_reads is the mean over the solver's planning horizon (per `horizon_s`), estimated from the
shard's own past by flows.horizon_reads (chain ladder over (reads so far, idle time)). Until the shard has seen
enough for that estimate (a fresh shard: the ladder's first period takes a day of event time and `reads_min_count`
observations), no "new" or "cold" candidate is emitted - the object stays where it is - because the only other
estimate, the heat's extrapolation (flows.heat.expected_reads, also the p_hot prior), is wrong in both directions
and a move down made on it costs money (docs/flows.md). "Hot" candidates (a move up protects the latency SLA) and
"gone" ones are emitted with the heat's estimate meanwhile.
"""

from __future__ import annotations

import heapq
import math
import operator
import pickle
from dataclasses import dataclass, field

from flows.dedup import RequestMemory
from flows.heat import HeatParams, HeatState, expected_reads, heat_dict, poisson_at_least
from flows.horizon_reads import HorizonReads
from schemas import Candidate, ObjectHeat, ShardStatus

HOT, COLD, NEW, GONE = "hot", "cold", "new", "gone"

# Layout of a pickled ShardState (recovery snapshots). Raise it whenever a change makes older snapshots unusable
# (6: the read estimate has an activity bucket of its own for objects written and not read lately; 5: the shard
# knows its partition and emits ShardStatus records, and its read estimate has an idle-time-only
# level (flows.horizon_reads); 4: pending labels keep the heat prior's p_hot and the model is scored against it
# (flows.model); 3: the shard remembers request ids (flows.dedup); 2: flows.horizon_reads keeps its ladder per size
# class; 1, implicit: everything before), so a flow restarted on an old recovery store stops with StateFormatError
# instead of failing somewhere deep in the core. Formats 2 to 5 are upgraded on restore (restore_shard).
STATE_FORMAT = 6


class StateFormatError(RuntimeError):
    """A recovery snapshot was written by a flow whose shard state has another layout."""


@dataclass(frozen=True)
class FlowParams:
    heat: HeatParams = field(default_factory=HeatParams)
    hot_reads: int = 2
    horizon_s: float = 86400.0
    hot_threshold: float = 0.6
    cold_threshold: float = 0.2
    eval_interval_s: float = 3600.0
    sweep_interval_s: float = 6 * 3600.0
    heat_interval_s: float = 86400.0
    status_interval_s: float = 3600.0  # ShardStatus cadence; 0: only at finish()
    # Decision fields (docs/flows.md "Decisions"): the solver's planning horizon, over which expected reads are
    # estimated; idle times at which an idle object is re-checked; the smallest object worth re-checking;
    # the calibration's sampling (1 in n objects) and minimum complete observations per estimate.
    planning_horizon_s: float = 30 * 86400.0
    idle_recheck_s: tuple[float, ...] = tuple(d * 86400.0 for d in (1, 3, 7, 14, 30, 60))
    recheck_min_bytes: int = 1_000_000
    reads_sample_every: int = 2
    reads_min_count: int = 100
    dedup_window_s: float | None = None  # None: heat.allowed_lateness_s (flows.dedup)

    def __post_init__(self) -> None:
        if not 0 <= self.cold_threshold < self.hot_threshold <= 1:
            raise ValueError("need 0 <= cold_threshold < hot_threshold <= 1 (hysteresis band)")
        if self.horizon_s <= 0 or self.eval_interval_s < 0:
            raise ValueError("horizon_s must be > 0 and eval_interval_s >= 0")
        if self.planning_horizon_s <= 0 or list(self.idle_recheck_s) != sorted(set(self.idle_recheck_s)):
            raise ValueError("planning_horizon_s must be > 0 and idle_recheck_s increasing")

    @classmethod
    def from_settings(cls, settings) -> FlowParams:
        f = settings.flow
        return cls(
            heat=HeatParams.from_flow_settings(f),
            hot_reads=f.hot_reads,
            horizon_s=f.horizon_s,
            hot_threshold=f.hot_threshold,
            cold_threshold=f.cold_threshold,
            eval_interval_s=f.eval_interval_s,
            sweep_interval_s=f.sweep_interval_s,
            heat_interval_s=f.heat_interval_s,
            status_interval_s=f.status_interval_s,
            planning_horizon_s=settings.solver.planning_horizon_days * 86400.0,
            idle_recheck_s=tuple(d * 86400.0 for d in f.idle_recheck_days),
            recheck_min_bytes=f.recheck_min_bytes,
            reads_sample_every=f.reads_sample_every,
            reads_min_count=f.reads_min_count,
            dedup_window_s=f.dedup_window_s,
        )

    @property
    def repeat_window_s(self) -> float:
        """How long a shard remembers request ids (flows.dedup)."""
        return self.heat.allowed_lateness_s if self.dedup_window_s is None else self.dedup_window_s


class ObjectRecord(HeatState):
    """Heat plus what the shard decides about the object."""

    __slots__ = ("eval_due", "next_eval", "outlook", "p_hot")
    _ALL = HeatState.__slots__ + ("outlook", "next_eval", "p_hot", "eval_due")

    def __init__(self, params: HeatParams):
        super().__init__(params)
        self.outlook: str | None = None
        self.next_eval = -math.inf
        self.p_hot: float | None = None
        self.eval_due = False  # has events since its last evaluation, queued in ShardState.due

    def __getstate__(self):
        return _record_state_of(self)

    def __setstate__(self, state):
        for s, v in zip(ObjectRecord._ALL, state):
            setattr(self, s, v)


# Recovery snapshots pickle every record: one C-level attrgetter call instead of a generator per record.
_record_state_of = operator.attrgetter(*ObjectRecord._ALL)


def split_object_key(object_key: str) -> tuple[str, str]:
    bucket, _, key = object_key.partition("/")
    return bucket, key


class PriorPredictor:
    """p_hot before any model: Poisson with the mean taken from the heat (flows.heat.expected_reads)."""

    def on_evaluate(self, shard: ShardState, key: str, rec: ObjectRecord, at: float, mu: float,
                    read_heat: list[float], write_heat: list[float]) -> float:
        return poisson_at_least(mu, shard.params.hot_reads)

    def on_read(self, key: str, t: float) -> None:
        pass

    def advance(self, watermark: float) -> None:
        pass


class ShardState:
    def __init__(self, params: FlowParams, predictor=None, shard_id: int | None = 0):
        self.state_format = STATE_FORMAT
        self.shard_id = shard_id  # the access partition; None only in a shard upgraded from format 4 (restore_shard)
        self.params = params
        self.predictor = predictor if predictor is not None else PriorPredictor()
        self.objects: dict[str, ObjectRecord] = {}
        self.clock = -math.inf  # max event time seen in this shard
        self.next_sweep_at = math.inf
        self.next_heat_at = math.inf
        self.next_status_at = math.inf
        self.dirty: set[str] = set()
        self.hot: set[str] = set()
        # (time, key) of objects with events since their last evaluation that were too early to evaluate then:
        # they are evaluated when the clock reaches `time`, so no change of outlook waits for another event.
        self.due: list[tuple[float, str]] = []
        self.events = 0
        self.late_events = 0
        self.dead_letters = 0
        self.repeats = 0  # events not counted because they repeat one already counted (flows.dedup)
        self.requests = RequestMemory(params.repeat_window_s)
        self.horizon_reads = HorizonReads(params.planning_horizon_s, params.idle_recheck_s,
                                          params.reads_sample_every, params.reads_min_count)
        # (due time, key, last access) of idle re-checks, at most one per object (idle_queued);
        # idle_since[key] = the last access its chain follows; observed_at[key] = its last calibration observation
        self.idle_due: list[tuple[float, str, float]] = []
        self.idle_queued: dict[str, float] = {}
        self.idle_since: dict[str, float] = {}
        self.observed_at: dict[str, float] = {}
        self._slowest = max(range(len(params.heat.half_lives_s)), key=params.heat.half_lives_s.__getitem__)

    # -- input --------------------------------------------------------------------------------------------
    def on_event(self, key: str, t: float, op: str, nbytes: int, object_size: int, out: list,
                 request_id: str = "") -> bool:
        """Account one valid access of object `key` ("bucket/key"); append emitted records to `out`. Returns False,
        counting nothing, when the event repeats one already counted (same `request_id`, op, object and time, within
        `params.repeat_window_s`: flows.dedup); the caller says so (the flow: a dead letter).
        The flow's hot path (once per event): bookkeeping is inlined, the clock-driven work below runs only when
        the shard clock moved (it depends on the clock alone, so skipping it otherwise changes nothing)."""
        if request_id and self.requests.repeat(request_id, op, key, t, self.clock):
            self.repeats += 1
            return False
        p = self.params
        rec = self.objects.get(key)
        if rec is None:
            rec = self.objects[key] = ObjectRecord(p.heat)
            was_gone = was_seen = False
        else:
            was_gone, was_seen = rec.gone, rec.seen
        at = t  # when the object is evaluated for this event
        if rec.add(p.heat, t, op, nbytes, object_size):
            self.late_events += 1
            # Later than the lateness allows: evaluated as of the earliest time its heat still describes. Heat "at"
            # a time before events already counted would count those as future ones (and overflow for years).
            at = max(t, rec.max_seen - p.heat.allowed_lateness_s)
        self.events += 1
        self.dirty.add(key)
        if op == "GET":
            self.predictor.on_read(key, t)
        clock_moved = t > self.clock
        if clock_moved:
            if self.clock == -math.inf:
                self.next_sweep_at = _next_multiple(t, p.sweep_interval_s)
                self.next_heat_at = _next_multiple(t, p.heat_interval_s)
                self.next_status_at = _next_multiple(t, p.status_interval_s)
            self.clock = t

        if op == "PUT" and (not was_seen or was_gone) and not rec.gone:
            evaluation = self._evaluate(key, rec, at)
            if evaluation[4]:  # uncalibrated: not offered (see the module's docstring)
                self._emit(key, rec, at, NEW, evaluation, out)
            # Followed like a read: an object written and never read (a backup) gets idle re-checks too, or it
            # would never be offered again once its "new" candidate (if any) was planned.
            self._follow_idle(key, rec, at, evaluation[2])
        elif op == "DELETE" and rec.gone and not was_gone:
            self.hot.discard(key)
            h = p.heat
            self._emit(key, rec, at, GONE, (0.0, 0.0, rec.read_heat(h, at), rec.write_heat(h, at), True), out)
        elif not rec.gone:
            if at >= rec.next_eval:
                self._consider(key, rec, at, out)
            elif not rec.eval_due:
                rec.eval_due = True
                heapq.heappush(self.due, (rec.next_eval, key))
                clock_moved = True  # the new entry may already be due

        if clock_moved:
            due = self.due
            while due and due[0][0] <= self.clock:
                _, k = heapq.heappop(due)
                r = self.objects[k]
                if r.next_eval > self.clock:
                    # stale: the object was evaluated since (a sweep, a revival), and an event after that queued
                    # it again at its new next_eval
                    continue
                if r.eval_due and not r.gone:
                    self._consider(k, r, self.clock, out)
                r.eval_due = False
            if self.clock >= self.next_sweep_at:
                self._sweep(out)
            if self.clock >= self.next_heat_at:
                self._heat_snapshots(self.clock, out)
                self.next_heat_at = _next_multiple(self.clock, p.heat_interval_s)
            if self.clock >= self.next_status_at:
                out.append(self.status())
                self.next_status_at = _next_multiple(self.clock, p.status_interval_s)
            if self.clock >= self.requests.expire_at:
                self.requests.expire(self.clock)
        # Always: a late event's prediction may be due at once.
        self.predictor.advance(self.clock - p.heat.allowed_lateness_s)
        return True

    def _counters(self) -> dict:
        """What `summary` and `status` both report: counters and what serves p_hot."""
        predictor = self.predictor
        model = getattr(predictor, "model", None)
        labels = getattr(predictor, "labels", None)
        return {
            "events": self.events,
            "late_events": self.late_events,
            "repeats": self.repeats,
            "dead_letters": self.dead_letters,
            "objects": len(self.objects),
            "objects_hot": len(self.hot),
            "labels_pending": len(labels) if labels is not None else 0,
            "labels_learned": getattr(predictor, "labels_learned", 0),
            # what serves p_hot now: the heat's Poisson prior until a model has `warmup` labels and beats it
            "p_hot_from": model.selected if model is not None else "prior",
        }

    def summary(self) -> dict:
        """What the shard knows, for operators (`dim flow-state`): counters, the clock, the model's state."""
        model = getattr(self.predictor, "model", None)
        return {
            "clock": self.clock if math.isfinite(self.clock) else None,
            **self._counters(),
            "objects_gone": sum(1 for rec in self.objects.values() if rec.gone),
            "remembered_requests": len(self.requests),
            "repeat_window_s": self.requests.window_s,
            "model": model.summary() if model is not None else None,
            "state_format": self.state_format,
        }

    def finish(self, out: list) -> None:
        """End of a bounded run: every object evaluated at the shard clock, so cooled objects become cold."""
        if self.clock == -math.inf:
            return
        for key, rec in self.objects.items():
            if not rec.gone:
                self._consider(key, rec, self.clock, out)
        self._heat_snapshots(self.clock, out)
        out.append(self.status())

    def status(self) -> ShardStatus:
        """The shard's counters and its p_hot model against the heat prior, as of its clock (analytics; a shard
        that has seen no event has no clock and no status)."""
        model = getattr(self.predictor, "model", None)
        scores = model.summary() if model is not None else {}
        calibrated, states = self.horizon_reads.calibrated_states()
        return ShardStatus(
            shard=self.shard_id or 0,
            as_of=self.clock,
            **self._counters(),
            labels_scored=scores.get("prior_scored", 0),
            regression_logloss=_logloss(scores, "vs_prior_logloss_logreg_binned", "prior_scored"),
            prior_logloss=_logloss(scores, "vs_prior_logloss_prior", "prior_scored"),
            forest_labels_scored=scores.get("scored", 0),
            forest_logloss=_logloss(scores, "logloss_forest", "scored"),
            forest_share_regression_logloss=_logloss(scores, "logloss_logreg_binned", "scored"),
            reads_states_calibrated=calibrated,
            reads_states=states,
        )

    # -- decisions ----------------------------------------------------------------------------------------
    def _evaluate(self, key: str, rec: ObjectRecord, at: float) -> tuple[float, float, list[float], list[float], bool]:
        """p_hot, expected reads, the read/write heat of `rec` at `at` (computed once, used by all) and whether the
        expected reads are calibrated (flows.horizon_reads) rather than the heat's extrapolation."""
        p, h = self.params, self.params.heat
        rh, wh = rec.heats(h, at)
        mu = expected_reads(h, rec, at, p.horizon_s, rh)
        rec.p_hot = self.predictor.on_evaluate(self, key, rec, at, mu, rh, wh)
        rec.next_eval = at + p.eval_interval_s
        rec.eval_due = False
        reads, calibrated = self._planning_reads(rec, at, mu, rh)
        return rec.p_hot, reads, rh, wh, calibrated

    def _activity(self, rec: ObjectRecord, at: float, rh: list[float]) -> float:
        """Reads decayed to the last access with the longest half-life (flows.horizon_reads' activity), from the
        read heat `rh` at `at`."""
        i = self._slowest
        lam = self.params.heat.lambdas[i]
        x = lam * (at - rec.last_access)
        if x < 700.0:
            return rh[i] * math.exp(x)
        # Idle for more than ~1,000 half-lives: exp(x) overflows (and rh[i] underflows). The same value, the read
        # heat at the last access, straight from the sums: last_access - ref lies within one rebase period.
        s = rec.read_sums[i]
        return s * math.exp(-lam * (rec.last_access - rec.ref)) if s else 0.0

    def _planning_reads(self, rec: ObjectRecord, at: float, heat_mu: float, rh: list[float]) -> tuple[float, bool]:
        """(Expected reads per `horizon_s`, averaged over the planning horizon (so the solver's linear scaling to
        its horizon gives the calibrated total), True); (the heat's `heat_mu`, False) until the calibration has an
        estimate."""
        if rec.gone:
            return 0.0, True
        e = self.horizon_reads.estimate(self._activity(rec, at, rh), at - rec.last_access, rec.size)
        if e is None:
            return heat_mu, False
        return e * self.params.horizon_s / self.params.planning_horizon_s, True

    def _consider(self, key: str, rec: ObjectRecord, at: float, out: list) -> None:
        evaluation = self._evaluate(key, rec, at)
        p_hot, p = evaluation[0], self.params
        if p_hot >= p.hot_threshold:
            self.hot.add(key)  # (again, if it left the sweep while uncalibrated)
            if rec.outlook != HOT:
                self._emit(key, rec, at, HOT, evaluation, out)
        elif p_hot <= p.cold_threshold and rec.outlook != COLD:
            self.hot.discard(key)  # no longer swept: idle re-checks follow it (below)
            if evaluation[4]:
                self._emit(key, rec, at, COLD, evaluation, out)
            # else: not offered, and its outlook stays (a "hot" one is not offered as hot again); the idle
            # re-checks or its next access offer it once the estimate is calibrated
        self._follow_idle(key, rec, at, evaluation[2])

    def _follow_idle(self, key: str, rec: ObjectRecord, at: float, rh: list[float]) -> None:
        """After an access: an observation for the calibration (sampled objects, at most one per object per
        first development period, so busy objects do not crowd out the others) and, for objects big enough to
        move, a chain of idle re-checks (one per last access, however often the object is evaluated)."""
        la = rec.last_access
        if self.idle_since.get(key) == la:
            return
        self.idle_since[key] = la
        hr = self.horizon_reads
        sampled = hr.sampled(key)
        if sampled and at - self.observed_at.get(key, -math.inf) >= hr.ends[0]:
            self._observe(key, rec, at, rh, at - la)
        steps = self.params.idle_recheck_s
        # one live re-check per object (idle_queued[key] = its due time): a later one made stale by this access is
        # superseded, an earlier one is moved on when it is due
        if (
            (sampled or rec.size >= self.params.recheck_min_bytes)
            and steps
            and self.idle_queued.get(key, math.inf) > la + steps[0]
        ):
            self._queue_idle(key, la + steps[0], la)

    def _observe(self, key: str, rec: ObjectRecord, at: float, rh: list[float], idle: float) -> None:
        """A calibration observation of sampled object `key` at `at`, `idle` after the access its chain follows."""
        self.observed_at[key] = at
        self.horizon_reads.observe(key, at, self._activity(rec, at, rh), idle, rec.reads, rec.size)

    def _queue_idle(self, key: str, due: float, last_access: float) -> None:
        """The object's one live idle re-check: at `due`, following its access at `last_access`."""
        self.idle_queued[key] = due
        heapq.heappush(self.idle_due, (due, key, last_access))

    def _recheck_idle(self, at: float, out: list) -> None:
        """Idle re-checks due by `at`: observe sampled objects, offer idle ones to the solver as "cold" with the
        reads expected at their idle time, schedule the next step. Objects accessed since are followed by the
        chain of their newer access, and hot ones (in `self.hot`) by the sweep."""
        p, due, h = self.params, self.idle_due, self.params.heat
        while due and due[0][0] <= at:
            when, key, la = heapq.heappop(due)
            if self.idle_queued.get(key) != when:  # superseded by an earlier re-check
                continue
            rec = self.objects[key]
            current = self.idle_since.get(key)
            if rec.gone or current is None:
                del self.idle_queued[key]
                continue
            if current != la:  # accessed since: follow the newer access
                self._queue_idle(key, current + p.idle_recheck_s[0], current)
                continue
            rh, wh = rec.heats(h, at)
            if self.horizon_reads.sampled(key):
                self._observe(key, rec, at, rh, at - la)
            if rec.size >= p.recheck_min_bytes and key not in self.hot:
                evaluation = self._evaluate_idle(rec, at, rh, wh)
                if evaluation[0] <= p.cold_threshold and evaluation[4]:
                    self._emit(key, rec, at, COLD, evaluation, out)
            nxt = next((s for s in p.idle_recheck_s if la + s > at), None)
            if nxt is None:
                del self.idle_queued[key]
            else:
                self._queue_idle(key, la + nxt, la)

    def _evaluate_idle(self, rec: ObjectRecord, at: float, rh: list[float],
                       wh: list[float]) -> tuple[float, float, list[float], list[float], bool]:
        """An idle re-check's evaluation: the heat prior for p_hot (the object has had no event since the model's
        last evaluation of it; the re-check is about reads over the planning horizon, not the next `horizon_s`)."""
        p, h = self.params, self.params.heat
        mu = expected_reads(h, rec, at, p.horizon_s, rh)
        rec.p_hot = poisson_at_least(mu, p.hot_reads)
        reads, calibrated = self._planning_reads(rec, at, mu, rh)
        return rec.p_hot, reads, rh, wh, calibrated

    def _sweep(self, out: list) -> None:
        at = self.clock
        for key in sorted(self.hot):  # sorted: emission order must not depend on set iteration order
            rec = self.objects[key]
            if rec.last_access < at:  # objects accessed at `at` were just evaluated by their event
                self._consider(key, rec, at, out)
        objects = self.objects
        self.horizon_reads.advance(at, lambda k: objects[k].reads)
        self._recheck_idle(at, out)
        self.next_sweep_at = _next_multiple(at, self.params.sweep_interval_s)

    def _emit(self, key: str, rec: ObjectRecord, at: float, outlook: str, evaluation, out: list) -> None:
        rec.outlook = outlook
        p, h = self.params, self.params.heat
        p_hot, mu, rh, wh, _ = evaluation
        bucket, obj = split_object_key(key)
        out.append(
            Candidate(
                bucket=bucket,
                key=obj,
                as_of=at,
                size=rec.size,
                read_heat=heat_dict(h, rh),
                write_heat=heat_dict(h, wh),
                p_hot=min(1.0, max(0.0, p_hot)),
                expected_reads=mu,
                horizon_s=p.horizon_s,
                first_seen=_finite(rec.first_seen, at),
                last_access=_finite(rec.last_access, at),
                growing=rec.growing(h, at),
                outlook=outlook,
            )
        )

    def _heat_snapshots(self, at: float, out: list) -> None:
        h = self.params.heat
        labels, objects, append = h.labels, self.objects, out.append
        for key in sorted(self.dirty):
            rec = objects[key]
            bucket, _, obj = key.partition("/")  # split_object_key, inlined: one snapshot per touched object
            rh, wh = rec.heats(h, at)
            append(
                ObjectHeat(
                    bucket=bucket,
                    key=obj,
                    as_of=at,
                    read_heat=dict(zip(labels, rh)),
                    write_heat=dict(zip(labels, wh)),
                    reads=rec.reads,
                    writes=rec.writes,
                    bytes_read=rec.bytes_read,
                    size=rec.size,
                    first_seen=_finite(rec.first_seen, at),
                    last_access=_finite(rec.last_access, at),
                    growing=rec.growing(h, at),
                    p_hot=rec.p_hot,
                    late_events=rec.late_events,
                )
            )
        self.dirty.clear()


def _next_multiple(t: float, step: float) -> float:
    if step <= 0:
        return math.inf
    return (math.floor(t / step) + 1) * step


def _finite(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _logloss(scores: dict, name: str, count: str) -> float | None:
    """A rolling log loss of the model's summary; None before the first label it was scored on (River reports 0)."""
    value = scores.get(name)
    return float(value) if scores.get(count) and value is not None and math.isfinite(value) else None


def restore_shard(blob: bytes, where: str = "a recovery snapshot") -> ShardState:
    """The ShardState pickled in `blob` (ShardLogic.snapshot), checked for this code's STATE_FORMAT."""
    shard = pickle.loads(blob)
    found = getattr(shard, "state_format", 1)
    if found == 2:
        # Format 3 only added the request memory: start it empty (repeats of events counted before the upgrade
        # are not recognised; that is all that is lost).
        shard.requests = RequestMemory(shard.params.repeat_window_s)
        shard.repeats = 0
        shard.state_format = found = 3
    if found == 3:
        # Format 4 scores the model against the heat prior (flows/model.py): nothing is lost, the comparison
        # starts empty.
        upgrade = getattr(shard.predictor, "upgrade_from_format_3", None)
        if upgrade is not None:
            upgrade()
        shard.state_format = found = 4
    if found == 4:
        # Format 5 emits ShardStatus records: the partition is set by the flow's first batch (ShardLogic) and
        # the first status is due at the next multiple of the interval. Its read estimate's idle-time-only level
        # starts empty.
        shard.horizon_reads.add_idle_level()
        shard.shard_id = None
        shard.next_status_at = (_next_multiple(shard.clock, shard.params.status_interval_s)
                                if math.isfinite(shard.clock) else math.inf)
        shard.state_format = found = 5
    if found == 5:
        # Format 6 gives objects written and not read lately an activity bucket of their own in the read estimate:
        # the estimate's counts are re-indexed, the new bucket starts empty.
        shard.horizon_reads.add_unread_activity()
        shard.state_format = found = 6
    if found != STATE_FORMAT:
        raise StateFormatError(
            f"{where} holds shard state format {found}, this flow reads format {STATE_FORMAT}: it was written by "
            "another version of Data-in-Motion. Restart with the version that wrote it, or move the recovery "
            "directory (DIM_FLOW__RECOVERY_DIR, default <stack data dir>/recovery) away to rebuild the state from "
            "the access topic's retained events.")
    return shard
