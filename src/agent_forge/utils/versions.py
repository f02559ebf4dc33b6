"""Versions of the packages that decide a run's numbers, recorded in every run's manifest.

Exercise: `python -c "from agent_forge.utils import package_versions; print(package_versions())"`.
"""

from __future__ import annotations

import platform
from importlib import metadata

# distribution names (as pip knows them) whose versions change what a run computes
RECORDED_PACKAGES = ("agent-forge", "torch", "transformers", "tokenizers", "safetensors", "numpy")


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def package_versions(distributions: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Python's version plus each distribution's installed version (None when missing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in distributions:
        versions[name] = package_version(name)
    if versions.get("agent-forge") is None and "agent-forge" in distributions:
        from .. import __version__  # running from a source tree that was never pip-installed

        versions["agent-forge"] = __version__
    return versions
