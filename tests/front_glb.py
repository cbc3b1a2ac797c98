"""Test helpers for the HTTP front end as `glb serve` runs it: a whole glb (`glb.app.running`)
on loopback ports chosen by the system, in front of two echoing upstreams (`primary` and
`secondary`, `tests.proxy_front.echo_app`), with extra `http:` settings; and polling with a
deadline.

    async with glb_front("access_log: {sample: 0}") as (glb, where):
        ...  # glb.http_url, where["primary"]
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from glb.app import Running, running
from glb.config import Settings, parse_settings
from tests.proxy_front import echo_app, service_yaml
from tests.stack import Upstreams, config_for, upstreams

HOST = "app.glb.test"


def front_config(where: Upstreams, http: str = "", **service: object) -> str:
    """The configuration of a glb on loopback (every port chosen by the system) in front of
    `where`, with `http` (YAML lines of the `http:` section) and the service's `service_yaml`
    options."""
    extra = textwrap.indent(textwrap.dedent(http).strip(), "  ")
    return (
        'dns: {listen: "127.0.0.1:0"}\n'
        'admin: {listen: "127.0.0.1:0"}\n'
        f'http:\n  listen: "127.0.0.1:0"\n{extra}\n'
        + config_for(where, service_yaml(where.port, **service))
    )


def two_upstreams() -> dict[str, web.Application]:
    """The apps of the upstreams `primary` and `secondary`, both echoing what they receive."""
    return {"primary": echo_app("primary"), "secondary": echo_app("secondary")}


@contextlib.asynccontextmanager
async def glb_front(http: str = "", **service: object) -> AsyncIterator[tuple[Running, Upstreams]]:
    """A serving glb with `http` settings in front of two echoing upstreams."""
    async with upstreams(two_upstreams()) as where:
        settings = parse_settings(front_config(where, http, **service))
        async with running(settings, load=lambda: settings) as glb:
            yield glb, where


def port_of(glb: Running) -> int:
    """The port of glb's HTTP front end."""
    return int(glb.http_url.rsplit(":", 1)[1])


def settings_for(where: Upstreams, http: str) -> Settings:
    return parse_settings(front_config(where, http))


async def until(condition: Callable[[], bool], within: float = 5.0, step: float = 0.02) -> None:
    """Poll `condition` until it holds; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(step)
