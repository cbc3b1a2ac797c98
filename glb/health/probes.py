"""Active health probes (http, https, tcp): one `Prober.probe(target)` call → one `ProbeResult`.

Each probe opens a fresh connection, so it proves that the target accepts new connections, and is
bounded as a whole by `target.probe.timeout`. HTTP(S) probes send a minimal HTTP/1.1 request over
asyncio streams (GET with `Connection: close`, no redirects, no decompression) and read the
answer with glb's own HTTP/1.1 parsing (`glb.http1.response_head`, interim 1xx responses
skipped; `glb.http1.chunked`), so a target passes only with responses the proxy could relay.
The per-probe path builds no session and no SSL context (`glb.http1.tls`, shared), only a
connection. The body is read, at most `BODY_LIMIT` bytes of it (content-length, chunked or
read-to-close), only when `body_contains` asks for it. With a `source` address, probes connect
from it (targets of the other address family from the system's choice, said once in the log).

Target failures are values (an `Outcome` and a short human reason), never exceptions; only
`asyncio.CancelledError` escapes `Prober.probe`. The monitor may give each probe a shorter
timeout than the spec's (its adaptive one, `glb.core.timeouts`).

Held connections (`glb.health.held`) reuse the pieces: `Prober.request(target, keep_alive=True)`,
`open_streams`, `final_head` and `read_body` (which also says whether the connection stopped at
the body's end, so it can carry another request).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Final

from glb import __version__
from glb.core.health import Outcome, ProbeResult
from glb.core.model import ProbeType, Target
from glb.http1 import response_head as wire
from glb.http1.chunked import ChunkedDecoder
from glb.http1.tls import ClientContexts

logger = logging.getLogger(__name__)

BODY_LIMIT: Final = 64 * 1024  # bytes of body searched for `body_contains`
HEAD_LIMIT: Final = 64 * 1024  # bytes of status line and headers accepted
REQUEST_CACHE: Final = 100_000  # requests kept built (one per target)
READ_SIZE: Final = 64 * 1024  # bytes asked of the connection at a time
# Heads are bounded by their size only: a line may take it all (4 bytes make a header line).
_LIMITS: Final = wire.Limits(HEAD_LIMIT, HEAD_LIMIT, HEAD_LIMIT // 4, HEAD_LIMIT)
_Verdict = tuple[Outcome, str]


class ProbeFailure(Exception):
    """A probe failure found while speaking HTTP, already classified."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Prober:
    """Runs active probes and owns the SSL contexts they share.

    `probe()` never raises except `asyncio.CancelledError`; every failure is a `ProbeResult`.
    `ca_file` (PEM) adds CA certificates to the system ones for https probes with `tls_verify`.
    `source` is the local address probes connect from (`probes.source`); a target of the other
    address family is probed without binding, and the first one met is logged as a warning.
    No connection is held between probes, only each target's request bytes (built once);
    `close()` is kept so owners can treat probers uniformly.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = f"glb/{__version__}",
        ca_file: str | None = None,
        source: str | None = None,
    ) -> None:
        self._clock = clock
        self._source = source
        self._other_family_logged = False
        self._user_agent = user_agent
        self._tls = ClientContexts(ca_file)
        self._requests: dict[tuple[Target, bool], bytes] = {}  # by target and keep-alive

    async def close(self) -> None:
        """Nothing to release: each probe closes its own connection."""

    async def probe(self, target: Target, within: float | None = None) -> ProbeResult:
        """Probe `target` once within `within` seconds (default: its spec's timeout)."""
        timeout = target.probe.timeout if within is None else within
        start = self._clock()
        try:
            async with asyncio.timeout(timeout):
                outcome, detail = await self._check(target)
        except Exception as exc:  # a probe failure is a value, whatever raised it
            outcome, detail = _classify(exc, timeout)
        end = self._clock()
        result = ProbeResult(outcome, end - start, end, detail)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: %s in %.1f ms (%s)", target.describe(), outcome, result.rtt * 1e3, detail
            )
        return result

    async def _check(self, target: Target) -> _Verdict:
        source = self.source_for(target)
        if target.probe.type is ProbeType.TCP:
            return await _tcp_check(target, source)
        return await _http_check(target, self.request(target), self.tls_for(target), source)

    def source_for(self, target: Target) -> str | None:
        """The address to probe `target` from: `source` unless the families differ."""
        source = self._source
        if source is None or _is_ipv6(source) == _is_ipv6(target.address):
            return source
        if not self._other_family_logged:
            self._other_family_logged = True
            logger.warning(
                "probes.source %s is IPv%d: IPv%d targets such as %s are probed from the "
                "system's choice of address",
                source,
                6 if _is_ipv6(source) else 4,
                6 if _is_ipv6(target.address) else 4,
                target.address,
            )
        return None

    def request(self, target: Target, *, keep_alive: bool = False) -> bytes:
        """The target's request bytes (`Connection: close`, or `keep-alive` for a held
        connection); the same on every probe, so built on the first."""
        key = (target, keep_alive)
        if (request := self._requests.get(key)) is None:
            if len(self._requests) >= REQUEST_CACHE:  # targets of replaced configurations
                self._requests.clear()
            request = self._requests[key] = _request(target, self._user_agent, keep_alive)
        return request

    def tls_for(self, target: Target) -> ssl.SSLContext | None:
        """The SSL context of an https target (None for the others)."""
        if target.probe.type is not ProbeType.HTTPS:
            return None
        return self._tls.context(target.probe.tls_verify)


def source_problem(source: str) -> str | None:
    """Why probes cannot connect from `source` (a socket is bound to it once, as probes will),
    or None when they can."""
    try:
        with socket.socket(_family(source), socket.SOCK_STREAM) as sock:
            sock.bind((source, 0))
    except OSError as exc:
        return _bind_problem(source, exc)
    return None


def _bind_problem(source: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{source} is not an address of this host"
    return f"cannot bind {source}: {(exc.strerror or str(exc)).lower()}"


async def connect_from(address: str, port: int, source: str | None) -> socket.socket:
    """A non-blocking TCP socket connected to address:port, from `source` when given."""
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            _bind_source(sock, source)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_source(sock: socket.socket, source: str) -> None:
    """Bind to `source`, its port left to connect(): many probes to different targets may then
    share a port, so a host probing thousands of targets does not run out of them."""
    if (no_port := getattr(socket, "IP_BIND_ADDRESS_NO_PORT", None)) is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, no_port, 1)
    try:
        sock.bind((source, 0))
    except OSError as exc:
        raise ProbeFailure(Outcome.OTHER, f"probes.source: {_bind_problem(source, exc)}") from None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if _is_ipv6(address) else socket.AF_INET


def _is_ipv6(address: str) -> bool:
    return ":" in address


async def _tcp_check(target: Target, source: str | None) -> _Verdict:
    sock = await connect_from(target.address, target.probe.port, source)
    sock.close()
    return Outcome.SUCCESS, "connected"


async def _http_check(
    target: Target, request: bytes, tls: ssl.SSLContext | None, source: str | None
) -> _Verdict:
    spec = target.probe
    reader, writer = await open_streams(target, tls, source)
    try:
        writer.write(request)
        head, rest = await final_head(reader)
        if not any(low <= head.status <= high for low, high in spec.expect_status):
            return Outcome.BAD_STATUS, f"status {head.status}"
        if spec.body_contains is None:
            return Outcome.SUCCESS, f"status {head.status}"
        body, _ = await read_body(reader, head, rest)
    finally:
        writer.transport.abort()  # no TLS close_notify dance: nothing lingers past the probe
    if spec.body_contains.encode() not in body:
        return Outcome.BODY_MISMATCH, f"body does not contain {spec.body_contains!r}"
    return Outcome.SUCCESS, f"status {head.status}"


async def open_streams(
    target: Target, tls: ssl.SSLContext | None, source: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the target's probe port (TLS when `tls` is given), as streams."""
    server_hostname = _server_name(target.probe.host or target.address) if tls else None
    sock = await connect_from(target.address, target.probe.port, source)
    try:
        return await asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=server_hostname, limit=HEAD_LIMIT
        )
    except BaseException:
        sock.close()  # a no-op when the failed transport already closed it
        raise


def _request(target: Target, user_agent: str, keep_alive: bool = False) -> bytes:
    spec = target.probe
    fields = {
        "host": ("Host", spec.host or _netloc(target.address, spec.port)),
        "user-agent": ("User-Agent", user_agent),
        "accept": ("Accept", "*/*"),
        "accept-encoding": ("Accept-Encoding", "identity"),  # body_contains reads plain bytes
    }
    for name, value in spec.headers:
        fields[name.lower()] = (name, value)
    fields["connection"] = ("Connection", "keep-alive" if keep_alive else "close")
    lines = [f"GET {spec.path} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.values())]
    if any(c in line for line in lines for c in "\r\n\0"):
        raise ProbeFailure(Outcome.OTHER, "control character in the request path or headers")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _netloc(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _server_name(host: str) -> str:
    """The TLS server name of a Host value: without a port or IPv6 brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


async def final_head(reader: asyncio.StreamReader) -> tuple[wire.Head, bytes]:
    """The final response head (interim 1xx ones skipped) and the bytes read after it."""
    buffer = b""
    while True:
        end = wire.head_end(buffer, _LIMITS)
        if end < 0:
            buffer += await _more(reader, started=bool(buffer))
            continue
        head = wire.parse_head(buffer[:end], "GET", _LIMITS)
        buffer = buffer[end + 4 :]
        if not wire.is_interim(head):
            return head, buffer


async def _more(reader: asyncio.StreamReader, *, started: bool = True) -> bytes:
    """The next bytes of the response; a ProbeFailure if the connection ended instead."""
    if data := await reader.read(READ_SIZE):
        return data
    if started:
        raise ProbeFailure(Outcome.RESET, "connection closed mid-response")
    raise ProbeFailure(Outcome.RESET, "connection closed without a response")


async def read_body(
    reader: asyncio.StreamReader, head: wire.Head, data: bytes
) -> tuple[bytes, bool]:
    """Up to BODY_LIMIT bytes of the body (`data`: what was read of it with the head), and
    whether the body ended there with nothing read past it (the connection could carry another
    request)."""
    framing = head.framing
    if framing is wire.Framing.NONE:
        return b"", not data
    decoder = ChunkedDecoder(_LIMITS.max_line) if framing is wire.Framing.CHUNKED else None
    left = head.length if framing is wire.Framing.LENGTH else -1  # bytes of a Content-Length body
    body = bytearray()
    past = b""  # bytes read beyond the body's end
    while len(body) < BODY_LIMIT:
        if decoder is not None:
            data, past = decoder.feed(data)
        elif left >= 0:
            data, past = data[:left], data[left:]
            left -= len(data)
        body += data
        if not left or (decoder is not None and decoder.done):
            return bytes(body[:BODY_LIMIT]), not past
        if framing is wire.Framing.CLOSE:
            if not (data := await reader.read(READ_SIZE)):
                break  # the close ends the body
        else:
            data = await _more(reader)
    return bytes(body[:BODY_LIMIT]), False


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
        case ProbeFailure():
            return exc.outcome, exc.detail
        case wire.WireError():
            return Outcome.OTHER, str(exc)
        case OSError() if exc.strerror:
            return Outcome.OTHER, exc.strerror.lower()
        case _:
            return Outcome.OTHER, f"{type(exc).__name__}: {exc}"[:200]


def _ssl_reason(exc: ssl.SSLError) -> str:
    return exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
