"""Where a request is going, over raw sockets to glb's proxy (RFC 9112 3.2): Host, absolute-form
targets and their authority, userinfo, CONNECT; hostile request heads never reach an upstream
nor log an error."""

from __future__ import annotations

import json

import pytest

from tests.proxy_front import front, raw_request


async def test_missing_host_is_400() -> None:
    """An HTTP/1.0 request without a Host header is answered 400 (RFC 9112 3.2)."""
    async with front() as glb:
        answer = await raw_request(glb.base, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert b"glb: no Host header" in answer


@pytest.mark.parametrize(
    "target", [b"http://evil.test/steal", b"http://127.0.0.1:1/", b"https://[::1]/"]
)
async def test_absolute_form_to_another_host_is_misdirected(target: bytes) -> None:
    """An absolute-form target naming another host is refused even with a valid Host header."""
    async with front() as glb:
        head = b"GET " + target + b" HTTP/1.1\r\nHost: app.glb.test\r\nConnection: close\r\n\r\n"
        answer = await raw_request(glb.base, head)
        assert answer.startswith(b"HTTP/1.1 421 ")
        assert glb.passive.reports == []


async def test_absolute_form_to_a_service_routes_by_its_authority() -> None:
    """An absolute-form target naming a service is forwarded in origin form, by its authority."""
    async with front() as glb:
        head = (
            b"GET http://app.glb.test/abs?q=1 HTTP/1.1\r\n"
            b"Host: evil.test\r\nConnection: close\r\n\r\n"
        )
        answer = await raw_request(glb.base, head)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 ")
    echoed = json.loads(body)
    assert echoed["target"] == "/abs?q=1"
    assert ["Host", "app.glb.test"] in echoed["headers"]


async def test_connect_is_refused() -> None:
    """CONNECT is never tunnelled: glb is not an open proxy."""
    async with front() as glb:
        head = b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\nConnection: close\r\n\r\n"
        answer = await raw_request(glb.base, head)
    assert answer.startswith(b"HTTP/1.1 421 ")
