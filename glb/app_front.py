"""glb's HTTP front end as the composition root assembles it, in the main and in every worker:
the reverse proxy (`front_proxy`), the certificates it serves with `http.tls` (`front_tls`), and
glb's own HTTP server serving it on the bound socket (`serve_front`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from glb.config import Settings, runtime
from glb.core.ports import PassiveHealth, StateView
from glb.core.stats import Stats
from glb.errors import StartupError
from glb.http1.client import Origin
from glb.http1.server import ClientLimits, HttpServer
from glb.http1.server_tls import CertificateError, ServerCertificates
from glb.proxy.handler import HttpProxy


def front_proxy(
    settings: Settings,
    state: StateView,
    passive: PassiveHealth,
    stats: Stats,
    tls: ServerCertificates | None,
    on_idle_lost: Callable[[Origin], None] | None = None,
) -> HttpProxy:
    """The proxy routing by `state`'s snapshots and reporting to `passive`; `on_idle_lost` is
    told of an idle upstream connection lost."""
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


def front_tls(settings: Settings) -> ServerCertificates | None:
    """The front end's certificates (`http.tls`), None without TLS; a StartupError naming the
    file when one cannot be loaded."""
    files = runtime.front_certificates(settings)
    if not files:
        return None
    try:
        return ServerCertificates(files)
    except CertificateError as exc:
        raise StartupError(f"http.tls: cannot serve {exc}") from None


async def serve_front(
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
