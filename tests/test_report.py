"""`agent-forge report`: the trajectory table, the stages' own tables, markdown, and report.html in a real browser.

One real run of the packaged smoke config is built per module (in-process, one torch thread; about 10-20 s on
this project's 2-core machine, so these tests stay in the default suite). The browser test drives Debian's
/usr/bin/chromium with the `playwright` package (never its own browser download) and skips, saying why, only
when either is missing (`scripts/setup.sh` installs both).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from browser_check import chromium_page

from agent_forge.cli import app
from agent_forge.evaluation.trajectory import TRAJECTORY_FILE
from agent_forge.pipeline import Manifest, StageRecord
from agent_forge.pipeline.report import (
    NOT_RECORDED, REPORT_HTML, TRAJECTORY_COLUMNS, load_run, markdown_report, trajectory_rows,
)
from agent_forge.pipeline.report_stages import stage_tables

runner = CliRunner()
STAGES = ["seed", "evomerge", "quietstar", "bitnet", "curriculum", "experts", "tools", "adas", "package"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A finished run of the packaged smoke config under <tmp>/runs/smoke (every stage, trajectory recorded)."""
    from agent_forge.config import load_config
    from agent_forge.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("report") / "runs"
    cfg = load_config("smoke", [f"run_root={root}", "threads=1"])
    start = time.perf_counter()
    run_dir = run_pipeline(cfg, console=Console(file=io.StringIO()))
    print(f"smoke run built in {time.perf_counter() - start:.1f} s")
    return run_dir


def _trajectories(run_dir: Path) -> dict[str, dict]:
    manifest = Manifest.load(run_dir)
    return {name: json.loads((run_dir / rec.dir / TRAJECTORY_FILE).read_text()) for name, rec in manifest.stages.items()}


def _mean(measurement: dict | None) -> float | None:
    return None if measurement is None else measurement["suite"]["domain_mean"]


# ------------------------------------------------------------------------------------------------ tables


def test_trajectory_rows_match_trajectory_files(smoke_run):
    run = load_run(smoke_run)
    rows = trajectory_rows(run)
    main = [r for r in rows if not r.sub]
    assert [r.stage for r in main] == STAGES  # one row per stage, in run order
    for row in main:
        t = _trajectories(smoke_run)[row.stage]
        assert row.output == t["main_output"]
        assert row.entering == _mean((t["entering"] or {}).get("measurement"))
        assert row.leaving == _mean(t["leaving"][t["main_output"]])
        assert row.change == t["change"]
        assert row.size_bytes == t["leaving"][t["main_output"]]["size_bytes"]
        assert row.tokens_per_s == t["leaving"][t["main_output"]]["decode_tokens_per_s"]
        subs = [r for r in rows if r.sub and r.stage == row.stage]
        assert [r.output for r in subs] == [k for k in t["leaving"] if k != t["main_output"]]
        for sub in subs:
            assert sub.leaving == _mean(t["leaving"][sub.output])
    assert main[0].entering is None and main[0].change is None  # the seed receives nothing
    assert all(r.entering is not None for r in main[1:])
    assert {r.output for r in rows if r.sub and r.stage == "seed"} >= {"specialist_arithmetic", "specialist_strings"}
    assert [r.output for r in rows if r.sub and r.stage == "bitnet"] == ["packed"]
    for row in main:
        assert len(row.cells()) == len(TRAJECTORY_COLUMNS)


def test_stage_tables_cover_every_stage(smoke_run):
    tables = stage_tables(load_run(smoke_run))
    assert [t.stage for t in tables] == STAGES
    for table in tables:
        assert table.columns and table.rows, table.note  # every stage's metrics were understood
        assert all(len(row) == len(table.columns) for row in table.rows)
    by_stage = {t.stage: t for t in tables}
    assert [r[0] for r in by_stage["bitnet"].rows] == ["full precision", "naive ternary", "warm-up + distillation",
                                                      "packed inference"]
    assert "Champion:" in by_stage["evomerge"].note and "bits per weight" in by_stage["bitnet"].note
    assert "Self-reflection: of the worked-form failures" in by_stage["experts"].note


def test_markdown_command_prints_the_trajectory_and_stage_tables(smoke_run, tmp_path):
    result = runner.invoke(app, ["report", str(smoke_run), "--markdown"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name, t in _trajectories(smoke_run).items():
        entering = _mean((t["entering"] or {}).get("measurement"))
        leaving = _mean(t["leaving"][t["main_output"]])
        label = name if t["main_output"] == "model" else f"{name} ({t['main_output']})"
        change = "-" if t["change"] is None else f"{t['change']:+.2f}"
        enter = "-" if entering is None else f"{entering:.2f}"
        assert f"| {label} | {enter} | {leaving:.2f} | {change} |" in out, out
    for table in stage_tables(load_run(smoke_run)):
        assert f"### {table.heading}\n\n{table.markdown()}\n" in out
    assert out.strip() == markdown_report(load_run(smoke_run)).strip()
    assert "wrote" in result.stderr and (smoke_run / REPORT_HTML).is_file()  # stdout stays pasteable


def test_rich_command_by_run_name_and_html_path(smoke_run, tmp_path, monkeypatch):
    monkeypatch.chdir(smoke_run.parent.parent)  # runs/smoke is a run name from here
    target = tmp_path / "out" / "page.html"
    result = runner.invoke(app, ["report", smoke_run.name, "--html", str(target)])
    assert result.exit_code == 0, result.output
    for stage in STAGES:
        assert stage in result.stdout
    assert "trajectory" in result.stdout and "packed" in result.stdout
    assert target.is_file() and f"wrote {target}" in result.stdout


def test_run_without_trajectory_still_reports_stage_tables(smoke_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(smoke_run, old)
    for file in old.glob(f"*/{TRAJECTORY_FILE}"):
        file.unlink()
    result = runner.invoke(app, ["report", str(old), "--markdown"])
    assert result.exit_code == 0, result.output
    assert NOT_RECORDED in result.stdout
    assert "| stage | entering |" not in result.stdout
    for stage in STAGES:
        assert f"### {stage}" in result.stdout
    html = (old / REPORT_HTML).read_text()
    assert 'id="no-trajectory"' in html and 'id="trajectory"' not in html


# --------------------------------------------------------------------------------------- flags and errors


def _fake_run(root: Path, trajectories: dict[str, dict | None], metrics: dict[str, dict]) -> Path:
    run = root / "fake"
    manifest = Manifest(name="fake", config_hash="0" * 16, seed=0, versions={})
    for i, (stage, t) in enumerate(trajectories.items()):
        stage_dir = run / f"{i:02d}-{stage}"
        stage_dir.mkdir(parents=True)
        (stage_dir / "metrics.json").write_text(json.dumps(metrics.get(stage, {})))
        if t is not None:
            (stage_dir / TRAJECTORY_FILE).write_text(json.dumps(t))
        manifest.stages[stage] = StageRecord(stage, stage_dir.name, status="done", duration_s=10.0 + i,
                                             metrics=f"{stage_dir.name}/metrics.json")
    manifest.save(run)
    return run


def _measure(mean: float) -> dict:
    return {"suite": {"accuracy": mean, "domain_mean": mean, "by_domain": {"logic": mean},
                      "by_domain_level": {"logic": {"1": mean}}, "n": 1, "method": "fast"},
            "size_bytes": 2_000_000, "decode_tokens_per_s": 10.0, "agent": {}}


def _trajectory(stage: str, before: float, after: float, trade_off: str | None) -> dict:
    change = round(after - before, 2)
    regression = change < -2.0
    return {"stage": stage, "entering": {"input": "model", "measurement": _measure(before)},
            "leaving": {"model": _measure(after)}, "main_output": "model", "change": change,
            "regression": regression, "declared": trade_off if regression and trade_off else None,
            "undeclared": regression and not trade_off, "max_drop": 2.0, "trade_off": trade_off}


def test_flags_missing_trajectory_and_unreadable_metrics(tmp_path):
    run = _fake_run(tmp_path, {
        "quietstar": _trajectory("quietstar", 50.0, 40.0, None),
        "bitnet": _trajectory("bitnet", 40.0, 30.0, "ternary weights: 16x smaller"),
        "curriculum": None,
    }, {"bitnet": {"accuracy": {}}})
    rows = trajectory_rows(load_run(run))
    assert [(r.stage, r.flag) for r in rows] == [("quietstar", "undeclared"), ("bitnet", "declared"),
                                                  ("curriculum", "not recorded")]
    assert rows[0].flag_text.startswith("UNDECLARED REGRESSION")
    assert rows[1].flag_text == "declared trade-off: ternary weights: 16x smaller"
    assert rows[0].cells()[5] == "2.00"  # MB
    text = markdown_report(load_run(run))
    assert "| quietstar | 50.00 | 40.00 | -10.00 | UNDECLARED REGRESSION" in text
    assert "lacks what this table needs" in text  # bitnet's metrics from another version: a note, not a crash


def test_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: run not found: {tmp_path / 'nowhere'} (neither a directory nor a run name under runs/)"]
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not an agent-forge run" in result.stderr


# ------------------------------------------------------------------------------------------------ browser


def test_report_html_renders_in_chromium(smoke_run):
    result = runner.invoke(app, ["report", str(smoke_run)])
    assert result.exit_code == 0, result.output
    run = load_run(smoke_run)
    rows = trajectory_rows(run)
    pngs = sum(len(s.plots) for s in run.stages)
    assert pngs >= 2  # evomerge's evolution.png and the curriculum's plots

    with chromium_page() as (page, problems):
        page.goto((smoke_run / REPORT_HTML).resolve().as_uri(), wait_until="load")
        assert page.title() == "agent-forge report: smoke"
        assert page.locator("#trajectory tbody tr").count() == len(rows)
        assert page.locator("#trajectory thead th").all_inner_texts() == TRAJECTORY_COLUMNS
        first = page.locator("#trajectory tbody tr").first.locator("td").all_inner_texts()
        assert first[:3] == rows[0].cells()[:3]
        # one accuracy-by-stage plot and one heatmap per stage, inline SVG; the stages' PNGs as data URIs
        assert page.locator("figure.plot > svg").count() == 1 + len(STAGES)
        assert page.locator("img").count() == pngs
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert page.evaluate("Array.from(document.querySelectorAll('[src],[href]')).every("
                             "e => /^(data:|#)/.test(e.getAttribute('src') || e.getAttribute('href')))")
        for stage in STAGES:
            assert page.locator(f"#stage-{stage} table").count() == 1
    assert not problems, problems
