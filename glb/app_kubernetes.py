"""The wiring of Kubernetes discovery (`glb.discovery.kubernetes`) into a running glb.

`KubernetesFollower` runs one `KubernetesDiscovery` for the clusters of the settings in force
that have `kubernetes:` settings (none: nothing runs, and kubernetes_asyncio is never imported).
At start-up it waits, at most `START_WAIT` seconds, for every cluster's API to answer, so the
first topology (and the first probe round) has what the clusters hold. From then on each change
a cluster reports becomes its part of the address book: per (cluster, service) a `Found` with
the addresses and host names, the objects they come from and their readiness, put in force
through `Reloader.readdress` (changes arriving meanwhile are applied together, the newest
winning); the host names among them are followed like the configured ones. A reload that
changes what is discovered (clusters' `kubernetes:`, services' objects, which services a cluster
serves) restarts discovery; what the previous one found stays in force until the new one
reports, except for clusters no longer discovering. `Stats.discovery_up` tells, per cluster,
whether its API answers (the metric `glb_discovery_up`); a cluster whose API does not answer
keeps its last known addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from glb.config import Settings
from glb.core.addresses import Found
from glb.core.stats import Stats

if TYPE_CHECKING:
    from glb.discovery.kubernetes import ClusterPlan, KubernetesDiscovery
    from glb.discovery.source import Discovered

logger = logging.getLogger(__name__)

START_WAIT: Final = 5.0  # seconds: the longest start-up waits for the clusters' APIs

Apply = Callable[[Mapping[tuple[str, str], Found]], Awaitable[None]]


def plans(settings: Settings) -> list[ClusterPlan]:
    """What to discover in each cluster that has `kubernetes:` settings: the objects the
    services (or their backends) name there, the annotation route's services (those with a
    backend on the cluster) and readiness."""
    from glb.discovery.kubernetes import ClusterPlan, Connection, Target

    made = []
    for cluster in settings.clusters:
        options = cluster.kubernetes
        if options is None:
            continue
        targets, served = [], []
        for service in settings.services:
            for backend in service.backends:
                if backend.cluster != cluster.name:
                    continue
                served.append(service.name)
                named = backend.kubernetes or service.kubernetes
                if named is not None:
                    targets.append(Target(service.name, named.kind, named.namespace, named.name))
        connection = Connection(options.kubeconfig, options.in_cluster, options.context)
        annotated = frozenset(served) if options.annotations else frozenset()
        made.append(ClusterPlan(cluster.name, connection, targets, annotated, options.readiness))
    return made


class KubernetesFollower:
    """Kubernetes discovery for the settings in force; see the module docstring."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self.found: dict[tuple[str, str], Found] = {}
        self._plans: Sequence[ClusterPlan] = ()
        self._source: KubernetesDiscovery | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped: list[asyncio.Task[None]] = []  # cancelled by a restart, awaited at close
        self._changed = asyncio.Event()
        self._all_up = asyncio.Event()  # every cluster's API answers
        self._apply: Apply | None = None
        self._applying: asyncio.Task[None] | None = None

    async def start(self, settings: Settings, wait: float = START_WAIT) -> None:
        """Discover for `settings`, waiting at most `wait` seconds for every cluster's API."""
        self._restart(plans(settings))
        if self._source is None:
            return
        source = self._source
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._all_up.wait()
        for cluster, up in source.up.items():
            if not up:
                logger.warning(
                    "cluster %s: the Kubernetes API did not answer within %gs: starting "
                    "without its discovered addresses",
                    cluster,
                    wait,
                    extra={"event": "discovery", "cluster": cluster},
                )

    def attach(self, apply: Apply) -> None:
        """From now on, put each change in force with `apply`."""
        self._apply = apply
        loop = asyncio.get_running_loop()
        self._applying = loop.create_task(self._apply_changes(), name="kubernetes readdress")

    def follow(self, settings: Settings) -> None:
        """The settings in force changed (a reload): restart discovery if what it looks for did."""
        new = plans(settings)
        if list(new) == list(self._plans):
            return
        kept = {plan.cluster for plan in new}
        dropped = {key for key in self.found if key[0] not in kept}
        for key in dropped:
            del self.found[key]
        self._restart(new)
        if dropped:
            self._changed.set()

    async def close(self) -> None:
        tasks = [*self._stopped, *self._tasks, *([self._applying] if self._applying else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stopped, self._tasks, self._applying = [], [], None

    def _restart(self, new: Sequence[ClusterPlan]) -> None:
        for task in self._tasks:
            task.cancel()
        self._stopped = [task for task in (*self._stopped, *self._tasks) if not task.done()]
        self._tasks = []
        self._plans = new
        self._source = None
        self._stats.discovery_up.clear()
        if not new:
            return
        from glb.discovery.kubernetes.source import DEFAULT_BACKOFF, KubernetesDiscovery

        source = KubernetesDiscovery(new, self._on_change, DEFAULT_BACKOFF, self._on_up)
        self._source = source
        self._all_up.clear()
        self._stats.discovery_up.update(source.up)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(source), name="kubernetes discovery")]

    async def _run(self, source: KubernetesDiscovery) -> None:
        try:
            await source.run()
        except Exception:  # a bug in a loop: log it, keep serving the last known addresses
            logger.exception("Kubernetes discovery stopped", extra={"event": "discovery"})

    def _on_up(self, cluster: str, up: bool) -> None:
        self._stats.discovery_up[cluster] = up
        if all(self._stats.discovery_up.values()):
            self._all_up.set()

    def _on_change(self, cluster: str, discovered: Mapping[str, Discovered]) -> None:
        for key in [key for key in self.found if key[0] == cluster]:
            del self.found[key]
        for service, what in discovered.items():
            entries = (*what.addresses, *what.hostnames)
            self.found[cluster, service] = Found(entries, what.source, what.ready)
        logger.info(
            "cluster %s: discovered %s",
            cluster,
            "; ".join(_described(s, d) for s, d in sorted(discovered.items())) or "nothing",
            extra={"event": "discovery", "cluster": cluster},
        )
        self._changed.set()

    async def _apply_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._apply is None:
                continue
            try:
                await self._apply(dict(self.found))
            except Exception:  # keep following: the next change tries again
                logger.exception(
                    "cannot put discovered addresses in force", extra={"event": "discovery"}
                )


def _described(service: str, found: Discovered) -> str:
    entries = ", ".join(found.addresses + found.hostnames) or "no address"
    ready = "" if found.ready is None else (" ready" if found.ready else " NOT ready")
    return f"{service} at {entries} ({found.source}{ready})"
