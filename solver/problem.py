"""One placement problem over a batch of objects, as arrays, and what every solver returns. Pure.

Decision: for each object i a replica set T_i of exactly rf_i allowed locations, at most max_per_provider_i per
provider. Objective (dollars over the horizon):
    sum_i [ sum_{l in T_i} linear[i,l] + min_{l in T_i} serve[i,l] + const_i ]
with linear = hold + add (+ move_fee) for new replicas, hold - drop for kept ones, and const_i = the early-deletion
charge of dropping all current replicas (so keeping a replica cancels its charge: transitions counted once).
Coupling constraints of the cycle: bytes per location <= capacity, bytes copied <= budget_bytes, transition
dollars <= budget_usd.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from solver.costs import CostMatrices, LocationArrays


@dataclass
class Problem:
    la: LocationArrays
    cm: CostMatrices
    size: np.ndarray  # (N,) bytes
    current: np.ndarray  # (N, L) bool
    allowed: np.ndarray  # (N, L) bool
    rf: np.ndarray  # (N,) int
    max_per_provider: np.ndarray  # (N,) int
    capacity: np.ndarray  # (L,) bytes, inf where unlimited
    budget_bytes: float = float("inf")
    budget_usd: float = float("inf")
    move_fee: float = 0.0  # per added replica: the minimum a move must save (anti-churn)

    @property
    def n(self) -> int:
        return len(self.size)

    @property
    def n_locations(self) -> int:
        return len(self.la)

    @cached_property
    def linear(self) -> np.ndarray:
        cm = self.cm
        return cm.hold + np.where(self.current, -cm.drop, cm.add + self.move_fee)

    @cached_property
    def const(self) -> np.ndarray:
        return self.cm.drop.sum(axis=1)

    @cached_property
    def transition_linear(self) -> np.ndarray:
        """Transition dollars as a linear function of the chosen set, minus the constant `const`."""
        return np.where(self.current, -self.cm.drop, self.cm.add)

    def subset(
        self,
        rows: np.ndarray,
        capacity: np.ndarray | None = None,
        budget_bytes: float | None = None,
        budget_usd: float | None = None,
    ) -> Problem:
        """The problem restricted to objects `rows`, with the coupling constraints' right-hand sides given (what
        the other objects leave of them) or unchanged."""
        cm = self.cm
        sub = Problem(
            la=self.la,
            cm=CostMatrices(
                hold=cm.hold[rows],
                serve=cm.serve[rows],
                add=cm.add[rows],
                drop=cm.drop[rows],
                sla_violation=cm.sla_violation[rows],
            ),
            size=self.size[rows],
            current=self.current[rows],
            allowed=self.allowed[rows],
            rf=self.rf[rows],
            max_per_provider=self.max_per_provider[rows],
            capacity=self.capacity if capacity is None else capacity,
            budget_bytes=self.budget_bytes if budget_bytes is None else budget_bytes,
            budget_usd=self.budget_usd if budget_usd is None else budget_usd,
            move_fee=self.move_fee,
        )
        for name in ("linear", "const", "transition_linear"):  # already computed: slice, do not recompute
            if name in self.__dict__:
                sub.__dict__[name] = self.__dict__[name][rows]
        return sub

    def coupled(self) -> bool:
        return bool(
            np.isfinite(self.capacity).any() or np.isfinite(self.budget_bytes) or np.isfinite(self.budget_usd)
        )

    # ---- evaluation of an assignment X (N, L) bool ----------------------------------------------------------
    def object_costs(self, x: np.ndarray) -> np.ndarray:
        serve = np.where(x, self.cm.serve, np.inf).min(axis=1)
        return (self.linear * x).sum(axis=1) + serve + self.const

    def objective(self, x: np.ndarray) -> float:
        # exactly rounded, so that the same objects in another row order (the broker's delivery order live, the
        # trace's order offline) give the same figure to the last bit
        return math.fsum(self.object_costs(x).tolist())

    def usage(self, x: np.ndarray) -> dict[str, np.ndarray | float]:
        added = x & ~self.current
        return {
            "capacity": (x * self.size[:, None]).sum(axis=0).astype(float),
            "bytes": float((added * self.size[:, None]).sum()),
            "usd": float(((self.transition_linear * x).sum(axis=1) + self.const).sum()),
        }

    def violations(self, x: np.ndarray, tol: float = 1e-6) -> list[str]:
        """Every broken hard constraint of assignment x, as readable strings (empty = feasible)."""
        out: list[str] = []
        counts = x.sum(axis=1)
        if (bad := np.flatnonzero(counts != self.rf)).size:
            out.append(f"{bad.size} objects without exactly rf replicas (first {bad[0]})")
        if (bad := np.flatnonzero((x & ~self.allowed).any(axis=1))).size:
            out.append(f"{bad.size} objects on locations their policy forbids (first {bad[0]})")
        for p in range(len(self.la.providers)):
            per = x[:, self.la.provider_of == p].sum(axis=1)
            if (bad := np.flatnonzero(per > self.max_per_provider)).size:
                out.append(f"{bad.size} objects over the per-provider limit on {self.la.providers[p]}")
        use = self.usage(x)
        over = use["capacity"] > self.capacity * (1 + tol) + tol
        for loc in np.flatnonzero(over):
            out.append(
                f"capacity of {self.la.ids[loc]} exceeded: {use['capacity'][loc]:.0f} > {self.capacity[loc]:.0f}"
            )
        if use["bytes"] > self.budget_bytes * (1 + tol) + tol:
            out.append(f"move budget exceeded: {use['bytes']:.0f} bytes > {self.budget_bytes:.0f}")
        if use["usd"] > self.budget_usd * (1 + tol) + tol:
            out.append(f"move budget exceeded: ${use['usd']:.6f} > ${self.budget_usd:.6f}")
        return out

    def keep_feasible(self) -> np.ndarray:
        """(N,) bool: keeping the current replicas is a feasible choice for the object on its own."""
        x = self.current
        ok = (x.sum(axis=1) == self.rf) & ~(x & ~self.allowed).any(axis=1)
        for p in range(len(self.la.providers)):
            ok &= x[:, self.la.provider_of == p].sum(axis=1) <= self.max_per_provider
        return ok


@dataclass
class Solution:
    chosen: np.ndarray  # (N, L) bool
    objective: float
    lower_bound: float | None
    method: str
    status: str = "optimal"  # optimal | feasible | infeasible | time_limit
    seconds: float = 0.0
    binaries: int = 0
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        if self.lower_bound is None or not np.isfinite(self.objective):
            return None
        return max(0.0, (self.objective - self.lower_bound) / max(abs(self.objective), 1e-12))


def replica_sets(la: LocationArrays, rf: int, max_per_provider: int) -> np.ndarray:
    """All location index sets of size rf with at most max_per_provider per provider: (K, rf) int."""
    sets = [
        c
        for c in itertools.combinations(range(len(la)), rf)
        if np.bincount(la.provider_of[list(c)], minlength=len(la.providers)).max() <= max_per_provider
    ]
    return np.array(sets, dtype=np.int64).reshape(len(sets), rf)


def effective_max_per_provider(n_providers: int, rf: int, diversity: bool, per_provider: int) -> int:
    """Replicas allowed per provider: per_provider with diversity, raised when rf needs it; rf without."""
    if not diversity or rf <= 1:
        return rf
    return max(per_provider, -(-rf // max(n_providers, 1)))
