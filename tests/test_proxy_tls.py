"""https upstreams behind the HTTP front end: certificate verification against a CA file, SNI,
and an untrusted certificate answered 502."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.clusters import address_block, listen_on_common_port
from tests.proxy_front import HOST, Front, Recorder, echo_app, serve_proxy, service_yaml
from tests.stack import Upstreams, config_for, monitored


@contextlib.asynccontextmanager
async def tls_upstream(
    cert: trustme.LeafCert, server_names: list[str | None]
) -> AsyncIterator[Upstreams]:
    """One TLS upstream ("primary") on a fresh loopback address, recording the SNI it sees."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.sni_callback = lambda _obj, name, _ctx: server_names.append(name)
    where = Upstreams()
    (sock,) = listen_on_common_port(address_block(1))
    runner = web.AppRunner(echo_app("primary"), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=context).start()
        where.addresses["primary"] = sock.getsockname()[:2]
        yield where
    finally:
        await runner.cleanup()
        sock.close()


def tls_config(where: Upstreams, **options: Any) -> str:
    yaml = service_yaml(where.port, scheme="https", probe="tcp", **options)
    return config_for(where, yaml.replace("      - {cluster: secondary, priority: 2}\n", ""))


@pytest.mark.parametrize(
    ("extra", "sni"),
    [("", HOST), ("    upstream_sni: tls.example.test\n", "tls.example.test")],
)
async def test_https_upstream_verified_with_sni(
    ca: trustme.CA, ca_file: str, extra: str, sni: str
) -> None:
    """An https upstream is verified against ca_file, with SNI = upstream_sni or the name."""
    names: list[str | None] = []
    async with (
        tls_upstream(ca.issue_cert(HOST, "tls.example.test"), names) as where,
        monitored(tls_config(where, extra=extra)) as monitor,
    ):
        passive = Recorder(monitor)
        async with serve_proxy(monitor, passive, ca_file=ca_file) as (base, client):
            glb = Front(monitor, passive, base, client, {})
            echoed = await glb.echo("/secure?x=1")
    assert echoed["target"] == "/secure?x=1"
    assert names == [sni]


async def test_https_upstream_with_untrusted_certificate_is_502(ca: trustme.CA) -> None:
    """Without the CA, the upstream's certificate fails verification: 502 naming TLS."""
    async with (
        tls_upstream(ca.issue_cert(HOST), []) as where,
        monitored(tls_config(where, retries=0)) as monitor,
    ):
        passive = Recorder(monitor)
        async with serve_proxy(monitor, passive) as (base, client):
            reply = await Front(monitor, passive, base, client, {}).request()
    assert reply.status == 502
    assert b"TLS certificate" in reply.body
