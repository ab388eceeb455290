"""Placement policies users would otherwise pick, as rules over what is known at the start of each slot. Pure.

Every policy starts each object at the initial locations (settings.solver.initial_locations, one replica per
provider) and, at the start of every slot, returns the placement for that slot ((N, L) bool), or None for "no
change". The rule-based baselines keep each replica on its provider and region and only change its tier class
(hot -> cool -> cold -> archive), as the products do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dim.evaluation.ledger import Managed
from dim.evaluation.pricing import location_of_class
from dim.evaluation.workload import SECONDS_PER_DAY, Workload
from solver.catalogue import TIER_CLASSES, Catalogue

HOT, COOL, COLD, ARCHIVE = range(4)
assert TIER_CLASSES == ("hot", "cool", "cold", "archive")


@dataclass
class SlotContext:
    s: int
    now: float  # event time of the start of slot s
    workload: Workload
    where: np.ndarray  # (N, L) current placement (read only)
    since: np.ndarray  # (N, L) event time each current replica was created
    last_access: np.ndarray  # (N,) event time of each object's latest request before `now` (-inf: none yet)
    born: np.ndarray  # (N,) bool: exists at `now`


class Ladder:
    """For each initial replica's site, the location index of each tier class there."""

    def __init__(self, catalogue: Catalogue, initial_ids: list[str]):
        self.L = len(catalogue.locations)
        sites = [catalogue.location(i).site for i in initial_ids]
        self.table = np.array([[location_of_class(catalogue, site, c) for c in TIER_CLASSES] for site in sites])

    def placement(self, cls: np.ndarray) -> np.ndarray:
        """(N, L) bool: every replica at tier class cls[n] (index into TIER_CLASSES) of its site."""
        n = len(cls)
        where = np.zeros((n, self.L), dtype=bool)
        rows = np.arange(n)
        for site_locs in self.table:
            where[rows, site_locs[cls]] = True
        return where


class Policy:
    name = "policy"
    managed: Managed | None = None

    def decide(self, ctx: SlotContext) -> np.ndarray | None:
        raise NotImplementedError


class AllHot(Policy):
    """RF replicas in the standard (hot) tiers of the initial locations, forever."""

    name = "all_hot"

    def decide(self, ctx):
        return None


class _ClassRule(Policy):
    def __init__(self, ladder: Ladder):
        self.ladder = ladder

    def classes(self, ctx: SlotContext) -> np.ndarray:
        raise NotImplementedError

    def decide(self, ctx):
        return self.ladder.placement(self.classes(ctx))


class Lifecycle(_ClassRule):
    """S3 Lifecycle / MinIO ILM: by object age only - infrequent access at 30 days, archive at 90 days."""

    name = "lifecycle"

    def __init__(self, ladder: Ladder, cool_days: float = 30.0, archive_days: float = 90.0):
        super().__init__(ladder)
        self.cool_s, self.archive_s = cool_days * SECONDS_PER_DAY, archive_days * SECONDS_PER_DAY

    def classes(self, ctx):
        age = ctx.now - ctx.workload.birth
        return np.where(age >= self.archive_s, ARCHIVE, np.where(age >= self.cool_s, COOL, HOT))


class IntelligentTiering(_ClassRule):
    """S3 Intelligent-Tiering: 30 consecutive days without access -> Infrequent Access, 90 -> Archive Instant
    Access, any access -> Frequent; objects under 128 KB are not monitored and stay Frequent; no retrieval or
    transition fees, $0.0025 per 1,000 monitored objects per month. Applied to every replica's provider."""

    name = "intelligent_tiering"
    managed = Managed(monitoring_usd_per_1k_month=0.0025, min_monitored_bytes=128 * 1024)

    def classes(self, ctx):
        idle = ctx.now - ctx.last_access
        cls = np.where(idle >= 90 * SECONDS_PER_DAY, COLD, np.where(idle >= 30 * SECONDS_PER_DAY, COOL, HOT))
        return np.where(ctx.workload.size < self.managed.min_monitored_bytes, HOT, cls)


class Autoclass(_ClassRule):
    """GCS Autoclass: 30 days unread -> Nearline, 90 -> Coldline, 365 -> Archive (opt-in, on here); any read ->
    Standard; objects under 128 KiB stay Standard; no retrieval, early-deletion or transition charges; a
    management fee per object like Intelligent-Tiering's. Applied to every replica's provider."""

    name = "autoclass"
    managed = Managed(monitoring_usd_per_1k_month=0.0025, min_monitored_bytes=128 * 1024)

    def classes(self, ctx):
        idle = ctx.now - ctx.last_access
        d = SECONDS_PER_DAY
        cls = np.where(idle >= 365 * d, ARCHIVE, np.where(idle >= 90 * d, COLD, np.where(idle >= 30 * d, COOL, HOT)))
        return np.where(ctx.workload.size < self.managed.min_monitored_bytes, HOT, cls)


class SeedRandomForest(_ClassRule):
    """The seeds' approach: an offline scikit-learn RandomForest predicts p_hot = P(>= hot_reads reads in the
    next slot) from simple per-object counters, trained once on the first `train_slots` slots (labels from the
    slot after each feature snapshot), then a threshold maps p_hot to a tier class for every replica."""

    name = "seed_rf"

    def __init__(self, ladder: Ladder, hot_reads: int = 2, train_slots: int = 7, hot_threshold: float = 0.5,
                 cold_threshold: float = 0.05, max_rows: int = 60_000, seed: int = 0):
        super().__init__(ladder)
        self.hot_reads, self.train_slots = hot_reads, train_slots
        self.hot_threshold, self.cold_threshold = hot_threshold, cold_threshold
        self.max_rows, self.rng = max_rows, np.random.default_rng(seed)
        self.model = None
        self._X: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def features(self, w: Workload, s: int, now: float, last_access: np.ndarray) -> np.ndarray:
        r = w.reads[:, :s]
        last1 = r[:, -1] if s else np.zeros(w.n)
        last7 = r[:, max(0, s - 7):].sum(axis=1)
        total = r.sum(axis=1)
        age = (now - w.birth) / SECONDS_PER_DAY
        idle = np.where(np.isfinite(last_access), now - last_access, 0.0) / SECONDS_PER_DAY
        return np.stack([last1, last7, total, age, idle, np.log1p(w.size)], axis=1).astype(np.float32)

    def classes(self, ctx):
        w, s = ctx.workload, ctx.s
        X = self.features(w, s, ctx.now, ctx.last_access)
        if self.model is None:
            if self._pending is not None:  # the previous snapshot's label (reads in slot s-1) is now known
                rows, Xp = self._pending
                self._X.append(Xp)
                self._y.append(w.reads[rows, s - 1] >= self.hot_reads)
                self._pending = None
            if s >= self.train_slots and self._X:
                self._train()
            else:
                rows = np.flatnonzero(ctx.born)
                if rows.size:
                    rows = self.rng.choice(rows, min(rows.size, self.max_rows), replace=False)
                    self._pending = (rows, X[rows])
                return np.full(w.n, HOT)
        p = self._p_hot(X)
        return np.where(p >= self.hot_threshold, HOT, np.where(p >= self.cold_threshold, COOL, COLD))

    def _train(self) -> None:
        from sklearn.ensemble import RandomForestClassifier

        X, y = np.concatenate(self._X), np.concatenate(self._y)
        if len(X) > self.max_rows:
            pick = self.rng.choice(len(X), self.max_rows, replace=False)
            X, y = X[pick], y[pick]
        self.model = RandomForestClassifier(n_estimators=30, max_depth=10, min_samples_leaf=5, n_jobs=1,
                                            random_state=0)
        self.model.fit(X, y)
        self._X, self._y = [], []

    def _p_hot(self, X: np.ndarray) -> np.ndarray:
        classes = list(self.model.classes_)
        if True not in classes:
            return np.zeros(len(X))
        return self.model.predict_proba(X)[:, classes.index(True)]
