"""Bounded draining on the real broker: end markers, at-least-once commits, restart after a marker."""

from __future__ import annotations

import uuid

from dim.kafka import drain, partitions_of, producer, publish_end_markers
from schemas import topics

TOPIC = topics.DEAD_LETTERS  # any provisioned topic; records are told apart by a unique key


def _publish(settings, tag: str, n: int) -> None:
    prod = producer(settings)
    for i in range(n):
        prod.produce(TOPIC, key=f"{tag}-{i}".encode(), value=b"x")
    assert prod.flush(10) == 0


def _mine(msgs, tag):
    return [m.key().decode() for m in msgs if m.key() and m.key().decode().startswith(tag)]


def test_drain_stops_at_its_runs_markers_and_a_restart_finds_them_again(stack_settings):
    tag = uuid.uuid4().hex[:8]
    group = f"drain-test-{tag}"
    _publish(stack_settings, tag + "a", 40)
    publish_end_markers(stack_settings, TOPIC, f"{tag}-run1")
    _publish(stack_settings, tag + "b", 10)  # after the marker: belongs to the next run

    got: list = []
    drain(stack_settings, group, [TOPIC], got.extend, until_run=f"{tag}-run1")
    assert sorted(_mine(got, tag)) == sorted(f"{tag}a-{i}" for i in range(40))

    # The same bounded run restarted (e.g. after a crash) must end again, not wait for consumed markers.
    again: list = []
    drain(stack_settings, group, [TOPIC], again.extend, until_run=f"{tag}-run1", idle_timeout_s=20)
    assert _mine(again, tag) == []

    # The next run picks up exactly the records after the first run's markers.
    publish_end_markers(stack_settings, TOPIC, f"{tag}-run2")
    rest: list = []
    drain(stack_settings, group, [TOPIC], rest.extend, until_run=f"{tag}-run2")
    assert sorted(_mine(rest, tag)) == sorted(f"{tag}b-{i}" for i in range(10))
    assert len(partitions_of(stack_settings, TOPIC)) == stack_settings.kafka.partitions
