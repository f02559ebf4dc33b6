"""The deployment simulation: serve the tiny agent, log a stream of tasks it is weak at through the `openai`
client, `learn`, hot-swap under load with zero failed requests, `rollback` byte for byte; and SIGKILL during
`learn` leaves the served version and the log intact, and `learn` resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from agent_forge.interactions import InteractionLog, current_version, history
from agent_forge.learning import LearnSettings, folder_digest, learn, rollback
from agent_forge.serve import ServeSettings
from agent_forge.tasks import make_tasks

from serve.helpers import running_server
from .helpers import KNOWN, WEAK, log_answers, make_store

pytestmark = pytest.mark.slow
SIM = {}  # the simulation's measurements, printed for the report


def _ask(client, prompt):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}],
                                          max_tokens=12, temperature=0).choices[0].message.content


def test_deployment_simulation(base_agent, tmp_path):
    openai = pytest.importorskip("openai")
    store = make_store(base_agent, tmp_path / "deploy")
    settings = ServeSettings(log_target=str(store / "interactions.sqlite"), version_store=str(store),
                             watch_versions_s=0.2, max_tokens=64, default_max_tokens=12)
    stream = make_tasks(*WEAK, "train", 150, 21) + [t for d, lv in KNOWN for t in make_tasks(d, lv, "train", 30, 21)]
    with running_server(settings, source=store / "versions" / "v0", model_name="tiny") as (base, app):
        state = app.state.forge
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        for task in stream:
            _ask(client, task.prompt)
        v0_digest = folder_digest(store / "versions" / "v0")

        failures, answered, stop = [], [], threading.Event()

        def load():
            mine = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
            i = 0
            while not stop.is_set():
                try:
                    _ask(mine, stream[i % len(stream)].prompt)
                    answered.append(1)
                except Exception as exc:  # noqa: BLE001 - every failure counts
                    failures.append(repr(exc))
                i += 1

        outcome = learn(str(store), LearnSettings(), say=lambda line: None)
        SIM.update(before=outcome.before, after=outcome.after, promoted=outcome.promoted, reason=outcome.reason)
        print("deployment simulation:", SIM)
        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        try:
            time.sleep(0.5)
            # the swap under load: promote by hand if the gate refused, so the swap is exercised either way
            if not outcome.promoted:
                from agent_forge.interactions import set_current
                set_current(store, outcome.version, "promote", "test: exercise the swap")
            deadline = time.monotonic() + 60
            while state.model_version != outcome.version and time.monotonic() < deadline:
                time.sleep(0.05)
            assert state.model_version == outcome.version
            time.sleep(0.5)
            assert rollback(str(store), say=lambda line: None) == "v0"
            while state.model_version != "v0" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert state.model_version == "v0"
            time.sleep(0.5)
        finally:
            stop.set()
            for w in workers:
                w.join(30)
        assert not failures, failures[:3]
        assert len(answered) > 10 and state.swaps >= 2
        assert folder_digest(store / "versions" / "v0") == v0_digest  # rollback restores v0 byte for byte
        assert current_version(store)[0] == "v0" and history(store)[-1]["event"] == "rollback"
        log = InteractionLog.open(store / "interactions.sqlite")
        try:
            assert any(r["trigger"] == "promotion" and r["model_version"] == outcome.version
                       for r in log.canary_runs()) or not outcome.promoted
            served_by = {r["model_version"] for r in log.answered()}
        finally:
            log.close()
        assert {"v0", outcome.version} <= served_by
    # the acceptance: +10 points held-out on the logged distribution, at most -1 on the suite
    assert outcome.promoted, outcome.reason
    assert outcome.after["heldout_by_cell"][f"{WEAK[0]}:{WEAK[1]}"] - \
        outcome.before["heldout_by_cell"][f"{WEAK[0]}:{WEAK[1]}"] >= 10
    assert outcome.after["suite"] - outcome.before["suite"] >= -1


def test_sigkill_during_learn_keeps_the_served_version_and_the_log_and_learn_resumes(base_agent, tmp_path):
    store = make_store(base_agent, tmp_path / "deploy")
    tasks = make_tasks(*WEAK, "train", 60, 5) + [t for d, lv in KNOWN for t in make_tasks(d, lv, "train", 10, 5)]
    log_path = store / "interactions.sqlite"
    log_answers(log_path, store / "versions" / "v0", tasks)
    digest, rows = folder_digest(store / "versions" / "v0"), len(tasks)
    command = [sys.executable, "-m", "agent_forge.cli", "learn", str(store), "--cycles", "8", "--heldout", "20",
               "--suite-items", "2"]
    env = dict(os.environ, AGENT_FORGE_PROGRESS="0", OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = store / ".resume" / "learn" / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    assert current_version(store)[0] == "v0" and folder_digest(store / "versions" / "v0") == digest
    assert sorted(p.name for p in (store / "versions").iterdir()) == ["v0"]
    log = InteractionLog.open(log_path)
    try:
        assert log.count() == rows
        assert log.backend.read("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    finally:
        log.close()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming learn v0 -> v1" in again.stdout
    assert (store / "versions" / "v1" / "learn.json").is_file()
    assert folder_digest(store / "versions" / "v0") == digest and not (store / ".resume" / "learn").exists()
