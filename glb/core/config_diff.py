"""What changed between two configurations, and what a reload made of it.

A configuration is given here as plain data (mappings, lists, strings, numbers, booleans,
None), as the loader's settings dump to: comments and key order are gone, defaults are filled
in, so two files meaning the same thing compare equal. `diff_configs` names the zones, clusters
and services added, removed or changed (keyed by name, for changed ones the keys, nested keys
joined with dots: `probe.interval 1 -> 2`) and every other top-level section (`probes`, `geo`,
`dns`...) that changed. `ReloadOutcome` is what one reload did: the problems that rejected it, or
the changes it applied and those that wait for a restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

Action = Literal["added", "removed", "changed"]

NAMED: Final = (("zones", "zone"), ("clusters", "cluster"), ("services", "service"))
SECTION: Final = "section"  # the kind of a top-level section that is not a named list


class _Missing:
    """A key one side does not have (a header added to a probe's `headers`)."""

    def __repr__(self) -> str:
        return "(unset)"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One key whose value differs; `path` joins nested keys with dots (`probe.interval`),
    list items with their index (`backends[1].weight`); "" for the compared value itself."""

    path: str
    old: object
    new: object

    def __str__(self) -> str:
        values = f"{render(self.old)} -> {render(self.new)}"
        return f"{self.path} {values}" if self.path else values


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """A zone, cluster or service (`kind`, by `name`) or a top-level section (kind "section")
    added, removed or changed; `keys` says how a changed one changed."""

    kind: str
    name: str
    action: Action
    keys: tuple[KeyChange, ...] = ()

    def __str__(self) -> str:
        head = f"{self.kind} {self.name} {self.action}"
        return f"{head}: {', '.join(map(str, self.keys))}" if self.keys else head


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """Every object that differs, zones first, then clusters, services and sections."""

    changes: tuple[ObjectChange, ...] = ()

    @property
    def unchanged(self) -> bool:
        return not self.changes

    def of(self, kind: str) -> tuple[ObjectChange, ...]:
        return tuple(change for change in self.changes if change.kind == kind)

    def summary(self) -> str:
        """One line: `no change`, or the counts per kind (`services: 1 added, 2 changed; ...`)."""
        if self.unchanged:
            return "no change"
        parts = [_counts(plural, self.of(kind)) for plural, kind in NAMED]
        sections = [change.name for change in self.of(SECTION)]
        if sections:
            parts.append(f"settings changed: {', '.join(sections)}")
        return "; ".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload did: `problems` rejected it (nothing applied); otherwise `diff` is what
    it applied and `restart_needed` what differs from the running settings but is read only at
    start-up."""

    problems: Sequence[str] = ()
    diff: ConfigDiff = field(default_factory=ConfigDiff)
    restart_needed: tuple[KeyChange, ...] = ()

    @property
    def applied(self) -> bool:
        return not self.problems

    def report(self) -> dict[str, object]:
        """What an applied reload changed, as JSON: whether anything did, the summary line,
        one line per object, and the changes that wait for a restart."""
        return {
            "changed": not self.diff.unchanged,
            "summary": self.diff.summary(),
            "changes": [str(change) for change in self.diff.changes],
            "restart_needed": [str(change) for change in self.restart_needed],
        }


def diff_configs(old: Mapping[str, object], new: Mapping[str, object]) -> ConfigDiff:
    """What differs from `old` to `new`, both plain data of a whole configuration."""
    changes: list[ObjectChange] = []
    for plural, kind in NAMED:
        changes.extend(_diff_named(kind, _by_name(old.get(plural)), _by_name(new.get(plural))))
    named = {plural for plural, _ in NAMED}
    for section in sorted((old.keys() | new.keys()) - named):
        before, after = old.get(section, MISSING), new.get(section, MISSING)
        if before != after:
            keys = tuple(diff_values(before, after))
            changes.append(ObjectChange(SECTION, section, "changed", keys))
    return ConfigDiff(tuple(changes))


def diff_values(old: object, new: object, path: str = "") -> Iterator[KeyChange]:
    """The keys under `path` whose values differ. Mappings are compared key by key, a zone's
    records by name and type, lists of mappings of the same length item by item; any other
    differing value is one change."""
    if old == new:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(old.keys() | new.keys(), key=str):
            inner = f"{path}.{key}" if path else str(key)
            yield from diff_values(old.get(key, MISSING), new.get(key, MISSING), inner)
    elif isinstance(old, list) and isinstance(new, list) and _zone_records(old, new):
        before, after = _by_owner(old), _by_owner(new)  # records[www TXT], whatever the order
        for key in sorted(before.keys() | after.keys()):
            yield from diff_values(
                before.get(key, MISSING), after.get(key, MISSING), f"{path}[{key}]"
            )
    elif isinstance(old, list) and isinstance(new, list) and _same_length_records(old, new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            yield from diff_values(before, after, f"{path}[{index}]")
    else:
        yield KeyChange(path, old, new)


def render(value: object) -> str:
    """A value as a configuration file would spell it, briefly: `null`, `true`, `[a, b]`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(render, value)) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    return str(value) if isinstance(value, str) else repr(value)


def _same_length_records(old: list[object], new: list[object]) -> bool:
    return len(old) == len(new) and all(isinstance(item, Mapping) for item in (*old, *new))


def _zone_records(old: list[object], new: list[object]) -> bool:
    """Whether both lists hold a zone's records (mappings with a name and a type)."""
    items = (*old, *new)
    return bool(items) and all(
        isinstance(i, Mapping) and {"name", "type"} <= i.keys() for i in items
    )


def _by_owner(records: list[object]) -> dict[str, object]:
    return {f"{r['name']} {r['type']}": r for r in records if isinstance(r, Mapping)}


def _by_name(items: object) -> dict[str, Mapping[str, object]]:
    if not isinstance(items, list):
        return {}
    named = (item for item in items if isinstance(item, Mapping))
    return {str(item.get("name")): item for item in named}


def _diff_named(
    kind: str, old: Mapping[str, Mapping[str, object]], new: Mapping[str, Mapping[str, object]]
) -> Iterator[ObjectChange]:
    for name in sorted(old.keys() - new.keys()):
        yield ObjectChange(kind, name, "removed")
    for name in sorted(new.keys() - old.keys()):
        yield ObjectChange(kind, name, "added")
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            yield ObjectChange(kind, name, "changed", tuple(diff_values(old[name], new[name])))


def _counts(plural: str, changes: Sequence[ObjectChange]) -> str:
    if not changes:
        return ""
    counts = {action: sum(c.action == action for c in changes) for action in _ACTIONS}
    return f"{plural}: " + ", ".join(f"{n} {action}" for action, n in counts.items() if n)


_ACTIONS: Final[tuple[Action, ...]] = ("added", "removed", "changed")
