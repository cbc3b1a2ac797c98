"""Observed probe latencies from a running glb (for `glb explain --admin URL`): each endpoint's
`latency_ms` in `GET /api/v1/services/{name}` (one service) or `GET /api/v1/services` (every
service), by service name, as ("cluster address", seconds) pairs. An endpoint not probed yet
(`latency_ms` null) is left out."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from glb.admin.remote import get_json

Latencies = tuple[tuple[str, float], ...]


class LatenciesUnreadable(Exception):
    """The admin API could not be read, or did not answer the services view."""


async def observed_latencies(url: str, service: str | None, within: float) -> dict[str, Latencies]:
    """Each service's observed latencies (only `service`'s when given), read within `within`
    seconds from the admin API at `url`; LatenciesUnreadable says why they could not be."""
    base = url.rstrip("/")
    path = f"/api/v1/services/{quote(service, safe='')}" if service else "/api/v1/services"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session:
            body = await get_json(session, base + path)
    except TimeoutError:
        raise LatenciesUnreadable(f"{base}: no answer within {within:g}s") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise LatenciesUnreadable(f"{base}: {str(exc) or type(exc).__name__}") from None
    listed = [body] if service else (body.get("services") if isinstance(body, dict) else None)
    if not isinstance(listed, list):
        raise LatenciesUnreadable(f"{base}{path} is not the services view")
    return dict(_service_latencies(base + path, entry) for entry in listed)


def _service_latencies(source: str, service: object) -> tuple[str, Latencies]:
    endpoints = service.get("endpoints") if isinstance(service, dict) else None
    name = service.get("name") if isinstance(service, dict) else None
    if not isinstance(name, str) or not isinstance(endpoints, list):
        raise LatenciesUnreadable(f"{source} is not the services view")
    return name, tuple(pair for e in endpoints if (pair := _latency(e)) is not None)


def _latency(endpoint: object) -> tuple[str, float] | None:
    """("cluster address", seconds) of an endpoint with an observed latency."""
    if not isinstance(endpoint, dict):
        return None
    cluster, address, ms = (endpoint.get(k) for k in ("cluster", "address", "latency_ms"))
    if not isinstance(cluster, str) or not isinstance(address, str):
        return None
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
        return None
    return f"{cluster} {address}", ms / 1000
