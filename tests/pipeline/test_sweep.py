"""`agent-forge sweep`: one real smoke run per seed, every stage's paired effect per seed and across seeds,
the table reproduced byte for byte from the existing runs, and one-line errors for bad seeds."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from agent_forge.cli import app
from agent_forge.errors import ForgeError
from agent_forge.pipeline.report_sweep import markdown_sweep
from agent_forge.pipeline.sweep import across_seeds, parse_seeds

SEEDS = [0, 1]
# the stages the smoke sweep runs (--until quietstar keeps two seeds under a minute) and the effects they get
EXPECTED_EFFECTS = [("seed", "best specialist − base"), ("evomerge", "leaving − entering"),
                    ("evomerge", "champion − best specialist"), ("quietstar", "leaving − entering")]


def _cli(*args, cwd):
    env = dict(os.environ, AGENT_FORGE_PROGRESS="0", OMP_NUM_THREADS="1", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "agent_forge.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _sweep_args(root):
    return ["sweep", "--config", "smoke", "--seeds", "0-1", "--until", "quietstar", "threads=1", f"run_root={root}"]


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    result = _cli(*_sweep_args(root), "--markdown", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def _data(root) -> dict:
    return json.loads((root / "smoke-sweep" / "sweep.json").read_text())


@pytest.mark.slow
def test_each_seed_is_an_ordinary_run_recording_the_sweep_command(smoke_sweep):
    root, _ = smoke_sweep
    data = _data(root)
    assert data["seeds"] == SEEDS and data["until"] == "quietstar" and data["config"] == "smoke"
    assert data["command"] == "agent-forge sweep --config smoke --seeds 0-1 --until quietstar threads=1 " \
                              f"run_root={root}"
    assert data["threads"] == {"0": [1], "1": [1]}
    for seed in SEEDS:
        run = root / f"smoke-seed{seed}"
        assert data["runs"][str(seed)] == str(run)
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["seed"] == seed and manifest["name"] == f"smoke-seed{seed}"
        assert [s["status"] for s in manifest["stages"].values()][:3] == ["done"] * 3
        created = manifest["history"][0]
        assert created["threads"] == 1
        assert created["command"] == "agent-forge " + " ".join(_sweep_args(root)) + " --markdown"


@pytest.mark.slow
def test_every_stage_effect_is_paired_per_seed_and_summarized_across_seeds(smoke_sweep):
    from scipy import stats

    root, _ = smoke_sweep
    data = _data(root)
    assert [(e["stage"], e["label"]) for e in data["effects"]] == EXPECTED_EFFECTS
    for effect in data["effects"]:
        per_seed = effect["per_seed"]
        assert sorted(per_seed) == ["0", "1"]
        for seed, value in per_seed.items():
            assert value["low"] <= value["mean"] <= value["high"], (effect["stage"], seed, value)
            assert value["n"] == 4 * 10 * 5  # the smoke suite: 4 domains x 10 levels x 5 items
        means = [per_seed[str(s)]["mean"] for s in SEEDS]
        across = effect["across"]
        assert across["n"] == 2 and across["mean"] == pytest.approx(statistics.mean(means), abs=1e-9)
        assert across["sd"] == pytest.approx(statistics.stdev(means), abs=1e-3)
        low, high = stats.t.interval(0.95, 1, loc=statistics.mean(means), scale=statistics.stdev(means) / 2 ** 0.5) \
            if statistics.stdev(means) > 0 else (across["mean"], across["mean"])
        assert (across["low"], across["high"]) == (pytest.approx(low, abs=1e-3), pytest.approx(high, abs=1e-3))

    # a stage's per-seed effect is the paired interval its run's trajectory recorded
    evo = next(e for e in data["effects"] if e["label"] == "leaving − entering" and e["stage"] == "evomerge")
    for seed in SEEDS:
        trajectory = json.loads((root / f"smoke-seed{seed}" / "01-evomerge" / "trajectory.json").read_text())
        recorded = trajectory["change_interval"]
        assert {k: evo["per_seed"][str(seed)][k] for k in recorded} == recorded
        assert abs(recorded["mean"] - trajectory["change"]) < 0.011  # item mean = domain mean, up to rounding


@pytest.mark.slow
def test_the_share_of_each_specialists_gain_the_champion_keeps(smoke_sweep):
    root, result = smoke_sweep
    data = _data(root)
    assert sorted(data["retained"]) == ["0", "1"]
    for seed in SEEDS:
        run = root / f"smoke-seed{seed}"
        seed_t = json.loads((run / "00-seed" / "trajectory.json").read_text())["leaving"]
        champion = json.loads((run / "01-evomerge" / "trajectory.json").read_text())["leaving"]["model"]
        base = seed_t["base"]["suite"]["by_domain"]
        specialists = {k.removeprefix("specialist_"): v for k, v in seed_t.items() if k.startswith("specialist_")}
        shares = data["retained"][str(seed)]
        assert sorted(shares) == sorted(specialists) and len(shares) == 3
        for domain, spec in specialists.items():
            gain = spec["suite"]["by_domain"][domain] - base[domain]
            expected = None if gain <= 0 else (champion["suite"]["by_domain"][domain] - base[domain]) / gain
            assert shares[domain] == (None if expected is None else pytest.approx(expected, abs=1e-3))
    # each stage's own claims, read from its metrics.json per seed
    claims = {(c["stage"], c["label"]): c for c in data["claims"]}
    evo = claims[("evomerge", "champion − best specialist, stage test (points)")]
    think = claims[("quietstar", "thinking − no-thought control, multi-step test (points)")]
    for seed in SEEDS:
        run = root / f"smoke-seed{seed}"
        means = json.loads((run / "01-evomerge" / "metrics.json").read_text())["test_mean_over_domains"]
        best = max(v for k, v in means.items() if k.startswith("specialist_"))
        assert evo["per_seed"][str(seed)] == pytest.approx(means["champion"] - best, abs=1e-3)
        summary = json.loads((run / "02-quietstar" / "metrics.json").read_text())["summary"]
        assert think["per_seed"][str(seed)] == pytest.approx(summary["acc_thinking"] - summary["acc_no_thoughts"], abs=1e-3)
    assert evo["across"]["n"] == 2 and "headline numbers" in result.stdout
    # the markdown names, per seed, whether all three skills were kept, and counts the seeds above 0
    assert "own-domain gain" in result.stdout and "| all kept |" in result.stdout
    assert "Champion above the best specialist with its interval above 0 in" in result.stdout


@pytest.mark.slow
def test_report_only_and_report_reproduce_the_table_byte_for_byte(smoke_sweep):
    root, result = smoke_sweep
    manifests = {s: (root / f"smoke-seed{s}" / "manifest.json").read_bytes() for s in SEEDS}
    again = _cli(*_sweep_args(root), "--report-only", "--markdown", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == markdown_sweep(_data(root))
    assert result.stdout.endswith(again.stdout)  # the sweep printed exactly this table last
    assert {s: (root / f"smoke-seed{s}" / "manifest.json").read_bytes() for s in SEEDS} == manifests  # nothing ran

    report = _cli("report", str(root / "smoke-sweep"), "--markdown", cwd=root)
    assert report.returncode == 0 and report.stdout == again.stdout

    rich_sweep = _cli(*_sweep_args(root), "--report-only", cwd=root)
    rich_report = _cli("report", str(root / "smoke-sweep"), cwd=root)
    assert rich_sweep.returncode == rich_report.returncode == 0
    assert rich_sweep.stdout == rich_report.stdout and "champion − best specialist" in rich_sweep.stdout


@pytest.mark.slow
def test_a_seed_run_report_names_its_command_and_threads(smoke_sweep):
    root, _ = smoke_sweep
    report = _cli("report", str(root / "smoke-seed1"), "--markdown", cwd=root)
    assert report.returncode == 0, report.stderr[-2000:]
    head = report.stdout.split("trajectory: suite accuracy")[0]
    assert "`agent-forge sweep --config smoke --seeds 0-1" in head and "(1 torch thread)" in head


@pytest.mark.slow
def test_rerunning_the_sweep_computes_nothing(smoke_sweep):
    root, result = smoke_sweep
    again = _cli(*_sweep_args(root), "--markdown", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("complete up to stage 'quietstar'; nothing to do") == 2
    assert again.stdout.endswith(markdown_sweep(_data(root)))


runner = CliRunner()


@pytest.mark.parametrize("spec, fragment", [("4-1", "runs backwards"), ("a", "cannot read --seeds"),
                                            ("0-", "cannot read --seeds"), ("-1", "cannot read --seeds"),
                                            ("", "cannot read --seeds")])
def test_a_bad_seeds_value_is_a_one_line_error(spec, fragment, tmp_path):
    result = runner.invoke(app, ["sweep", "--config", "smoke", "--seeds", spec, f"run_root={tmp_path}"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert not any(tmp_path.iterdir())  # refused before any run started


def test_a_seed_override_is_refused(tmp_path):
    result = runner.invoke(app, ["sweep", "--config", "smoke", "--seeds", "0-1", "seed=3", f"run_root={tmp_path}"])
    assert result.exit_code == 2 and "drop the seed=... override" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_seeds_is_a_one_line_error():
    result = runner.invoke(app, ["sweep", "--config", "smoke"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "--seeds" in result.stderr


def test_report_only_without_runs_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["sweep", "--config", "smoke", "--seeds", "0-1", "--report-only",
                                 f"run_root={tmp_path}"])
    assert result.exit_code == 2 and "no run of this sweep exists yet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seed_lists_and_ranges():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3, 1,2-3") == [1, 2, 3]
    with pytest.raises(ForgeError):
        parse_seeds("1..3")


def test_across_seeds_is_the_t_interval_of_the_seed_means():
    from scipy import stats

    values = [1.5, -0.25, 2.0, 0.75]
    result = across_seeds(values)
    mean, sd = statistics.mean(values), statistics.stdev(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sd / len(values) ** 0.5)
    assert result == {"n": 4, "mean": round(mean, 3), "sd": round(sd, 3), "low": round(low, 3),
                      "high": round(high, 3), "confidence": 0.95}
    assert across_seeds([2.0]) == {"n": 1, "mean": 2.0, "sd": None, "low": None, "high": None, "confidence": 0.95}
