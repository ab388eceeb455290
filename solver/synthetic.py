"""Placement problems built straight from arrays (no Candidate objects): for the benchmark and tests at scales
where building a million pydantic models would measure pydantic, not the solver. Pure."""

from __future__ import annotations

import numpy as np

from dim.config import SolverSettings
from solver.catalogue import Catalogue
from solver.costs import LocationArrays, cost_matrices
from solver.plan import cost_params
from solver.problem import Problem, effective_max_per_provider


def problem_from_arrays(
    catalogue: Catalogue,
    settings: SolverSettings,
    size: np.ndarray,
    reads: np.ndarray,
    current: np.ndarray,
    age_days: np.ndarray,
    allowed: np.ndarray | None = None,
    capacity: dict[str, float] | None = None,
    budget_bytes: float = np.inf,
    budget_usd: float = np.inf,
) -> Problem:
    """A problem over objects given by arrays: size bytes (N,), expected reads over the horizon (N,), current
    replicas (N, L) bool and their ages in days (N, L). Archive tiers are barred where reads exceed
    settings.archive_max_reads, as in the live planner."""
    la = LocationArrays.of(catalogue)
    n = len(size)
    allowed = np.ones((n, len(la)), dtype=bool) if allowed is None else allowed.copy()
    allowed &= ~((reads[:, None] > settings.archive_max_reads) & la.archive[None, :])
    rf = settings.replication_factor
    mpp = effective_max_per_provider(
        len(la.providers), rf, settings.provider_diversity, settings.max_replicas_per_provider
    )
    cap = np.array([float((capacity or {}).get(lid, np.inf)) for lid in la.ids])
    return Problem(
        la=la,
        cm=cost_matrices(size, reads, current, age_days, la, cost_params(settings)),
        size=np.asarray(size, dtype=float),
        current=current,
        allowed=allowed,
        rf=np.full(n, rf),
        max_per_provider=np.full(n, mpp),
        capacity=cap,
        budget_bytes=budget_bytes,
        budget_usd=budget_usd,
        move_fee=settings.min_net_saving_usd,
    )


def random_problem(
    catalogue: Catalogue,
    settings: SolverSettings,
    n: int,
    seed: int = 0,
    budget_fraction: float | None = None,
    capacity_fraction: dict[str, float] | None = None,
) -> Problem:
    """A random but plausible problem: log-normal sizes, heavy-tailed reads, objects in the initial locations.
    budget_fraction: move budget as a fraction of total bytes; capacity_fraction: location -> fraction of total
    bytes it may hold."""
    rng = np.random.default_rng(seed)
    la = LocationArrays.of(catalogue)
    size = np.exp(rng.normal(13.0, 2.5, n)).clip(1, 5e10)
    reads = np.where(rng.random(n) < 0.5, 0.0, rng.pareto(1.2, n) * 2)
    current = np.zeros((n, len(la)), dtype=bool)
    for lid in settings.initial_locations:
        current[:, catalogue.index(lid)] = True
    age = np.where(current, rng.uniform(0, 200, (n, len(la))), 0.0)
    total = float(size.sum())
    return problem_from_arrays(
        catalogue,
        settings,
        size,
        reads,
        current,
        age,
        capacity={k: v * total for k, v in (capacity_fraction or {}).items()},
        budget_bytes=budget_fraction * total if budget_fraction is not None else np.inf,
    )
