"""The composition root: binds every socket, runs the first probe round, then serves.

`running(settings)` is an async context manager that yields a `Running` once glb is serving:
sockets are bound (fail fast), the first probe round has been applied, and the DNS server
answers. Leaving it stops everything in reverse order. `serve(settings, shutdown_trigger)` runs
until the trigger completes. No signal handling here: that is the CLI's job.

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
composition: the same DNS answerer, DNS server and proxy, fed by the main instead of a monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from glb import __version__, app_discovery, app_state
from glb.admin.api import admin_app
from glb.admin.drill_runner import DrillRunner
from glb.admin.head_timeout import serve as serve_guarded
from glb.admin.metrics import metrics_handler, metrics_registry
from glb.admin.peers import VantagePoints
from glb.app_state import cancel
from glb.config import Settings, runtime, to_topology
from glb.core.addresses import EMPTY
from glb.core.config_diff import ReloadOutcome
from glb.core.model import Topology
from glb.core.ports import DrainControls, PassiveHealth, StateView
from glb.core.rrl import ResponseRateLimiter
from glb.core.stability import StabilityRule
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer, wall_clock
from glb.dns.cookies import ServerCookies, new_master_secret
from glb.dns.server import DnsServer
from glb.errors import StartupError
from glb.health.failing_open import FailingOpenLog
from glb.health.failover_meter import FailoverMeter
from glb.health.faults import FaultInjector
from glb.health.held import HeldConnections
from glb.health.monitor import Monitor
from glb.health.probes import Prober, source_problem
from glb.health.triggers import AddressTriggers
from glb.http1.client import Origin
from glb.http1.server import ClientLimits, HttpServer
from glb.http1.server_tls import CertificateError, ServerCertificates
from glb.proxy.handler import HttpProxy
from glb.reload import Reloader
from glb.sockets import bind_dns, bind_tcp
from glb.state.file import StateFile
from glb.state.shared import SharedDrains
from glb.workers.protocol import Channel, Start
from glb.workers.remote_state import RemoteState, receive_start
from glb.workers.supervisor import WorkerInfo, WorkerPool

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
        tls = _front_tls(settings)
        prober = _prober(settings)
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
        command = worker_command or _worker_command(settings)
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
        admin = _admin(settings, monitor, drains, pool.stats, reloader_slot, drills, workers)
        limits = runtime.client_limits(settings)
        await _serve_http(stack, admin, admin_sock, grace=1.0, limits=limits)
        await monitor.first_round()
        answerer = DnsAnswerer(
            topology,
            monitor.current,
            stats=stats,
            query_sample=settings.log.query_sample,
            server_id=runtime.server_id(settings, "main"),
            cookies=ServerCookies(cookie_secret, wall_clock),
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
        _hold_connections(stack, prober, monitor)
        if isinstance(drains, SharedDrains):
            following = asyncio.create_task(drains.run(), name="shared drains")
            stack.push_async_callback(cancel, following)
        await app_state.share_verdicts(stack, settings, monitor)
        dns = _dns_server(settings, answerer, udp, tcp, stats)
        await dns.start()
        stack.push_async_callback(dns.close)
        grace = settings.http.shutdown_grace
        stack.push_async_callback(pool.close, grace + 5.0)  # after the main's own drain
        lost = AddressTriggers(lambda: monitor.topology, monitor.probe_now)
        proxy = _proxy(settings, monitor, monitor, stats, tls, lambda o: lost.lost(o.host, o.port))
        monitor.subscribe(proxy.on_snapshot)  # requests stop waiting on an endpoint gone down
        await _serve_proxy(
            stack, proxy, http_sock, grace=grace, limits=limits, stats=stats, tls=tls
        )
        await pool.start(udp.getsockname()[1], http_sock.getsockname()[1])
        stack.callback(pool.stop)  # the workers drain while the main does
        stack.callback(_stopping, monitor)  # runs first on exit: /readyz fails at once
        http_url = _url(http_sock, "http" if tls is None else "https")
        glb = Running(udp.getsockname()[:2], http_url, _url(admin_sock), monitor, reloader, pool)
        _log_started(glb)
        yield glb


async def serve_worker(fd: int, stop: asyncio.Event) -> None:
    """A worker process: serve DNS and HTTP on the main's ports from the state the main sends
    over the socketpair end `fd`, until the main says stop or goes away, or `stop` is set."""
    channel = await Channel.open(socket.socket(fileno=fd))
    try:
        start = await receive_start(channel)
        async with _worker_serving(start, channel) as state:
            await state.run(stop)
    finally:
        channel.close()


@contextlib.asynccontextmanager
async def _worker_serving(start: Start, channel: Channel) -> AsyncIterator[RemoteState]:
    """A worker's listeners, bound with SO_REUSEPORT to the ports the main chose."""
    settings = start.settings
    async with contextlib.AsyncExitStack() as stack:
        udp, tcp = bind_dns(settings.dns.listen[0], start.dns_port, reuse_port=True)
        stack.callback(udp.close)
        stack.callback(tcp.close)
        http_host = settings.http.listen[0]
        http_sock = stack.enter_context(bind_tcp(http_host, start.http_port, reuse_port=True))
        tls = _front_tls(settings)
        stats = Stats()
        state = RemoteState(channel, start, stats)
        answerer = DnsAnswerer(
            start.topology,
            state.current,
            stats=stats,
            query_sample=settings.log.query_sample,
            server_id=runtime.server_id(settings, f"worker {start.index}"),
            cookies=ServerCookies(start.cookie_secret, wall_clock),
        )
        state.subscribe(answerer.on_snapshot)
        updates: set[asyncio.Task[None]] = set()  # held until done: never fire and forget

        def follow_topology(topology: Topology) -> None:
            task = asyncio.get_running_loop().create_task(answerer.update_async(topology))
            updates.add(task)
            task.add_done_callback(updates.discard)

        state.subscribe_topology(follow_topology)  # packs off the loop, like the main's reload
        dns = _dns_server(settings, answerer, udp, tcp, stats)
        await dns.start()
        stack.push_async_callback(dns.close)
        limits = runtime.client_limits(settings)
        proxy = _proxy(settings, state, state, stats, tls)
        state.subscribe(proxy.on_snapshot)
        grace = settings.http.shutdown_grace
        await _serve_proxy(
            stack, proxy, http_sock, grace=grace, limits=limits, stats=stats, tls=tls
        )
        logger.info(
            "worker %d (pid %d) serving: DNS port %d, HTTP port %d",
            start.index,
            os.getpid(),
            start.dns_port,
            start.http_port,
            extra={"event": "start", "worker": start.index},
        )
        yield state


def _worker_command(settings: Settings) -> list[str]:
    log = settings.log
    return [
        sys.executable,
        "-m",
        "glb",
        "worker",
        "--log-level",
        log.level,
        "--log-format",
        log.format,
    ]


def _proxy(
    settings: Settings,
    state: StateView,
    passive: PassiveHealth,
    stats: Stats,
    tls: ServerCertificates | None,
    on_idle_lost: Callable[[Origin], None] | None = None,
) -> HttpProxy:
    return HttpProxy(
        state,
        passive,
        cluster_header=settings.http.cluster_header,
        ca_file=runtime.ca_file(settings),
        stats=stats,
        trusted_proxies=runtime.trusted_proxies(settings),
        on_idle_lost=on_idle_lost,
        scheme="http" if tls is None else "https",
        access_sample=runtime.access_log_sample(settings),
    )


def _front_tls(settings: Settings) -> ServerCertificates | None:
    """The front end's certificates (`http.tls`), None without TLS; a StartupError naming the
    file when one cannot be loaded."""
    files = runtime.front_certificates(settings)
    if not files:
        return None
    try:
        return ServerCertificates(files)
    except CertificateError as exc:
        raise StartupError(f"http.tls: cannot serve {exc}") from None


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


def _hold_connections(stack: contextlib.AsyncExitStack, prober: Prober, monitor: Monitor) -> None:
    """One idle connection per probe target, following the monitor's targets across reloads;
    a lost one probes its target at once. Closed on exit."""
    held = HeldConnections(prober, monitor.probe_now)
    held.follow(monitor.topology.targets())
    monitor.subscribe(lambda _: held.follow(monitor.topology.targets()))
    stack.push_async_callback(held.close)


def _stopping(monitor: Monitor) -> None:
    logger.info("glb stopping", extra={"event": "stop"})
    monitor.mark_stopping()


def _admin(
    settings: Settings,
    monitor: Monitor,
    drains: DrainControls,
    stats: Callable[[], Stats],
    reloader: list[Reloader],
    drills: DrillRunner,
    workers: int,
) -> web.Application:
    """The admin API plus /metrics (`stats`: every process's counts, summed; `workers`: the
    processes configured to serve). `reloader` holds the Reloader once there is one."""
    token = settings.admin.token.get_secret_value() if settings.admin.token else None

    async def reload() -> ReloadOutcome:
        if not reloader:
            return ReloadOutcome(["glb is still starting; try again once /readyz answers 200"])
        return await reloader[0].reload_outcome()

    state = settings.state
    points = VantagePoints(
        settings.instance.name,
        monitor if state.redis else None,
        quorum=state.quorum,
        stale_after=state.stale_after,
    )
    app = admin_app(monitor, drains, token=token, reload=reload, vantage=points, drills=drills)
    store_up = (lambda: drains.shared is True) if settings.state.redis else None
    vantage = (lambda: monitor.vantage) if settings.state.redis else None
    consistency = monitor if settings.state.redis else None
    registry = metrics_registry(
        stats, monitor, monitor, store_up, vantage, consistency, drills, workers=workers
    )
    app.router.add_get("/metrics", metrics_handler(registry))
    return app


def _dns_server(
    settings: Settings,
    answerer: DnsAnswerer,
    udp: socket.socket,
    tcp: socket.socket,
    stats: Stats,
) -> DnsServer:
    dns = settings.dns
    rrl = runtime.rrl_config(settings)
    return DnsServer(
        answerer.answer,
        udp,
        tcp,
        udp_handler=answerer.answer_udp,
        tcp_idle_timeout=dns.tcp_idle_timeout,
        max_tcp_connections=dns.max_tcp_connections,
        max_queries_per_connection=dns.max_queries_per_connection,
        rrl=None if rrl is None else ResponseRateLimiter(rrl),
        stats=stats,
    )


async def _serve_http(
    stack: contextlib.AsyncExitStack,
    app: web.Application,
    sock: socket.socket,
    *,
    grace: float,
    limits: ClientLimits,
) -> None:
    """Serve `app` on `sock`; on exit stop listening, then give open requests `grace` seconds."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=grace,
        handlercancellation=True,  # a client that goes away cancels its upstream request
        max_line_size=limits.max_request_line,
        max_field_size=limits.max_header_size,
        max_headers=limits.max_headers,
        keepalive_timeout=limits.idle_timeout,  # an idle (or never used) connection is closed
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    listener = await serve_guarded(runner, sock, limits)
    stack.callback(listener.close)  # runs before runner.cleanup: stop listening first


async def _serve_proxy(
    stack: contextlib.AsyncExitStack,
    proxy: HttpProxy,
    sock: socket.socket,
    *,
    grace: float,
    limits: ClientLimits,
    stats: Stats,
    tls: ServerCertificates | None,
) -> None:
    """Serve the proxy on `sock` with glb's own HTTP server (over TLS with `tls`); on exit stop
    listening, give open requests `grace` seconds, then close the upstream connections."""
    server = HttpServer(
        proxy.handle,
        limits,
        on_reject=stats.observe_rejected,
        on_over_cap=stats.observe_connection_refused,
        tls=None if tls is None else tls.listening,
    )
    stack.push_async_callback(proxy.close)
    await server.start(sock)
    stack.push_async_callback(server.close, grace)


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


def _prober(settings: Settings) -> Prober:
    """The prober of `probes.*`; a StartupError when its CA file or source address is unusable."""
    ca_file = runtime.ca_file(settings)
    source = runtime.probe_source(settings)
    if source is not None and (problem := source_problem(source)):
        raise StartupError(f"probes.source: {problem}")
    try:
        return Prober(ca_file=ca_file, source=source)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"probes.ca_file: cannot load {ca_file}: {exc}") from None
