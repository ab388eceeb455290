"""Batched deletes: concurrent callers share one request; each gets its own key's result. Real SeaweedFS."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from mover.batching import KeyBatcher
from mover.catalog import replica_key
from mover.s3ops import MoveError, ReplicaStore

A = "aws:us-east-1:standard"


def test_callers_arriving_during_a_request_share_the_next_one():
    first_started, release = threading.Event(), threading.Event()
    sent: list[list[str]] = []

    def send(keys):
        sent.append(keys)
        if len(sent) == 1:
            first_started.set()
            assert release.wait(5)
        return {"k3": ValueError("k3 refused")} if "k3" in keys else {}

    batcher = KeyBatcher(send)
    errors: dict[str, BaseException] = {}

    def call(key):
        try:
            batcher.run(key)
        except ValueError as exc:
            errors[key] = exc

    first = threading.Thread(target=call, args=("k0",))
    first.start()
    assert first_started.wait(5)
    others = [threading.Thread(target=call, args=(f"k{i}",)) for i in range(1, 6)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    while len(batcher._pending) < 5 and time.monotonic() < deadline:  # all five queued behind the first
        time.sleep(0.005)
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert sent[0] == ["k0"] and sorted(sent[1]) == ["k1", "k2", "k3", "k4", "k5"] and len(sent) == 2
    assert list(errors) == ["k3"]  # only the refused key's caller sees an error


def test_a_failed_batch_fails_every_caller_of_it():
    batcher = KeyBatcher(lambda keys: (_ for _ in ()).throw(MoveError("store down")))
    with pytest.raises(MoveError, match="store down"):
        batcher.run("k")


def test_delete_objects_removes_every_key_of_a_batch(stack_settings):
    store = ReplicaStore(stack_settings)
    keys = [replica_key("app", f"batch-{uuid.uuid4().hex[:8]}-{i}") for i in range(5)]
    for k in keys[:4]:
        store.put(A, k, b"x" * 100)
    assert store._delete_keys(A, keys) == {}  # the fifth never existed: absent counts as deleted
    assert all(store.head(A, k) is None for k in keys)
    assert store.stats["delete_batches"] == 1 and store.stats["batched_deletes"] == 5


def test_concurrent_batched_deletes_all_land(stack_settings):
    store = ReplicaStore(stack_settings)
    keys = [replica_key("app", f"batch-{uuid.uuid4().hex[:8]}-{i}") for i in range(40)]
    for k in keys:
        store.put(A, k, b"y" * 100)
    threads = [threading.Thread(target=store.delete, args=(A, k), kwargs={"batched": True}) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(store.head(A, k) is None for k in keys)
