"""The offline evaluation: every policy replayed over the same trace, slot by slot, billed by the same ledger
(dim.evaluation.ledger over solver.costs). No Kafka, no S3: `evaluate` is a function of the trace and settings."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dim.config import Settings
from dim.evaluation.ledger import Ledger
from dim.evaluation.policies import (
    AllHot,
    Autoclass,
    IntelligentTiering,
    Ladder,
    Lifecycle,
    Policy,
    SeedRandomForest,
    SlotContext,
)
from dim.evaluation.pricing import INTERNET, client_catalogue, client_site_for_region
from dim.evaluation.workload import SECONDS_PER_DAY, Workload, load_workload
from dim.producers import ReplayOptions
from solver.catalogue import TIER_CLASSES, Catalogue, settings_catalogue
from solver.costs import LocationArrays

POLICIES = ("all_hot", "lifecycle", "intelligent_tiering", "autoclass", "seed_rf", "ours", "hindsight")


def make_policies(names, settings: Settings, catalogue: Catalogue, workload: Workload, ladder: Ladder,
                  shards: int | None, workers: int = 2, progress: bool = False) -> list[Policy]:
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    made: dict[str, Policy] = {}
    # ours first: its flow replay runs in worker processes while the others are prepared here
    for name in sorted(names, key=lambda n: n != "ours"):
        made[name] = _make_policy(name, settings, catalogue, workload, ladder, shards, workers, progress)
    return [made[n] for n in names]


def _make_policy(name, settings, catalogue, workload, ladder, shards, workers, progress) -> Policy:
    if name == "all_hot":
        return AllHot()
    if name == "lifecycle":
        return Lifecycle(ladder)
    if name == "intelligent_tiering":
        return IntelligentTiering(ladder)
    if name == "autoclass":
        return Autoclass(ladder)
    if name == "seed_rf":
        return SeedRandomForest(ladder, hot_reads=settings.flow.hot_reads)
    if name == "ours":
        from dim.evaluation.ours import Ours

        return Ours(settings, catalogue, workload, shards=shards, workers=workers, progress=progress)
    from dim.evaluation.hindsight import Hindsight

    return Hindsight(settings, catalogue, workload)


def simulate(workload: Workload, catalogue: Catalogue, settings: Settings, names=POLICIES,
             shards: int | None = None, progress: bool = False, workers: int = 2) -> dict:
    """Replay `workload` under each policy; the results dict (see docs/evaluation.md)."""
    la = LocationArrays.of(catalogue)
    initial_ids = list(settings.solver.initial_locations)
    initial = np.isin(np.array(catalogue.ids), initial_ids)
    ladder = Ladder(catalogue, initial_ids)
    t = time.perf_counter()
    policies = make_policies(names, settings, catalogue, workload, ladder, shards, workers, progress)
    prepare_s = time.perf_counter() - t
    ledgers = [Ledger(catalogue, la, workload.size, workload.birth, initial, workload.slot_s,
                      settings.solver.sla_ms, workload.n_slots, t0=workload.t0, managed=p.managed)
               for p in policies]
    seconds = {p.name: 0.0 for p in policies}
    last_access = np.full(workload.n, -np.inf)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=workload.n_slots, unit="slot", desc="evaluate")
    bounds = workload.slot_event_bounds
    for s in range(workload.n_slots):
        now = workload.slot_start(s)
        born = workload.born_by(now)
        for policy, ledger in zip(policies, ledgers):
            t = time.perf_counter()
            ctx = SlotContext(s=s, now=now, workload=workload, where=ledger.where, since=ledger.since,
                              last_access=last_access, born=born)
            target = policy.decide(ctx)
            if target is not None:
                ledger.apply(s, target)
            ledger.run_slot(s, workload.reads[:, s])
            seconds[policy.name] += time.perf_counter() - t
        lo, hi = bounds[s], bounds[s + 1]
        np.maximum.at(last_access, workload.ev_obj[lo:hi], workload.ev_time[lo:hi])
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    results = {}
    for policy, ledger in zip(policies, ledgers):
        r = ledger.result()
        r["seconds"] = round(seconds[policy.name], 3)
        r.update(getattr(policy, "extra_results", dict)())
        results[policy.name] = r
    series = {
        "slot_days": workload.slot_days,
        "cumulative_cost_usd": {p.name: l.cumulative().tolist() for p, l in zip(policies, ledgers)},
        "tier_bytes": {p.name: {c: l.tier_bytes[:, k].tolist() for k, c in enumerate(TIER_CLASSES)}
                       for p, l in zip(policies, ledgers)},
        "sla_violating_reads": {p.name: l.violating_per_slot.tolist() for p, l in zip(policies, ledgers)},
        "reads": workload.reads.sum(axis=0).tolist(),
    }
    return {"policies": results, "series": series, "prepare_seconds": round(prepare_s, 2)}


def gap_closed(policies: dict, key: str = "total_cost_usd") -> float | None:
    try:
        hot, ours, best = policies["all_hot"][key], policies["ours"][key], policies["hindsight"][key]
    except KeyError:
        return None
    return (hot - ours) / (hot - best) if hot - best > 0 else None


def evaluate(trace_path: Path, time_scale: float, size_scale: float, *, settings: Settings | None = None,
             slot_days: float = 1.0, client: str = "auto", policies=POLICIES, shards: int | None = None,
             limit: int | None = None, fmt: str | None = None, progress: bool = False, workers: int = 2) -> dict:
    """Evaluate every policy on the trace at the given scales. Returns the results as a JSON-ready dict."""
    t0 = time.perf_counter()
    settings = settings or Settings()
    opt = ReplayOptions(time_scale=time_scale, size_scale=size_scale, source=Path(trace_path).stem)
    base = settings_catalogue(settings)
    client_site = client_site_for_region(base, opt.client_region) if client == "auto" else client
    catalogue = client_catalogue(base, client_site)
    workload = load_workload(Path(trace_path), opt, slot_s=slot_days * SECONDS_PER_DAY, fmt=fmt, limit=limit)
    load_s = time.perf_counter() - t0
    out = simulate(workload, catalogue, settings, names=policies, shards=shards, progress=progress,
                   workers=workers)
    pol = out["policies"]
    summary = {
        "trace": str(trace_path),
        "time_scale": time_scale,
        "size_scale": size_scale,
        "catalogue_version": base.version,
        "client_site": client_site if client_site != INTERNET else INTERNET,
        "slot_days": slot_days,
        "slots": workload.n_slots,
        "simulated_days": workload.n_slots * slot_days,
        "objects": workload.n,
        "requests": len(workload.ev_time),
        "replication_factor": settings.solver.replication_factor,
        "initial_locations": list(settings.solver.initial_locations),
        "sla_ms": settings.solver.sla_ms,
        "gap_closed": gap_closed(pol),
    }
    if "ours" in pol:
        for other in ("all_hot", "intelligent_tiering"):
            if other in pol and pol[other]["total_cost_usd"] > 0:
                summary[f"ours_saving_vs_{other}"] = 1 - pol["ours"]["total_cost_usd"] / pol[other]["total_cost_usd"]
    summary["load_seconds"] = round(load_s, 2)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return {**summary, **out}
