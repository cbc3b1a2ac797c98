"""Configuration reload: read and validate the file again, then swap it in, all or nothing.

A valid new configuration replaces the topology everywhere at once (the monitor, which keeps the
health of unchanged targets, and the DNS answerer; the HTTP proxy and the admin API read the
topology from the monitor per request). An invalid one changes nothing: every problem is logged
with its key path, counted in `glb_config_reloads_total{result="error"}` and returned to the
caller.

What changed is logged: one summary line (`no change` for a file that means the same, say with
other comments or key order), then one line per zone, cluster, service or section added,
removed or changed, with the changed keys and their old and new values. A zone's SOA serial
increases only when the zone changed, or a service in it, or a cluster one of those uses.

Listeners, the admin token, logging, the probes' CA file and source address, the instance and
the state store are bound at start-up: a reload applies everything else and warns, with the old
and new values, about those that differ from what the process runs with (not from the previous
file: a change undone before a restart needs none).

The addresses of clusters given by host name (and what discovery finds) change without a
reload: `readdress(change)` rebuilds the topology of the settings in force with the
`AddressBook` `change` makes of the one in force, and puts it in force as a reload does, under
the same lock, with the same SOA serials and no reload logged; every reload then builds with
the newest book.

`watch_file` polls the configuration file and reloads when it has changed (`glb serve --watch`):
for a file that is rewritten in place or swapped behind a symlink (a Kubernetes ConfigMap).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePath

from pydantic import SecretStr

from glb.config import Settings, to_topology, zone_of
from glb.core.addresses import EMPTY, AddressBook
from glb.core.config_diff import (
    MISSING,
    ConfigDiff,
    KeyChange,
    ReloadOutcome,
    diff_configs,
    diff_values,
)
from glb.core.model import Topology
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from glb.errors import ConfigError
from glb.geodb import MmdbDatabase
from glb.health.monitor import Monitor

logger = logging.getLogger(__name__)

# read at start-up: a change of these takes effect at the next restart
RESTART_ONLY = (
    "dns",
    "http",
    "admin",
    "log",
    "probes.ca_file",
    "probes.source",
    "instance",
    "state",
    "hostnames",
)


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
        addresses: AddressBook = EMPTY,
        reloaded: Callable[[Settings], None] | None = None,
    ) -> None:
        """`settings`: those glb started with (and runs its listeners with); `serial`: every
        zone's SOA serial in their topology; `addresses`: the address book it was built with.
        `also` is called with every new topology once the monitor and answerer have it (the
        worker pool, which passes it on to the workers); `reloaded` with the settings of each
        reload once they are in force (discovery follows what they ask for)."""
        self._also = also
        self._reloaded = reloaded
        self._book = addresses
        self._running = plain_settings(settings)
        self._settings = settings
        self._plain = self._running
        self._load = load
        self._monitor = monitor
        self._answerer = answerer
        self._stats = stats
        self._serials = {zone.name: serial for zone in settings.zones}
        self._lock = asyncio.Lock()

    @property
    def serial(self) -> int:
        """The highest SOA serial of the zones in force."""
        return max(self._serials[zone.name] for zone in self._settings.zones)

    @property
    def serials(self) -> dict[str, int]:
        """Each zone in force by name, with its SOA serial."""
        return {zone.name: self._serials[zone.name] for zone in self._settings.zones}

    async def reload(self) -> list[str]:
        """Reload; return the problems found (empty when the new configuration is in force)."""
        return list((await self.reload_outcome()).problems)

    async def reload_outcome(self) -> ReloadOutcome:
        """Reload; what was applied, or the problems that rejected the new configuration."""
        async with self._lock:
            if self._load is None:
                return self._failed(["no configuration file to reload from"])
            try:
                settings = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                return self._failed(exc.reasons)
            return await self._apply(settings)

    @property
    def addresses(self) -> AddressBook:
        """The address book of the topology in force."""
        return self._book

    async def readdress(self, change: Callable[[AddressBook], AddressBook]) -> None:
        """Put in force the topology of the settings in force with the address book `change`
        makes of the one in force (host names re-resolved, endpoints discovered): as a reload
        does, with the same serials. `change` runs under the reload lock, so address sources
        changing their parts of the book at once never undo each other's."""
        async with self._lock:
            book = change(self._book)
            if book == self._book:
                return
            self._book = book
            await self._put_in_force(self._settings)

    async def _put_in_force(self, settings: Settings) -> Topology:
        topology = to_topology(settings, serials=self._serials, addresses=self._book)
        await self._monitor.update(topology)
        await self._answerer.update_async(topology)
        if self._also is not None:
            self._also(topology)
        return topology

    async def _apply(self, settings: Settings) -> ReloadOutcome:
        plain = plain_settings(settings)
        diff = diff_configs(self._plain, plain)
        self._bump(zones_changed(diff, self._settings, settings))
        topology = await self._put_in_force(settings)
        self._settings, self._plain = settings, plain
        if self._reloaded is not None:
            self._reloaded(settings)
        self._stats.reloads["success"] += 1
        self._stats.last_reload_success = time.time()
        outcome = ReloadOutcome((), diff, restart_changes(self._running, plain))
        _log_applied(outcome, topology, self.serials)
        return outcome

    def _bump(self, zones: set[str]) -> None:
        """A new serial for each zone in `zones`: above its last one (kept for a zone removed,
        so one added back goes up too), and the current time if that is higher."""
        now = int(time.time())
        for zone in zones:
            self._serials[zone] = max(self._serials.get(zone, 0) + 1, now)

    def _failed(self, reasons: list[str]) -> ReloadOutcome:
        self._stats.reloads["error"] += 1
        for reason in reasons:
            logger.error(
                "reload rejected, still serving the previous configuration: %s",
                reason,
                extra={"event": "reload", "result": "error", "reason": reason},
            )
        return ReloadOutcome(problems=reasons)


def zones_changed(diff: ConfigDiff, old: Settings, new: Settings) -> set[str]:
    """The zones of `new` whose content `diff` changes: the zone itself (or it is new), a
    service in it (added, removed, changed, or moved to another zone, as into a more specific
    zone added) or a cluster such a service uses."""
    zones = {change.name for change in diff.of("zone")}
    services = {change.name for change in diff.of("service")}
    clusters = {change.name for change in diff.of("cluster")}
    before, after = _zones_of_services(old), _zones_of_services(new)
    for settings, placed in ((old, before), (new, after)):
        for service in settings.services:
            used = {backend.cluster for backend in service.backends}
            moved = before.get(service.name) != after.get(service.name)
            if moved or service.name in services or used & clusters:
                zones.add(placed[service.name])
    return zones & {zone.name for zone in new.zones}


def _zones_of_services(settings: Settings) -> dict[str, str]:
    names = [zone.name for zone in settings.zones]
    return {service.name: zone_of(service.name, names) or "" for service in settings.services}


def restart_changes(
    running: Mapping[str, object], new: Mapping[str, object]
) -> tuple[KeyChange, ...]:
    """The keys read only at start-up whose value in `new` differs from the running one."""
    return tuple(
        change
        for key in RESTART_ONLY
        for change in diff_values(_at(running, key), _at(new, key), key)
    )


def _at(plain: Mapping[str, object], dotted: str) -> object:
    value: object = plain
    for key in dotted.split("."):
        value = value.get(key, MISSING) if isinstance(value, Mapping) else MISSING
    return value


def plain_settings(settings: Settings) -> dict[str, object]:
    """`settings` as plain data for `diff_configs`: a secret as a fingerprint that differs
    when the secret does (and means nothing outside this process), the geo database as its
    path, listen addresses as `host:port`, enums as their values, tuples as lists."""
    plain = _plain(settings.model_dump())
    assert isinstance(plain, dict)  # noqa: S101 (a model dumps to a dict)
    for section in ("dns", "http", "admin"):
        host, port = getattr(settings, section).listen
        plain[section]["listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return plain


_FINGERPRINT_KEY = os.urandom(16)


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, SecretStr):
        secret = value.get_secret_value().encode()
        digest = hmac.new(_FINGERPRINT_KEY, secret, hashlib.sha256).hexdigest()
        return f"<secret {digest[:8]}>"
    if isinstance(value, MmdbDatabase):
        return value.path
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    return value


def _log_applied(outcome: ReloadOutcome, topology: Topology, serials: dict[str, int]) -> None:
    """One line for the reload, one per changed object, one for what waits for a restart."""
    diff = outcome.diff
    summary = diff.summary()
    logger.info(
        "configuration reloaded: %d zone(s), %d service(s), serial %d; %s",
        len(topology.zones),
        len(topology.services),
        max(serials.values()),
        summary,
        extra={
            "event": "reload",
            "result": "success",
            "serial": max(serials.values()),
            "serials": serials,
            "changed": not diff.unchanged,
            "summary": summary,
        },
    )
    for change in diff.changes:
        logger.info(
            "configuration change: %s",
            change,
            extra={
                "event": "reload",
                "object_kind": change.kind,
                "object": change.name,
                "action": change.action,
                "changed_keys": [str(key) for key in change.keys],
            },
        )
    if outcome.restart_needed:
        logger.warning(
            "configuration reloaded, but these changes take effect only at restart: %s",
            ", ".join(map(str, outcome.restart_needed)),
            extra={
                "event": "reload",
                "restart_needed": [change.path for change in outcome.restart_needed],
                "restart_changes": [str(change) for change in outcome.restart_needed],
            },
        )


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
