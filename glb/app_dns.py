"""glb's DNS side as the composition root assembles it, in the main and in every worker: the
answerer (`dns_answerer`: the topology, the snapshots to answer from, the server id and the DNS
Cookies secret shared by all processes) and the server on the bound UDP and TCP sockets
(`dns_server`: `dns.*` limits, response rate limiting)."""

from __future__ import annotations

import socket

from glb.config import Settings, runtime
from glb.core.model import Topology
from glb.core.rrl import ResponseRateLimiter
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer, wall_clock
from glb.dns.cookies import ServerCookies
from glb.dns.resolution import SnapshotSource
from glb.dns.server import DnsServer


def dns_answerer(
    settings: Settings,
    topology: Topology,
    snapshot: SnapshotSource,
    stats: Stats,
    *,
    process: str,
    cookie_secret: bytes,
) -> DnsAnswerer:
    """The answerer of `process` ("main", "worker 1", ...) for `topology`, answering from the
    snapshots `snapshot` returns; `cookie_secret` is the same in every process."""
    return DnsAnswerer(
        topology,
        snapshot,
        stats=stats,
        query_sample=settings.log.query_sample,
        server_id=runtime.server_id(settings, process),
        cookies=ServerCookies(cookie_secret, wall_clock),
    )


def dns_server(
    settings: Settings,
    answerer: DnsAnswerer,
    udp: socket.socket,
    tcp: socket.socket,
    stats: Stats,
) -> DnsServer:
    """The DNS server answering with `answerer` on `udp` and `tcp` (not started)."""
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
