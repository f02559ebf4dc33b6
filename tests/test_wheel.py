"""The wheel built from this tree is a working install: it ships the C kernel source(s), every packaged config
and the stage READMEs, no tests; installed into a fresh venv and run from an empty folder,
`agent-forge run --config smoke` runs every stage, with the packed bitnet path on the compiled C kernel.

The wheel is built (offline, about 2 s) from a clean copy of the tree: setuptools reuses a `build/` folder in
the source tree, whose stale files (e.g. a kernel from before a move) would otherwise slip into the wheel.
Exercise: `python -m pytest tests/test_wheel.py -m "slow or not slow"` (the install-and-run part is slow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent_forge.config import load_config, packaged_configs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "agent_forge"
# what the tree has, found the same way the package-data globs find it: a kernel folder may move
KERNEL_SOURCES = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.c"))
STAGE_READMES = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.glob("stages/*/README.md"))
CONFIGS = packaged_configs()
_NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks", "*.so", "*.whl"
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for the installed copy: nothing that could point Python back at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "AGENT_FORGE_TERNARY_KERNEL")}
    env.update(OMP_NUM_THREADS="1", AGENT_FORGE_PROGRESS="0", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{' '.join(map(str, proc.args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _unwrapped(text: str) -> str:
    """Console output without whitespace: rich wraps a long path at the console width."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_COPIED)
    out = work / "dist"
    _check(subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out)],
        cwd=work, env=_clean_env(), capture_output=True, text=True, timeout=600,
    ))
    (built,) = out.glob("agent_forge-*.whl")
    return built


def test_the_tree_has_what_the_wheel_must_ship():
    assert any(p.endswith("/ternary_linear.c") for p in KERNEL_SOURCES), KERNEL_SOURCES
    assert {"tiny", "smoke", "external-smollm2"} <= set(CONFIGS)


def test_wheel_ships_kernel_sources_configs_and_readmes_but_no_tests(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for source in KERNEL_SOURCES:
            assert source in names, f"kernel source {source} missing from the wheel"
            assert zf.read(source) == (PACKAGE.parent / source).read_bytes()
        for name, path in CONFIGS.items():
            assert f"agent_forge/configs/{name}.yaml" in names, f"config {name} missing from the wheel"
            assert zf.read(f"agent_forge/configs/{name}.yaml") == path.read_bytes()
        for readme in STAGE_READMES:
            assert readme in names, f"{readme} missing from the wheel"
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "agent-forge = agent_forge.cli:app" in zf.read(entry_points).decode()
    top_level = {n.split("/", 1)[0] for n in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"agent_forge"}, top_level
    assert not any("tests/" in n or Path(n).name.startswith("test_") for n in names)
    assert not any(n.endswith((".so", ".pyc")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_every_smoke_stage_from_an_empty_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    # dependencies (torch, transformers, ...) come from the system site; only agent_forge comes from the wheel
    _check(subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                          capture_output=True, text=True, timeout=300))
    python, script = venv / "bin" / "python", venv / "bin" / "agent-forge"
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _clean_env(AGENT_FORGE_KERNEL_DIR=str(tmp_path / "kernels"))  # no cached .so can hide a missing source
    # pip of the system site installs into the venv; --ignore-installed: the system site's (editable)
    # agent-forge of the same version would otherwise count as already installed
    _check(subprocess.run([python, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", str(wheel)],
                          cwd=empty, env=env, capture_output=True, text=True, timeout=600))
    assert script.is_file()

    # the venv's agent_forge must be the wheel's copy, not the editable source tree (whose .pth/finder the
    # system site still carries: it comes after the venv's site-packages on sys.path, which this checks)
    where = _check(subprocess.run(
        [python, "-c", "import agent_forge, json; print(json.dumps(agent_forge.__file__))"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=120,
    ))
    installed = Path(json.loads(where.stdout.strip().splitlines()[-1])).resolve()
    assert installed.is_relative_to(venv.resolve()), f"agent_forge imported from {installed}, not from the venv"
    package = installed.parent
    for source in KERNEL_SOURCES:
        assert (package.parent / source).is_file(), f"installed package lacks {source}"

    # no --config: the packaged tiny config of the installed copy (stops at the unknown --until, after loading)
    default = subprocess.run([script, "run", "--until", "no-such-stage"], cwd=empty, env=env, capture_output=True,
                             text=True, timeout=300)
    assert default.returncode == 2 and f"config{package / 'configs' / 'tiny.yaml'}" in _unwrapped(default.stdout), default

    run = _check(subprocess.run([script, "run", "--config", "smoke", "threads=1"], cwd=empty, env=env,
                                capture_output=True, text=True, timeout=1200))
    assert f"config{package / 'configs' / 'smoke.yaml'}" in _unwrapped(run.stdout)

    run_dir = empty / "runs" / "smoke"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    expected = load_config(CONFIGS["smoke"]).stage_list()
    assert list(manifest["stages"]) == expected
    assert all(entry["status"] == "done" for entry in manifest["stages"].values()), manifest["stages"]
    metrics = {}
    for stage in expected:
        (stage_dir,) = run_dir.glob(f"*-{stage}")
        metrics[stage] = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["bitnet"]["kernel"].startswith("C kernel"), metrics["bitnet"]["kernel"]
    # compiled here, from the installed source, into the test's own cache folder
    assert list((tmp_path / "kernels").glob("*.so")), "no kernel library was compiled into AGENT_FORGE_KERNEL_DIR"
