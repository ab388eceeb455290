"""The Bytewax dataflow: a thin adapter around the pure shard core (flows/shard.py).

    access topic --(AccessSource: one Bytewax partition per Kafka partition, offsets = recovery state)-->
    (partition, [(offset, raw bytes), ...]) micro-batches, keyed by Kafka partition
    --stateful_batch "shard" (ShardLogic: parse + validate, heat, p_hot, labels, hysteresis)-->
    [(topic, key, value bytes), ...] (candidates, heat snapshots, shard status, dead letters)
    --(KafkaRecordSink: produce, flush before the epoch closes)--> topics

Why micro-batches keyed by Kafka partition rather than one Bytewax item per event keyed by object: producers key
the access topic by object, so a Kafka partition already holds every event of its objects in order. Keeping the
partition as the unit (a) costs Bytewax one item and one exchange per poll instead of per event - per-item
overhead and per-key snapshots, not our Python, would otherwise cap throughput, (b) makes every result a function
of the partition's offset order alone, hence identical for any number of workers and after recovery, and (c)
lets the model be sharded per partition with its state recovered together with the heat it learned from.
Parallelism is therefore bounded by the number of partitions of the access topic (settings.kafka.partitions).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    TopicPartition,
)

from dim.config import Settings, kafka_consumer_config
from dim.kafka import END_MARKER_HEADER, partitions_of, produce, producer
from flows.parse import lead_problem, parse_access
from flows.shard import FlowParams, ShardState, restore_shard
from schemas import (
    REPEAT_REASON_PREFIX,
    Candidate,
    DeadLetter,
    ObjectHeat,
    ShardStatus,
    dead_letter_payload,
    topics,
)

FLOW_NAME = "dim-flow"
# After an empty poll, wait this long before polling the partition again (cooperative scheduling: never block).
IDLE_POLL = timedelta(milliseconds=5)

Record = tuple[str, bytes | None, bytes]  # (topic, message key, value)
RawAccess = tuple[int, bytes | None, int | None]  # (offset, value, record timestamp in ms if it has one)


# -- source -------------------------------------------------------------------------------------------------
class _AccessPartition(StatefulSourcePartition):
    def __init__(self, settings: Settings, topic: str, partition: int, next_offset: int | None,
                 until_run: str | None):
        self._partition = partition
        self._next_offset = next_offset
        self._until_run = until_run.encode() if until_run else None
        self._batch = settings.flow.source_batch_size
        self._done = False
        self._awake: datetime | None = None
        # Manual assignment, no group membership: Bytewax, not Kafka, owns the offsets (they are recovery state).
        self._consumer = Consumer(kafka_consumer_config(settings, "flow-source", **{"enable.partition.eof": False}))
        start = OFFSET_BEGINNING if next_offset is None else next_offset
        self._consumer.assign([TopicPartition(topic, partition, start)])

    def next_batch(self) -> list[tuple[str, tuple[int, list[RawAccess]]]]:
        if self._done:
            raise StopIteration()
        msgs = self._consumer.consume(self._batch, 0)
        data: list[tuple[int, bytes | None]] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            offset = m.offset()
            self._next_offset = offset + 1
            headers = m.headers()
            if headers:
                marker = next((v or b"" for k, v in headers if k == END_MARKER_HEADER), None)
                if marker is not None:  # markers are not data; ours ends this partition for this run
                    if marker == self._until_run:
                        self._done = True
                        break
                    continue
            ts_type, ts_ms = m.timestamp()
            data.append((offset, m.value(), ts_ms if ts_type != TIMESTAMP_NOT_AVAILABLE else None))
        self._awake = None if msgs else datetime.now(UTC) + IDLE_POLL
        if not data:
            if self._done:
                raise StopIteration()
            return []
        return [(str(self._partition), (self._partition, data))]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int | None:
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()


class AccessSource(FixedPartitionedSource):
    """The access topic, one Bytewax partition per Kafka partition; the resume state is the next offset."""

    def __init__(self, settings: Settings, until_run: str | None = None, topic: str = topics.ACCESS):
        self._settings = settings
        self._until_run = until_run
        self._topic = topic

    def list_parts(self) -> list[str]:
        return [str(p) for p in partitions_of(self._settings, self._topic)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _AccessPartition:
        return _AccessPartition(self._settings, self._topic, int(for_part), resume_state, self._until_run)


# -- shard ----------------------------------------------------------------------------------------------------
def encode_outputs(shard: ShardState, items: list, out: list[Record]) -> None:
    # model_dump_json().encode() without the str round trip: pydantic's serializer writes the same JSON bytes.
    to_json_candidate = Candidate.__pydantic_serializer__.to_json
    to_json_heat = ObjectHeat.__pydantic_serializer__.to_json
    object_key, append = topics.object_key, out.append
    for item in items:
        cls = type(item)
        if cls is Candidate:
            append((topics.CANDIDATES, object_key(item.bucket, item.key), to_json_candidate(item)))
        elif cls is ObjectHeat:
            append((topics.HEAT, object_key(item.bucket, item.key), to_json_heat(item)))
        elif cls is ShardStatus:
            append((topics.FLOW_STATUS, str(item.shard).encode(), item.model_dump_json().encode()))
        else:  # pragma: no cover - the core only emits the three kinds above
            raise TypeError(f"unexpected output {type(item).__name__}")


def dead_letter(partition: int, offset: int, raw: bytes | None, reason: str) -> Record:
    dl = DeadLetter(ts=time.time(), source_topic=topics.ACCESS, partition=partition, offset=offset,
                    reason=reason, payload=dead_letter_payload(raw))
    return (topics.DEAD_LETTERS, topics.ACCESS.encode(), dl.model_dump_json().encode())


def process_batch(shard: ShardState, partition: int, batch: list[RawAccess], out: list[Record],
                  max_lead_s: float | None = None) -> None:
    """Parse, validate and account one micro-batch of raw records in offset order. With `max_lead_s`, an event
    more than that ahead of its record's timestamp is a dead letter (settings.flow.max_event_lead_s)."""
    emitted: list = []
    on_event = shard.on_event
    for offset, raw, ts_ms in batch:
        ev = parse_access(raw)
        if not isinstance(ev, str) and max_lead_s is not None:
            ev = lead_problem(ev.event_time, ts_ms, max_lead_s) or ev
        if isinstance(ev, str):
            shard.dead_letters += 1
            out.append(dead_letter(partition, offset, raw, ev))
            continue
        if not on_event(f"{ev.bucket}/{ev.key}", ev.event_time, ev.op.value, ev.bytes, ev.object_size, emitted,
                        ev.request_id):
            out.append(dead_letter(partition, offset, raw, repeat_reason(shard, ev.request_id, ev.op.value)))
    encode_outputs(shard, emitted, out)


def repeat_reason(shard: ShardState, request_id: str, op: str) -> str:
    return (f"{REPEAT_REASON_PREFIX} (request_id {request_id!r}, {op} of this object at the same "
            f"event time, within {shard.requests.window_s:g} s of event time, flow.dedup_window_s): "
            "not counted again")


class ShardLogic(StatefulBatchLogic):
    """One access-topic partition's ShardState inside Bytewax. Bytewax's builder is not told the key, so a new
    shard is built on its first batch, which carries the partition number (it seeds the shard's model)."""

    def __init__(self, make_shard, resume: bytes | None, where: str = "a recovery snapshot",
                 max_lead_s: float | None = None):
        self.make_shard = make_shard
        self.max_lead_s = max_lead_s
        self.shard: ShardState | None = restore_shard(resume, where) if resume is not None else None

    def on_batch(self, values: list[tuple[int, list]]) -> tuple[Iterable[list[Record]], bool]:
        out: list[Record] = []
        for partition, batch in values:
            if self.shard is None:
                self.shard = self.make_shard(partition)
            elif self.shard.shard_id is None:  # restored from a format-4 snapshot (flows.shard.restore_shard)
                self.shard.shard_id = partition
            process_batch(self.shard, partition, batch, out, self.max_lead_s)
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[list[Record]], bool]:
        if self.shard is None:
            return [], StatefulBatchLogic.RETAIN
        emitted: list = []
        self.shard.finish(emitted)
        out: list[Record] = []
        encode_outputs(self.shard, emitted, out)
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        # bytes are immutable, as Bytewax requires; the whole shard (heat, pending labels, model) is one value.
        if self.shard is None:
            return None
        return pickle.dumps(self.shard, protocol=pickle.HIGHEST_PROTOCOL)


# -- sink -----------------------------------------------------------------------------------------------------
class _KafkaRecordPartition(StatefulSinkPartition):
    """Produces asynchronously; flushes when Bytewax snapshots the epoch. Tansu acknowledges slowly (its log lives
    in S3), so waiting for acks per batch would stall the worker; waiting once per epoch, before the epoch's
    snapshot is committed, still guarantees that no record of a committed epoch is lost (at-least-once)."""

    def __init__(self, settings: Settings):
        self._producer = producer(settings, **{"linger.ms": 5})

    def write_batch(self, items: list[list[Record]]) -> None:
        prod = self._producer
        for records in items:
            for topic, key, value in records:
                produce(prod, topic, value, key)
        prod.poll(0)

    def _flush(self) -> None:
        remaining = self._producer.flush(60)
        if remaining:
            raise KafkaException(f"{remaining} flow output records not delivered")

    def snapshot(self) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()


class KafkaRecordSink(FixedPartitionedSink):
    """One sink partition per shard (= access partition), so each shard's records keep their order."""

    def __init__(self, settings: Settings, topic: str = topics.ACCESS):
        self._settings = settings
        self._topic = topic

    def list_parts(self) -> list[str]:
        return [str(p) for p in partitions_of(self._settings, self._topic)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _KafkaRecordPartition:
        return _KafkaRecordPartition(self._settings)


# -- the dataflow ---------------------------------------------------------------------------------------------
def make_shard_factory(settings: Settings):
    params = FlowParams.from_settings(settings)

    def make_shard(partition: int) -> ShardState:
        from flows.predict import make_predictor

        return ShardState(params, make_predictor(settings, shard_id=partition), shard_id=partition)

    return make_shard


def build_dataflow(settings: Settings, until_run: str | None = None, make_shard: Any = None) -> Dataflow:
    make_shard = make_shard or make_shard_factory(settings)
    flow = Dataflow(FLOW_NAME)
    batches = op.input("access", flow, AccessSource(settings, until_run))
    where = f"the recovery store {settings.recovery_dir}"
    lead = settings.flow.max_event_lead_s
    records = op.stateful_batch("shard", batches, lambda resume: ShardLogic(make_shard, resume, where, lead))
    op.output("out", records, KafkaRecordSink(settings))
    return flow
