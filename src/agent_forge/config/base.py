"""Shared pydantic base for every config section (unknown keys are errors, values are validated), and `UserPath`.

`UserPath` marks a field that names a file or folder of the user's: `~` is expanded and a relative path is
resolved against the working directory when the config is loaded, so the resolved config (and `config.yaml`
in the run directory) records absolute paths that mean the same from anywhere.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def absolute_path(value: str) -> str:
    """`~` expanded, relative to the working directory made absolute (normalised, symlinks kept)."""
    if not value.strip():
        raise ValueError("a path must not be empty")
    return os.path.abspath(os.path.expanduser(value))


UserPath = Annotated[str, AfterValidator(absolute_path)]


class Section(BaseModel):
    """A config section; typos in keys fail validation instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
