"""Results do not depend on the number of workers, and SIGKILLs + restarts lose nothing and count nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from dim.kafka import consumer, end_marker_run, partitions_of, producer, publish_end_markers
from dim.testing import log_ends
from flows.run import close_outputs, load_shard_states, run_flow
from schemas import AccessEvent, Candidate, ObjectHeat, ShardStatus, topics

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stack_settings(private_stack_settings):
    return private_stack_settings


def workload(bucket: str, n: int, seed: int) -> list[AccessEvent]:
    """Skewed popularity, puts, heads and deletes, timestamps jittered within (and a few beyond) the lateness."""
    rng = random.Random(seed)
    keys = [f"obj-{i}" for i in range(60)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(keys))]
    events = []
    for i in range(n):
        t = T0 + i * 40.0 + rng.uniform(-200, 200) - (2000 if rng.random() < 0.01 else 0)
        op = rng.choices(["GET", "PUT", "HEAD", "DELETE"], [85, 8, 5, 2])[0]
        size = rng.randrange(1, 10_000)
        key = rng.choices(keys, weights)[0]
        events.append(AccessEvent(event_time=t, bucket=bucket, key=key, op=op,
                                  bytes=size if op == "GET" else 0, object_size=size))
    return events


def produce(settings, events, prod=None) -> None:
    prod = prod or producer(settings)
    for ev in events:
        prod.produce(topics.ACCESS, ev.model_dump_json().encode(), key=topics.object_key(ev.bucket, ev.key))
    prod.flush(30)


def read_sections(settings, topic: str, runs: list[str], start: dict[tuple[str, int], int]) -> dict[str, list[bytes]]:
    """Data records of `topic` from `start` per run: on each partition, the records before that run's end marker
    and after the previous listed run's marker. Records of earlier tests may lead the first section: callers
    select their own by bucket."""
    parts = partitions_of(settings, topic)
    cons = consumer(settings, f"test-{uuid.uuid4().hex[:8]}")
    cons.assign([TopicPartition(topic, p, start[(topic, p)]) for p in parts])  # no group join, no rebalance
    sections: dict[str, list[bytes]] = {r: [] for r in runs}
    current = {p: 0 for p in parts}  # index into runs of the section each partition is in
    try:
        idle_since = time.monotonic()
        while any(i < len(runs) for i in current.values()):
            # Fails only when nothing arrives for a minute: a long log on a loaded machine is slow, not wrong.
            assert time.monotonic() - idle_since < 60, f"end markers not found: sections reached {current}"
            msgs = cons.consume(1000, 0.5)
            if msgs:
                idle_since = time.monotonic()
            for m in msgs:
                if m.error() or current[m.partition()] >= len(runs):
                    continue
                run = end_marker_run(m)
                if run is None:
                    sections[runs[current[m.partition()]]].append(m.value())
                elif run == runs[current[m.partition()]]:
                    current[m.partition()] += 1
    finally:
        cons.close()
    return sections


def per_object(records: list[bytes], model, bucket: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for raw in records:
        rec = model.model_validate_json(raw)
        if rec.bucket == bucket:
            out.setdefault(rec.key, []).append(rec.model_dump())
    return out


def lead_marker(settings) -> str:
    """A marker on the flow-status topic before this test's flows write to it. Statuses are per shard, not per
    bucket, so they cannot be told from an earlier test's by content, and `log_ends` may start inside the last
    batch an earlier test wrote (Tansu's high watermark): the section after this marker is this test's alone."""
    lead = uuid.uuid4().hex
    publish_end_markers(settings, topics.FLOW_STATUS, lead)
    return lead


def per_shard(records: list[bytes]) -> dict[int, list[dict]]:
    """ShardStatus records in emission order per shard (every shard reads the whole access topic: not by bucket)."""
    out: dict[int, list[dict]] = {}
    for raw in records:
        status = ShardStatus.model_validate_json(raw)
        out.setdefault(status.shard, []).append(status.model_dump())
    return out


def settings_with(stack_settings, recovery_dir: Path, **flow):
    s = stack_settings.model_copy(deep=True)
    s.flow.recovery_dir = recovery_dir
    s.flow.snapshot_interval_s = 0.5
    s.flow.model_warmup = 20  # let the model (not only the prior) serve within a small test
    s.flow.forest_fraction = 0.3
    s.flow.eval_interval_s = 600.0
    s.flow.horizon_s = 4 * 3600.0
    s.flow.heat_interval_s = 3600.0
    s.flow.label_fraction = 0.5
    for k, v in flow.items():
        setattr(s.flow, k, v)
    return s


def shard_fingerprint(states) -> dict:
    """Everything the flow knows, as comparable plain data: heat, decisions, pending/learned labels, the model."""
    out = {}
    probe = {"read_heat_1h": 1.0, "read_heat_1d": 2.0, "read_heat_7d": 2.5, "log_reads": 2.0, "log_age_s": 9.0,
             "log_idle_s": 5.0}
    for sid, st in sorted(states.items()):
        objs = {k: r.__getstate__() for k, r in sorted(st.objects.items())}
        model = st.predictor.model
        out[sid] = {
            "clock": st.clock, "events": st.events, "late": st.late_events, "objects": objs,
            "pending_labels": len(st.predictor.labels), "labels_learned": st.predictor.labels_learned,
            "model": model.summary(),
            "probe": {name: m.predict_proba_one(probe) for name, m in model.models.items()},
        }
    return out


def test_results_do_not_depend_on_the_number_of_workers(stack_settings, tmp_path):
    bucket = f"w-{uuid.uuid4().hex[:8]}"
    start = log_ends(stack_settings, [topics.CANDIDATES, topics.HEAT, topics.FLOW_STATUS])
    lead = lead_marker(stack_settings)
    produce(stack_settings, workload(bucket, 3000, seed=1))
    run1, run2, run3 = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    for run in (run1, run2, run3):  # the same data for every run
        publish_end_markers(stack_settings, topics.ACCESS, run)

    one = settings_with(stack_settings, tmp_path / "w1")
    two = settings_with(stack_settings, tmp_path / "w2")
    run_flow(one, workers=1, until_run=run1)
    run_flow(two, workers=2, until_run=run2)
    # Bytewax multi-process mode: two `dim flow` processes of one cluster; the launcher closes the run.
    multi = settings_with(stack_settings, tmp_path / "p2")
    addresses = ";".join(f"127.0.0.1:{_free_port()}" for _ in range(2))
    env = {**os.environ, **multi.to_env()}
    procs = [subprocess.Popen([sys.executable, "-m", "dim.cli", "flow", "--until-run", run3, "--no-recovery",
                               "-p", "2", "-a", addresses, "-i", str(i)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    close_outputs(multi, run3)

    cands = read_sections(stack_settings, topics.CANDIDATES, [run1, run2, run3], start)
    heat = read_sections(stack_settings, topics.HEAT, [run1, run2, run3], start)
    c1, c2, c3 = (per_object(cands[r], Candidate, bucket) for r in (run1, run2, run3))
    h1, h2, h3 = (per_object(heat[r], ObjectHeat, bucket) for r in (run1, run2, run3))
    assert len(c1) > 10 and sum(len(v) for v in c1.values()) > 30
    assert c1 == c2 == c3
    assert h1 and h1 == h2 == h3
    status = read_sections(stack_settings, topics.FLOW_STATUS, [lead, run1, run2, run3], start)
    s1, s2, s3 = (per_shard(status[r]) for r in (run1, run2, run3))
    assert set(s1) == set(partitions_of(stack_settings, topics.ACCESS)) and s1 == s2 == s3
    f1 = shard_fingerprint(load_shard_states(one.recovery_dir))
    f2 = shard_fingerprint(load_shard_states(two.recovery_dir))
    assert any(f["labels_learned"] > 0 for f in f1.values())
    assert f1 == f2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recovered_events(settings) -> int:
    return sum(st.events for st in load_shard_states(settings.recovery_dir).values())


def _start_flow(settings, run: str) -> subprocess.Popen:
    env = {**os.environ, **settings.to_env()}
    return subprocess.Popen([sys.executable, "-m", "dim.cli", "flow", "--until-run", run], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_and_restart_equals_an_uninterrupted_run(stack_settings, tmp_path):
    bucket = f"k-{uuid.uuid4().hex[:8]}"
    events = workload(bucket, 12_000, seed=2)
    killed_settings = settings_with(stack_settings, tmp_path / "killed")
    ref_settings = settings_with(stack_settings, tmp_path / "reference")
    run, ref_run = uuid.uuid4().hex, uuid.uuid4().hex
    rng = random.Random(3)
    start = log_ends(stack_settings, [topics.CANDIDATES, topics.HEAT, topics.FLOW_STATUS])
    lead = lead_marker(stack_settings)

    # Stream the events in three phases while the flow runs. During or after each phase the flow is killed at a
    # random moment once it has made progress, then restarted; the next phase starts only after that kill, so
    # every kill lands mid-stream however slow start-ups are on a loaded machine.
    phases = [events[j * 4000:(j + 1) * 4000] for j in range(3)]
    killed = [threading.Event() for _ in phases]

    def stream():
        prod = producer(stack_settings)
        for phase, kill_done in zip(phases, killed):
            for i in range(0, len(phase), 250):
                produce(stack_settings, phase[i:i + 250], prod)
                time.sleep(0.2)
            kill_done.wait(180)
        publish_end_markers(stack_settings, topics.ACCESS, run, prod)
        publish_end_markers(stack_settings, topics.ACCESS, ref_run, prod)

    streamer = threading.Thread(target=stream)
    streamer.start()
    progress_at_kills: list[int] = []  # events in the recovered state after each kill
    proc = _start_flow(killed_settings, run)
    try:
        for kill_done in killed:
            before = progress_at_kills[-1] if progress_at_kills else 0
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and _recovered_events(killed_settings) <= before:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 1.0))
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            progress_at_kills.append(_recovered_events(killed_settings))
            kill_done.set()
            proc = _start_flow(killed_settings, run)
        streamer.join(180)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        for ev in killed:
            ev.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        streamer.join(10)

    run_flow(ref_settings, until_run=ref_run)  # uninterrupted, in-process, over exactly the same records

    killed = shard_fingerprint(load_shard_states(killed_settings.recovery_dir))
    reference = shard_fingerprint(load_shard_states(ref_settings.recovery_dir))
    total = sum(f["events"] for f in reference.values())
    assert total >= len(events)
    # The kills hit a flow that had made progress and was not done: mid-stream, not before start or after end.
    assert len(progress_at_kills) == 3 and all(n > 0 for n in progress_at_kills), (progress_at_kills, total)
    assert sum(n < total for n in progress_at_kills) >= 2, (progress_at_kills, total)
    assert killed == reference
    # Outputs are at-least-once (a restart may repeat what the killed process already sent): the *distinct*
    # candidates and heat snapshots equal the reference's exactly.
    cands = read_sections(stack_settings, topics.CANDIDATES, [run, ref_run], start)
    heat = read_sections(stack_settings, topics.HEAT, [run, ref_run], start)

    def distinct(records, model):
        return {r for r in records if model.model_validate_json(r).bucket == bucket}

    assert distinct(cands[ref_run], Candidate) and distinct(cands[run], Candidate) == distinct(cands[ref_run],
                                                                                                 Candidate)
    assert distinct(heat[run], ObjectHeat) == distinct(heat[ref_run], ObjectHeat)
    # The shards' statuses too (they count every record of the partition, so they are not selected by bucket).
    status = read_sections(stack_settings, topics.FLOW_STATUS, [lead, run, ref_run], start)
    assert status[ref_run] and set(status[run]) == set(status[ref_run])


@pytest.fixture(autouse=True)
def _no_leftover_children():
    yield
    # Every flow process a test starts is waited for in the test itself; this guards against regressions.
    assert not [t for t in threading.enumerate() if t.name.startswith("Thread-") and t.is_alive()]
