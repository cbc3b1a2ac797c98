"""The addresses of the host names in clusters' `addresses`, kept current over DNS.

`HostnameResolver` looks up each name's A and AAAA records with dnspython's asyncio resolver
(the configured `hostnames.nameservers`, else those of the system's resolv.conf), and again when the
answer's TTL runs out, within [`min_interval`, `max_interval`] (`glb.core.name_refresh`). A
failed lookup (timeout, SERVFAIL, NXDOMAIN, no address of either family) keeps the name's last
addresses and is retried sooner, backing off; a family whose lookup failed keeps its own. A
cluster is never dropped because its DNS hiccupped.

`start(names)` resolves every name at once (each lookup bounded by `hostnames.timeout`) and
warns about each that has no address yet; `run(publish)` then follows them, calling `publish`
with a new `AddressBook` whenever some name's address set changed (each change logged with what
was added and removed), one call at a time, the newest book winning. `follow(names)` changes
the names followed (after a reload): new ones are resolved at once. Lookups are counted in
`Stats.hostname_resolutions` by name and result, and `Stats.hostname_addresses` holds each
name's number of known addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from glb.core.addresses import AddressBook
from glb.core.name_refresh import Change, NameRecord, RefreshTiming
from glb.core.stats import Stats

logger = logging.getLogger(__name__)

Publish = Callable[[AddressBook], Awaitable[None]]

OK: Final = "ok"
NODATA: Final = "nodata"  # the name exists, with no record of the type
DEFAULT_TIMING: Final = RefreshTiming()


@dataclass(frozen=True, slots=True)
class Lookup:
    """One record type's lookup: its addresses (None if it failed, () for none), their TTL and
    the result as counted (ok, nodata, nxdomain, servfail, timeout, error)."""

    addresses: tuple[str, ...] | None
    ttl: float | None
    result: str


def dns_resolver(
    nameservers: Sequence[tuple[str, int]], timeout: float
) -> dns.asyncresolver.Resolver:
    """A dnspython resolver asking `nameservers` (none: the system's, from resolv.conf),
    caching nothing, giving up on a lookup after `timeout` seconds. Without any server every
    lookup fails (and is counted so); the system's absence of one is logged."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            logger.warning(
                "the system has no DNS servers configured (resolv.conf): host names cannot be "
                "resolved; set hostnames.nameservers",
                extra={"event": "hostname"},
            )
            resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.cache = None
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)  # per try: a lost datagram is tried again
    return resolver


async def look_up(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> Lookup:
    """The addresses of one type at `name`."""
    try:
        answer = await resolver.resolve(name + ".", rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(None, None, "nxdomain")
    except dns.resolver.NoNameservers:
        return Lookup(None, None, "servfail")
    except dns.exception.Timeout:
        return Lookup(None, None, "timeout")
    except (dns.exception.DNSException, OSError):
        return Lookup(None, None, "error")
    wanted = dns.rdatatype.from_text(rdtype)
    if answer.rrset is None or answer.rrset.rdtype != wanted:
        return Lookup((), None, NODATA)
    addresses = tuple(str(ipaddress.ip_address(rdata.address)) for rdata in answer.rrset)
    return Lookup(addresses, float(answer.chaining_result.minimum_ttl), OK)


class HostnameResolver:
    """Follows a set of host names' addresses; see the module docstring."""

    def __init__(
        self,
        stats: Stats,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        timing: RefreshTiming = DEFAULT_TIMING,
        timeout: float = 5.0,
    ) -> None:
        """`nameservers`: (address, port) of the DNS servers to ask (none: the system's);
        `timeout`: the longest one lookup takes."""
        self._servers = tuple(nameservers)
        self._lookup_timeout = timeout
        self._resolver: dns.asyncresolver.Resolver | None = None  # made when first needed
        self._timing = timing
        self._stats = stats
        self._records: dict[str, NameRecord] = {}
        self._next: dict[str, float] = {}  # seconds from start() to each name's next lookup
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._publishing: asyncio.Task[None] | None = None
        self._published: AddressBook | None = None

    @property
    def book(self) -> AddressBook:
        """Each name with known addresses, with them."""
        known = {n: r.addresses for n, r in self._records.items() if r.addresses}
        return AddressBook(MappingProxyType(known))

    async def start(self, names: Iterable[str]) -> AddressBook:
        """Resolve every name in `names` at once; warn about each without an address."""
        wanted = sorted(set(names))
        for name in wanted:
            self._records[name] = NameRecord(name)
        waits = await asyncio.gather(*(self._refresh(name) for name in wanted))
        self._next = dict(zip(wanted, waits, strict=True))
        for name in wanted:
            if not self._records[name].addresses:
                logger.warning(
                    "host name %s could not be resolved at start-up: its clusters have no "
                    "endpoint from it until it is (retrying)",
                    name,
                    extra={"event": "hostname", "hostname": name},
                )
        self._published = self.book
        return self._published

    def run(self, publish: Publish) -> None:
        """Follow every name from now on, calling `publish` with each new book."""
        for name in self._records:
            self._follow(name, self._next.get(name, 0.0))
        self._publishing = asyncio.get_running_loop().create_task(
            self._publish_changes(publish), name="host names published"
        )

    def follow(self, names: Iterable[str]) -> None:
        """Follow exactly `names` from now on: new ones are resolved at once."""
        wanted = set(names)
        for name in set(self._records) - wanted:
            self._records.pop(name)
            self._stats.hostname_addresses.pop(name, None)
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
            self._changed.set()
        for name in sorted(wanted - set(self._records)):
            self._records[name] = NameRecord(name)
            if self._publishing is not None:
                self._follow(name, 0.0)

    async def close(self) -> None:
        """Stop following the names (again: nothing more to stop)."""
        tasks = [*self._tasks.values(), *([self._publishing] if self._publishing else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._publishing = None

    def _follow(self, name: str, wait: float) -> None:
        loop = asyncio.get_running_loop()
        self._tasks[name] = loop.create_task(self._keep_current(name, wait), name=f"host {name}")

    async def _keep_current(self, name: str, wait: float) -> None:
        while True:
            await asyncio.sleep(wait)  # the time to live of the last answer, not a synchronisation
            wait = await self._refresh(name)

    async def _refresh(self, name: str) -> float:
        """Look `name` up once; the seconds until the next lookup."""
        if self._resolver is None:
            self._resolver = dns_resolver(self._servers, self._lookup_timeout)
        resolver = self._resolver
        ipv4, ipv6 = await asyncio.gather(
            look_up(resolver, name, "A"), look_up(resolver, name, "AAAA")
        )
        record = self._records.get(name)
        if record is None:  # no longer followed
            return self._timing.max_interval
        outcome = record.looked_up(ipv4.addresses, ipv6.addresses)
        if outcome is None:
            self._records[name] = failed = record.failed()
            result = _failure(ipv4, ipv6)
            self._count(name, result)
            if failed.failures == 1 and failed.addresses:
                _log_failure(failed, result)
            return self._timing.after_failures(failed.failures)
        self._records[name], change = outcome
        self._count(name, OK)
        if change is not None:
            _log_change(change)
            self._changed.set()
        ttls = [each.ttl for each in (ipv4, ipv6) if each.ttl is not None]
        return self._timing.after_answer(min(ttls))

    def _count(self, name: str, result: str) -> None:
        self._stats.hostname_resolutions[name, result] += 1
        self._stats.hostname_addresses[name] = len(self._records[name].addresses or ())

    async def _publish_changes(self, publish: Publish) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            book = self.book
            if book != self._published:
                self._published = book
                try:
                    await publish(book)
                except Exception:  # a bug: log it, keep following the names
                    logger.exception("putting new host name addresses in force failed")


def _failure(ipv4: Lookup, ipv6: Lookup) -> str:
    """The result a failed name is counted under: the first error, else no data."""
    errors = [each.result for each in (ipv4, ipv6) if each.result not in (OK, NODATA)]
    return errors[0] if errors else NODATA


def _log_failure(record: NameRecord, result: str) -> None:
    logger.warning(
        "host name %s could not be resolved (%s): keeping its last addresses %s, retrying",
        record.name,
        result,
        ", ".join(record.addresses or ()),
        extra={"event": "hostname", "hostname": record.name, "result": result},
    )


def _log_change(change: Change) -> None:
    logger.info(
        "host name %s: addresses added %s, removed %s",
        change.name,
        ", ".join(change.added) or "none",
        ", ".join(change.removed) or "none",
        extra={
            "event": "hostname",
            "hostname": change.name,
            "added": list(change.added),
            "removed": list(change.removed),
        },
    )
