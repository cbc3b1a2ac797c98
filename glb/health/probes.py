"""Active health probes (http, https, tcp): one `Prober.probe(target)` call → one `ProbeResult`.

Each probe opens a fresh connection, so it proves that the target accepts new connections, and is
bounded as a whole by `target.probe.timeout`. HTTP(S) probes speak a minimal HTTP/1.1 over asyncio
streams (GET with `Connection: close`, no redirects, no decompression): the per-probe path builds
no session and no SSL context, only a connection. The body is read, at most `BODY_LIMIT` bytes of
it (content-length, chunked or read-to-close), only when `body_contains` asks for it.

Target failures are values (an `Outcome` and a short human reason), never exceptions; only
`asyncio.CancelledError` escapes `Prober.probe`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Final

from glb import __version__
from glb.core.health import Outcome, ProbeResult
from glb.core.model import ProbeType, Target

logger = logging.getLogger(__name__)

BODY_LIMIT: Final = 64 * 1024  # bytes of body searched for `body_contains`
HEAD_LIMIT: Final = 64 * 1024  # bytes of status line and headers accepted
REQUEST_CACHE: Final = 100_000  # requests kept built (one per target)
_NO_BODY: Final = frozenset({204, 304})
_DIGITS: Final = {10: frozenset(b"0123456789"), 16: frozenset(b"0123456789abcdefABCDEF")}
_Verdict = tuple[Outcome, str]


class _Failure(Exception):
    """A probe failure found while speaking HTTP, already classified."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Prober:
    """Runs active probes and owns the SSL contexts they share.

    `probe()` never raises except `asyncio.CancelledError`; every failure is a `ProbeResult`.
    `ca_file` (PEM) adds CA certificates to the system ones for https probes with `tls_verify`.
    No connection is held between probes, only each target's request bytes (built once);
    `close()` is kept so owners can treat probers uniformly.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = f"glb/{__version__}",
        ca_file: str | None = None,
    ) -> None:
        self._clock = clock
        self._user_agent = user_agent
        self._verified = _verifying_context(ca_file)
        self._unverified = _unverifying_context()
        self._requests: dict[Target, bytes] = {}  # each target's request, built once

    async def close(self) -> None:
        """Nothing to release: each probe closes its own connection."""

    async def probe(self, target: Target) -> ProbeResult:
        spec = target.probe
        start = self._clock()
        try:
            async with asyncio.timeout(spec.timeout):
                outcome, detail = await self._check(target)
        except Exception as exc:  # a probe failure is a value, whatever raised it
            outcome, detail = _classify(exc, spec.timeout)
        end = self._clock()
        result = ProbeResult(outcome, end - start, end, detail)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: %s in %.1f ms (%s)", target.describe(), outcome, result.rtt * 1e3, detail
            )
        return result

    async def _check(self, target: Target) -> _Verdict:
        if target.probe.type is ProbeType.TCP:
            return await _tcp_check(target)
        tls = self._ssl_context(target) if target.probe.type is ProbeType.HTTPS else None
        return await _http_check(target, self._request(target), tls)

    def _request(self, target: Target) -> bytes:
        """The target's request bytes; the same on every probe, so built on the first."""
        if (request := self._requests.get(target)) is None:
            if len(self._requests) >= REQUEST_CACHE:  # targets of replaced configurations
                self._requests.clear()
            request = self._requests[target] = _request(target, self._user_agent)
        return request

    def _ssl_context(self, target: Target) -> ssl.SSLContext:
        return self._verified if target.probe.tls_verify else self._unverified


def _verifying_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _unverifying_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # tls_verify: false asks for exactly this
    context.set_alpn_protocols(["http/1.1"])
    return context


async def _tcp_check(target: Target) -> _Verdict:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, target.address, target.probe.port)
    transport.abort()
    return Outcome.SUCCESS, "connected"


async def _http_check(target: Target, request: bytes, tls: ssl.SSLContext | None) -> _Verdict:
    spec = target.probe
    server_hostname = _server_name(spec.host or target.address) if tls else None
    reader, writer = await asyncio.open_connection(
        target.address, spec.port, ssl=tls, server_hostname=server_hostname, limit=HEAD_LIMIT
    )
    try:
        writer.write(request)
        status = await _read_final_status(reader)
        if not any(low <= status <= high for low, high in spec.expect_status):
            return Outcome.BAD_STATUS, f"status {status}"
        if spec.body_contains is None:
            return Outcome.SUCCESS, f"status {status}"
        body = await _read_body(reader, status)
    finally:
        writer.transport.abort()  # no TLS close_notify dance: nothing lingers past the probe
    if spec.body_contains.encode() not in body:
        return Outcome.BODY_MISMATCH, f"body does not contain {spec.body_contains!r}"
    return Outcome.SUCCESS, f"status {status}"


def _request(target: Target, user_agent: str) -> bytes:
    spec = target.probe
    fields = {
        "host": ("Host", spec.host or _netloc(target.address, spec.port)),
        "user-agent": ("User-Agent", user_agent),
        "accept": ("Accept", "*/*"),
        "accept-encoding": ("Accept-Encoding", "identity"),  # body_contains reads plain bytes
    }
    for name, value in spec.headers:
        fields[name.lower()] = (name, value)
    fields["connection"] = ("Connection", "close")
    lines = [f"GET {spec.path} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.values())]
    if any(c in line for line in lines for c in "\r\n\0"):
        raise _Failure(Outcome.OTHER, "control character in the request path or headers")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _netloc(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _server_name(host: str) -> str:
    """The TLS server name of a Host value: without a port or IPv6 brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


async def _readline(reader: asyncio.StreamReader, *, first: bool = False) -> bytes:
    try:
        line = await reader.readline()
    except ValueError:  # longer than the reader's limit
        raise _Failure(Outcome.OTHER, "response line too long") from None
    if line.endswith(b"\n"):
        return line
    if first and not line:
        raise _Failure(Outcome.RESET, "connection closed without a response")
    raise asyncio.IncompleteReadError(line, None)


async def _read_final_status(reader: asyncio.StreamReader) -> int:
    """The status of the final response, skipping interim 1xx ones."""
    status = _parse_status(await _readline(reader, first=True))
    while status < 200:
        await _read_headers(reader)
        status = _parse_status(await _readline(reader))
    return status


def _parse_status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not _is_status(parts[1]):
        raise _Failure(Outcome.OTHER, f"bad status line {line[:40]!r}")
    return int(parts[1])


def _is_status(code: bytes) -> bool:
    return len(code) == 3 and code.isdigit()


async def _read_headers(reader: asyncio.StreamReader) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    size = 0
    while (line := await _readline(reader)) not in (b"\r\n", b"\n"):
        size += len(line)
        if size > HEAD_LIMIT:
            raise _Failure(Outcome.OTHER, "response headers too large")
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Failure(Outcome.OTHER, f"bad header line {line[:40]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = headers[key] + b", " + value if key in headers else value
    return headers


async def _read_body(reader: asyncio.StreamReader, status: int) -> bytes:
    """Up to BODY_LIMIT bytes of the body, whichever framing the response uses."""
    headers = await _read_headers(reader)
    if status in _NO_BODY:
        return b""
    if headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        return await _read_chunked(reader)
    if (length := headers.get(b"content-length")) is not None:
        size = _parse_int(length, 10, "content-length")
        return await reader.readexactly(min(size, BODY_LIMIT))
    return await _read_to_eof(reader)


def _parse_int(text: bytes, base: int, what: str) -> int:
    digits = text.strip()
    if not digits or not _DIGITS[base].issuperset(digits):
        raise _Failure(Outcome.OTHER, f"bad {what} {digits[:20]!r}")
    return int(digits, base)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while len(body) < BODY_LIMIT:
        size_line = (await _readline(reader)).split(b";", 1)[0]  # drop chunk extensions
        if not (size := _parse_int(size_line, 16, "chunk size")):
            break
        body += await reader.readexactly(min(size, BODY_LIMIT - len(body)))
        if len(body) < BODY_LIMIT:
            await _readline(reader)  # the CRLF closing the chunk
    return bytes(body)


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while len(body) < BODY_LIMIT and (data := await reader.read(BODY_LIMIT - len(body))):
        body += data
    return bytes(body)


def _classify(exc: Exception, timeout: float) -> _Verdict:
    """Map what a probe raised onto an outcome and a short reason."""
    match exc:
        case TimeoutError():
            return Outcome.TIMEOUT, f"timed out after {timeout:g}s"
        case ssl.SSLCertVerificationError():
            return Outcome.TLS_ERROR, f"TLS: certificate verify failed: {exc.verify_message}"
        case ssl.SSLError():
            return Outcome.TLS_ERROR, f"TLS: {_ssl_reason(exc)}"
        case ConnectionRefusedError():
            return Outcome.REFUSED, "connection refused"
        case ConnectionResetError() | BrokenPipeError():
            return Outcome.RESET, "connection reset"
        case asyncio.IncompleteReadError():
            return Outcome.RESET, "connection closed mid-response"
        case _Failure():
            return exc.outcome, exc.detail
        case OSError() if exc.strerror:
            return Outcome.OTHER, exc.strerror.lower()
        case _:
            return Outcome.OTHER, f"{type(exc).__name__}: {exc}"[:200]


def _ssl_reason(exc: ssl.SSLError) -> str:
    return exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
