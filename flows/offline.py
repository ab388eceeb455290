"""Run the flow's core over an in-memory event sequence, without Kafka or Bytewax: the same ShardState and
predictor code the live flow runs, for offline evaluators and benchmarks. Pure."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from flows.gctune import few_gc_passes
from flows.labels import Labelled
from flows.predict import make_predictor
from flows.shard import FlowParams, ShardState

Event = tuple[str, float, str, int, int]  # (object key "bucket/key", event time, op, bytes, object size)


def shard_of(key: str, shards: int) -> int:
    """A stable stand-in for the broker's partitioner (one object -> one shard, same in every process)."""
    return zlib.crc32(key.encode()) % shards


@dataclass
class OfflineRun:
    shards: list[ShardState]
    outputs: list = field(default_factory=list)  # Candidates, ObjectHeats and ShardStatus, in emission order

    @property
    def labelled(self) -> list[Labelled]:
        out = [lab for s in self.shards for lab in s.predictor.labelled]
        out.sort(key=lambda lab: (lab.at, lab.key))
        return out


def run_offline(settings, events: Iterable[Event], shards: int = 1, record: bool = True,
                finish: bool = True) -> OfflineRun:
    params = FlowParams.from_settings(settings)
    states = [ShardState(params, make_predictor(settings, shard_id=i, record=record), shard_id=i)
              for i in range(shards)]
    run = OfflineRun(states)
    out = run.outputs
    with few_gc_passes():
        if shards == 1:
            on_event = states[0].on_event
            for key, t, op, nbytes, size in events:
                on_event(key, t, op, nbytes, size, out)
        else:
            for key, t, op, nbytes, size in events:
                states[shard_of(key, shards)].on_event(key, t, op, nbytes, size, out)
        if finish:
            for s in states:
                s.finish(out)
    return run
