"""The version store's folder/pointer layout and version names outside a store."""

import json

import pytest

from agent_forge.errors import ForgeError
from agent_forge.interactions import current_version, history, is_store, set_current, version_of
from agent_forge.serve.source import resolve_agent_source, serving_defaults


def test_pointer_history_and_serving_from_a_store(tmp_path):
    store = tmp_path / "deploy"
    for name in ("v1", "v2"):
        (store / "versions" / name).mkdir(parents=True)
        (store / "versions" / name / "config.json").write_text("{}")
    assert not is_store(store)
    set_current(store, "v1", "promote", "first")
    set_current(store, "v2", "promote")
    set_current(store, "v1", "rollback", "canary fell")
    assert current_version(store) == ("v1", store / "versions" / "v1")
    assert [(h["version"], h["event"]) for h in history(store)] == [("v1", "promote"), ("v2", "promote"),
                                                                   ("v1", "rollback")]
    assert version_of(store / "versions" / "v2") == "v2"
    assert resolve_agent_source(str(store)) == (store / "versions" / "v1", "deploy")
    defaults = serving_defaults(str(store))
    assert defaults["version_store"] == store.resolve() and defaults["log_path"] == store.resolve() / "interactions.sqlite"
    with pytest.raises(ForgeError, match="no version v9"):
        set_current(store, "v9", "promote")
    with pytest.raises(ForgeError, match="invalid version name"):
        set_current(store, "../x", "promote")


def test_a_folder_outside_a_store_is_named_by_its_content(tmp_path):
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "bundle.json").write_text(json.dumps({"files": {"a": 1}}))
    first = version_of(agent)
    assert first.startswith("agent@") and version_of(agent) == first
    (agent / "bundle.json").write_text(json.dumps({"files": {"a": 2}}))
    assert version_of(agent) != first
