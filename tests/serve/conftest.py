"""Fixtures of the server tests: the tiny tool agent (trained once per session, a few seconds)."""

from __future__ import annotations

import pytest

from .helpers import build_tool_agent


@pytest.fixture(scope="session")
def tool_agent_path(tmp_path_factory):
    return build_tool_agent(tmp_path_factory.mktemp("serve") / "tool-agent", steps=120)
