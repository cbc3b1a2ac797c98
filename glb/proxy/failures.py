"""Failed attempts at an upstream: the classification of what went wrong (`classify`), whether
the request may go on to the next endpoint (`may_retry`), and glb's answer when no endpoint
answered (`failure_text`).

`glb.proxy.attempts` applies these to every attempt, plain requests and websocket upgrades
alike. Only failures the endpoint is to blame for get here: a client that stalls, breaks or
abandons its body is told apart before (`glb.proxy.body`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from glb.core.model import Endpoint
from glb.http1 import client as hc
from glb.http1.exchange import IDEMPOTENT
from glb.proxy.down_watch import EndpointMarkedDown
from glb.proxy.upstream import Route


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that produced no response."""

    detail: str
    reached: bool  # the request may have reached the upstream (it was at least partly sent)
    timeout: bool = False
    marked_down: bool = False  # given up on: the endpoint was marked down meanwhile


def classify(exc: BaseException, route: Route, endpoint: Endpoint) -> Failure:
    """Turn an attempt's exception (glb.http1.client's, or a bare timeout or OS error) into a
    `Failure` whose detail names the endpoint."""
    where = f"{endpoint.cluster} {route.authority(endpoint)}"
    if isinstance(exc, EndpointMarkedDown):
        return Failure(f"{where}: {exc}", reached=True, timeout=True, marked_down=True)
    if isinstance(exc, hc.UpstreamError):
        reached, detail = exc.reached, _describe(exc, route)
    elif isinstance(exc, OSError):
        reached, detail = True, _os_reason(exc)
    else:
        reached, detail = True, str(exc) or type(exc).__name__
    return Failure(f"{where}: {detail}", reached, isinstance(exc, TimeoutError))


def _describe(exc: hc.UpstreamError, route: Route) -> str:
    proxy = route.service.proxy
    match exc:
        case hc.ConnectTimeout():
            return f"connect timed out after {proxy.connect_timeout:g}s"
        case hc.CertificateError():
            return f"TLS certificate: {exc.error}"
        case hc.TlsError():
            return f"TLS: {exc.error}"
        case hc.ConnectError():
            return f"connect: {_os_reason(exc.error)}"
        case hc.ConnectionBroken():
            return _os_reason(exc.error)
        case hc.FirstByteTimeout():
            return f"no response within {proxy.first_byte_timeout:g}s"
        case hc.UploadTimeout() | hc.IdleTimeout():
            return "timed out"
        case hc.InvalidResponse():
            return f"invalid response: {exc}"
    return str(exc) or type(exc).__name__  # ServerDisconnected: "closed the connection ..."


def _os_reason(error: OSError) -> str:
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


def may_retry(failure: Failure, method: str, *, replayable: bool) -> bool:
    """May a request whose last attempt failed with `failure` go to the next endpoint? Only if
    its body can be sent again and it never reached the upstream or is idempotent; never after a
    timeout once sent (the upstream may still be working on it), unless the endpoint was marked
    down meanwhile and the request is idempotent (nginx's `proxy_next_upstream timeout`)."""
    if failure.marked_down:
        return replayable and method in IDEMPOTENT
    if failure.reached and failure.timeout:
        return False
    return replayable and (not failure.reached or method in IDEMPOTENT)


def failure_text(failure: Failure) -> tuple[int, str]:
    """glb's answer to a request whose last attempt failed: 502 naming the failure, or 504 when
    it was a timeout."""
    if failure.marked_down:
        return 504, f"glb: upstream marked down: {failure.detail}"
    if failure.timeout:
        return 504, f"glb: upstream timed out: {failure.detail}"
    return 502, f"glb: bad gateway: {failure.detail}"
