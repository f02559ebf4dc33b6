"""The packed path never falls back to torch silently: the fallback is logged, and the stage's summary says it."""

from __future__ import annotations

import os
import subprocess
import sys


def test_fallback_is_logged_and_named(tmp_path):
    # a fresh process: the kernel module decides once per process which path it uses
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format='%(name)s %(levelname)s %(message)s')\n"
        "from agent_forge.models.formats.ternary import kernel_description\n"
        "print(kernel_description())\n"
    )
    env = dict(os.environ, AGENT_FORGE_TERNARY_KERNEL="torch")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("torch fallback (disabled by AGENT_FORGE_TERNARY_KERNEL=torch)")
    assert "agent_forge.models.formats.ternary.kernel WARNING ternary C kernel unavailable" in result.stderr
