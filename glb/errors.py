"""Every error glb raises on purpose.

GLBError
├── ConfigError        the configuration is invalid; carries every reason found
│   └── GeoDatabaseError   the location database file (geo.database) cannot be used
└── StartupError       a listen socket could not be bound, or similar fatal start-up failure
"""

from __future__ import annotations


class GLBError(Exception):
    """Base class of glb's own errors."""


class ConfigError(GLBError):
    """The configuration is invalid. `reasons` lists every problem, each naming where it comes
    from and its key path: `glb.yaml:14:7: services[0].probe.interval: ...` for the file (line
    and column when the file gives the key), `environment GLB_DNS__LISTEN: dns.listen: ...` for
    a variable."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {r}" for r in self.reasons))


class GeoDatabaseError(ConfigError):
    """A location database file cannot be used: missing, unreadable, not a MaxMind DB, or of a
    type without locations. `path` names the file, `problem` says what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__([f"{path}: {problem}"])


class StartupError(GLBError):
    """glb could not start (a port is taken, an address is not local...). `listen` is the
    (host, port) that could not be bound, when that is what failed: the command line names the
    setting to change."""

    def __init__(self, message: str, *, listen: tuple[str, int] | None = None) -> None:
        self.listen = listen
        super().__init__(message)
