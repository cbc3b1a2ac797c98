"""Active probes against real servers on loopback: outcomes, details, headers, TLS and framing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from glb.core.health import Outcome, ProbeResult
from glb.core.model import ProbeSpec, ProbeType, Target
from glb.health.probes import Prober
from tests.probe_backends import (
    TLS_NAME,
    Backend,
    refusing_port,
    serve_backend,
    serve_raw,
    silent_listener,
)

TIMEOUT = 0.3


def make_target(port: int, type: ProbeType = ProbeType.HTTP, **kw: Any) -> Target:
    address = kw.pop("address", "127.0.0.1")
    kw.setdefault("timeout", TIMEOUT)
    spec = ProbeSpec(
        type=type,
        port=port,
        interval=1.0,
        rise=2,
        fall=2,
        fast_interval=0.25,
        latency_alpha=0.3,
        **kw,
    )
    return Target(address, spec)


async def probe(prober: Prober, target: Target) -> ProbeResult:
    async with asyncio.timeout(5):
        return await prober.probe(target)


@pytest.fixture(scope="session")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(TLS_NAME, "127.0.0.1", "::1")


@pytest.fixture
async def prober(ca_file: str) -> AsyncIterator[Prober]:
    prober = Prober(ca_file=ca_file)
    yield prober
    await prober.close()


@pytest.fixture
async def backend(cert: trustme.LeafCert) -> AsyncIterator[Backend]:
    async with serve_backend(cert=cert) as backend:
        yield backend


@pytest.fixture
def tls_port(backend: Backend) -> int:
    assert backend.tls_port is not None
    return backend.tls_port


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("path", "expect", "outcome", "detail"),
    [
        ("/ok", ((200, 399),), Outcome.SUCCESS, "status 200"),
        ("/fail", ((200, 399),), Outcome.BAD_STATUS, "status 500"),
        ("/fail", ((200, 299), (500, 500)), Outcome.SUCCESS, "status 500"),
        ("/missing", ((200, 399),), Outcome.BAD_STATUS, "status 404"),
        ("/redirect", ((200, 299),), Outcome.BAD_STATUS, "status 302"),
    ],
    ids=["200", "500", "500-expected", "404", "redirect-not-followed"],
)
async def test_status_decides(
    prober: Prober,
    backend: Backend,
    path: str,
    expect: tuple[tuple[int, int], ...],
    outcome: Outcome,
    detail: str,
) -> None:
    """A probe succeeds iff the status falls in an expected range, and never follows redirects."""
    result = await probe(prober, make_target(backend.port, path=path, expect_status=expect))
    assert (result.outcome, result.detail) == (outcome, detail)


@pytest.mark.parametrize(
    ("path", "needle", "outcome"),
    [
        ("/ok", "needle", Outcome.SUCCESS),
        ("/ok", "absent", Outcome.BODY_MISMATCH),
        ("/chunked", "needle", Outcome.SUCCESS),
        ("/chunked", "second needle end", Outcome.SUCCESS),
        ("/chunked", "absent", Outcome.BODY_MISMATCH),
        ("/big", "early", Outcome.SUCCESS),
        ("/big", "needle", Outcome.BODY_MISMATCH),
    ],
    ids=[
        "length-hit",
        "length-miss",
        "chunked-hit",
        "across-chunks",
        "chunked-miss",
        "big-head",
        "big-past-64k",
    ],
)
async def test_body_contains(
    prober: Prober, backend: Backend, path: str, needle: str, outcome: Outcome
) -> None:
    """The body check searches the first 64 KiB of a content-length or chunked body."""
    result = await probe(prober, make_target(backend.port, path=path, body_contains=needle))
    assert result.outcome is outcome
    if outcome is Outcome.BODY_MISMATCH:
        assert result.detail == f"body does not contain {needle!r}"


async def test_bad_status_wins_over_body(prober: Prober, backend: Backend) -> None:
    """A wrong status fails the probe as BAD_STATUS even when the body holds the text."""
    result = await probe(prober, make_target(backend.port, path="/fail", body_contains="needle"))
    assert (result.outcome, result.detail) == (Outcome.BAD_STATUS, "status 500")


async def test_request_headers(prober: Prober, backend: Backend) -> None:
    """The backend receives Host, User-Agent, Connection: close and the configured extra headers."""
    headers = (("X-Probe", "glb"), ("Accept", "text/plain"))
    target = make_target(backend.port, path="/echo", host="app.example.test", headers=headers)
    assert (await probe(prober, target)).ok
    [seen] = backend.seen
    assert seen.headers["Host"] == "app.example.test"
    assert seen.headers["User-Agent"].startswith("glb/")
    assert seen.headers["Connection"] == "close"
    assert seen.headers["X-Probe"] == "glb"
    assert seen.headers["Accept"] == "text/plain"


async def test_default_host_and_user_agent(backend: Backend) -> None:
    """Without a probe host the Host header is address:port, and the user agent is configurable."""
    prober = Prober(user_agent="custom-agent/1")
    try:
        assert (await probe(prober, make_target(backend.port, path="/echo"))).ok
    finally:
        await prober.close()
    [seen] = backend.seen
    assert seen.headers["Host"] == f"127.0.0.1:{backend.port}"
    assert seen.headers["User-Agent"] == "custom-agent/1"


async def test_fresh_connection_per_probe(prober: Prober, backend: Backend) -> None:
    """Each probe opens its own connection: two probes arrive from two client ports."""
    target = make_target(backend.port, path="/echo")
    for _ in range(2):
        assert (await probe(prober, target)).ok
    assert len({seen.peer for seen in backend.seen}) == 2


async def test_slow_backend_times_out(prober: Prober, backend: Backend) -> None:
    """A backend that answers later than the timeout fails the probe as TIMEOUT."""
    result = await probe(prober, make_target(backend.port, path="/slow"))
    assert (result.outcome, result.detail) == (Outcome.TIMEOUT, f"timed out after {TIMEOUT:g}s")
    assert TIMEOUT - 0.01 <= result.rtt < TIMEOUT + 1  # uvloop timers may fire a tick early


async def test_the_timeout_given_replaces_the_spec_one(prober: Prober, backend: Backend) -> None:
    """The monitor's adaptive timeout, when given, bounds the probe instead of the spec's."""
    target = make_target(backend.port, path="/slow", timeout=30)
    async with asyncio.timeout(5):
        result = await prober.probe(target, 0.2)
    assert (result.outcome, result.detail) == (Outcome.TIMEOUT, "timed out after 0.2s")
    assert 0.19 <= result.rtt < 1.2


async def test_a_keep_alive_request_differs_only_in_its_connection_header(prober: Prober) -> None:
    """Held connections send the probe's own request, asking to keep the connection."""
    target = make_target(80, headers=(("X-Probe", "glb"),))
    closing = prober.request(target)
    keeping = prober.request(target, keep_alive=True)
    assert b"\r\nConnection: close\r\n" in closing
    assert keeping == closing.replace(b"Connection: close", b"Connection: keep-alive")
    assert prober.request(target, keep_alive=True) is keeping  # built once


@pytest.mark.parametrize("type", [ProbeType.HTTP, ProbeType.TCP])
async def test_refused(prober: Prober, type: ProbeType) -> None:
    """A port nobody listens on fails the probe as REFUSED."""
    with refusing_port() as port:
        result = await probe(prober, make_target(port, type))
    assert (result.outcome, result.detail) == (Outcome.REFUSED, "connection refused")


@pytest.mark.parametrize(
    ("type", "outcome"),
    [
        (ProbeType.HTTP, Outcome.TIMEOUT),
        (ProbeType.HTTPS, Outcome.TIMEOUT),
        (ProbeType.TCP, Outcome.SUCCESS),
    ],
)
async def test_accepts_but_never_answers(prober: Prober, type: ProbeType, outcome: Outcome) -> None:
    """A stopped backend (handshakes done by the kernel, no answer) times out; tcp only connects."""
    with silent_listener() as port:
        result = await probe(prober, make_target(port, type))
    assert result.outcome is outcome


async def test_closed_without_response_is_reset(prober: Prober) -> None:
    """A server that accepts and closes at once fails an http probe as RESET but passes tcp."""
    async with serve_raw(None) as raw:
        result = await probe(prober, make_target(raw.port))
        tcp = await probe(prober, make_target(raw.port, ProbeType.TCP))
    assert result.outcome is Outcome.RESET
    assert result.detail in {"connection closed without a response", "connection reset"}
    assert tcp.ok


@pytest.mark.parametrize(
    ("response", "outcome", "detail"),
    [
        (b"HTTP/1.0 200 OK\r\n\r\nread to the needle close", Outcome.SUCCESS, "status 200"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nno match", Outcome.BODY_MISMATCH, None),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nneedle",
            Outcome.SUCCESS,
            "status 200",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nnee\r\n3\r\ndle\r\n0\r\n\r\n",
            Outcome.SUCCESS,
            "status 200",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nneedle",
            Outcome.SUCCESS,
            "status 200",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            Outcome.OTHER,
            "unexpected 101 Switching Protocols",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Outcome.OTHER, "bad status line b'SSH-2.0-OpenSSH_9.6'"),
        (
            b"HTTP/1.1 200 OK\nContent-Length: 6\n\nneedle",
            Outcome.OTHER,
            "bare LF in the status line",
        ),
        (b"HTTP/1.1 200", Outcome.RESET, "connection closed mid-response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nneed",
            Outcome.RESET,
            "connection closed mid-response",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Outcome.OTHER,
            "bad chunk size b'zz'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 6\r\nneedle\r\n0\r\n\r\n",
            Outcome.OTHER,
            "bad chunk size b' 6'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            Outcome.OTHER,
            "bad content-length b'-1'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            Outcome.OTHER,
            "bad header line b'no colon'",
        ),
    ],
    ids=[
        "eof-body",
        "eof-body-miss",
        "interim-1xx",
        "chunk-extension",
        "two-interim",
        "unasked-101",
        "not-http",
        "bare-lf-head",
        "truncated-status",
        "truncated-body",
        "bad-chunk-size",
        "chunk-size-blank",
        "bad-length",
        "bad-header",
    ],
)
async def test_raw_responses(
    prober: Prober, response: bytes, outcome: Outcome, detail: str | None
) -> None:
    """Responses are parsed strictly enough to classify framing and protocol errors."""
    async with serve_raw(response) as raw:
        result = await probe(prober, make_target(raw.port, body_contains="needle"))
    assert result.outcome is outcome
    if detail is not None:
        assert result.detail == detail


async def test_another_protocol_fails_at_once(prober: Prober) -> None:
    """A server that greets first in another protocol (an SSH banner) and then waits fails the
    probe as soon as its first line is in, not at the timeout."""
    async with serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n", greet=True) as raw:
        result = await probe(prober, make_target(raw.port, timeout=30))
    assert (result.outcome, result.detail) == (
        Outcome.OTHER,
        "bad status line b'SSH-2.0-OpenSSH_9.6'",
    )


async def test_control_characters_rejected(prober: Prober, backend: Backend) -> None:
    """A header value with CR/LF is never sent: the probe fails as OTHER."""
    target = make_target(backend.port, path="/echo", headers=(("X-Evil", "a\r\nX-Injected: 1"),))
    result = await probe(prober, target)
    assert result.outcome is Outcome.OTHER
    assert backend.seen == []


async def test_tcp_connects(prober: Prober, backend: Backend) -> None:
    """A tcp probe succeeds once the connection is established."""
    result = await probe(prober, make_target(backend.port, ProbeType.TCP))
    assert (result.outcome, result.detail) == (Outcome.SUCCESS, "connected")


async def test_https_verified_with_sni(prober: Prober, backend: Backend, tls_port: int) -> None:
    """An https probe verifies the certificate against probe.host and sends it as SNI."""
    target = make_target(tls_port, ProbeType.HTTPS, path="/echo", host=TLS_NAME)
    result = await probe(prober, target)
    assert (result.outcome, result.detail) == (Outcome.SUCCESS, "status 200")
    assert backend.server_names == [TLS_NAME]
    assert backend.seen[0].headers["Host"] == TLS_NAME


async def test_https_host_with_port(prober: Prober, backend: Backend, tls_port: int) -> None:
    """A probe host with a port keeps it in the Host header but not in the SNI."""
    host = f"{TLS_NAME}:{tls_port}"
    target = make_target(tls_port, ProbeType.HTTPS, path="/echo", host=host)
    assert (await probe(prober, target)).ok
    assert backend.server_names == [TLS_NAME]
    assert backend.seen[0].headers["Host"] == host


async def test_https_ip_host_sends_no_sni(prober: Prober, backend: Backend, tls_port: int) -> None:
    """Without a probe host the certificate is checked against the IP and no SNI is sent."""
    assert (await probe(prober, make_target(tls_port, ProbeType.HTTPS, path="/ok"))).ok
    assert backend.server_names == [None]


async def test_https_wrong_name(prober: Prober, tls_port: int) -> None:
    """A certificate for another name fails a verifying probe as TLS_ERROR."""
    target = make_target(tls_port, ProbeType.HTTPS, path="/ok", host="other.test")
    result = await probe(prober, target)
    assert result.outcome is Outcome.TLS_ERROR
    assert result.detail.startswith("TLS: certificate verify failed: Hostname mismatch")


async def test_https_unverified(prober: Prober, tls_port: int) -> None:
    """With tls_verify false a certificate for another name is accepted."""
    target = make_target(tls_port, ProbeType.HTTPS, path="/ok", host="other.test", tls_verify=False)
    assert (await probe(prober, target)).ok


async def test_https_untrusted_ca(tls_port: int) -> None:
    """Without the test CA among the trusted ones the certificate fails verification."""
    prober = Prober()
    try:
        result = await probe(prober, make_target(tls_port, ProbeType.HTTPS, host=TLS_NAME))
    finally:
        await prober.close()
    assert result.outcome is Outcome.TLS_ERROR
    assert result.detail.startswith("TLS: certificate verify failed: ")


async def test_https_to_plain_http(prober: Prober, backend: Backend) -> None:
    """Speaking TLS to a plain HTTP port fails as TLS_ERROR with the TLS reason."""
    result = await probe(prober, make_target(backend.port, ProbeType.HTTPS, host=TLS_NAME))
    assert result.outcome is Outcome.TLS_ERROR
    assert result.detail.startswith("TLS: ")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_ipv6(prober: Prober, cert: trustme.LeafCert) -> None:
    """Probes reach IPv6 targets, with the address bracketed in the default Host header."""
    async with serve_backend("::1", cert) as backend:
        assert backend.tls_port is not None
        http = make_target(backend.port, path="/echo", address="::1")
        https = make_target(backend.tls_port, ProbeType.HTTPS, path="/ok", address="::1")
        tcp = make_target(backend.port, ProbeType.TCP, address="::1")
        results = [await probe(prober, target) for target in (http, https, tcp)]
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 3
    assert backend.seen[0].headers["Host"] == f"[::1]:{backend.port}"


async def test_clock_gives_rtt_and_end(backend: Backend) -> None:
    """rtt and `at` come from the injected clock: end minus start, and the end."""
    ticks = itertools.count(100.0, 0.25)
    prober = Prober(clock=lambda: next(ticks))
    try:
        result = await probe(prober, make_target(backend.port, path="/ok"))
    finally:
        await prober.close()
    assert (result.rtt, result.at) == (0.25, 100.25)


async def test_cancellation_propagates(prober: Prober, backend: Backend) -> None:
    """Cancelling a running probe raises CancelledError instead of returning a result."""
    task = asyncio.create_task(prober.probe(make_target(backend.port, path="/slow", timeout=30)))
    async with asyncio.timeout(5):
        await backend.slow_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_logs_only_debug(
    prober: Prober, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Each probe logs one debug record naming the target and the outcome, nothing louder."""
    caplog.set_level(logging.DEBUG, logger="glb.health.probes")
    await probe(prober, make_target(backend.port, path="/fail"))
    records = [r for r in caplog.records if r.name == "glb.health.probes"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "bad_status" in records[0].getMessage()
