"""Bad input to `learn` / `rollback` is one `error:` line and a non-zero exit; rollback moves only the pointer."""

from __future__ import annotations

from typer.testing import CliRunner

from agent_forge.cli import app
from agent_forge.interactions import InteractionLog, current_version, history, set_current
from agent_forge.learning import folder_digest


def _run(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _store(tmp_path):
    store = tmp_path / "deploy"
    for name in ("v0", "v1"):
        folder = store / "versions" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "llama", "v": "%s"}' % name)
    set_current(store, "v0", "init")
    set_current(store, "v1", "promote")
    return store


def test_unknown_run_no_experience_unknown_version(tmp_path):
    code, out = _run("learn", str(tmp_path / "nope"))
    assert code != 0 and out.strip().startswith("error: unknown run") and len(out.strip().splitlines()) == 1
    store = _store(tmp_path)
    code, out = _run("learn", str(store))
    assert code != 0 and "no logged experience" in out and len(out.strip().splitlines()) == 1
    InteractionLog.open(store / "interactions.sqlite").close()  # a log with nothing in it
    code, out = _run("learn", str(store))
    assert code != 0 and "no logged experience" in out and len(out.strip().splitlines()) == 1
    code, out = _run("rollback", str(store), "v7")
    assert code != 0 and out.strip().startswith("error: unknown version v7") and len(out.strip().splitlines()) == 1
    code, out = _run("rollback", str(tmp_path / "nope"))
    assert code != 0 and "unknown run" in out


def test_rollback_moves_the_pointer_and_keeps_every_byte(tmp_path):
    store = _store(tmp_path)
    before = {v: folder_digest(store / "versions" / v) for v in ("v0", "v1")}
    code, out = _run("rollback", str(store))
    assert code == 0, out
    assert current_version(store)[0] == "v0" and history(store)[-1]["event"] == "rollback"
    assert {v: folder_digest(store / "versions" / v) for v in ("v0", "v1")} == before
    code, out = _run("rollback", str(store), "v1")
    assert code == 0 and current_version(store)[0] == "v1"
