"""The admin API as the composition root assembles it (main process only): the aiohttp
application (`admin_api`: the API, its vantage points and /metrics) and its serving on the
admin socket (`serve_admin`: client limits, graceful stop)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from aiohttp import web

from glb.admin.api import admin_app
from glb.admin.drill_runner import DrillRunner
from glb.admin.head_timeout import serve as serve_guarded
from glb.admin.metrics import metrics_handler, metrics_registry
from glb.admin.peers import VantagePoints
from glb.config import Settings
from glb.core.config_diff import ReloadOutcome
from glb.core.ports import DrainControls
from glb.core.stats import Stats
from glb.health.monitor import Monitor
from glb.http1.server import ClientLimits
from glb.reload import Reloader


def admin_api(
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


async def serve_admin(
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
