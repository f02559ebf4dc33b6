"""SIGKILL of the server during a burst of requests loses no acknowledged log row.

The real command (`python -m agent_forge.cli serve ... --log-db FILE`) runs as a subprocess; 16 clients send
chat and completion requests, streamed and not, as fast as they can; the server is killed with SIGKILL in the
middle of the burst. Every response a client received completely (the JSON body, or a stream up to
`data: [DONE]`) must have its row once the server has been started again on the same file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from agent_forge.interactions import InteractionLog

from .helpers import get_json

CLIENTS = 16


def start_server(agent, db) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_forge.cli", "serve", str(agent), "--port", "0", "--threads", "1",
         "--log-db", str(db), "--no-canary", "--model-name", "tiny", "--log-level", "warning", "--max-tokens", "64"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    base = None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", line)
        if match:
            base = match.group(1)
            break
        assert time.monotonic() < deadline
    assert base, "the server did not say where it listens"
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep the pipe drained
    while get_json(base + "/health")[0] != 200:
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)
    return proc, base


def burst(base: str, acked: list[str], failed: list[str], stop: threading.Event, k: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        i = 0
        while not stop.is_set():
            i += 1
            stream = (i + k) % 2 == 0
            if (i + k) % 3 == 0:
                path, body = "/v1/completions", {"prompt": "count to five\n", "max_tokens": 20}
            else:
                path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": f"say hi {i}"}]}
            body = {"model": "tiny", "stream": stream, **body}
            try:
                if stream:
                    with client.stream("POST", path, json=body) as response:
                        lines = [line for line in response.iter_lines() if line]
                    assert response.status_code == 200, lines
                    if lines and lines[-1] == "data: [DONE]":
                        acked.append(json.loads(lines[0][6:])["id"])
                else:
                    response = client.post(path, json=body)
                    assert response.status_code == 200, response.text
                    acked.append(response.json()["id"])
            except (httpx.HTTPError, ValueError) as exc:  # the server died under this request
                failed.append(type(exc).__name__)
                return


@pytest.mark.slow  # two real server starts and a burst: about 30 s on a 2-core machine
def test_sigkill_during_a_burst_loses_no_acknowledged_row(tool_agent_path, tmp_path):
    db = tmp_path / "interactions.sqlite"
    proc, base = start_server(tool_agent_path, db)
    acked: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    try:
        clients = [threading.Thread(target=burst, args=(base, acked, failed, stop, k)) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline and all(c.is_alive() for c in clients):
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are queued, decoding and being logged
        proc.wait(10)
        stop.set()
        for c in clients:
            c.join(30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 40 and failed, (len(acked), failed)  # the kill did land in the middle of the burst
    proc, base = start_server(tool_agent_path, db)  # the restarted server opens the same log (WAL recovery)
    try:
        log = InteractionLog.open(db)
        stored = log.response_ids()
        log.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    missing = [r for r in acked if r not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged responses have no row"
