"""Header rules of the HTTP front end: routing keys from Host, hop-by-hop filtering, and the
headers a proxied request and response carry on each side (X-Forwarded-*, Via, X-GLB-Cluster).

Plain functions over header multidicts, no I/O: the proxy's handlers call them per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

Headers = CIMultiDict[str] | CIMultiDictProxy[str]
Pairs = Sequence[tuple[str, str]]  # headers as glb's upstream client parses them

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
CLUSTER_HEADER: Final = "X-GLB-Cluster"
VIA_NAME: Final = "glb"
# What each direction drops, besides the headers named in Connection (built once, not per request).
_UPSTREAM_DROP: Final = HOP_BY_HOP | _REQUEST_ONLY | {"host"}
_VIA: Final = {"1.1": f"1.1 {VIA_NAME}", "1.0": f"1.0 {VIA_NAME}"}


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
    values = headers.getall("Connection", ())
    if len(values) == 1 and "," not in values[0]:  # the usual `keep-alive` or `close`
        token = values[0].strip().lower()
        return frozenset((token,)) if token else frozenset()
    return frozenset(
        token.strip().lower() for value in values for token in value.split(",") if token.strip()
    )


def without(headers: Headers | Pairs, drop: frozenset[str] = HOP_BY_HOP) -> CIMultiDict[str]:
    """A copy of `headers` without those in `drop` (lowercase names, hop-by-hop ones included)
    and those named in Connection. Copying then deleting is faster than filtering item by item,
    and costs the same however many headers there are."""
    out = CIMultiDict(headers)
    dropped = drop
    if "Connection" in out:
        dropped = drop | connection_tokens(out)
    for name in dropped:
        if name in out:
            del out[name]  # every occurrence
    return out


def appended(headers: Headers, name: str, value: str) -> str:
    """`value` appended to every existing `name` header, as one comma-separated list."""
    existing = headers.getall(name, None)
    return ", ".join([*existing, value]) if existing else value


def via(version: str) -> str:
    """This hop's Via entry for HTTP `version` ("1.1")."""
    return _VIA.get(version) or f"{version} {VIA_NAME}"


def upstream_headers(
    headers: Headers,
    *,
    client_ip: str,
    client_host: str,
    upstream_host: str | None,
    version: str,
    upgrade: str | None = None,
    scheme: str = "http",
) -> CIMultiDict[str]:
    """The headers sent upstream for a client request with `headers`; with `upgrade` (the
    protocol of an Upgrade request, e.g. "websocket") the upgrade is asked for again upstream,
    the client's Sec-WebSocket-* headers passing through so that the handshake is end to end.
    `scheme`: what the client spoke to glb, "https" when it came over TLS (X-Forwarded-Proto)."""
    out = without(headers, _UPSTREAM_DROP)
    out["Host"] = upstream_host or client_host
    out["X-Forwarded-For"] = appended(out, "X-Forwarded-For", client_ip)
    out["X-Forwarded-Proto"] = scheme
    out["X-Forwarded-Host"] = client_host
    out["Via"] = appended(out, "Via", via(version))
    if upgrade is not None:
        out["Connection"] = "Upgrade"
        out["Upgrade"] = upgrade
    return out


def downstream_headers(
    headers: Headers | Pairs, *, version: str, cluster: str | None
) -> CIMultiDict[str]:
    """The headers sent to the client for an upstream response with `headers`; `cluster` adds
    X-GLB-Cluster."""
    out = without(headers)
    out["Via"] = appended(out, "Via", via(version))
    if cluster is not None:
        out[CLUSTER_HEADER] = cluster
    return out
