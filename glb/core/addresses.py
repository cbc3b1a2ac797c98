"""Where a cluster's endpoints are when its configuration names them rather than lists them.

A cluster's `addresses` may hold host names (an ingress behind a cloud load balancer is
`a1b2.elb.amazonaws.com`); an `AddressBook` says what they stand for right now: each host
name's current addresses (`resolved`, filled by `glb.discovery.hostnames`), and the extra
addresses or host names a discovery source found for a (cluster, service) (`discovered`: a
`Found`, with the objects they come from and whether the cluster reports ready endpoints behind
them). The topology builder turns each into endpoints; the empty book (`EMPTY`) leaves only the
addresses written in the configuration.

`answered(service, decision)` is what a DNS answer at a service hands out for a policy's
decision: with `hostname_answer: cname` and a first endpoint resolved from a host name, a CNAME
to that name; else the addresses (under `cname`, those given as addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from glb.core.model import Endpoint, HostnameAnswer, Service
from glb.core.policies import Decision


def is_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address, False for a host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Found:
    """What a discovery source found for one service in one cluster."""

    entries: tuple[str, ...]  # addresses or host names
    origin: str  # the objects they come from, as `Ingress shop/app`
    ready: bool | None = None  # whether ready endpoints are behind them; None: not known


@dataclass(frozen=True, slots=True)
class AddressBook:
    """The current addresses of host names, and what discovery found per (cluster, service)."""

    resolved: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )  # host name -> its current addresses (none known yet: absent)
    discovered: Mapping[tuple[str, str], Found] = field(
        default_factory=lambda: MappingProxyType({})
    )  # (cluster, service) -> further addresses or host names

    def expand(self, entries: Iterable[str]) -> Iterator[tuple[str, str | None]]:
        """(address, host name it came from or None) for each entry, an address as itself and a
        host name as each of its known addresses (none while it has none)."""
        for entry in entries:
            if is_address(entry):
                yield entry, None
            else:
                for address in self.resolved.get(entry, ()):
                    yield address, entry

    def host_names(self, configured: Iterable[str]) -> frozenset[str]:
        """The host names among `configured` and everything discovered: those to resolve."""
        found = (*configured, *(e for each in self.discovered.values() for e in each.entries))
        return frozenset(entry for entry in found if not is_address(entry))

    def with_resolved(self, resolved: Mapping[str, tuple[str, ...]]) -> AddressBook:
        return AddressBook(MappingProxyType(dict(resolved)), self.discovered)

    def with_discovered(self, discovered: Mapping[tuple[str, str], Found]) -> AddressBook:
        return AddressBook(self.resolved, MappingProxyType(dict(discovered)))


EMPTY: Final = AddressBook()


@dataclass(frozen=True, slots=True)
class Answered:
    """What an A or AAAA answer at a service hands out: a CNAME target, or addresses."""

    cname: Endpoint | None  # the endpoint whose host name the answer is a CNAME to
    endpoints: tuple[Endpoint, ...]  # the endpoints whose addresses are answered (no CNAME)


def answered(service: Service, decision: Decision) -> Answered:
    """`decision` as the answer gives it: all its addresses under `resolve`; under `cname`, a
    CNAME to the first endpoint's host name if it has one, else the addresses of the endpoints
    given as addresses."""
    chosen = decision.answer
    if service.hostname_answer is not HostnameAnswer.CNAME:
        return Answered(None, chosen)
    if chosen and chosen[0].host is not None:
        return Answered(chosen[0], ())
    return Answered(None, tuple(e for e in chosen if by_address(service, e)))


def by_address(service: Service, endpoint: Endpoint) -> bool:
    """Whether answers may hand out `endpoint`'s address (not under `cname` for an address
    resolved from a host name: the answer is then a CNAME to the name)."""
    return service.hostname_answer is not HostnameAnswer.CNAME or endpoint.host is None
