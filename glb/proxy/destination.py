"""Where a client request is going (RFC 9112 3.2): `destination()` reads the authority a request
routes by and the origin-form path it is forwarded with, or raises `Refused` with the status
and reason to answer. Pure: no I/O.

- origin-form (`/path?query`): routed by the Host header;
- absolute-form (`http://host/path?query`): routed by its authority, which wins over Host
  (RFC 9112 3.2.2), and forwarded in origin form;
- authority-form (CONNECT) and asterisk-form (`OPTIONS *`): never proxied (421), so glb is never
  an open proxy.

400, as RFC 9112 3.2 asks: an HTTP/1.1 request without Host, an origin-form one without Host
(HTTP/1.0: nothing to route by), a Host that is not `host[:port]` (`valid_authority`; userinfo,
`user@host`, is not), and an absolute-form target that is not `http` or `https`, has userinfo or
an invalid authority. More than one Host is refused by the server before (`glb.http1`). The
validity of an origin-form request's Host is `glb.proxy.handler`'s to check, on a miss of its
routing cache: a host it has routed before was valid.
"""

from __future__ import annotations

import re
from typing import Final

from glb.http1.server import Request

# RFC 3986 authority without userinfo: IP-literal (IPv6 or IPvFuture) or reg-name (IPv4 among
# them), then an optional port
_AUTHORITY: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    r"|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?"
)
_SCHEMES: Final = ("http://", "https://")


class Destination:
    """Where a client request is going: the authority it routes by and its origin-form path.
    (A plain class: a frozen dataclass takes twice as long to build, once per request.)"""

    __slots__ = ("host", "path_qs")

    def __init__(self, host: str, path_qs: str) -> None:
        self.host = host  # as the client wrote it (Host header or absolute-form authority)
        self.path_qs = path_qs  # raw path and query, forwarded byte for byte


class Refused(Exception):
    """A request glb does not proxy: the status and the short reason to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def valid_authority(host: str) -> bool:
    """Is `host` a Host header value RFC 9112 accepts: `host[:port]`, without userinfo?"""
    return _AUTHORITY.fullmatch(host) is not None


def destination(request: Request) -> Destination:
    """The request's destination; `Refused` if it cannot be proxied. An origin-form request's
    Host is returned unchecked (see the module's docstring)."""
    raw = request.target
    host = request.headers.get("Host")
    if raw.startswith("/"):
        if host is None:
            raise Refused(400, "glb: no Host header")
        return Destination(host, raw)
    if request.method == "CONNECT" or raw == "*":
        raise Refused(421, f"glb: {request.method} {raw[:100]!r} is not proxied")
    if host is None and request.version != "1.0":
        raise Refused(400, "glb: no Host header")
    if host is not None and not valid_authority(host):
        raise Refused(400, f"glb: bad Host header {host[:100]!r}")
    return _absolute(raw)


def _absolute(raw: str) -> Destination:
    """An absolute-form target's authority and path (RFC 9112 3.2.2)."""
    scheme_end = raw.find("://")
    if scheme_end < 0 or raw[: scheme_end + 3].lower() not in _SCHEMES:
        raise Refused(400, f"glb: bad request target {raw[:100]!r}")
    rest = raw[scheme_end + 3 :]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path_qs = rest[:end], rest[end:]
    if "@" in authority:
        raise Refused(400, f"glb: userinfo in the request target {raw[:100]!r}")
    if not authority or not valid_authority(authority) or "#" in path_qs:
        raise Refused(400, f"glb: bad request target {raw[:100]!r}")
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs  # empty, or only a query
    return Destination(authority, path_qs)
