"""Shared pydantic base for every config section: unknown keys are errors, values are validated."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section; typos in keys fail validation instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
