"""Telling systemd how glb is doing (sd_notify): `READY=1` once it serves, `STOPPING=1` when it
begins to stop, as datagrams on the unix socket systemd names in $NOTIFY_SOCKET (a unit of
Type=notify; deploy/systemd/glb.service). Without $NOTIFY_SOCKET nothing is sent."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; whether it was sent. A socket that
    cannot be written to is logged as a warning: glb serves on without it."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):  # an abstract socket name
        address = "\0" + address[1:]
    elif not address.startswith("/"):  # unset, or a kind of address glb does not speak (vsock)
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            logger.warning("cannot tell systemd %s on NOTIFY_SOCKET: %s", state, exc)
            return False
    return True
