"""The real embedded stack (SeaweedFS + Tansu), started once per test session on free ports in a temp dir."""

from __future__ import annotations

import os

import pytest

from dim.config import Settings
from dim.testing import running_stack, scratch_settings

# A consumer group join on Tansu takes ~3.1 s at the default 6 s session timeout and ~2.1 s at 3 s (measured): the
# suite joins groups over and over. Heartbeats run on librdkafka's own thread (every timeout / 3), so a busy test
# process does not lose its session; production keeps the default.
TEST_KAFKA = {"session_timeout_ms": 3000}


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory) -> Settings:
    """Settings of a running embedded stack; its DIM_* variables are exported so child processes share it."""
    settings = scratch_settings(tmp_path_factory.mktemp("stack"), kafka=TEST_KAFKA)
    saved = dict(os.environ)
    with running_stack(settings):
        os.environ.update(settings.to_env())
        try:
            yield settings
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="module")
def private_stack_settings(tmp_path_factory) -> Settings:
    """A stack of the module's own, for tests whose cost or meaning depends on what the topics held before them:
    a flow without recovery state reads the access topic from its start, and on the session's stack that is every
    earlier test's events (the flow kill test took 391 s there, 30 s on its own stack). Starts in ~3 s. Child
    processes get its settings explicitly (`settings.to_env()`): the environment names the session's stack."""
    with running_stack(scratch_settings(tmp_path_factory.mktemp("private-stack"), kafka=TEST_KAFKA)) as settings:
        yield settings
