"""DnsServer: real UDP and TCP sockets on 127.0.0.1, queried with dnspython and raw streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from glb.dns.server import DnsServer
from tests.dns_helpers import ZONE, addresses, framed, make_answerer, make_query, read_reply

HOST = "127.0.0.1"
APP = f"app.{ZONE}"
BIG = f"big.{ZONE}"

Start = Callable[..., Awaitable[tuple[DnsServer, int]]]


def bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port on 127.0.0.1."""
    for _ in range(10):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((HOST, 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((HOST, udp.getsockname()[1]))
        except OSError:
            tcp.close()
            udp.close()
            continue
        return udp, tcp
    raise RuntimeError("no port free for both UDP and TCP")


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start DnsServers (answering from the test topology unless given a handler); close them
    all at teardown."""
    servers: list[DnsServer] = []

    async def _start(handler=None, **options) -> tuple[DnsServer, int]:
        udp, tcp = bind_pair()
        port = udp.getsockname()[1]
        server = DnsServer(handler or make_answerer().answer, udp, tcp, **options)
        await server.start()
        servers.append(server)
        return server, port

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def port(start: Start) -> int:
    return (await start())[1]


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):  # the server may have closed first
        await writer.wait_closed()


async def served(port: int) -> bool:
    """Whether a new TCP connection gets an answer (False: the server closed it at once)."""
    reader, writer = await connect(port)
    try:
        writer.write(framed(make_query(APP)))
        return bool(addresses(await read_reply(reader)))
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    finally:
        await hang_up(writer)


async def test_udp_query_is_answered(port):
    """A query over UDP gets the steered answer."""
    reply = await dns.asyncquery.udp(make_query(APP), HOST, port=port, timeout=2)
    assert addresses(reply) == ["192.0.2.1"]
    assert reply.flags & dns.flags.AA


async def test_tcp_query_is_answered(port):
    """A query over TCP, on the same port as UDP, gets the steered answer."""
    reply = await dns.asyncquery.tcp(make_query(APP, "AAAA"), HOST, port=port, timeout=2)
    assert addresses(reply) == ["2001:db8::1"]


async def test_many_pipelined_queries_on_one_tcp_connection(port):
    """Several queries sent at once on one TCP connection are all answered, in order."""
    names = [APP, f"ns1.{ZONE}", f"nope.{ZONE}", f"fast.{ZONE}", APP]
    queries = [make_query(name) for name in names]
    reader, writer = await connect(port)
    try:
        writer.write(b"".join(framed(q) for q in queries))
        async with asyncio.timeout(5):
            replies = [await read_reply(reader) for _ in queries]
            writer.write(framed(make_query(f"rr.{ZONE}")))  # still open afterwards
            last = await read_reply(reader)
    finally:
        await hang_up(writer)
    assert [r.id for r in replies] == [q.id for q in queries]
    assert all(q.is_response(r) for q, r in zip(queries, replies, strict=True))
    assert replies[2].rcode() == dns.rcode.NXDOMAIN
    assert addresses(last)


async def test_truncated_over_udp_then_full_over_tcp(port):
    """A reply too big for UDP comes back truncated, and the TCP retry gets all of it."""
    query = make_query(BIG, "AAAA", edns=0, payload=1232)
    truncated = await dns.asyncquery.udp(query, HOST, port=port, timeout=2)
    assert truncated.flags & dns.flags.TC
    assert truncated.answer == []
    full = await dns.asyncquery.tcp(query, HOST, port=port, timeout=2)
    assert len(addresses(full)) == 64
    retried, used_tcp = await dns.asyncquery.udp_with_fallback(query, HOST, port=port, timeout=2)
    assert used_tcp
    assert len(addresses(retried)) == 64


async def test_junk_datagrams_do_not_stop_the_server(port):
    """After junk datagrams (short, random, a response), a valid UDP query is still answered."""
    junk = [b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 30, b"\x00" * 512]
    response = make_query(APP)
    response.flags |= dns.flags.QR
    junk.append(response.to_wire())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for datagram in junk:
            sock.sendto(datagram, (HOST, port))
    reply = await dns.asyncquery.udp(make_query(APP), HOST, port=port, timeout=2)
    assert addresses(reply) == ["192.0.2.1"]


async def test_formerr_over_udp_echoes_the_id(port):
    """A malformed datagram with a readable header gets FORMERR with its ID."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((HOST, port))
        await loop.sock_sendall(sock, b"\xbe\xef\x01\x00\x00\x00" + b"\x00" * 6)
        async with asyncio.timeout(5):
            reply = dns.message.from_wire(await loop.sock_recv(sock, 512))
    assert (reply.id, reply.rcode()) == (0xBEEF, dns.rcode.FORMERR)


async def test_handler_exception_is_logged_and_udp_keeps_serving(start, caplog):
    """If the handler raises on a datagram, the error is logged and the next one is answered."""
    answerer = make_answerer()

    def handler(wire: bytes, tcp: bool, source: str) -> bytes | None:
        if wire == b"boom":
            raise RuntimeError("handler exploded")
        return answerer.answer(wire, tcp, source)

    _, port = await start(handler)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        with caplog.at_level(logging.ERROR, logger="glb.dns.server"):
            sock.sendto(b"boom", (HOST, port))
            reply = await dns.asyncquery.udp(make_query(APP), HOST, port=port, timeout=2)
    assert addresses(reply) == ["192.0.2.1"]
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "handler exploded" in str(record.exc_info[1])


async def test_dropped_message_gets_no_reply_over_tcp(port):
    """A message the handler drops gets no reply; the next one on the connection does."""
    response = make_query(APP)
    response.flags |= dns.flags.QR
    query = make_query(APP)
    reader, writer = await connect(port)
    try:
        writer.write(framed(response) + framed(query))
        async with asyncio.timeout(5):
            reply = await read_reply(reader)
    finally:
        await hang_up(writer)
    assert reply.id == query.id


async def test_idle_tcp_client_is_closed_while_others_are_served(start):
    """A TCP client that sends nothing is closed after the idle timeout; others are served."""
    _, port = await start(tcp_idle_timeout=0.3)
    idle_reader, idle_writer = await connect(port)
    stalled_reader, stalled_writer = await connect(port)
    stalled_writer.write(b"\x00\x40\x12")  # a length, then 1 of its 64 bytes
    try:
        reply = await dns.asyncquery.tcp(make_query(APP), HOST, port=port, timeout=2)
        assert addresses(reply) == ["192.0.2.1"]
        async with asyncio.timeout(5):
            assert await idle_reader.read() == b""
            assert await stalled_reader.read() == b""
    finally:
        await hang_up(idle_writer)
        await hang_up(stalled_writer)


async def test_connection_cap(start):
    """Connections beyond the cap are closed at once, and accepted again once one ends."""
    server, port = await start(max_tcp_connections=2)
    held = [await connect(port) for _ in range(2)]
    try:
        async with asyncio.timeout(5):
            for reader, writer in held:  # an answer proves the server counts the connection
                writer.write(framed(make_query(APP)))
                assert addresses(await read_reply(reader))
            assert server.tcp_connections == 2
            assert not await served(port)
            await hang_up(held.pop()[1])
            while not await served(port):  # until the server notices the hang-up
                pass
    finally:
        for _, writer in held:
            await hang_up(writer)


async def test_query_cap_per_connection(start):
    """After max_queries_per_connection answers the server closes the connection."""
    _, port = await start(max_queries_per_connection=3)
    reader, writer = await connect(port)
    try:
        writer.write(b"".join(framed(make_query(APP)) for _ in range(4)))
        async with asyncio.timeout(5):
            replies = [await read_reply(reader) for _ in range(3)]
            assert await reader.read() == b""
    finally:
        await hang_up(writer)
    assert all(addresses(r) for r in replies)


async def test_half_sent_message_then_eof_is_harmless(port):
    """A client that hangs up mid-message does not disturb the server."""
    reader, writer = await connect(port)
    writer.write(b"\x00\x20\x01\x02")
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    await hang_up(writer)
    assert await served(port)


async def test_reset_connection_is_harmless(port):
    """A client that resets its connection does not disturb the server."""
    reader, writer = await connect(port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.write(framed(make_query(APP)))
    async with asyncio.timeout(5):
        assert addresses(await read_reply(reader))
    writer.transport.abort()
    assert await served(port)


async def test_close_ends_open_connections(start):
    """close() returns promptly even with idle TCP clients, and they see the connection end."""
    server, port = await start(tcp_idle_timeout=30)
    clients = [await connect(port) for _ in range(3)]
    for reader, writer in clients:
        writer.write(framed(make_query(APP)))
        async with asyncio.timeout(5):
            assert addresses(await read_reply(reader))
    async with asyncio.timeout(5):
        await server.close()
        for reader, _ in clients:
            assert await reader.read() == b""
    assert server.tcp_connections == 0
    for _, writer in clients:
        await hang_up(writer)
