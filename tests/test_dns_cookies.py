"""DNS Cookies (RFC 7873, server cookies per RFC 9018) and the DO bit (RFC 3225): the cookie
construction against RFC 9018's test vectors and a reference SipHash-2-4, the validity rules
with an injected clock, and glb answering over real UDP and TCP, one process and `--workers 2`."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import signal
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from siphash24 import siphash24

from glb.dns.cookies import ServerCookies, server_cookie
from glb.dns.server import DnsServer
from tests.dns_helpers import ZONE, make_answerer
from tests.serve import Served, start_serve, stop_serve
from tests.test_dns_server import HOST, bind_pair
from tests.test_workers import chaos_id, config, identity_of

APP = f"app.{ZONE}"
SECRET = bytes(range(16))
NOW = 1_765_000_000

# RFC 9018 Appendix A: (secret, client cookie, client address, timestamp, server cookie)
VECTORS = [
    (
        "e5e973e5a6b2a43f48e7dc849e37bfcf",
        "2464c4abcf10c957",
        "198.51.100.100",
        1559731985,
        "010000005cf79f111f8130c3eee29480",
    ),
    (
        "e5e973e5a6b2a43f48e7dc849e37bfcf",
        "2464c4abcf10c957",
        "198.51.100.100",
        1559734385,
        "010000005cf7a871d4a564a1442aca77",
    ),
    (
        "e5e973e5a6b2a43f48e7dc849e37bfcf",
        "fc93fc62807ddb86",
        "203.0.113.203",
        1559734700,
        "010000005cf7a9acf73a7810aca2381e",
    ),
    (
        "445536bcd2513298075a5d379663c962",
        "22681ab97d52c298",
        "2001:db8:220:1:59de:d0f4:8769:82b8",
        1559741961,
        "010000005cf7c609a6bb79d16625507a",
    ),
]


# --- the construction ------------------------------------------------------------------------


def reference_siphash24(key: bytes, message: bytes) -> bytes:
    """SipHash-2-4 as the paper (Aumasson, Bernstein 2012) defines it, in plain Python."""
    mask = (1 << 64) - 1

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & mask

    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261]
    v.append(k1 ^ 0x7465646279746573)

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & mask
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & mask
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & mask
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & mask
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    tail = len(message) % 8
    padded = message[: len(message) - tail] + message[len(message) - tail :].ljust(7, b"\0")
    padded += bytes(((len(message) & 0xFF),))
    for (m,) in struct.iter_unpack("<Q", padded):
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return struct.pack("<Q", v[0] ^ v[1] ^ v[2] ^ v[3])


def test_siphash_matches_the_reference_and_the_papers_vector():
    key = bytes(range(16))
    assert reference_siphash24(key, bytes(range(15))).hex() == "e545be4961ca29a1"
    rnd = random.Random(9018)
    for size in [*range(40), 100, 1000]:
        key, message = rnd.randbytes(16), rnd.randbytes(size)
        assert siphash24(message, key=key).digest() == reference_siphash24(key, message)


@pytest.mark.parametrize(("secret", "client", "address", "stamp", "expected"), VECTORS)
def test_server_cookies_are_rfc_9018s_test_vectors(secret, client, address, stamp, expected):
    packed = ipaddress.ip_address(address).packed
    made = server_cookie(bytes.fromhex(secret), bytes.fromhex(client), bytes(3), stamp, packed)
    assert made.hex() == expected


def test_a_cookie_with_reserved_bytes_set_verifies_as_sent():
    """RFC 9018 A.3: the query's cookie, reserved bytes 0xabcdef, hashes with them."""
    sent = bytes.fromhex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5")
    secret = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
    address = ipaddress.ip_address("203.0.113.203").packed
    assert server_cookie(secret, sent[:8], sent[9:12], 0x5CF78F71, address) == sent[8:]


# --- validity, with an injected clock --------------------------------------------------------


def cookies_at(now: int) -> ServerCookies:
    return ServerCookies(SECRET, clock=lambda: now)


def server_part(option: bytes) -> bytes:
    assert option[:4] == struct.pack("!HH", 10, 24)
    return option[12:]


def stamp_of(option: bytes) -> int:
    return int.from_bytes(server_part(option)[4:8], "big")


def test_a_valid_recent_cookie_comes_back_as_it_was_and_an_old_one_renewed():
    client = bytes(8)
    issued = cookies_at(NOW).reply_option(client, "192.0.2.1")
    assert stamp_of(issued) == NOW
    for later, kept in [(1, True), (1799, True), (1800, False), (3600, False)]:
        again = cookies_at(NOW + later).reply_option(issued[4:], "192.0.2.1")
        assert (again == issued) is kept, later
        assert cookies_at(NOW + later).valid(issued[4:], "192.0.2.1")
        assert stamp_of(again) == (NOW if kept else NOW + later)


def test_cookies_not_made_for_this_client_now_are_not_valid():
    client = b"\x01" * 8
    data = cookies_at(NOW).reply_option(client, "192.0.2.1")[4:]
    assert not cookies_at(NOW + 3601).valid(data, "192.0.2.1")  # expired
    assert not cookies_at(NOW - 301).valid(data, "192.0.2.1")  # too far in the future
    assert cookies_at(NOW - 300).valid(data, "192.0.2.1")  # within the clock skew
    assert not cookies_at(NOW).valid(data, "192.0.2.2")  # another client address
    assert not cookies_at(NOW).valid(bytes(8) + data[8:], "192.0.2.1")  # another client cookie
    wrong = data[:-1] + bytes((data[-1] ^ 1,))
    assert not cookies_at(NOW).valid(wrong, "192.0.2.1")  # a wrong hash
    assert not ServerCookies(bytes(16), lambda: NOW).valid(data, "192.0.2.1")  # another secret
    renewed = cookies_at(NOW + 10).reply_option(wrong, "192.0.2.1")
    assert stamp_of(renewed) == NOW + 10  # treated as a client cookie alone: a fresh one
    assert cookies_at(NOW + 10).valid(renewed[4:], "192.0.2.1")


def test_the_secret_rotates_every_hour_and_the_previous_one_stays_valid():
    """A cookie made in the last second of an hour (its secret) validates an hour later (the
    next hour's secret in force), and cookies of consecutive hours differ in their hash."""
    end_of_hour = (NOW // 3600) * 3600 + 3599
    before = cookies_at(end_of_hour).reply_option(bytes(8), "192.0.2.1")
    after = cookies_at(end_of_hour + 1).reply_option(bytes(8), "192.0.2.1")
    assert server_part(before)[8:] != server_part(after)[8:]
    assert cookies_at(end_of_hour + 3600).valid(before[4:], "192.0.2.1")
    assert not cookies_at(end_of_hour + 3601).valid(before[4:], "192.0.2.1")


# --- over real UDP and TCP -------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[int]:
    """A DnsServer answering the test topology (its own cookie secret, the wall clock); its
    port."""
    udp, tcp = bind_pair()
    server = DnsServer(make_answerer().answer, udp, tcp)
    await server.start()
    yield udp.getsockname()[1]
    await server.close()


def with_options(options: list[dns.edns.Option], *, dnssec: bool = False) -> dns.message.Message:
    return dns.message.make_query(APP, "A", use_edns=0, want_dnssec=dnssec, options=options)


async def send(
    query: dns.message.Message, port: int, *, tcp: bool = False, source: str = HOST
) -> dns.message.Message:
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, port=port, timeout=2, source=source)
    return await dns.asyncquery.udp(query, HOST, port=port, timeout=2, source=source)


def cookie_of(reply: dns.message.Message) -> dns.edns.CookieOption:
    found = [o for o in reply.options if isinstance(o, dns.edns.CookieOption)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("tcp", [False, True])
async def test_the_do_bit_is_copied_into_the_reply(server, tcp):
    for dnssec in (True, False):
        reply = await send(with_options([], dnssec=dnssec), server, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer
        assert bool(reply.ednsflags & dns.flags.DO) is dnssec


@pytest.mark.parametrize("tcp", [False, True])
async def test_a_client_cookie_gets_a_server_cookie_that_validates_next_time(server, tcp):
    client = os.urandom(8)
    first = await send(with_options([dns.edns.CookieOption(client, b"")]), server, tcp=tcp)
    assert first.rcode() == dns.rcode.NOERROR
    assert first.answer
    cookie = cookie_of(first)
    assert cookie.client == client
    assert len(cookie.server) == 16
    assert cookie.server[0] == 1  # version 1, reserved zero
    assert cookie.server[1:4] == bytes(3)
    second = await send(with_options([cookie]), server, tcp=tcp)
    assert second.rcode() == dns.rcode.NOERROR
    assert second.answer
    assert cookie_of(second).server == cookie.server  # valid and recent: handed back as it was


async def test_a_cookie_of_another_client_or_a_wrong_hash_is_not_trusted(server):
    """Not trusted: answered as a client cookie alone, normally and with a fresh server cookie
    (glb never answers BADCOOKIE)."""
    client = os.urandom(8)
    cookie = cookie_of(await send(with_options([dns.edns.CookieOption(client, b"")]), server))
    elsewhere = await send(with_options([cookie]), server, source="127.0.0.2")
    assert elsewhere.rcode() == dns.rcode.NOERROR
    assert elsewhere.answer
    assert cookie_of(elsewhere).server != cookie.server
    again = await send(with_options([cookie_of(elsewhere)]), server, source="127.0.0.2")
    assert cookie_of(again).server == cookie_of(elsewhere).server  # now it is this client's
    forged = dns.edns.CookieOption(client, cookie.server[:8] + os.urandom(8))
    reply = await send(with_options([forged]), server)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer
    assert cookie_of(reply).server not in (forged.server, b"")


@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize("length", [0, 1, 7, 9, 15, 41, 64])
async def test_a_malformed_cookie_gets_formerr(server, tcp, length):
    option = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, os.urandom(length))
    reply = await send(with_options([option]), server, tcp=tcp)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.question[0].name.to_text() == f"{APP}."


# --- `--workers 2`: one secret ---------------------------------------------------------------

APP_IN_WORKERS = "app.glb.test"


@pytest.fixture
async def served_with_workers(tmp_path: Path, clusters) -> AsyncIterator[Served]:
    path = tmp_path / "glb.yaml"
    path.write_text(config(clusters, [APP_IN_WORKERS]))
    served = await start_serve(path, "--workers", "2")
    yield served
    pids = {int(m[1]) for line in served.lines for m in re.finditer(r"pid (\d+)", line)}
    await stop_serve(served)
    for pid in pids:  # a test that failed half-way must not leave a worker behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def sockets_per_process(port: int, processes: int) -> dict[str, Any]:
    """UDP sockets until `processes` glb processes answered one each; {identity: socket}."""
    backend: Any = dns.asyncbackend.get_default_backend()
    found: dict[str, Any] = {}
    for _ in range(300):
        sock = await backend.make_socket(socket.AF_INET, socket.SOCK_DGRAM, 0, (HOST, 0))
        reply = await dns.asyncquery.udp(chaos_id(), HOST, port=port, sock=sock, timeout=2)
        if identity_of(reply) in found:
            await sock.close()
        else:
            found[identity_of(reply)] = sock
        if len(found) == processes:
            return found
    raise AssertionError(f"only {sorted(found)} answered from 300 source ports")


async def test_a_cookie_one_process_issued_validates_in_another(served_with_workers):
    port = served_with_workers.dns_port
    socks = await sockets_per_process(port, 2)
    try:
        (first, issuer), (second, other) = socks.items()
        assert first != second
        client = os.urandom(8)
        query = dns.message.make_query(APP_IN_WORKERS, "A", use_edns=0)
        query.use_edns(0, options=[dns.edns.CookieOption(client, b"")])
        issued = await dns.asyncquery.udp(query, HOST, port=port, sock=issuer, timeout=2)
        cookie = cookie_of(issued)
        query.use_edns(0, options=[cookie])
        for sock in (other, issuer):
            reply = await dns.asyncquery.udp(query, HOST, port=port, sock=sock, timeout=2)
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer
            assert cookie_of(reply).server == cookie.server  # valid there too: handed back
    finally:
        for sock in socks.values():
            await sock.close()
