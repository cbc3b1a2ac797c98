"""The wiring of the address sources (`glb.discovery`) into a running glb.

`resolve_hostnames` resolves the host names in the configuration's clusters before the first
topology is built (so the first probe round probes their addresses), and stops following them
on exit. Once the reloader exists, `readdress_on_change` puts each new address book in force
through it (`Reloader.readdress`), keeping what other sources discovered; `follow_names` keeps
the names followed those of each new topology (a reload may add or remove some).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from glb.config import Settings
from glb.core.addresses import EMPTY, AddressBook
from glb.core.model import Topology
from glb.core.name_refresh import RefreshTiming
from glb.core.stats import Stats
from glb.discovery.hostnames import HostnameResolver
from glb.reload import Reloader


async def resolve_hostnames(
    stack: contextlib.AsyncExitStack, settings: Settings, stats: Stats
) -> HostnameResolver:
    """A resolver of the host names in `settings`' clusters, each resolved once (or given up
    on after `hostnames.timeout`); closed on exit."""
    options = settings.hostnames
    resolver = HostnameResolver(
        stats,
        nameservers=options.nameservers,
        timing=RefreshTiming(options.min_interval, options.max_interval),
        timeout=options.timeout,
    )
    stack.push_async_callback(resolver.close)
    configured = (entry for cluster in settings.clusters for entry in cluster.addresses)
    await resolver.start(EMPTY.host_names(configured))
    return resolver


def readdress_on_change(
    stack: contextlib.AsyncExitStack, resolver: HostnameResolver, reloader: Reloader
) -> None:
    """Follow the names from now on; each new set of addresses goes in force through
    `reloader`, with what other sources discovered kept. On exit, the following stops before
    what the reloader feeds (the monitor, the answerer) does."""

    async def readdress(book: AddressBook) -> None:
        await reloader.readdress(reloader.addresses.with_resolved(book.resolved))

    resolver.run(readdress)
    stack.push_async_callback(resolver.close)


def follow_names(resolver: HostnameResolver) -> Callable[[Topology], None]:
    """What each new topology tells the resolver: the host names its clusters hold now."""

    def follow(topology: Topology) -> None:
        entries = (entry for cluster in topology.clusters for entry in cluster.addresses)
        resolver.follow(EMPTY.host_names(entries))

    return follow
