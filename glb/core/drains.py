"""Operator drains as records: who drained what, when, why, and until when.

A `Drain` takes a cluster out of every service's answers (`service` None) or out of one
service's. `Drains` is the immutable collection in force; the monitor holds one, the health
snapshot carries the frozensets derived from it (so answering stays a set lookup). Times are
seconds since the epoch (wall clock: a drain outlives the process that made it).

`Drains.to_document()` / `Drains.from_document()` convert to and from the JSON document of the
state file; `from_document` names what is wrong with a hand-edited file (`BadStateDocument`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

DOCUMENT_VERSION: Final = 1
MAX_REASON: Final = 200  # characters
Scope = tuple[str, str | None]  # (cluster, service or None for every service)


class BadStateDocument(ValueError):
    """A state document that cannot be used; the message names the key path and the problem."""


class BadInstant(ValueError):
    """A timestamp that is not ISO 8601 with a time zone (`Z` or an offset)."""


@dataclass(frozen=True, slots=True)
class Drain:
    cluster: str
    service: str | None  # None: every service
    who: str  # the token's name, or "api"
    since: float  # epoch seconds
    reason: str | None = None
    until: float | None = None  # epoch seconds; None: until undrained

    @property
    def scope(self) -> Scope:
        return (self.cluster, self.service)

    def expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until

    def describe(self) -> str:
        """`eu-west (every service)` or `eu-west in app.example.com`."""
        where = "every service" if self.service is None else None
        return f"{self.cluster} ({where})" if where else f"{self.cluster} in {self.service}"

    def to_json(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "service": self.service,
            "who": self.who,
            "since": format_instant(self.since),
            "reason": self.reason,
            "until": None if self.until is None else format_instant(self.until),
        }


@dataclass(frozen=True, slots=True)
class Drains:
    """The drains in force, one per scope; every change returns a new collection."""

    by_scope: Mapping[Scope, Drain] = field(default_factory=lambda: MappingProxyType({}))
    clusters: frozenset[str] = frozenset()  # drained in every service
    endpoints: frozenset[tuple[str, str]] = frozenset()  # (service, cluster)

    @classmethod
    def of(cls, drains: Iterator[Drain] | list[Drain] | tuple[Drain, ...]) -> Drains:
        by_scope = {d.scope: d for d in drains}
        clusters = frozenset(c for c, s in by_scope if s is None)
        endpoints = frozenset((s, c) for c, s in by_scope if s is not None)
        return cls(MappingProxyType(by_scope), clusters, endpoints)

    def __iter__(self) -> Iterator[Drain]:
        return iter(self.by_scope.values())

    def __len__(self) -> int:
        return len(self.by_scope)

    def get(self, cluster: str, service: str | None = None) -> Drain | None:
        return self.by_scope.get((cluster, service))

    def add(self, drain: Drain) -> Drains:
        """With `drain`; an existing drain of the same scope is kept (self is returned)."""
        if drain.scope in self.by_scope:
            return self
        return Drains.of([*self, drain])

    def remove(self, cluster: str, service: str | None = None) -> Drains:
        if (cluster, service) not in self.by_scope:
            return self
        return Drains.of([d for d in self if d.scope != (cluster, service)])

    def expired(self, now: float) -> tuple[Drain, ...]:
        return tuple(d for d in self if d.expired(now))

    def next_expiry(self) -> float | None:
        """The earliest `until` of any drain, or None."""
        return min((d.until for d in self if d.until is not None), default=None)

    def to_document(self) -> dict[str, object]:
        return {"version": DOCUMENT_VERSION, "drains": [d.to_json() for d in self]}

    @classmethod
    def from_document(cls, document: object) -> Drains:
        """Raises BadStateDocument naming the key path of the first problem."""
        if not isinstance(document, dict):
            raise BadStateDocument("(top level): must be a JSON object")
        unknown = sorted(set(document) - {"version", "drains"})
        if unknown:
            raise BadStateDocument(f"(top level): unknown key(s): {', '.join(unknown)}")
        if document.get("version") != DOCUMENT_VERSION:
            found = document.get("version")
            raise BadStateDocument(f"version: must be {DOCUMENT_VERSION}, not {found!r}")
        items = document.get("drains", [])
        if not isinstance(items, list):
            raise BadStateDocument("drains: must be a list")
        drains = [_drain_from(item, f"drains[{i}]") for i, item in enumerate(items)]
        scopes = [d.scope for d in drains]
        for i, scope in enumerate(scopes):
            if scope in scopes[:i]:
                raise BadStateDocument(f"drains[{i}]: a second drain of the same scope")
        return cls.of(drains)


_DRAIN_KEYS: Final = frozenset({"cluster", "service", "who", "since", "reason", "until"})


def _drain_from(item: object, path: str) -> Drain:
    if not isinstance(item, dict):
        raise BadStateDocument(f"{path}: must be a JSON object")
    unknown = sorted(set(item) - _DRAIN_KEYS)
    if unknown:
        raise BadStateDocument(f"{path}: unknown key(s): {', '.join(map(str, unknown))}")
    cluster = _text_at(item, "cluster", path, required=True) or ""
    service = _text_at(item, "service", path, required=False)
    who = _text_at(item, "who", path, required=True) or ""
    since = instant_at(item, "since", path)
    if since is None:
        raise BadStateDocument(f"{path}.since: missing")
    reason = _text_at(item, "reason", path, required=False)
    return Drain(cluster, service, who, since, reason, instant_at(item, "until", path))


def _text_at(item: dict[str, object], key: str, path: str, *, required: bool) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    limit = MAX_REASON if key == "reason" else 253
    if not isinstance(value, str) or not value or len(value) > limit:
        what = "a non-empty string" + ("" if required else " or null")
        raise BadStateDocument(f"{path}.{key}: must be {what} of at most {limit} characters")
    return value


def instant_at(item: dict[str, object], key: str, path: str) -> float | None:
    """The ISO 8601 time at `item[key]` in epoch seconds (None when absent or null);
    BadStateDocument naming `path.key` when it is not one."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadStateDocument(f"{path}.{key}: must be an ISO 8601 time, e.g. 2026-12-07T10:00:00Z")
    try:
        return parse_instant(value)
    except BadInstant as exc:
        raise BadStateDocument(f"{path}.{key}: {exc}") from None


def parse_instant(text: str) -> float:
    """`2026-12-07T10:00:00Z` or with an offset (`+01:00`) -> epoch seconds; BadInstant if not."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadInstant(
            f"{text[:40]!r} is not an ISO 8601 time (e.g. 2026-12-07T10:00:00Z)"
        ) from None
    if at.tzinfo is None:
        raise BadInstant(f"{text[:40]!r} has no time zone: end it with Z or an offset like +01:00")
    seconds = at.timestamp()
    if not math.isfinite(seconds):
        raise BadInstant(f"{text[:40]!r} is out of range")
    return seconds


def format_instant(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a `Z`, to the millisecond."""
    at = datetime.fromtimestamp(seconds, tz=UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
