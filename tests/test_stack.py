"""The embedded stack: clear errors on busy ports, persistence across down/up, nothing left behind."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from dim import stack
from dim.kafka import consumer, producer
from dim.testing import scratch_settings


def test_port_in_use_names_port_and_setting(tmp_path):
    settings = scratch_settings(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", settings.stack.kafka_port))
        blocker.listen()
        with pytest.raises(stack.StackError) as err:
            stack.up(settings)
    msg = str(err.value)
    assert str(settings.stack.kafka_port) in msg
    assert "stack.kafka_port" in msg and "DIM_STACK__KAFKA_PORT" in msg
    assert stack.read_state(settings) is None  # nothing was started


def _left_in_tmp(settings, weed_pid: int) -> list[str]:
    """Files in the temp directory that this stack's SeaweedFS would leave there (its S3 socket, glog files)."""
    tmp = Path(tempfile.gettempdir())
    return sorted(p.name for p in tmp.iterdir()
                  if p.name == f"seaweedfs-s3-{settings.stack.s3_port}.sock"
                  or (p.name.startswith("weed.") and p.name.endswith(f".{weed_pid}")))


def test_waiting_for_the_broker_is_quiet(tmp_path, capfd):
    # `dim up` polls the broker while Tansu starts: a Kafka client started before its port listens logs
    # "Connection refused" on every retry (the first lines a user of `make demo` saw). The port is asked first.
    settings = scratch_settings(tmp_path)
    assert not stack.kafka_healthy(settings, timeout=1.0)
    assert "Connection refused" not in capfd.readouterr().err


def test_down_up_keeps_objects_topics_offsets_and_leaves_no_process(tmp_path):
    settings = scratch_settings(tmp_path)
    info = stack.up(settings)
    pids = [info["supervisor"]["pid"]] + [p["pid"] for p in info["processes"].values()]
    weed_pid = info["processes"]["seaweedfs"]["pid"]
    try:
        from dim.config import s3_client
        from schemas import topics

        s3_client(settings).put_object(Bucket=settings.s3.catalog_bucket, Key="probe", Body=b"kept")
        prod = producer(settings)
        for i in range(10):
            prod.produce(topics.ACCESS, key=b"k", value=str(i).encode())
        assert prod.flush(10) == 0
        cons = consumer(settings, "persist-test")
        cons.subscribe([topics.ACCESS])
        got = []
        while len(got) < 4:
            got += [m for m in cons.consume(4 - len(got), 1.0) if not m.error()]
        cons.commit(asynchronous=False)
        cons.close()

        assert stack.down(settings)
        assert not any(stack._pid_alive(p) for p in pids)
        assert not stack.s3_healthy(settings)
        assert _left_in_tmp(settings, weed_pid) == []

        stack.up(settings)
        body = s3_client(settings).get_object(Bucket=settings.s3.catalog_bucket, Key="probe")["Body"].read()
        assert body == b"kept"
        cons = consumer(settings, "persist-test")
        cons.subscribe([topics.ACCESS])
        rest = []
        for _ in range(30):
            rest += [m.value() for m in cons.consume(10, 1.0) if not m.error()]
            if len(rest) >= 6:
                break
        cons.close()
        # The committed offset survived the restart: the group resumes after the first four records.
        assert sorted(int(v) for v in rest) == [4, 5, 6, 7, 8, 9]
    finally:
        state = stack.read_state(settings)
        assert stack.down(settings)
        if state:
            alive = [p for p in [state["supervisor"], *[c["pid"] for c in state["children"].values()]]
                     if stack._pid_alive(p)]
            assert alive == []
