"""A client at fault is never an endpoint's failure. glb (`glb.app.running`) runs in front of
upload backends in their own processes (`tests.upload_backend`); raw-socket clients stall in the
middle of a chunked upload, disconnect mid-upload, break their chunked coding or send more than
`max_body_size`, more times than `eject_after`. Each time the client gets 408, 400 or 413 (or
nothing once gone), the endpoint keeps no failure, stays eligible for the proxy and in the DNS
answer, nothing is ejected and nothing is logged at error level. The other way round, an
endpoint that breaks the uploads of a client that keeps sending is still blamed and ejected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glb.app import Running, running
from glb.config import load_settings
from glb.core.model import Endpoint
from tests.clusters import ClusterProcess, write_config
from tests.dns_helpers import query_over
from tests.stack import tcp_connection
from tests.upload_backend import start_upload_backends

HOST = "app.glb.test"
IDLE = 0.5  # the service's idle timeout: the longest a client may be silent mid-body
UPLOADS = 5  # uploads per test: more than eject_after
SERVICE = {
    "eject_after": 3,
    "retries": 2,
    "max_body_size": "2kB",
    "timeouts": "{connect: 1s, first_byte: 2s, idle: 500ms}",
}
PROBE = "{type: http, path: /healthz, interval: 60s}"  # only proxied requests can eject
UPLOAD = f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
CHUNK = b"5\r\nhello\r\n"


@contextlib.asynccontextmanager
async def glb_over(
    tmp_path: Path, *backend: str, **service: str
) -> AsyncIterator[tuple[Running, ClusterProcess]]:
    """glb in front of two upload backends run with the `backend` options, for `SERVICE` with
    `service` on top; yields glb and the first (preferred) backend."""
    clusters = await start_upload_backends(["eu-west", "us-east"], *backend)
    try:
        config = write_config(tmp_path, clusters, probe=PROBE, **{**SERVICE, **service})
        async with running(load_settings(config)) as glb:
            yield glb, clusters[0]
    finally:
        await asyncio.gather(*(c.stop() for c in clusters))


def address(glb: Running) -> tuple[str, int]:
    host, port = glb.http_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def endpoint(glb: Running, cluster: ClusterProcess) -> Endpoint:
    service = glb.topology.services[0]
    return next(e for e in service.endpoints if e.cluster == cluster.name)


async def line_from(cluster: ClusterProcess, wanted: str) -> None:
    """Until the backend prints `wanted` (lines before it are skipped)."""
    assert cluster.process is not None
    assert cluster.process.stdout is not None
    async with asyncio.timeout(5):
        while (await cluster.process.stdout.readline()).decode().strip() != wanted:
            pass


async def status_until_closed(reader: asyncio.StreamReader) -> int:
    """The status of glb's answer, read until glb closes the connection (0: no answer)."""
    async with asyncio.timeout(5):
        answer = await reader.read()
    return int(answer.split(b" ", 2)[1]) if answer else 0


async def proxied(glb: Running) -> float:
    """Proxied requests glb has finished (answered or aborted), from its /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{glb.admin_url}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "glb_proxy_requests_total"
    )


async def all_finished(glb: Running, count: int) -> None:
    """Until glb has finished `count` proxied requests: every report they made is in."""
    async with asyncio.timeout(5):
        while True:  # polled, as a scraper would, within the timeout
            if await proxied(glb) >= count:
                return
            await asyncio.sleep(0.02)


async def uploads(
    glb: Running,
    first: bytes,
    then: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None,
) -> list[int]:
    """`UPLOADS` uploads, one after the other, each sending `first` (then doing `then`): the
    status of each answer, once glb has finished them all."""
    statuses = []
    for _ in range(UPLOADS):
        async with tcp_connection(*address(glb)) as (reader, writer):
            writer.write(first)
            if then is not None:
                await then(writer)
            statuses.append(await status_until_closed(reader))
    await all_finished(glb, UPLOADS)
    return statuses


async def assert_unharmed(glb: Running, cluster: ClusterProcess, caplog: pytest.LogCaptureFixture):
    """`cluster` kept no failure, is eligible and in the DNS answer; nothing was ejected and
    nothing logged at error level; a plain request is served by it."""
    snapshot = glb.monitor.current()
    preferred = endpoint(glb, cluster)
    assert snapshot.health(preferred.target).passive_failures == 0
    assert snapshot.is_eligible(preferred)
    reply = await query_over(glb.dns_addr, HOST, "A")
    assert {item.address for rrset in reply.answer for item in rrset} == {cluster.address}
    assert not [r.getMessage() for r in caplog.records if "eject" in r.getMessage()]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    async with tcp_connection(*address(glb)) as (reader, writer):
        writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(5):
            answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(f"{cluster.name} received 0\n".encode())


@pytest.mark.parametrize(
    "backend",
    [
        ("--body-timeout", "0.1", "--on-stall", "close"),
        ("--body-timeout", "0.1", "--on-stall", "reset"),
        ("--body-timeout", "0.1", "--on-stall", "408"),
        ("--body-timeout", "30"),
    ],
    ids=["upstream-closes-first", "upstream-resets-first", "upstream-408-first", "glb-first"],
)
async def test_uploads_stalled_mid_body_are_the_clients_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: tuple[str, ...]
) -> None:
    """Chunked uploads that stall mid-body get 408 whoever gives up first, glb (its idle
    timeout) or the upstream (closing, resetting or answering 408 before glb notices)."""
    caplog.set_level(logging.INFO)
    async with glb_over(tmp_path, *backend) as (glb, eu):
        statuses = await uploads(glb, UPLOAD + CHUNK)  # then nothing
        assert statuses == [408] * UPLOADS
        await assert_unharmed(glb, eu, caplog)


async def test_uploads_with_a_length_stalled_mid_body_are_the_clients_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same with a Content-Length too large to be buffered (it streams like a chunked one):
    408 when the upstream gives up first, and the endpoint is not blamed."""
    caplog.set_level(logging.INFO)
    upload = f"PUT /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\n".encode()
    backend = ("--body-timeout", "0.1", "--on-stall", "close")
    async with glb_over(tmp_path, *backend, max_body_size="1MB") as (glb, eu):
        statuses = await uploads(glb, upload + b"x" * 1000)  # then nothing
        assert statuses == [408] * UPLOADS
        await assert_unharmed(glb, eu, caplog)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_uploads_abandoned_mid_body_are_not_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, reset: bool
) -> None:
    """A client that disconnects while its body streams to the upstream is nobody's failure."""
    caplog.set_level(logging.INFO)
    async with glb_over(tmp_path, "--body-timeout", "30") as (glb, eu):
        for _ in range(UPLOADS):
            async with tcp_connection(*address(glb)) as (_, writer):
                writer.write(UPLOAD + CHUNK)
                await line_from(eu, "body")  # the upload is under way upstream
                if reset:
                    writer.transport.abort()
            await line_from(eu, "gone")  # glb dropped the upstream request too
        await all_finished(glb, UPLOADS)
        await assert_unharmed(glb, eu, caplog)


async def test_broken_chunked_coding_is_400_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A body whose chunked coding breaks mid-upload gets 400; the endpoint is not blamed."""
    caplog.set_level(logging.INFO)
    async with glb_over(tmp_path, "--body-timeout", "30") as (glb, eu):

        async def break_it(writer: asyncio.StreamWriter) -> None:
            await line_from(eu, "body")  # the upload is under way upstream
            writer.write(b"zz\r\nnot a chunk\r\n")

        statuses = await uploads(glb, UPLOAD + CHUNK, break_it)
        assert statuses == [400] * UPLOADS
        await assert_unharmed(glb, eu, caplog)


async def test_body_over_max_body_size_is_413_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body that grows over max_body_size mid-upload gets 413; the endpoint is not
    blamed."""
    caplog.set_level(logging.INFO)
    big = b"400\r\n" + b"x" * 0x400 + b"\r\n"  # 1 KiB chunks: the third is over 2 kB
    async with glb_over(tmp_path, "--body-timeout", "30") as (glb, eu):
        statuses = await uploads(glb, UPLOAD + big * 3)
        assert statuses == [413] * UPLOADS
        await assert_unharmed(glb, eu, caplog)


async def _keep_sending(writer: asyncio.StreamWriter) -> None:
    """A live client: a chunk every 20 ms until the connection goes."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(CHUNK)
            await writer.drain()
            await asyncio.sleep(0.02)


async def test_an_endpoint_breaking_live_uploads_is_ejected(tmp_path: Path) -> None:
    """The other way round: an upstream that resets uploads while the client keeps sending is
    to blame: 502, and ejected after eject_after of them (out of the DNS answer too)."""
    async with glb_over(tmp_path, "--reset-after", "10") as (glb, eu):
        statuses = []
        for _ in range(3):
            async with tcp_connection(*address(glb)) as (reader, writer):
                writer.write(UPLOAD)
                sender = asyncio.create_task(_keep_sending(writer))
                try:
                    statuses.append(await status_until_closed(reader))
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender
        assert statuses == [502] * 3
        assert not glb.monitor.current().is_eligible(endpoint(glb, eu))
        reply = await query_over(glb.dns_addr, HOST, "A")
        assert eu.address not in {item.address for rrset in reply.answer for item in rrset}
