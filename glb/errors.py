"""Every error glb raises on purpose.

GLBError
├── ConfigError        the configuration is invalid; carries every reason found
└── StartupError       a listen socket could not be bound, or similar fatal start-up failure
"""

from __future__ import annotations


class GLBError(Exception):
    """Base class of glb's own errors."""


class ConfigError(GLBError):
    """The configuration is invalid. `reasons` lists every problem, each with its key path."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {r}" for r in self.reasons))


class StartupError(GLBError):
    """glb could not start (a port is taken, an address is not local...)."""
