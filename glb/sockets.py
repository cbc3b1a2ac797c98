"""Binding listen sockets before anything serves, so a taken port fails start-up at once."""

from __future__ import annotations

import socket

from glb.errors import StartupError


def bind_dns(
    host: str, port: int, *, attempts: int = 20, reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket on the same address and port. With port 0 the kernel picks a
    UDP port and TCP is bound to the same one (retried if that TCP port is taken). `reuse_port`
    sets SO_REUSEPORT, so that other processes (glb's workers) can bind the same port too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts if port == 0 else 1):
        udp = _bound(family, socket.SOCK_DGRAM, host, port, reuse_port)
        try:
            tcp = _bound(family, socket.SOCK_STREAM, host, udp.getsockname()[1], reuse_port)
        except StartupError:
            udp.close()
            if port:
                raise
            continue
        return udp, tcp
    raise StartupError(f"could not bind UDP and TCP to one free port on {host}")


def _bound(family: int, kind: int, host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # every socket of the group must set it, all in processes of one user
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        raise StartupError(
            f"cannot listen on {host} port {port} ({proto}): {exc.strerror}", listen=(host, port)
        ) from None
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free port), not yet listening; `reuse_port`
    as for `bind_dns`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _bound(family, socket.SOCK_STREAM, host, port, reuse_port)
