"""The base of every configuration model: unknown keys are errors, and valid settings are
immutable."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
