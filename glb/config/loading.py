"""Reading a configuration: YAML text or a file, plus the environment, into valid Settings.

Every problem is collected before anything is raised: key-level problems from pydantic and the
cross-key checks, each as "file:line:column: key.path: reason" (or "environment GLB_X: key.path:
reason" for a value from the environment), in one ConfigError.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from glb.config.checks import Parts, cross_check
from glb.config.models import Settings
from glb.config.wording import decoded_as_json, did_you_mean, field_at, message, shown
from glb.config.yaml_source import Loc, YamlDocument, key_path, parse_yaml
from glb.errors import ConfigError

ENV_PREFIX = "GLB_"
ENV_NOT_SETTINGS = frozenset({"GLB_CONFIG", "GLB_WORKERS"})  # read by the command line


def load_settings(path: str | Path) -> Settings:
    """Read, parse and validate a configuration file; raise ConfigError with every reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the file: {exc}"]) from None
    return parse_settings(text, source=str(path))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while building many small acyclic objects.

    Loading 10,000 services allocates ~10^6 nodes, dicts and models; every allocation burst
    triggers a collection that walks all of them again, which triples the load time. Reference
    counting still frees everything; the collector resumes (if it was on) when the block ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_settings(text: str, *, source: str = "<config>") -> Settings:
    """Validate a configuration's text; `source` names it in every reason. A key given twice
    is reported together with the problems validation finds."""
    with gc_paused():
        document = parse_yaml(text, source)
        try:
            settings = _validate_document(document, source)
        except ConfigError as exc:
            raise ConfigError([*document.repeats, *exc.reasons]) from None
        if document.repeats:
            raise ConfigError(list(document.repeats))
        return settings


def _validate_document(document: YamlDocument, source: str) -> Settings:
    if document.data is None:
        return validate_settings({}, source=source)
    if not isinstance(document.data, dict):
        raise ConfigError(
            [f"{source}: the top level must be a mapping of keys, not a list or text"]
        )
    return validate_settings(document.data, source=source, document=document)


def validate_settings(
    data: Mapping[Any, Any], *, source: str = "<config>", document: YamlDocument | None = None
) -> Settings:
    """Settings from parsed YAML plus the environment, or ConfigError with every problem.
    With the `document` the data was parsed from, each problem names its line and column."""
    where = _Where(source, document or YamlDocument(data, None))
    reasons = [
        f"{where.at((key,), key=True)}: key {key!r} is not a name"
        for key in data
        if not isinstance(key, str)
    ]
    reasons += [f"environment: {problem}" for problem in unknown_environment(os.environ)]
    if reasons:
        raise ConfigError(reasons)
    try:
        settings = Settings(**data)
    except SettingsError as exc:  # a GLB_* value that should be JSON and is not
        raise ConfigError(_environment_not_json(exc)) from None
    except ValidationError as exc:
        reasons = [where.describe(error) for error in exc.errors()]
        reasons += [where.cross(reason) for reason in cross_check(Parts.partial(data))]
        raise ConfigError(reasons) from None
    except ValueError as exc:  # anything else the environment sources refuse
        raise ConfigError([f"environment: {exc}"]) from None
    reasons = [where.cross(reason) for reason in cross_check(Parts.of(settings))]
    if reasons:
        raise ConfigError(reasons)
    return settings


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """GLB_* variables that name no setting (a typo would otherwise be ignored silently)."""
    fields = {name.upper(): name for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in ENV_NOT_SETTINGS:
            continue
        section = upper.removeprefix(ENV_PREFIX).split("__")[0]
        if section not in fields:
            hint = did_you_mean(section.lower(), fields.values())
            problems.append(
                f"{name} is not a glb setting (nested keys are joined with __, "
                f"e.g. GLB_DNS__LISTEN){hint}"
            )
    return problems


_KEY_PATH = re.compile(r"[A-Za-z_]\w*(?:\.\w+|\[\d+\])*")


class _Where:
    """Where a problem comes from: a GLB_* variable, or the file with its line and column."""

    def __init__(self, source: str, document: YamlDocument) -> None:
        self.source = source
        self.document = document

    def at(self, loc: Loc, *, key: bool = False) -> str:
        """The origin of a problem at `loc`: the variable that set it, or the file with the
        line and column of the value (of its key with `key`), or of the nearest enclosing
        value the file gives (a default or a missing key has no line of its own)."""
        if variable := _env_variable(loc):
            return f"environment {variable}"
        position = self.document.position(loc, key=key)
        return f"{self.source}:{position}" if position else self.source

    def describe(self, error: Mapping[str, Any]) -> str:
        """A pydantic error as "origin: key.path: message"."""
        loc = tuple(part for part in error["loc"] if part != "[key]")
        about_name = "[key]" in error["loc"]  # the problem is a mapping's key, not its value
        text = f"{key_path(loc)}: {'bad name: ' if about_name else ''}{message(error, Settings)}"
        if error["type"] == "missing":  # the mapping that lacks it, unless the whole file does
            return f"{self.at(loc[:-1]) if len(loc) > 1 else self.source}: {text}"
        about_key = about_name or error["type"] in ("extra_forbidden", "invalid_key")
        return f"{self.at(loc, key=about_key)}: {text}"

    def cross(self, reason: str) -> str:
        """A cross-key check's "key.path: message", with the origin of that key."""
        path = _KEY_PATH.match(reason)
        return f"{self.at(parse_key_path(path[0]) if path else ())}: {reason}"


def parse_key_path(path: str) -> list[int | str]:
    """The loc of a key path: `services[0].name` -> ["services", 0, "name"]."""
    loc: list[int | str] = []
    for name, index in re.findall(r"(\w+)|\[(\d+)\]", path):
        loc.append(int(index) if index else name)
    return loc


def _env_variable(loc: Loc) -> str | None:
    """The GLB_* variable that supplied the value at `loc`, if one did: the variable of that
    key, or of an enclosing section whose JSON value holds the key (the file gives the rest of
    a section an environment variable sets in part)."""
    environ = {name.upper(): value for name, value in os.environ.items()}
    for end in range(len(loc), 0, -1):
        parts = loc[:end]
        if all(isinstance(p, str) for p in parts):
            name = ENV_PREFIX + "__".join(str(p).upper() for p in parts)
            if name in environ and _holds(environ[name], loc[end:]):
                return name
    return None


def _holds(value: str, rest: Loc) -> bool:
    """Whether the JSON text `value` has a value at the path `rest` (always, for no path)."""
    if not rest:
        return True
    try:
        node: object = json.loads(value)
    except ValueError:
        return False
    for part in rest:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
            continue
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            continue
        return False
    return True


def _environment_not_json(exc: SettingsError) -> list[str]:
    """The GLB_* variables under the field pydantic-settings could not decode, named."""
    field = re.search(r'field "(\w+)"', str(exc))
    section = ENV_PREFIX + (field[1].upper() if field else "")
    problems = []
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if not field or not (upper == section or upper.startswith(section + "__")):
            continue
        loc = upper.removeprefix(ENV_PREFIX).lower().split("__")
        target = field_at(Settings, loc)
        if target is not None and decoded_as_json(target) and _not_json(value):
            path = ".".join(loc)
            problems.append(
                f"environment {name}: {path}: {shown(value)} is not valid JSON (a section "
                f"or a list is given as JSON, e.g. {_JSON_EXAMPLES})"
            )
    return problems or [f"environment: {exc}"]


_JSON_EXAMPLES = """'{"listen": "127.0.0.1:53"}' or '["10.0.0.0/8"]'"""


def _not_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return True
    return False
