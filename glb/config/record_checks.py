"""Checks of the zones' static records (`zones[].records`) against each other, the zones and the
services: names and values, one record set per name and type, CNAME alone at its name (never at
an apex, no loops, chains of at most `MAX_CHAIN`), services keeping their A/AAAA, and nothing
below a delegation but its glue.

Duplicate values in one record set are rejected ("listed twice"), as cluster addresses are.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from glb.config.models import ServiceSettings, ZoneSettings
from glb.config.records import owner_name, record_value
from glb.core.model import HostnameAnswer

MAX_CHAIN: Final = 8  # CNAMEs one answer may follow


@dataclass(frozen=True)
class _RRSet:
    """A valid record set: where it is configured, its owner and parsed values."""

    here: str  # zones[i].records[r]
    zone: str
    owner: str
    type: str
    values: tuple[str, ...]


def check_records(
    zones: Sequence[ZoneSettings | None],
    services: Sequence[ServiceSettings | None],
    zone_names: Sequence[str],
) -> Iterator[str]:
    """Every problem of the zones' records."""
    rrsets: dict[tuple[str, str], _RRSet] = {}
    for z, zone in enumerate(zones):
        if zone is None:
            continue
        for r, record in enumerate(zone.records):
            here = f"zones[{z}].records[{r}]"
            rrset = yield from _parse(here, zone, record.name, record.type, record.values)
            if rrset is None:
                continue
            yield from _placed(rrset, zone_names)
            first = rrsets.setdefault((rrset.owner, rrset.type), rrset)
            if first is not rrset:
                yield (
                    f"{here}.name: {rrset.owner} {rrset.type} is already given by {first.here} "
                    "(list every value in one record)"
                )
    names = {s.name: f"services[{i}]" for i, s in enumerate(services) if s}
    nameservers = {ns.name for zone in zones if zone for ns in zone.nameservers if ns.address}
    yield from _check_cnames(rrsets, names, nameservers)
    yield from _check_services(rrsets, names)
    cname = HostnameAnswer.CNAME
    cnames = {s.name: names[s.name] for s in services if s and s.hostname_answer is cname}
    yield from _check_cname_services(rrsets, cnames)
    yield from _check_delegations(rrsets, names)


def _parse(
    here: str,
    zone: ZoneSettings,
    name: str,
    rtype: str,
    values: Sequence[str | list[str]],
) -> Generator[str, None, _RRSet | None]:
    """The problems of one record's own name and values (a generator whose return value is the
    record set, None when it is invalid)."""
    problems, found = 0, []
    try:
        owner = owner_name(name, zone.name)
    except ValueError as exc:
        yield f"{here}.name: {exc}"
        return None
    if owner == zone.name and rtype in ("CNAME", "NS"):
        problems += 1
        yield (
            f"{here}.type: {rtype} at the apex ({zone.name}): "
            + ("a zone's apex has its SOA and NS" if rtype == "CNAME" else "use nameservers")
        )
    for v, value in enumerate(values):
        try:
            parsed = record_value(rtype, value)
        except ValueError as exc:
            problems += 1
            yield f"{here}.values[{v}]: {exc}"
            continue
        if parsed in found:
            problems += 1
            yield f"{here}.values[{v}]: {_quoted(value)} is listed twice"
        found.append(parsed)
    if rtype == "CNAME" and len(values) > 1:
        problems += 1
        yield f"{here}.values: a CNAME has one value (a name is an alias of one name only)"
    if problems:
        return None
    return _RRSet(here, zone.name, owner, rtype, tuple(found))


def _quoted(value: str | list[str]) -> str:
    return repr(value) if isinstance(value, str) else repr(list(value))


def _inside(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _placed(rrset: _RRSet, zone_names: Sequence[str]) -> Iterator[str]:
    """A record belongs in its own zone, not outside it nor in a more specific zone."""
    if not _inside(rrset.owner, rrset.zone):
        yield f"{rrset.here}.name: {rrset.owner} is outside the zone {rrset.zone}"
        return
    deeper = [z for z in zone_names if z != rrset.zone and _inside(z, rrset.zone)]
    inner = [z for z in deeper if _inside(rrset.owner, z)]
    if inner:
        yield (
            f"{rrset.here}.name: {rrset.owner} is inside the zone {max(inner, key=len)}, "
            "configured on its own: give the record there"
        )


def _check_cnames(
    rrsets: dict[tuple[str, str], _RRSet], services: dict[str, str], nameservers: set[str]
) -> Iterator[str]:
    """A CNAME is alone at its name, and its chain ends within `MAX_CHAIN` steps."""
    aliases = {o: r.values[0][:-1] for (o, t), r in rrsets.items() if t == "CNAME"}
    for (owner, rtype), rrset in rrsets.items():
        if rtype != "CNAME" and owner in aliases:
            cname = rrsets[owner, "CNAME"]
            yield (
                f"{rrset.here}.name: {owner} has a CNAME ({cname.here}), so it can have no "
                f"other data (this {rtype} record)"
            )
    looped: set[str] = set()
    for owner in aliases:
        cname = rrsets[owner, "CNAME"]
        if owner in services:
            yield (
                f"{cname.here}.name: {owner} is the service {services[owner]}: a CNAME must be "
                "alone at its name"
            )
        if owner in nameservers:
            yield f"{cname.here}.name: {owner} is a nameserver's name: a CNAME must be alone there"
        yield from _chain(cname, aliases, looped)


def _chain(cname: _RRSet, aliases: dict[str, str], looped: set[str]) -> Iterator[str]:
    """A loop is reported once, at its first member configured; a chain too long at each
    start."""
    seen = [cname.owner]
    name = aliases[cname.owner]
    while name in aliases:
        if name in seen:
            loop = seen[seen.index(name) :]
            if not looped & set(loop):
                text = " -> ".join([*loop, name])
                yield f"{cname.here}.values[0]: the CNAME chain loops ({text})"
            looped.update(loop)
            return
        seen.append(name)
        if len(seen) > MAX_CHAIN:
            yield (
                f"{cname.here}.values[0]: the CNAME chain from {cname.owner} is longer than "
                f"{MAX_CHAIN} names"
            )
            return
        name = aliases[name]


def _check_services(
    rrsets: dict[tuple[str, str], _RRSet], services: dict[str, str]
) -> Iterator[str]:
    """A service's A and AAAA are steered: a static one there conflicts, as an NS would."""
    for (owner, rtype), rrset in rrsets.items():
        if owner in services and rtype in ("A", "AAAA", "NS"):
            why = "its addresses are steered" if rtype != "NS" else "it cannot be delegated"
            yield (f"{rrset.here}.type: {rtype} at {owner}, the service {services[owner]}: {why}")


def _check_cname_services(
    rrsets: dict[tuple[str, str], _RRSet], services: dict[str, str]
) -> Iterator[str]:
    """A service answering `hostname_answer: cname` may answer a CNAME, which must be alone
    at its name: no record may sit beside it."""
    for (owner, rtype), rrset in rrsets.items():
        if owner in services:
            yield (
                f"{rrset.here}.name: {rtype} at {owner}, the service {services[owner]}, which "
                "answers a CNAME (hostname_answer: cname) and a CNAME must be alone at its name "
                "(use hostname_answer: resolve, or put the record elsewhere)"
            )


def _check_delegations(
    rrsets: dict[tuple[str, str], _RRSet], services: dict[str, str]
) -> Iterator[str]:
    """Below an NS record (a delegation) only the glue of its in-bailiwick nameservers."""
    cuts = {o: r for (o, t), r in rrsets.items() if t == "NS"}
    if not cuts:
        return
    for (owner, rtype), rrset in rrsets.items():
        cut = _cut_above(owner, cuts, at=rtype != "NS")
        if cut is None:
            continue
        targets = {v[:-1] for v in cut.values}
        if owner == cut.owner:
            yield (
                f"{rrset.here}.type: {rtype} at {owner}, delegated by {cut.here}: only NS "
                "records are at a delegation"
            )
        elif rtype not in ("A", "AAAA") or owner not in targets:
            yield (
                f"{rrset.here}.name: {owner} is below the delegation {cut.owner} ({cut.here}): "
                "only the glue addresses of its nameservers belong there"
            )
    for name, where in services.items():
        cut = _cut_above(name, cuts, at=False)
        if cut is not None and name != cut.owner:  # at the cut: reported as an NS there
            yield (
                f"{where}.name: {name} is below the delegation {cut.owner} ({cut.here}): "
                "its answers belong to the child zone"
            )


def _cut_above(name: str, cuts: dict[str, _RRSet], *, at: bool) -> _RRSet | None:
    """The delegation strictly above `name` (or at it, with `at`)."""
    labels = name.split(".")
    for start in range(0 if at else 1, len(labels)):
        cut = cuts.get(".".join(labels[start:]))
        if cut is not None:
            return cut
    return None
