"""Configuration reload: read and validate the file again, then swap it in, all or nothing.

A valid new configuration replaces the topology everywhere at once (the monitor, which keeps the
health of unchanged targets, and the DNS answerer; the HTTP proxy and the admin API read the
topology from the monitor per request). An invalid one changes nothing: every problem is logged
with its key path, counted in `glb_config_reloads_total{result="error"}` and returned to the
caller. The SOA serial of every zone increases on each applied reload.

Listeners, the admin token, logging and the probes' CA file are bound at start-up: a reload that
changes them applies everything else and logs that those need a restart.

`watch_file` polls the configuration file and reloads when it has changed (`glb serve --watch`):
for a file that is rewritten in place or swapped behind a symlink (a Kubernetes ConfigMap).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from glb.config import Settings, to_topology
from glb.core.model import Topology
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from glb.errors import ConfigError
from glb.health.monitor import Monitor

logger = logging.getLogger(__name__)

RESTART_ONLY = ("dns", "http", "admin", "log", "probes", "instance", "state")  # read at start-up


class Reloader:
    """Applies a freshly loaded configuration to a running glb; one reload at a time."""

    def __init__(
        self,
        settings: Settings,
        load: Callable[[], Settings] | None,
        monitor: Monitor,
        answerer: DnsAnswerer,
        stats: Stats,
        *,
        serial: int,
        also: Callable[[Topology], None] | None = None,
    ) -> None:
        """`also` is called with every new topology once the monitor and answerer have it (the
        worker pool, which passes it on to the worker processes)."""
        self._also = also
        self._settings = settings
        self._load = load
        self._monitor = monitor
        self._answerer = answerer
        self._stats = stats
        self._serial = serial
        self._lock = asyncio.Lock()

    @property
    def serial(self) -> int:
        return self._serial

    async def reload(self) -> list[str]:
        """Reload; return the problems found (empty when the new configuration is in force)."""
        async with self._lock:
            if self._load is None:
                return self._failed(["no configuration file to reload from"])
            try:
                settings = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                return self._failed(exc.reasons)
            await self._apply(settings)
            return []

    async def _apply(self, settings: Settings) -> None:
        self._serial = max(self._serial + 1, int(time.time()))
        topology = to_topology(settings, serial=self._serial)
        await self._monitor.update(topology)
        await self._answerer.update_async(topology)
        if self._also is not None:
            self._also(topology)
        changed = [
            key for key in RESTART_ONLY if _section(settings, key) != _section(self._settings, key)
        ]
        self._settings = settings
        self._stats.reloads["success"] += 1
        self._stats.last_reload_success = time.time()
        logger.info(
            "configuration reloaded: %d zone(s), %d service(s), serial %d",
            len(topology.zones),
            len(topology.services),
            self._serial,
            extra={"event": "reload", "result": "success", "serial": self._serial},
        )
        if changed:
            logger.warning(
                "configuration reloaded, but %s change(s) take effect only at restart",
                ", ".join(changed),
                extra={"event": "reload", "restart_needed": changed},
            )

    def _failed(self, reasons: list[str]) -> list[str]:
        self._stats.reloads["error"] += 1
        for reason in reasons:
            logger.error(
                "reload rejected, still serving the previous configuration: %s",
                reason,
                extra={"event": "reload", "result": "error", "reason": reason},
            )
        return reasons


def _section(settings: Settings, key: str) -> object:
    return getattr(settings, key)


FileSignature = tuple[int, int, int, int]  # mtime (ns), size, inode, device


def file_signature(path: str) -> FileSignature | None:
    """What changes when the file (followed through symlinks) changes; None if unreadable."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev


async def watch_file(
    path: str,
    interval: float,
    reload: Callable[[], Awaitable[list[str]]],
    loaded: FileSignature | None = None,
) -> None:
    """Every `interval` seconds, look at `path`; once a change has held still for one interval
    (so a file being written is not read half-way), `reload()`. `loaded`: the file's signature
    when the configuration in force was read (default: now), so a change made while glb was
    starting is reloaded too. Runs until cancelled. A file that is briefly missing (a symlink
    being swapped) is simply looked at again; a reload that fails is logged by the reloader and
    not retried until the file changes again."""
    applied = seen = loaded if loaded is not None else file_signature(path)
    while True:
        await asyncio.sleep(interval)  # a poll of the file system, not a synchronisation
        current = file_signature(path)
        if current is not None and current != applied and current == seen:
            logger.info("configuration file %s changed: reloading", path, extra={"event": "reload"})
            applied = current
            await reload()
        seen = current
