"""Hostile requests to the admin API beyond tests/test_admin_api.py: the reload route (tokens,
methods, bodies), hostile names, and the HTTP limits on glb's real admin listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from glb.admin.api import CHANGES_DISABLED, MAX_BODY, admin_app
from glb.app import running
from glb.config import parse_settings, to_topology
from glb.core.config_diff import ReloadOutcome
from glb.core.health import ProbeResult
from glb.core.model import Target
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains

TOKEN = "hostile-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
dns: {listen: '127.0.0.1:0'}
http: {listen: '127.0.0.1:0'}
admin: {listen: '127.0.0.1:0', token: TOKEN}
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 192.0.2.53}]}]
clusters: [{name: eu, addresses: [192.0.2.1]}]
""".replace("TOKEN", TOKEN)


async def never_probed(target: Target, within: float) -> ProbeResult:
    raise AssertionError("no service: nothing to probe")


class Reloads:
    """A reload callable that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> ReloadOutcome:
        self.calls += 1
        return ReloadOutcome()


@pytest.fixture
def monitor() -> Monitor:
    return Monitor(to_topology(parse_settings(CONFIG)), never_probed)


@pytest.fixture
def reloads() -> Reloads:
    return Reloads()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, monitor: Monitor, reloads: Reloads
) -> TestClient[Any, Any]:
    return await aiohttp_client(
        admin_app(monitor, DurableDrains(monitor), token=TOKEN, reload=reloads)
    )


async def error(response: ClientResponse, status: int) -> str:
    """Assert a JSON error with `status`; return its message."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    return message


async def test_reload_with_the_token_reloads(client: TestClient[Any, Any], reloads: Reloads):
    """POST /api/v1/reload with the right token reloads once (the baseline of the tests below)."""
    response = await client.post("/api/v1/reload", headers=AUTH)
    assert response.status == 200
    assert reloads.calls == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}{TOKEN}"},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Bearer\t{TOKEN}"},
        {"X-Token": TOKEN},
    ],
    ids=["none", "wrong", "basic", "no-credentials", "prefix", "doubled", "case", "tab", "other"],
)
async def test_reload_with_a_bad_token_is_401(
    client: TestClient[Any, Any], reloads: Reloads, headers: dict[str, str]
):
    """POST /api/v1/reload without exactly the right bearer token is 401 and reloads nothing."""
    response = await client.post("/api/v1/reload", headers=headers)
    assert "token" in await error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert reloads.calls == 0


async def test_reload_without_a_configured_token_is_403(
    aiohttp_client: AiohttpClient, monitor: Monitor, reloads: Reloads
):
    """With no token configured, POST /api/v1/reload is 403 whatever is sent."""
    client = await aiohttp_client(
        admin_app(monitor, DurableDrains(monitor), token=None, reload=reloads)
    )
    for headers in ({}, AUTH):
        response = await client.post("/api/v1/reload", headers=headers)
        assert await error(response, 403) == CHANGES_DISABLED
    assert reloads.calls == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_reload_with_a_wrong_method_is_405(
    client: TestClient[Any, Any], reloads: Reloads, method: str
):
    """Any method but POST on /api/v1/reload is 405 with Allow: POST, even with the token."""
    response = await client.request(method, "/api/v1/reload", headers=AUTH)
    assert "not allowed" in await error(response, 405)
    assert response.headers["Allow"] == "POST"
    assert reloads.calls == 0


async def test_reload_without_a_configuration_file_is_501(
    aiohttp_client: AiohttpClient, monitor: Monitor
):
    """A glb started without a configuration file answers POST /api/v1/reload with 501."""
    client = await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=TOKEN))
    response = await client.post("/api/v1/reload", headers=AUTH)
    assert "without a configuration file" in await error(response, 501)


async def test_reload_with_an_oversized_body_is_413(client: TestClient[Any, Any], reloads: Reloads):
    """POST /api/v1/reload with a body over the limit is 413, with or without Content-Length."""
    body = b'{"reason": "' + b"x" * MAX_BODY + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await client.post("/api/v1/reload", headers=AUTH, data=body)
    assert "Maximum request body size" in await error(response, 413)
    response = await client.post("/api/v1/reload", headers=AUTH, data=chunks())
    assert "Maximum request body size" in await error(response, 413)
    assert reloads.calls == 0


async def test_reload_with_a_bad_body_is_400(client: TestClient[Any, Any], reloads: Reloads):
    """POST /api/v1/reload with a body that is not {"reason": "..."} is 400 and reloads nothing."""
    for body in (b"{", b"[]", b'{"reason": 1}', b'{"force": true}'):
        response = await client.post("/api/v1/reload", headers=AUTH, data=body)
        await error(response, 400)
    assert reloads.calls == 0


@pytest.mark.parametrize(
    "name",
    [
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "a" * 4000,
        "%E2%98%83.glb.test",
        "%ff%fe",
        "app.glb.test%0d%0aX-Injected:%201",
        "*",
    ],
    ids=["nul", "traversal", "long", "unicode", "bad-utf8", "crlf", "star"],
)
async def test_hostile_service_names_are_404(client: TestClient[Any, Any], name: str):
    """A service lookup or drain with a hostile name answers a JSON 404, never a 500."""
    response = await client.get(f"/api/v1/services/{name}")
    assert "unknown service" in await error(response, 404)
    assert "X-Injected" not in response.headers
    path = f"/api/v1/services/{name}/endpoints/eu/drain"
    response = await client.post(path, headers=AUTH)
    await error(response, 404)
    response = await client.post(f"/api/v1/clusters/{name}/drain", headers=AUTH)
    assert "unknown cluster" in await error(response, 404)


async def test_real_admin_listener_applies_the_http_limits():
    """glb's admin listener answers an oversized header 400 and still serves the next client."""
    async with running(parse_settings(CONFIG)) as glb:
        host, port = glb.admin_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        big = "X-Big: " + "b" * 9000
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: admin\r\n{big}\r\n\r\n".encode())
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.0 400")
        writer.close()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_real_admin_listener_cuts_off_a_slow_request_head():
    """A client that trickles its request head to the admin listener gets 408 and is closed
    about http.client_header_timeout after it connected (glb.admin.head_timeout, over aiohttp),
    while another client is served meanwhile."""
    config = CONFIG.replace(
        "http: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0', client_header_timeout: 0.5}",
    )
    async with running(parse_settings(config)) as glb:
        host, port = glb.admin_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            closed = asyncio.create_task(reader.read())
            for byte in b"X-Slow: " + b"s" * 40:  # a byte every 50 ms, never the end of the head
                done, _ = await asyncio.wait({closed}, timeout=0.05)
                if done:
                    break
                writer.write(bytes([byte]))
                other_reader, other_writer = await asyncio.open_connection(host, int(port))
                other_writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                async with asyncio.timeout(5):
                    assert (await other_reader.readline()).startswith(b"HTTP/1.1 200")
                other_writer.close()
            async with asyncio.timeout(5):
                answer = await closed
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert 0.4 <= loop.time() - began < 3.0
        finally:
            writer.close()
