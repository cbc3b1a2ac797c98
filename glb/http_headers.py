"""Header rules of the HTTP front end: routing keys from Host, hop-by-hop filtering, and the
headers a proxied request and response carry on each side (X-Forwarded-*, Via, X-GLB-Cluster).

Plain functions over header multidicts, no I/O: the proxy's handlers call them per request.

Imports: multidict (aiohttp's header type) and the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

Headers = CIMultiDict[str] | CIMultiDictProxy[str]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",  # non-standard, still sent by some clients
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: glb answers `Expect: 100-continue` itself before reading the body.
_REQUEST_ONLY: Final = frozenset({"expect"})
# Set by aiohttp's websocket client for the upstream handshake; the client's own are not reused.
_WEBSOCKET_HANDSHAKE: Final = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
CLUSTER_HEADER: Final = "X-GLB-Cluster"
VIA_NAME: Final = "glb"


def route_key(host: str) -> str:
    """The name a Host header (or an absolute target's authority) routes by: lowercase, without
    the port, the trailing dot or the brackets of an IPv6 literal."""
    text = host.strip().lower()
    if text.startswith("["):
        name = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        name = text.partition(":")[0]
    else:
        name = text  # a name without a port, or a bare IPv6 literal
    return name.removesuffix(".")


def host_part(host: str) -> str:
    """`example.test:8443` -> `example.test`, `[::1]:80` -> `::1` (case and dot kept)."""
    text = host.strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.partition(":")[0] if text.count(":") == 1 else text


def connection_tokens(headers: Headers) -> frozenset[str]:
    """Every header named in the Connection header(s), lowercased."""
    return frozenset(
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    )


def without(headers: Headers, drop: Iterable[str]) -> CIMultiDict[str]:
    """A copy of `headers` without hop-by-hop ones, those named in Connection and `drop`."""
    dropped = HOP_BY_HOP | connection_tokens(headers) | frozenset(drop)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def appended(headers: Headers, name: str, value: str) -> str:
    """`value` appended to every existing `name` header, as one comma-separated list."""
    return ", ".join([*headers.getall(name, ()), value])


def upstream_headers(
    headers: Headers,
    *,
    client_ip: str,
    client_host: str,
    upstream_host: str | None,
    version: str,
    websocket: bool = False,
) -> CIMultiDict[str]:
    """The headers sent upstream for a client request with `headers`."""
    drop = _REQUEST_ONLY | {"host"} | (_WEBSOCKET_HANDSHAKE if websocket else frozenset())
    out = without(headers, drop)
    out["Host"] = upstream_host or client_host
    out["X-Forwarded-For"] = appended(out, "X-Forwarded-For", client_ip)
    out["X-Forwarded-Proto"] = "http"
    out["X-Forwarded-Host"] = client_host
    out["Via"] = appended(out, "Via", f"{version} {VIA_NAME}")
    return out


def downstream_headers(headers: Headers, *, version: str, cluster: str | None) -> CIMultiDict[str]:
    """The headers sent to the client for an upstream response with `headers`; `cluster` adds
    X-GLB-Cluster."""
    out = without(headers, ())
    out["Via"] = appended(out, "Via", f"{version} {VIA_NAME}")
    if cluster is not None:
        out[CLUSTER_HEADER] = cluster
    return out


def is_websocket_upgrade(method: str, headers: Headers) -> bool:
    """A GET asking to switch to the websocket protocol."""
    upgrade = headers.get("Upgrade", "").strip().lower()
    return method == "GET" and upgrade == "websocket" and "upgrade" in connection_tokens(headers)
