"""DNS resource limits on a real glb (`glb.app.running`) over loopback: TCP idle timeout,
connection and per-connection query caps, and response rate limiting (RRL) over UDP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glb.app import Running, running
from glb.config import parse_settings
from tests.dns_helpers import framed, read_reply

NAME = "ns1.glb.test"  # answered from the configuration alone: no probes needed
ADDRESS = "192.0.2.53"
CLIENT_A = "127.0.0.1"
CLIENT_B = "127.0.2.1"  # another /24

Start = Callable[..., Awaitable[Running]]


def config(**dns: str) -> str:
    options = ", ".join(f"{key}: {value}" for key, value in dns.items())
    return (
        f"dns: {{listen: '127.0.0.1:0', {options}}}\n"
        "http: {listen: '127.0.0.1:0'}\n"
        "admin: {listen: '127.0.0.1:0'}\n"
        f"zones: [{{name: glb.test, nameservers: [{{name: {NAME}, address: {ADDRESS}}}]}}]\n"
        "clusters: [{name: eu, addresses: [192.0.2.1]}]\n"
    )


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start glb with the given `dns:` options; stop every one at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**dns: str) -> Running:
            return await stack.enter_async_context(running(parse_settings(config(**dns))))

        yield _start


def query(ident: int | None = None) -> dns.message.Message:
    message = dns.message.make_query(NAME, "A")
    if ident is not None:
        message.id = ident
    return message


async def answered_over_tcp(glb: Running, source: str = CLIENT_A) -> bool:
    host, port = glb.dns_addr
    reply = await dns.asyncquery.tcp(query(), host, port=port, source=source, timeout=2)
    return [rd.address for rrset in reply.answer for rd in rrset] == [ADDRESS]


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionError:
        return True


def udp_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    return sock


async def receive_until_quiet(sock: socket.socket, quiet: float = 0.3) -> list[bytes]:
    """Every datagram that arrives until none has for `quiet` seconds (at most 2,000)."""
    loop = asyncio.get_running_loop()
    received: list[bytes] = []
    for _ in range(2000):
        try:
            async with asyncio.timeout(quiet):
                received.append(await loop.sock_recv(sock, 4096))
        except TimeoutError:
            break
    return received


async def burst(glb: Running, count: int) -> list[dns.message.Message]:
    """`count` UDP queries sent at once from CLIENT_A; the replies, once a query from CLIENT_B
    (sent after them, so answered after them) has been answered."""
    host, port = glb.dns_addr
    queries = {i: query(i) for i in range(1, count + 1)}
    loop = asyncio.get_running_loop()
    with udp_socket(CLIENT_A) as a, udp_socket(CLIENT_B) as b:
        for message in queries.values():
            a.sendto(message.to_wire(), (host, port))
        b.sendto(query(0xBEEF).to_wire(), (host, port))
        async with asyncio.timeout(2):
            other = dns.message.from_wire(await loop.sock_recv(b, 4096))
        assert other.id == 0xBEEF
        assert [rd.address for rrset in other.answer for rd in rrset] == [ADDRESS]
        replies = [dns.message.from_wire(wire) for wire in await receive_until_quiet(a)]
    for reply in replies:
        assert queries[reply.id].is_response(reply)
    return replies


async def rrl_counts(glb: Running) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{glb.admin_url}/metrics") as r:
        text = await r.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("glb_dns_rrl_")
    }


async def test_idle_and_stalled_tcp_clients_are_closed_while_others_are_served(start: Start):
    """A client that sends nothing, or a length prefix and then stalls, is closed after the idle
    timeout, while other clients are served meanwhile."""
    glb = await start(tcp_idle_timeout="300ms")
    host, port = glb.dns_addr
    began = time.monotonic()
    idle_reader, idle_writer = await asyncio.open_connection(host, port)
    stalled_reader, stalled_writer = await asyncio.open_connection(host, port)
    stalled_writer.write(b"\x00\x40" + b"\x12" * 10)  # 10 of the 64 bytes announced
    try:
        assert await answered_over_tcp(glb)
        async with asyncio.timeout(5):
            assert await closed_by_server(idle_reader)
            assert await closed_by_server(stalled_reader)
        assert 0.25 <= time.monotonic() - began < 3.0
        assert await answered_over_tcp(glb)
    finally:
        idle_writer.close()
        stalled_writer.close()


async def test_connection_cap_refuses_extra_clients_until_idle_ones_time_out(start: Start):
    """Idle clients holding every slot get a new client refused at once, and it is served again
    once the idle timeout has freed them."""
    glb = await start(max_tcp_connections="3", tcp_idle_timeout="1s")
    host, port = glb.dns_addr
    held = [await asyncio.open_connection(host, port) for _ in range(3)]
    try:
        async with asyncio.timeout(5):
            for reader, writer in held:  # an answer proves each connection holds a slot
                writer.write(framed(query()))
                assert (await read_reply(reader)).answer
            refused_at = time.monotonic()
            reader, writer = await asyncio.open_connection(host, port)
            assert await closed_by_server(reader)
            writer.close()
            assert time.monotonic() - refused_at < 0.5  # refused, not timed out
            for reader, _ in held:
                assert await closed_by_server(reader)
        assert await answered_over_tcp(glb)
    finally:
        for _, writer in held:
            writer.close()


async def test_query_cap_per_connection_closes_after_the_last_answer(start: Start):
    """A connection is closed after max_queries_per_connection answers; the rest go unanswered."""
    glb = await start(max_queries_per_connection="5")
    reader, writer = await asyncio.open_connection(*glb.dns_addr)
    sent = [query(i) for i in range(1, 8)]
    try:
        writer.write(b"".join(framed(q) for q in sent))
        async with asyncio.timeout(5):
            replies = [await read_reply(reader) for _ in range(5)]
            assert await closed_by_server(reader)
    finally:
        writer.close()
    assert [r.id for r in replies] == [1, 2, 3, 4, 5]


async def test_rrl_is_off_by_default(start: Start):
    """Without rrl settings a burst of 100 UDP queries from one client is answered in full."""
    glb = await start()
    replies = await burst(glb, 100)
    assert len(replies) == 100
    assert not any(r.flags & dns.flags.TC for r in replies)
    assert await rrl_counts(glb) == {
        "glb_dns_rrl_dropped_total": 0.0,
        "glb_dns_rrl_slipped_total": 0.0,
    }


async def test_rrl_drops_and_slips_a_burst_but_spares_other_networks_and_tcp(start: Start):
    """Over the rate, one /24's replies are dropped except every slip-th, sent truncated with the
    question; another /24 and TCP from the limited one are still answered."""
    glb = await start(rrl="{enabled: true, responses_per_second: 5, window: 1s, slip: 2}")
    began = time.monotonic()
    replies = await burst(glb, 60)
    elapsed = time.monotonic() - began
    full = [r for r in replies if not r.flags & dns.flags.TC]
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert 5 <= len(full) <= 5 + int(elapsed * 5) + 1
    assert all(r.answer for r in full)
    limited = 60 - len(full)
    assert len(slipped) == limited // 2
    for reply in slipped:
        assert (reply.answer, reply.authority, reply.additional) == ([], [], [])
        assert reply.question[0].name.to_text() == f"{NAME}."
    for _ in range(10):
        assert await answered_over_tcp(glb)
    assert await rrl_counts(glb) == {
        "glb_dns_rrl_dropped_total": float(limited - len(slipped)),
        "glb_dns_rrl_slipped_total": float(len(slipped)),
    }
