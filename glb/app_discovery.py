"""The wiring of the address sources (`glb.discovery`) into a running glb.

Before the first topology is built (so the first probe round probes what they find),
`discover_kubernetes` starts Kubernetes discovery (`glb.app_kubernetes`) and waits a little for
the clusters' APIs, then `resolve_hostnames` resolves the host names in the configuration's
clusters and those discovered. Once the reloader exists, `readdress_on_change` puts each change
in force through it (`Reloader.readdress`), each source changing only its part of the address
book; `follow_names` keeps the names followed those of each new topology and of what is
discovered (a reload may add or remove some). Both stop on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from glb.app_kubernetes import KubernetesFollower
from glb.config import Settings
from glb.core.addresses import EMPTY, AddressBook, Found
from glb.core.model import Topology
from glb.core.name_refresh import RefreshTiming
from glb.core.stats import Stats
from glb.discovery.hostnames import HostnameResolver
from glb.reload import Reloader


async def resolve_hostnames(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    stats: Stats,
    addresses: AddressBook = EMPTY,
) -> HostnameResolver:
    """A resolver of the host names in `settings`' clusters and those discovered (in
    `addresses`), each resolved once (or given up on after `hostnames.timeout`); closed on
    exit."""
    options = settings.hostnames
    resolver = HostnameResolver(
        stats,
        nameservers=options.nameservers,
        timing=RefreshTiming(options.min_interval, options.max_interval),
        timeout=options.timeout,
    )
    stack.push_async_callback(resolver.close)
    await resolver.start(addresses.host_names(_configured(settings)))
    return resolver


async def discover_kubernetes(
    stack: contextlib.AsyncExitStack, settings: Settings, stats: Stats
) -> KubernetesFollower:
    """Kubernetes discovery for `settings` (nothing runs without clusters' `kubernetes:`),
    waited for at most `START_WAIT` seconds; stopped on exit."""
    follower = KubernetesFollower(stats)
    stack.push_async_callback(follower.close)
    await follower.start(settings)
    return follower


def readdress_on_change(
    stack: contextlib.AsyncExitStack,
    resolver: HostnameResolver,
    kubernetes: KubernetesFollower,
    reloader: Reloader,
) -> None:
    """Follow the names and the clusters' APIs from now on; each change goes in force through
    `reloader`, each source changing only its part of the address book. On exit, the following
    stops before what the reloader feeds (the monitor, the answerer) does."""

    async def resolved(book: AddressBook) -> None:
        await reloader.readdress(lambda known: known.with_resolved(book.resolved))

    async def discovered(found: Mapping[tuple[str, str], Found]) -> None:
        # the new topology's `also` follows the discovered host names (`follow_names`)
        await reloader.readdress(lambda known: known.with_discovered(found))

    resolver.run(resolved)
    stack.push_async_callback(resolver.close)
    kubernetes.attach(discovered)
    stack.push_async_callback(kubernetes.close)


def follow_names(
    resolver: HostnameResolver, book: Callable[[], AddressBook]
) -> Callable[[Topology], None]:
    """What each new topology tells the resolver: the host names its clusters hold now, and
    those discovered (`book()`: the address book in force)."""

    def follow(topology: Topology) -> None:
        entries = (entry for cluster in topology.clusters for entry in cluster.addresses)
        resolver.follow(book().host_names(entries))

    return follow


def _configured(settings: Settings) -> Iterator[str]:
    """The addresses and host names written in `settings`' clusters."""
    return (entry for cluster in settings.clusters for entry in cluster.addresses)
