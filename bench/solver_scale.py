"""Placement solver at scale: the Lagrangian decomposition against the monolithic HiGHS MILP on one instance.

The instance: N objects whose sizes and read counts are drawn (with replacement) from the per-object
distribution of the real Twitter cache trace (../shared/traces/twitter52_dev.csv.zst), scaled: sizes x
--size-scale, and trace time x --time-scale (1 trace second = 1 simulated hour by default) so that a read count over
the trace becomes expected reads over the 30-day planning horizon. Every object starts at the configured initial
locations (S3 Standard + GCS Standard) with a replica age drawn from 0-365 days. Locations: the whole catalogue
(13 = AWS 5 + Azure 4 + GCS 4 tiers). Coupling constraints: a move budget of --budget-fraction of all bytes and
the capacities given by --capacity LOCATION=FRACTION (of all bytes).

Prints one JSON line last: objects, binaries, method, seconds, gap (certified: (objective - lower bound) /
objective), and for N <= 100,000 the same instance solved by the monolithic MILP (solver.milp: one binary per
object x feasible replica set, HiGHS, time limit 300 s): milp_seconds, milp_status, milp_gap, speedup =
milp_seconds / seconds (speedup_basis "time_limit" when HiGHS was stopped by the limit: then a lower bound).
Wall seconds depend on what else the machine runs, so the process CPU seconds of both solves (single-threaded)
are reported too (cpu_seconds, milp_cpu_seconds). plan_seconds / plan_quarter_seconds time the live planner
(solver.plan.plan_with_details: Candidate and Placement models in, PlacementPlan out) on --plan-objects of the
instance's objects and a quarter of them; plan_us_per_object of both must be about equal (linear in the batch).

    .venv/bin/python bench/solver_scale.py --objects 100000
    .venv/bin/python bench/solver_scale.py --objects 1000000
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "traces" / "twitter52_dev.csv.zst"


def trace_distribution(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-object (size bytes, read count) of the trace, and the trace's span in seconds."""
    import pandas as pd

    df = pd.read_csv(path)
    per_object = df.groupby("object").agg(size=("size_bytes", "first"), reads=("time_s", "size"))
    span = float(df["time_s"].max() - df["time_s"].min()) or 1.0
    return per_object["size"].to_numpy(float), per_object["reads"].to_numpy(float), span


def build_instance(
    n: int,
    seed: int,
    trace: Path,
    size_scale: float,
    time_scale: float,
    budget_fraction: float,
    capacity_fraction: dict[str, float],
):
    from dim.config import SolverSettings
    from solver.catalogue import load_catalogue
    from solver.synthetic import problem_from_arrays

    settings = SolverSettings()
    cat = load_catalogue()
    sizes, counts, span_s = trace_distribution(trace)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(sizes), n)
    size = sizes[pick] * size_scale
    horizon_s = settings.planning_horizon_days * 86_400.0
    reads = counts[pick] * horizon_s / (span_s * time_scale)
    current = np.zeros((n, len(cat.locations)), dtype=bool)
    for lid in settings.initial_locations:
        current[:, cat.index(lid)] = True
    age = np.where(current, rng.uniform(0, 365, current.shape), 0.0)
    total = float(size.sum())
    pb = problem_from_arrays(
        cat,
        settings,
        size,
        reads,
        current,
        age,
        capacity={k: v * total for k, v in capacity_fraction.items()},
        budget_bytes=budget_fraction * total,
    )
    return pb, reads


@click.command()
@click.option("--objects", "n", type=int, default=100_000)
@click.option("--seed", type=int, default=7)
@click.option("--trace", type=click.Path(path_type=Path, exists=True), default=DEFAULT_TRACE)
@click.option("--size-scale", type=float, default=10_000.0)
@click.option("--time-scale", type=float, default=3600.0)
@click.option(
    "--budget-fraction", type=float, default=0.05, help="Bytes that may be copied, share of all bytes."
)
@click.option(
    "--capacity",
    "capacities",
    multiple=True,
    default=("gcp:us-east1:coldline=0.03", "aws:us-east-1:standard-ia=0.01"),
    help="LOCATION=FRACTION of all bytes it may hold (repeatable).",
)
@click.option(
    "--milp/--no-milp", default=None, help="Also solve the monolithic MILP (default: when N <= 100,000)."
)
@click.option("--milp-time-limit", type=float, default=300.0)
@click.option(
    "--plan-objects",
    type=int,
    default=10_000,
    help="Also time plan_with_details (Candidates in, PlacementPlan out) on this many objects and a quarter of it.",
)
def main(
    n, seed, trace, size_scale, time_scale, budget_fraction, capacities, milp, milp_time_limit, plan_objects
):
    from solver.lagrangian import solve_lagrangian
    from solver.milp import solve_milp

    capacity_fraction = {c.split("=")[0]: float(c.split("=")[1]) for c in capacities}
    t0 = time.perf_counter()
    pb, reads = build_instance(n, seed, trace, size_scale, time_scale, budget_fraction, capacity_fraction)
    build_s = time.perf_counter() - t0
    log(f"instance: {n} objects x {pb.n_locations} locations, built in {build_s:.1f} s")

    t0, c0 = time.perf_counter(), time.process_time()
    sol = solve_lagrangian(pb)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert not pb.violations(sol.chosen), pb.violations(sol.chosen)
    moved = int((sol.chosen & ~pb.current).any(axis=1).sum())
    log(
        f"lagrangian: {seconds:.2f} s, objective {sol.objective:.6f}, bound {sol.lower_bound:.6f}, "
        f"gap {sol.gap:.2e}, {moved} objects move, prices {sol.info.get('prices')}"
    )
    out = {
        "objects": n,
        "locations": pb.n_locations,
        "binaries": int(pb.allowed.sum()),
        "method": sol.method,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "gap": sol.gap,
        "objective_usd": sol.objective,
        "lower_bound_usd": sol.lower_bound,
        "objects_moved": moved,
        "build_seconds": round(build_s, 2),
        "size_scale": size_scale,
        "time_scale": time_scale,
        "budget_fraction": budget_fraction,
        "capacity_fraction": capacity_fraction,
        "seed": seed,
        "trace": trace.name,
    }
    if milp if milp is not None else n <= 100_000:
        t0, c0 = time.perf_counter(), time.process_time()
        exact = solve_milp(pb, "highs", time_limit_s=milp_time_limit, rel_gap=1e-4)
        milp_s, milp_cpu = time.perf_counter() - t0, time.process_time() - c0
        log(
            f"milp: {milp_s:.1f} s ({exact.info.get('build_s', 0):.1f} s to build), status {exact.status}, "
            f"objective {exact.objective:.6f}, bound {exact.lower_bound}"
        )
        limited = exact.status == "time_limit"
        out.update(
            {
                "milp_seconds": round(milp_s, 2),
                "milp_cpu_seconds": round(milp_cpu, 2),
                "milp_build_seconds": round(exact.info.get("build_s", 0.0), 2),
                "milp_binaries": exact.binaries,
                "milp_status": exact.status,
                "milp_gap": exact.gap,
                "milp_objective_usd": exact.objective if np.isfinite(exact.objective) else None,
                "milp_lower_bound_usd": exact.lower_bound,
                # against the time limit when HiGHS was stopped by it: a lower bound on the true speedup
                "speedup": round(milp_s / seconds, 1),
                "speedup_basis": "time_limit" if limited else "solved",
                "cpu_speedup": round(milp_cpu / max(cpu, 1e-9), 1),
                # the decomposition's plan measured against the MILP's own bound, when it has one
                "gap_vs_milp_bound": (
                    (sol.objective - exact.lower_bound) / sol.objective
                    if exact.lower_bound is not None
                    else None
                ),
            }
        )
    if plan_objects:
        out.update(plan_timing(pb, reads, min(plan_objects, n), seed))
    import resource

    out["max_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )  # whole run, MILP too
    print(json.dumps(out))


def plan_timing(pb, reads: np.ndarray, n: int, seed: int) -> dict:
    """Wall seconds of the live planner (solver.plan.plan_with_details) on n of the instance's objects and on
    a quarter of them, as Candidate and Placement models: the per-object cost must not grow with the batch."""
    from dim.config import SolverSettings
    from schemas import Candidate, Placement, Replica
    from solver.catalogue import load_catalogue
    from solver.plan import plan_with_details

    cat, settings, now = load_catalogue(), SolverSettings(), 1_800_000_000.0
    rng = np.random.default_rng(seed)
    cands, current = [], {}
    for i in range(n):
        key = f"o{i}"
        size = int(pb.size[i])
        cands.append(
            Candidate(
                bucket="bench",
                key=key,
                as_of=now,
                size=size,
                read_heat={"1d": float(reads[i])},
                write_heat={},
                p_hot=float(min(1.0, reads[i] / 100.0)),
                expected_reads=float(reads[i]),
                horizon_s=settings.planning_horizon_days * 86_400.0,
                first_seen=now - 400 * 86_400.0,
                last_access=now - float(rng.uniform(0, 90)) * 86_400.0,
            )
        )
        current[("bench", key)] = Placement(
            bucket="bench",
            key=key,
            version=1,
            updated_at=now,
            replicas=[
                Replica(location=loc, size=size, created_at=now - float(rng.uniform(0, 365)) * 86_400.0)
                for loc in settings.initial_locations
            ],
        )
    out = {}
    for label, k in (("plan_quarter", n // 4), ("plan", n)):
        t0 = time.perf_counter()
        result = plan_with_details(cands[:k], current, cat, settings, now)
        out[f"{label}_objects"] = k
        out[f"{label}_seconds"] = round(time.perf_counter() - t0, 3)
        out[f"{label}_moves"] = len(result.plan.moves)
    out["plan_us_per_object"] = round(1e6 * out["plan_seconds"] / max(n, 1), 1)
    out["plan_us_per_object_quarter"] = round(1e6 * out["plan_quarter_seconds"] / max(n // 4, 1), 1)
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
