"""Thin Kafka adapter shared by every stage: producers, consumers, end markers and draining.

End markers. Tansu reports as high watermark the first offset of the last record batch, not the end of the log,
so "consumed up to the high watermark" cannot tell a bounded run that it is done. Instead, whoever finishes
writing a topic for a run appends an *end marker* to every partition: an empty record with the header
`dim-end: <run id>`. A bounded consumer stops once it has seen its run's marker on every partition. Markers of
other runs are skipped; every consumer of our topics must skip markers (`is_end_marker`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from dim.config import Settings, kafka_client_config, kafka_consumer_config

END_MARKER_HEADER = "dim-end"


class BrokerUnavailable(KafkaException):
    """No Kafka broker answered at the configured bootstrap servers."""


def require_broker(settings: Settings, timeout: float = 10.0) -> None:
    """Fail at once, naming the servers, when no broker answers: otherwise a command waits for its delivery
    timeout while librdkafka logs a line per reconnect, then reports undelivered records (or, for a consumer,
    ends with nothing read as if the topics were empty)."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: the connection attempts are this check's business, not the user's terminal's
    admin = AdminClient(kafka_client_config(settings, log_level=0))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        raise BrokerUnavailable(
            f"no Kafka broker answered at {settings.kafka.bootstrap} (DIM_KAFKA__BOOTSTRAP) within {timeout:g} s: "
            "start the embedded stack with `dim up`, or point DIM_KAFKA__BOOTSTRAP at your brokers") from None


def producer(settings: Settings, **extra: Any) -> Producer:
    # Idempotence off: a retried batch may be appended twice. Nothing relies on the broker to prevent that: a
    # repeated access carries its request id (the flow and the hourly rollup count it once: flows/dedup.py,
    # api/derive.py), the flow's outputs are deterministic and keyed by content downstream, moves by move_id.
    # (Tansu accepted an idempotent producer across a broker restart in a smoke test, 2026-12-03; whether it
    # checks sequence numbers is not verified, and a producer whose broker loses its state fails fatally.)
    conf = kafka_client_config(
        settings,
        **{"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 500000,
           "enable.idempotence": False, "acks": "all"},
    )
    conf.update(extra)
    return Producer(conf)


def produce(prod: Producer, topic: str, value: bytes, key: bytes | None = None, **kwargs: Any) -> None:
    """`prod.produce`, waiting for room when librdkafka's local queue is full instead of failing."""
    while True:
        try:
            prod.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:  # local queue full: let librdkafka deliver some first
            prod.poll(0.05)


def consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    return Consumer(kafka_consumer_config(settings, group, **extra))


def partitions_of(settings: Settings, topic: str, timeout: float = 10.0) -> list[int]:
    from confluent_kafka.admin import AdminClient

    md = AdminClient(kafka_client_config(settings)).list_topics(topic, timeout=timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaException(f"topic {topic} not found: {meta.error if meta else 'no metadata'}")
    return sorted(meta.partitions)


def publish_end_markers(settings: Settings, topic: str, run_id: str, prod: Producer | None = None) -> None:
    """Append this run's end marker to every partition of `topic` (after flushing what came before)."""
    own = prod is None
    prod = prod or producer(settings)
    prod.flush()
    for p in partitions_of(settings, topic):
        prod.produce(topic, value=b"", partition=p, headers=[(END_MARKER_HEADER, run_id.encode())])
    remaining = prod.flush(30)
    if remaining:
        raise KafkaException(f"{remaining} end markers for {topic} not delivered")
    if own:
        del prod


def end_marker_run(msg: Message) -> str | None:
    """The run id if `msg` is an end marker, else None."""
    headers = msg.headers()
    if not headers:
        return None
    for name, value in headers:
        if name == END_MARKER_HEADER:
            return (value or b"").decode()
    return None


def is_end_marker(msg: Message) -> bool:
    return end_marker_run(msg) is not None


def drain(
    settings: Settings,
    group: str,
    topics: list[str],
    handle_batch: Callable[[list[Message]], None],
    until_run: str | None = None,
    idle_timeout_s: float | None = None,
    max_batch: int = 10_000,
    batch_timeout_s: float = 1.0,
    commit: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Consume `topics` in a consumer group, hand batches of data records to `handle_batch`, and commit offsets
    only after it returns (at-least-once). Stops when the end markers of `until_run` were seen on every partition
    of every topic, when nothing arrived for `idle_timeout_s`, or when `should_stop()`; else runs forever.
    Returns the number of data records handled."""
    cons = consumer(settings, group)
    expected = {(t, p) for t in topics for p in partitions_of(settings, t)} if until_run else set()
    seen_end: set[tuple[str, int]] = set()
    handled = 0
    last_data = time.monotonic()
    cons.subscribe(topics)
    try:
        while not should_stop():
            msgs = cons.consume(max_batch, batch_timeout_s)
            data: list[Message] = []
            # Offsets to commit per partition. A partition that reached this run's end marker is committed AT the
            # marker, not past it, and paused: a restarted bounded run reads the marker again instead of waiting
            # for one that was already consumed, and records after it are left for whoever runs next.
            positions: dict[tuple[str, int], int] = {}
            for m in msgs:
                if m.error():
                    # Partition EOF and transient errors are not data; fatal errors surface.
                    if m.error().fatal():
                        raise KafkaException(m.error())
                    continue
                tp = (m.topic(), m.partition())
                if tp in seen_end:
                    continue
                run = end_marker_run(m)
                if run is not None and run == until_run:
                    seen_end.add(tp)
                    positions[tp] = m.offset()
                    cons.pause([TopicPartition(*tp)])
                    continue
                positions[tp] = m.offset() + 1
                if run is None:
                    data.append(m)
            if data:
                handle_batch(data)
                handled += len(data)
                last_data = time.monotonic()
            if positions and commit:
                cons.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in positions.items()],
                            asynchronous=False)
            if until_run and expected <= seen_end:
                break
            if idle_timeout_s is not None and time.monotonic() - last_data > idle_timeout_s:
                break
    finally:
        cons.close()
    return handled


def iter_records(settings: Settings, topic: str, group: str, until_run: str) -> Iterator[Message]:
    """All data records of `topic` up to `until_run`'s end markers (for tests and small tools)."""
    out: list[Message] = []
    drain(settings, group, [topic], out.extend, until_run=until_run, commit=False)
    yield from out
