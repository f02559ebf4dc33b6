"""Fixtures of the learning tests: the tiny deployed agent (trained once per session, ~2 min on one thread)."""

from __future__ import annotations

import pytest

from .helpers import train_base_agent


@pytest.fixture(scope="session")
def base_agent(tmp_path_factory):
    return train_base_agent(tmp_path_factory.mktemp("learning") / "base")
