"""The real embedded stack (SeaweedFS + Tansu), started once per test session on free ports in a temp dir."""

from __future__ import annotations

import os

import pytest

from dim.config import Settings
from dim.testing import running_stack, scratch_settings


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory) -> Settings:
    """Settings of a running embedded stack; its DIM_* variables are exported so child processes share it."""
    settings = scratch_settings(tmp_path_factory.mktemp("stack"))
    saved = dict(os.environ)
    with running_stack(settings):
        os.environ.update(settings.to_env())
        try:
            yield settings
        finally:
            os.environ.clear()
            os.environ.update(saved)
