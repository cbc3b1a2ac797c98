"""Multi-process serving (`glb serve --workers N`): the main process's supervisor of its worker
processes (a worker's side: `glb.workers.remote_state`).

The main process runs everything (probes, admin API, reload, its own DNS and HTTP listeners) and
N-1 workers that bind the same DNS and HTTP ports with SO_REUSEPORT, so the kernel spreads
datagrams and connections over all N. Probes run once, in the main: a worker has no monitor and
serves the health snapshots and topologies the main sends it. In return a worker reports each
snapshot it has applied (so the main measures the propagation delay), the outcome of every
proxied request (passive health, applied by the main's monitor) and its counters once a second.

The messages and their framing are in `glb.workers.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from glb.config import Settings
from glb.core.model import Topology
from glb.core.stats import Stats
from glb.errors import StartupError
from glb.health.monitor import Monitor
from glb.workers import protocol
from glb.workers.protocol import Channel

logger = logging.getLogger(__name__)

RESTARTS: Final = 5  # restarts of one worker within RESTART_WINDOW before backing off
RESTART_WINDOW: Final = 60.0


# --- main side -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker as the main sees it; delays in seconds (None: nothing applied yet)."""

    index: int
    pid: int | None
    propagation: float | None
    max_propagation: float | None


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    propagation: float | None = None
    max_propagation: float | None = None
    stats: Stats = field(default_factory=Stats)
    restarts: deque[float] = field(default_factory=deque)

    def info(self) -> WorkerInfo:
        pid = self.process.pid if self.process and self.process.returncode is None else None
        return WorkerInfo(self.index, pid, self.propagation, self.max_propagation)


class WorkerPool:
    """Starts `count` worker processes, feeds them every snapshot and topology, applies what they
    report, restarts one that dies (at most `RESTARTS` per minute, then with a back-off), and
    stops them. With count 0 it does nothing. Main process only.

    `command` starts one worker; the pool appends `--fd N` (its end of the socketpair)."""

    def __init__(
        self,
        count: int,
        *,
        settings: Settings,
        monitor: Monitor,
        stats: Stats,
        command: Sequence[str],
        cookie_secret: bytes,
    ) -> None:
        self._workers = [_Worker(index) for index in range(1, count + 1)]
        self._settings = settings
        self._monitor = monitor
        self._stats = stats
        self._command = list(command)
        self._cookie_secret = cookie_secret  # DNS server cookies' master secret, for every worker
        self._ports = (0, 0)
        self._retired = Stats()  # the counts of workers that have exited, so totals never drop
        self._pending: float | None = None  # when the oldest unsent publish happened
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def workers(self) -> list[WorkerInfo]:
        return [worker.info() for worker in self._workers]

    def _is_stopping(self) -> bool:  # a call, so that type checkers re-read it after an await
        return self._stopping

    async def start(self, dns_port: int, http_port: int) -> None:
        """Start every worker; return once all of them serve (StartupError if one cannot)."""
        if not self._workers:
            return
        self._ports = (dns_port, http_port)
        self._monitor.subscribe(self._on_publish)
        await asyncio.gather(*(self._launch(worker) for worker in self._workers))
        for worker in self._workers:
            self._spawn(self._supervise(worker), f"worker {worker.index}")
        self._count()

    def stats(self) -> Stats:
        """The main's counters plus every worker's latest report (what /metrics exports)."""
        self._count()
        if not self._workers:
            return self._stats
        return Stats.merged(self._stats, [self._retired, *(w.stats for w in self._workers)])

    def update_topology(self, topology: Topology) -> None:
        """Send a reloaded topology to every worker, after any snapshot not yet sent."""
        self._flush()
        self._broadcast(protocol.encode(protocol.NewTopology(topology)))

    def stop(self) -> None:
        """Ask every worker to stop (they stop listening and drain their proxied requests)."""
        if not self._stopping:
            self._stopping = True
            self._broadcast(protocol.encode(protocol.Stop()))

    async def close(self, patience: float) -> None:
        """Stop, wait up to `patience` seconds for the workers to exit, then kill the rest."""
        self.stop()
        await self._reap(patience)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reap(1.0)  # one that was being restarted as the pool stopped
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.close()

    async def _reap(self, patience: float) -> None:
        processes = [w.process for w in self._workers if w.process is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await asyncio.gather(*(process.wait() for process in processes))
        for process in processes:
            if process.returncode is None:
                logger.warning("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
        await asyncio.gather(*(process.wait() for process in processes))

    # -- one worker's life -------------------------------------------------------------------

    async def _launch(self, worker: _Worker) -> None:
        parent, child = socket.socketpair()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command, "--fd", str(child.fileno()), pass_fds=(child.fileno(),)
            )
        except OSError as exc:
            parent.close()
            raise StartupError(f"cannot start worker {worker.index}: {exc}") from None
        finally:
            child.close()
        worker.channel = channel = await Channel.open(parent)
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        channel.send(self._start_message(worker.index))
        self._spawn(self._read(worker, channel, ready), f"worker {worker.index} reader")
        try:
            async with asyncio.timeout(protocol.READY_TIMEOUT):
                pid = await ready
        except (TimeoutError, ConnectionError):
            raise StartupError(f"worker {worker.index} did not start") from None
        logger.info("worker %d started (pid %d)", worker.index, pid, extra={"event": "worker"})

    def _start_message(self, index: int) -> protocol.Start:
        dns_port, http_port = self._ports
        topology, snapshot = self._monitor.topology, self._monitor.current()
        return protocol.Start(
            index, self._settings, dns_port, http_port, topology, snapshot, self._cookie_secret
        )

    async def _read(self, worker: _Worker, channel: Channel, ready: asyncio.Future[int]) -> None:
        while (message := await channel.receive()) is not None:
            if isinstance(message, protocol.Ready) and not ready.done():
                ready.set_result(message.pid)
            else:
                self._apply(worker, message)
        if not ready.done():
            ready.set_exception(ConnectionError("the worker exited"))

    def _apply(self, worker: _Worker, message: object) -> None:
        match message:
            case protocol.Applied():
                self._applied(worker, message)
            case protocol.Passive(endpoint, failed, detail):
                self._monitor.report_request(endpoint, failed=failed, detail=detail)
            case protocol.Report(stats):
                worker.stats = stats
            case _:
                logger.warning("worker %d sent %r; ignored", worker.index, message)

    def _applied(self, worker: _Worker, message: protocol.Applied) -> None:
        delay = message.applied_at - message.published_at
        worker.propagation = delay
        worker.max_propagation = max(delay, worker.max_propagation or 0.0)
        logger.debug(
            "worker %d applied snapshot %d %.2f ms after its publication",
            worker.index,
            message.version,
            delay * 1000,
        )

    async def _supervise(self, worker: _Worker) -> None:
        """Restart the worker whenever it exits, until the pool stops."""
        while worker.process is not None:
            code = await worker.process.wait()
            if self._is_stopping():
                return
            logger.error(
                "worker %d (pid %d) exited with status %s; restarting it",
                worker.index,
                worker.process.pid,
                code,
                extra={"event": "worker_exit", "worker": worker.index, "status": code},
            )
            self._retire(worker)
            await asyncio.sleep(self._backoff(worker))  # a crash loop must not spin
            if self._is_stopping():
                return
            try:
                await self._launch(worker)
            except StartupError as exc:
                logger.error("%s; retrying", exc)
                _kill(worker.process)
            self._count()

    def _retire(self, worker: _Worker) -> None:
        """Keep a dead worker's counts (not its in-flight gauge) so that totals never drop."""
        worker.stats.proxy_active.clear()
        self._retired.add(worker.stats)
        worker.stats = Stats()
        worker.propagation = None
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        self._count()

    def _backoff(self, worker: _Worker) -> float:
        now = time.monotonic()
        while worker.restarts and worker.restarts[0] < now - RESTART_WINDOW:
            worker.restarts.popleft()
        worker.restarts.append(now)
        excess = len(worker.restarts) - RESTARTS
        return 0.0 if excess <= 0 else min(30.0, 0.5 * 2**excess)

    # -- snapshots ------------------------------------------------------------------------------

    def _on_publish(self, _: object) -> None:
        """Monitor subscriber: send the newest snapshot once per loop iteration."""
        if self._pending is None:
            self._pending = time.monotonic()
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._pending is None:
            return
        published_at, self._pending = self._pending, None
        self._broadcast(protocol.encode(protocol.Publish(self._monitor.current(), published_at)))

    def _broadcast(self, frame: bytes) -> None:
        for worker in self._workers:
            if worker.channel is None:
                continue
            try:
                worker.channel.send_frame(frame)
            except ConnectionError:
                logger.error("worker %d is not reading its messages; killing it", worker.index)
                _kill(worker.process)

    def _count(self) -> None:
        serving = [w for w in self._workers if w.info().pid is not None and w.channel is not None]
        self._stats.workers = 1 + len(serving)
        self._stats.worker_propagation = {
            str(w.index): w.propagation for w in self._workers if w.propagation is not None
        }

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _kill(process: asyncio.subprocess.Process | None) -> None:
    if process is not None and process.returncode is None:
        process.kill()
