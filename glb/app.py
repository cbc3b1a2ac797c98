"""The composition root: binds every socket, runs the first probe round, then serves.

`running(settings)` is an async context manager that yields a `Running` once glb is serving:
sockets are bound (fail fast), the first probe round has been applied, and the DNS server
answers. Leaving it stops everything in reverse order. No signal handling here: that is the
CLI's job.

This module is the start and stop sequence; the pieces it assembles are built in its siblings:
`glb.app_front` (the HTTP front end: proxy, TLS certificates, glb's HTTP server),
`glb.app_admin` (the admin API and /metrics, served by aiohttp), `glb.app_dns` (the DNS answerer
and server), `glb.app_probing` (the prober, held connections), `glb.app_state` (drains, drills,
shared verdicts), `glb.app_discovery` and `glb.app_kubernetes` (address sources).

The host names in clusters' addresses are resolved (`glb.app_discovery`) before the first
topology is built, then followed: new addresses go in force through the reloader.

The state glb keeps and shares is wired in `glb.app_state`: with a state file (`state_path`,
chosen by the CLI) the drains saved there are restored before the first probe round and saved
(first) on every change, and only the main process reads or writes it; with `state.redis` the
drains are also shared through Redis (`glb.state.shared`), read from it before the first probe
round. Failover drills (`glb.admin.drill_runner`) are kept in the same state file: one a crash
left running is ended (its cluster restored) before the first probe round; the monitor probes
through a `glb.health.faults.FaultInjector`, which fails a drilled cluster's probes in a `fail`
drill. A `glb.health.failover_meter.FailoverMeter` follows the snapshots and measures every
failover for the SLI histograms; a `glb.health.failing_open.FailingOpenLog` logs each service
starting and stopping failing open.

With `workers=N` the main process also starts N-1 worker processes (`glb.workers`) that
serve DNS and HTTP on the same ports (SO_REUSEPORT); `serve_worker(fd, stop)` is a worker's own
composition (`glb.app_worker`, importable from here): the same DNS answerer, DNS server and proxy,
fed by the main instead of a monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from glb import __version__, app_discovery, app_probing, app_state, app_worker
from glb.app_admin import admin_api, serve_admin
from glb.app_dns import dns_answerer, dns_server
from glb.app_front import front_proxy, front_tls, serve_front
from glb.app_state import cancel
from glb.app_worker import serve_worker
from glb.config import Settings, runtime, to_topology
from glb.core.addresses import EMPTY
from glb.core.model import Topology
from glb.core.stability import StabilityRule
from glb.core.stats import Stats
from glb.dns.cookies import new_master_secret
from glb.health.failing_open import FailingOpenLog
from glb.health.failover_meter import FailoverMeter
from glb.health.faults import FaultInjector
from glb.health.monitor import Monitor
from glb.health.triggers import AddressTriggers
from glb.http1.server_tls import ServerCertificates
from glb.reload import Reloader
from glb.sockets import bind_dns, bind_tcp
from glb.state.file import StateFile
from glb.state.shared import SharedDrains
from glb.workers.supervisor import WorkerInfo, WorkerPool

__all__ = ["Running", "running", "serve_worker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    """A serving glb: where it listens, what it knows, and how to reload it."""

    dns_addr: tuple[str, int]
    http_url: str
    admin_url: str
    monitor: Monitor
    reloader: Reloader
    pool: WorkerPool

    @property
    def topology(self) -> Topology:
        return self.monitor.topology

    @property
    def workers(self) -> list[WorkerInfo]:
        """The worker processes (none unless started with workers > 1): pids and the delay of
        the newest snapshot each applied."""
        return self.pool.workers

    async def reload(self) -> list[str]:
        """Reload the configuration; the problems found, or [] once it is in force."""
        return await self.reloader.reload()


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    load: Callable[[], Settings] | None = None,
    workers: int = 1,
    worker_command: Sequence[str] | None = None,
    state_path: Path | None = None,
    stability: StabilityRule | None = None,
) -> AsyncIterator[Running]:
    """Start glb for `settings`; yield once it serves; stop it gracefully on exit.

    Start: bind every socket (fail fast) -> admin API (so /readyz answers "not yet") -> first
    probe round -> DNS and the HTTP proxy -> `workers - 1` worker processes, each serving ->
    probing forever. Stop: /readyz fails at once, the listeners close (the workers' too),
    in-flight proxied requests get `http.shutdown_grace` to finish, then the rest stops in
    reverse. `load` re-reads the configuration for `Running.reload()`; `worker_command` starts
    one worker (default: this Python running `glb worker`). `state_path`: the state file the
    drains are restored from (before the first probe round) and saved to on every change; None
    keeps them in memory only (`glb demo`, in-process tests). `stability`: when an endpoint counts
    as unstable, its service answering with `ttl_unstable` (default: `StabilityRule()`)."""
    serial = int(time.time())
    shared = workers > 1  # the DNS and HTTP ports are shared with the workers
    async with contextlib.AsyncExitStack() as stack:
        udp, tcp = bind_dns(*settings.dns.listen, reuse_port=shared)
        stack.callback(udp.close)
        stack.callback(tcp.close)
        http_sock = stack.enter_context(bind_tcp(*settings.http.listen, reuse_port=shared))
        admin_sock = stack.enter_context(bind_tcp(*settings.admin.listen))
        tls = front_tls(settings)
        prober = app_probing.prober(settings)
        stack.push_async_callback(prober.close)
        stats = Stats(last_reload_success=time.time())
        kubernetes = await app_discovery.discover_kubernetes(stack, settings, stats)
        discovered = EMPTY.with_discovered(kubernetes.found)
        hostnames = await app_discovery.resolve_hostnames(stack, settings, stats, discovered)
        book = discovered.with_resolved(hostnames.book.resolved)
        topology = to_topology(settings, serial=serial, addresses=book)
        faults = FaultInjector(prober.probe)  # failover drills' simulated probe failures
        monitor = Monitor(topology, faults.probe, stats=stats, stability=stability)
        faults.follow(lambda: monitor.topology)
        store = None if state_path is None else StateFile(state_path)
        durable = app_state.durable_drains(monitor, store)
        stack.push_async_callback(durable.close)
        drains = await app_state.shared_drains(stack, settings, durable)
        command = worker_command or app_worker.worker_command(settings)
        cookie_secret = new_master_secret()  # DNS server cookies: shared with every worker
        pool = WorkerPool(
            workers - 1,
            settings=settings,
            monitor=monitor,
            stats=stats,
            command=command,
            cookie_secret=cookie_secret,
        )
        drills = await app_state.drills(stack, monitor, drains, faults, pool.stats, store, workers)
        reloader_slot: list[Reloader] = []
        admin = admin_api(settings, monitor, drains, pool.stats, reloader_slot, drills, workers)
        limits = runtime.client_limits(settings)
        await serve_admin(stack, admin, admin_sock, grace=1.0, limits=limits)
        await monitor.first_round()
        answerer = dns_answerer(
            settings,
            topology,
            monitor.current,
            stats,
            process="main",
            cookie_secret=cookie_secret,
        )
        monitor.subscribe(answerer.on_snapshot)  # pre-packed answers follow every change
        meter = FailoverMeter(lambda: monitor.topology, stats, current=monitor.current())
        monitor.subscribe(meter.on_snapshot)  # after the answerer: the answers have changed
        monitor.subscribe(FailingOpenLog(lambda: monitor.topology, monitor.current()).on_snapshot)
        also = _also(pool, tls, app_discovery.follow_names(hostnames, lambda: reloader.addresses))
        reloader = Reloader(
            settings,
            load,
            monitor,
            answerer,
            stats,
            serial=serial,
            also=also,
            addresses=book,
            reloaded=kubernetes.follow,
        )
        reloader_slot.append(reloader)
        app_discovery.readdress_on_change(stack, hostnames, kubernetes, reloader)
        probing = asyncio.create_task(monitor.run(), name="monitor")
        stack.push_async_callback(cancel, probing)
        app_probing.hold_connections(stack, prober, monitor)
        if isinstance(drains, SharedDrains):
            following = asyncio.create_task(drains.run(), name="shared drains")
            stack.push_async_callback(cancel, following)
        await app_state.share_verdicts(stack, settings, monitor)
        dns = dns_server(settings, answerer, udp, tcp, stats)
        await dns.start()
        stack.push_async_callback(dns.close)
        grace = settings.http.shutdown_grace
        stack.push_async_callback(pool.close, grace + 5.0)  # after the main's own drain
        lost = AddressTriggers(lambda: monitor.topology, monitor.probe_now)
        proxy = front_proxy(
            settings, monitor, monitor, stats, tls, lambda o: lost.lost(o.host, o.port)
        )
        monitor.subscribe(proxy.on_snapshot)  # requests stop waiting on an endpoint gone down
        await serve_front(stack, proxy, http_sock, grace=grace, limits=limits, stats=stats, tls=tls)
        await pool.start(udp.getsockname()[1], http_sock.getsockname()[1])
        stack.callback(pool.stop)  # the workers drain while the main does
        stack.callback(_stopping, monitor)  # runs first on exit: /readyz fails at once
        http_url = _url(http_sock, "http" if tls is None else "https")
        glb = Running(udp.getsockname()[:2], http_url, _url(admin_sock), monitor, reloader, pool)
        _log_started(glb)
        yield glb


def _also(
    pool: WorkerPool, tls: ServerCertificates | None, follow: Callable[[Topology], None]
) -> Callable[[Topology], None]:
    """What a new topology (a reload, new addresses) does besides: the workers get it, the
    host names it holds are followed, and the front end's certificates are read again."""

    def also(topology: Topology) -> None:
        pool.update_topology(topology)
        follow(topology)
        if tls is not None:
            tls.refresh(force=True)

    return also


def _stopping(monitor: Monitor) -> None:
    logger.info("glb stopping", extra={"event": "stop"})
    monitor.mark_stopping()


def _url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _log_started(glb: Running) -> None:
    topology = glb.topology
    logger.info(
        "glb %s serving DNS on %s port %d (UDP and TCP) for %d zone(s), %d service(s)",
        __version__,
        glb.dns_addr[0],
        glb.dns_addr[1],
        len(topology.zones),
        len(topology.services),
        extra={"event": "start", "version": __version__},
    )
    logger.info("HTTP proxy on %s, admin API on %s", glb.http_url, glb.admin_url)
