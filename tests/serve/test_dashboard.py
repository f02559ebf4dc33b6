"""The dashboard and the drift watch on the real server: its numbers, /metrics, and the page in headless Chromium.

The log is seeded with canary runs of an earlier version that scored 100%; the tiny agent served now scores far
less, so its first canary run (a `promotion`: a version the canary had not seen) is falling, which the page and
/metrics must show. The browser check drives Debian's /usr/bin/chromium with `playwright` (as
tests/test_report.py does) and skips, saying why, only when either is missing.
"""

from __future__ import annotations

import time

import openai
import pytest

from agent_forge.interactions import CanaryRun, Feedback, InteractionLog
from agent_forge.serve import ServeSettings

from browser_check import chromium_page

from .helpers import TIME_PROMPT, TOOLS, get_json, running_server



@pytest.fixture(scope="module")
def server(tool_agent_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("dashboard") / "interactions.sqlite"
    seed = InteractionLog.open(path)
    for k in range(3):
        seed.add_canary(CanaryRun("old-version", "schedule", 100.0, 18, {"arithmetic": 100.0},
                                  created=time.time() - 600 + k)).result(10)
    seed.close()
    settings = ServeSettings(max_tokens=64, default_max_tokens=64, log_target=str(path), canary_every_s=0,
                             canary_per_domain=3)
    with running_server(settings, source=tool_agent_path, model_name="tiny") as (base, app):
        deadline = time.monotonic() + 60
        while app.state.forge.canary.runs_done < 1:
            assert time.monotonic() < deadline, "the canary did not run"
            time.sleep(0.05)
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        for prompt, tools in (("say hi", None), (TIME_PROMPT, TOOLS), ("47+85 (digits reversed)", None)):
            reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}],
                                                   tools=tools)
        app.state.forge.log.add_feedback(Feedback(reply.id, rating=-1, correction="231")).result(10)
        yield base, app


def test_data_has_every_chart(server):
    status, data = get_json(server[0] + "/dashboard/data?window=600&buckets=10")
    assert status == 200 and data["enabled"] and data["model_version"] == server[1].state.forge.model_version
    assert data["totals"]["requests"] == 3 and data["totals"]["verified"] == 1
    assert sum(b["ok"] for b in data["requests"]) == 3 and len(data["requests"]) == 10
    assert any(b["p50"] is not None for b in data["latency"])
    assert data["tools"] == [{"name": "get_time", "calls": 1}]
    assert sum(b["n"] for b in data["calibration"]) == 1
    assert sum(b["down"] for b in data["feedback"]) == 1 and sum(b["corrections"] for b in data["feedback"]) == 1
    assert [v["model_version"] for v in data["versions"]] == [data["model_version"]]
    runs = data["canary"]["runs"]
    assert [r["model_version"] for r in runs][:3] == ["old-version"] * 3
    assert runs[-1]["trigger"] == "promotion" and runs[-1]["reference"] == 100.0 and runs[-1]["falling"]
    assert data["canary"]["falling"]
    assert get_json(server[0] + "/dashboard/data?window=1")[0] == 422


def test_a_falling_canary_shows_in_metrics(server):
    metrics = get_json(server[0] + "/metrics")[1]
    assert "agent_forge_canary_falling 1.0" in metrics
    assert "agent_forge_canary_reference_percent 100.0" in metrics
    assert "agent_forge_canary_runs_total 1.0" in metrics
    assert "agent_forge_log_commit_seconds_count" in metrics


def test_dashboard_renders_in_chromium_without_console_errors(server):
    with chromium_page() as (page, problems):
        page.goto(server[0] + "/dashboard?window=600&buckets=10", wait_until="load")
        page.wait_for_function("Number(document.body.dataset.updated) >= 1", timeout=20000)
        assert page.title() == "tiny - agent-forge dashboard"
        for chart in ("requests", "latency", "tools", "calibration", "feedback", "canary"):
            svg = page.locator(f'svg[data-chart="{chart}"]')
            assert svg.locator("rect, path, circle").count() > 0, chart
        assert page.locator("#alert").is_visible() and "Canary falling" in page.locator("#alert").inner_text()
        assert page.locator('svg[data-chart="canary"] [data-falling="1"]').count() == 1
        assert page.locator("#versions tr").count() == 2  # the header and the served version
        page.wait_for_function("Number(document.body.dataset.updated) >= 2", timeout=20000)  # it refreshes
    assert not problems, problems
