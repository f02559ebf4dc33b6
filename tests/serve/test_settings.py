"""Who may call the server and what it serves: keys, the loopback rule, a run's agent."""

from __future__ import annotations

import json

import pytest

from agent_forge.errors import ForgeError
from agent_forge.serve import ServeSettings, check_exposure, is_loopback, resolve_agent_source, resolve_api_keys


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_no_key_means_loopback_only():
    check_exposure(ServeSettings(host="127.0.0.1"))
    with pytest.raises(ForgeError, match="without an API key"):
        check_exposure(ServeSettings(host="0.0.0.0"))
    check_exposure(ServeSettings(host="0.0.0.0", api_keys=("k",)))


def test_keys_from_the_command_line_and_the_environment():
    assert resolve_api_keys(["a", " "], {"AGENT_FORGE_API_KEY": "b, a,c"}) == ("a", "b", "c")
    assert resolve_api_keys([], {}) == ()


def test_limits_must_be_positive():
    with pytest.raises(ForgeError, match="max_batch=0"):
        ServeSettings(max_batch=0)


def test_a_run_serves_its_last_finished_stage_model(tmp_path):
    run = tmp_path / "myrun"
    for stage in ("00-seed/base", "01-evomerge/model", "02-quietstar/model"):
        (run / stage).mkdir(parents=True)
    manifest = {"name": "myrun", "stages": {
        "seed": {"status": "done", "outputs": {"base": "00-seed/base"}},
        "evomerge": {"status": "done", "outputs": {"model": "01-evomerge/model"}},
        "quietstar": {"status": "running", "outputs": {}},
    }}
    (run / "manifest.json").write_text(json.dumps(manifest))
    path, name = resolve_agent_source(str(run))
    assert (path, name) == ((run / "01-evomerge/model").resolve(), "myrun")
    manifest["stages"]["evomerge"]["status"] = "failed"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ForgeError, match="no finished stage with a model"):
        resolve_agent_source(str(run))


def test_agent_folders_and_missing_paths(tmp_path):
    folder = tmp_path / "03-bitnet" / "packed"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_agent_source(str(folder)) == (folder, "03-bitnet/packed")
    with pytest.raises(ForgeError, match="nothing to serve"):
        resolve_agent_source(str(tmp_path / "nope"))
    with pytest.raises(ForgeError, match="neither a run directory"):
        resolve_agent_source(str(tmp_path))
