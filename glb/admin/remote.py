"""Reading other glb instances' admin APIs (for `glb consistency`): each instance's config view
and services view, fetched concurrently within a timeout. An instance that cannot be read
(refused, timed out, an error status, not the API's JSON) is `Unreachable`, with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from glb.admin.consistency import BadInstanceView, InstanceView, instance_view


@dataclass(frozen=True, slots=True)
class Unreachable:
    """An instance whose admin API could not be read, and why."""

    url: str
    reason: str


async def read_instances(urls: Sequence[str], within: float) -> list[InstanceView | Unreachable]:
    """Every instance's view (in the order of `urls`), each read within `within` seconds."""
    limit = aiohttp.ClientTimeout(total=within)
    async with aiohttp.ClientSession(timeout=limit) as session:
        return list(await asyncio.gather(*(_read(session, url, within) for url in urls)))


async def _read(
    session: aiohttp.ClientSession, url: str, within: float
) -> InstanceView | Unreachable:
    base = url.rstrip("/")
    try:
        config = await get_json(session, f"{base}/api/v1/config")
        services = await get_json(session, f"{base}/api/v1/services")
        return instance_view(base, config, services)
    except TimeoutError:
        return Unreachable(base, f"no answer within {within:g}s")
    except (aiohttp.ClientError, ValueError, BadInstanceView) as exc:
        return Unreachable(base, str(exc) or type(exc).__name__)


async def get_json(session: aiohttp.ClientSession, url: str) -> object:
    async with session.get(url) as response:
        if response.status != 200:
            raise ValueError(f"GET {url} answered {response.status} {response.reason}")
        body: object = await response.json()
        return body
