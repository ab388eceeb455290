"""Helpers for tests and benchmarks that need the real embedded stack on free ports in a scratch directory."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dim import stack
from dim.config import Settings


def free_port_layout(rng: random.Random | None = None) -> dict[str, int]:
    """Ports for one stack (S3, Kafka and SeaweedFS's block of internal ports), all currently free."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000, 20)
        layout = {"s3_port": base, "kafka_port": base + 1, "seaweed_port_base": base + 2}
        probe = Settings(stack=layout)
        if not any(stack.port_in_use(c.port) for c in stack.port_claims(probe)):
            return layout
    raise RuntimeError("no free block of ports found")


def scratch_settings(data_dir: Path, **overrides) -> Settings:
    """Settings for a stack of our own in `data_dir`, on free ports. The S3 and Kafka endpoints follow the new
    ports even when the environment names another stack's (as it does inside the test session)."""
    st = {"data_dir": data_dir, **free_port_layout(), **overrides.pop("stack", {})}
    s3 = {"endpoint": None, **overrides.pop("s3", {})}
    kafka = {"bootstrap": None, **overrides.pop("kafka", {})}
    return Settings(stack=st, s3=s3, kafka=kafka, **overrides)


@contextmanager
def running_stack(settings: Settings) -> Iterator[Settings]:
    stack.up(settings)
    try:
        yield settings
    finally:
        stack.down(settings)


def valid_records(settings: Settings, topic: str, model, group: str, until_run: str) -> list:
    """The records of `topic` up to `until_run`'s end markers that parse as `model`.

    Topics of the shared test stack also carry other tests' deliberately invalid records (dead-letter tests):
    a reader filters for its own records, it does not fail on someone else's garbage."""
    from pydantic import ValidationError

    from dim.kafka import iter_records

    out = []
    for m in iter_records(settings, topic, group, until_run):
        try:
            out.append(model.model_validate_json(m.value()))
        except ValidationError:
            continue
    return out


def log_ends(settings: Settings, topic_names: list[str]) -> dict[tuple[str, int], int]:
    """Where each partition of `topic_names` ends now, or a little before: Tansu's high watermark is the first
    offset of the last record batch. Reading from here skips what the rest of a test session wrote before."""
    from confluent_kafka import TopicPartition

    from dim.kafka import consumer, partitions_of

    cons = consumer(settings, "log-ends")
    try:
        return {(t, p): max(0, cons.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1])
                for t in topic_names for p in partitions_of(settings, t)}
    finally:
        cons.close()


def start_group_at_log_end(settings: Settings, group: str, topic_names: list[str]) -> None:
    """Commit `group`'s offsets at the current ends of `topic_names`, so a service started next in that group
    handles this test's records, not the whole session's backlog (the solver planned every earlier test's
    candidates: minutes). The records of the last batch before the end may be handled again: filter by bucket."""
    from confluent_kafka import TopicPartition

    from dim.kafka import consumer

    ends = log_ends(settings, topic_names)
    cons = consumer(settings, group)
    try:
        cons.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in ends.items()], asynchronous=False)
    finally:
        cons.close()
