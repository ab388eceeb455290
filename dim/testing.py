"""Helpers for tests and benchmarks that need the real embedded stack on free ports in a scratch directory."""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
