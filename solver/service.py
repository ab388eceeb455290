"""The solver as a pipeline stage: candidates topic -> plans + moves topics. A thin adapter around
`solver.plan.plan_with_details`: Kafka in, placement catalog (S3) read, Kafka out.

Delivery is at-least-once: a batch's offsets are committed only after its plan and moves were flushed to the
broker. A re-planned object gets a move with the same `expected_version`, so the mover's compare-and-set commit
refuses whichever copy comes second.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Message
from pydantic import ValidationError

from dim import kafka
from dim.config import Settings
from schemas import Candidate, DeadLetter, Placement, PlacementPlan, dead_letter_payload, topics
from solver.catalogue import settings_catalogue
from solver.plan import newest_per_object, plan_with_details

log = logging.getLogger(__name__)

GROUP = "solver"


def parse_candidates(msgs: list[Message]) -> tuple[list[Candidate], list[DeadLetter]]:
    good: list[Candidate] = []
    bad: list[DeadLetter] = []
    for m in msgs:
        raw = m.value() or b""
        try:
            good.append(Candidate.model_validate_json(raw))
        except (ValidationError, ValueError) as exc:
            bad.append(
                DeadLetter(
                    ts=time.time(),
                    source_topic=m.topic(),
                    partition=m.partition(),
                    offset=m.offset(),
                    reason=f"invalid Candidate: {exc}"[:1000],
                    payload=dead_letter_payload(raw),
                )
            )
    return good, bad


def read_placements(
    settings: Settings, keys: list[tuple[str, str]], catalog=None
) -> dict[tuple[str, str], Placement]:
    from mover.catalog import PlacementCatalog

    catalog = catalog or PlacementCatalog(settings)
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = list(pool.map(lambda k: catalog.get(*k), keys))
    return {k: entry[0] for k, entry in zip(keys, found) if entry is not None}


def run_solver(
    settings: Settings,
    until_run: str | None = None,
    idle_timeout_s: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[PlacementPlan]:
    """Consume candidates in batches, plan each batch, publish plans and moves. With `until_run`, stop after
    that run's end markers, then append the same run's end markers to the plans and moves topics so the next
    stage can stop too. Returns the plans made."""
    from mover.catalog import PlacementCatalog

    catalogue = settings_catalogue(settings)
    catalog = PlacementCatalog(settings)
    prod = kafka.producer(settings)
    plans: list[PlacementPlan] = []
    skipped: Counter = Counter()

    def handle(msgs: list[Message]) -> None:
        candidates, dead = parse_candidates(msgs)
        for d in dead:
            prod.produce(
                topics.DEAD_LETTERS, key=topics.CANDIDATES.encode(), value=d.model_dump_json().encode()
            )
        candidates = newest_per_object(candidates)
        if candidates:
            current = read_placements(settings, [(c.bucket, c.key) for c in candidates], catalog)
            result = plan_with_details(candidates, current, catalogue, settings.solver, time.time())
            skipped.update(result.skipped)
            publish_plan(prod, result.plan)
            plans.append(result.plan)
            log.info(
                "plan %s: %d candidates, %d moves, method %s, gap %s, skipped %s",
                result.plan.plan_id,
                len(candidates),
                len(result.plan.moves),
                result.plan.method,
                result.plan.gap,
                dict(result.skipped),
            )
        remaining = prod.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} plan/move records not delivered; batch will be re-consumed")

    kafka.drain(
        settings,
        GROUP,
        [topics.CANDIDATES],
        handle,
        until_run=until_run,
        idle_timeout_s=idle_timeout_s,
        max_batch=settings.solver.batch_max,
        batch_timeout_s=settings.solver.batch_interval_s,
        should_stop=should_stop,
    )
    if until_run:
        for topic in (topics.PLANS, topics.MOVES):
            kafka.publish_end_markers(settings, topic, until_run, prod)
    if skipped:
        log.info("solver skipped candidates: %s", dict(skipped))
    return plans


def publish_plan(prod, plan: PlacementPlan) -> None:
    prod.produce(topics.PLANS, key=plan.plan_id.encode(), value=plan.model_dump_json().encode())
    for move in plan.moves:
        prod.produce(
            topics.MOVES, key=topics.object_key(move.bucket, move.key), value=move.model_dump_json().encode()
        )
        prod.poll(0)
