"""Fuzzing the DNS server over real UDP and TCP sockets on loopback.

A DnsServer with the test topology's DnsAnswerer runs in its own thread and event loop, so the
tests can use plain blocking sockets (and hypothesis, which wants synchronous tests). Packets
come from hypothesis strategies and from seeded random mutations of valid queries: bit flips,
truncation, bad label lengths, compression pointers and loops in the question, absurd counts,
huge record lengths, random OPT records. Every reply must parse (dnspython) as a response with
the ID of the packet that caused it; afterwards a valid query is still answered correctly.

Each packet of a batch gets its index as ID, and a valid "sentinel" query ends the batch: its
reply means every packet before it has been handled (UDP datagrams are read in order, TCP
messages answered in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator

import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from glb.dns.server import DnsServer
from tests.dns_helpers import ZONE, addresses, make_answerer, make_query

HOST = "127.0.0.1"
APP = f"app.{ZONE}"
SENTINEL_ID = 0xFFFF
BATCH = 50  # datagrams in flight at once: well within the socket buffers
UDP_PACKETS = 20_000
TCP_PACKETS = 5_000
BUDGET = 30.0  # seconds any one test may spend sending

Exchange = Callable[[list[bytes]], list[bytes]]


class ServerThread:
    """A DnsServer on 127.0.0.1 (UDP and TCP, one port) in a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dns-fuzz-server")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((HOST, 0))
        self.port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind((HOST, self.port))
        self.server = DnsServer(make_answerer().answer, udp, tcp, tcp_idle_timeout=2.0)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self._run(self.server.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def _run(self, coro: Coroutine[object, object, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No packet may make glb log an error (a failed answer is logged with its traceback)."""
    with caplog.at_level(logging.ERROR, logger="glb"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name.startswith("glb")] == []


def sentinel() -> bytes:
    message = make_query(APP)
    message.id = SENTINEL_ID
    return message.to_wire()


def numbered(packets: list[bytes]) -> list[bytes]:
    """Each packet with its index as ID (the ones too short to carry an ID stay as they are)."""
    return [struct.pack("!H", i) + p[2:] if len(p) >= 2 else p for i, p in enumerate(packets)]


@contextlib.contextmanager
def udp_exchange(port: int) -> Iterator[Exchange]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect((HOST, port))

        def exchange(packets: list[bytes]) -> list[bytes]:
            for packet in packets:
                sock.send(packet)
            sock.send(sentinel())
            replies: list[bytes] = []
            for _ in range(len(packets) + 1):
                reply = sock.recv(65535)
                if reply[:2] == struct.pack("!H", SENTINEL_ID):
                    return replies
                replies.append(reply)
            raise AssertionError("more replies than packets")

        yield exchange


@contextlib.contextmanager
def tcp_exchange(port: int) -> Iterator[Exchange]:
    with socket.create_connection((HOST, port), timeout=2) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = sock.makefile("rb")  # closed with the socket: its only other reference

        def exchange(packets: list[bytes]) -> list[bytes]:
            frames = [struct.pack("!H", len(p)) + p for p in (*packets, sentinel())]
            sock.sendall(b"".join(frames))
            replies: list[bytes] = []
            for _ in range(len(packets) + 1):
                (length,) = struct.unpack("!H", stream.read(2))
                reply = stream.read(length)
                assert len(reply) == length
                if reply[:2] == struct.pack("!H", SENTINEL_ID):
                    return replies
                replies.append(reply)
            raise AssertionError("more replies than packets")

        with stream:
            yield exchange


def check_replies(packets: list[bytes], replies: list[bytes], *, tcp: bool) -> None:
    """Every reply parses as a response to a distinct packet of the batch, with its ID."""
    answered: set[int] = set()
    for wire in replies:
        assert tcp or len(wire) <= 1232, len(wire)
        reply = dns.message.from_wire(wire)
        assert reply.flags & dns.flags.QR
        assert reply.id < len(packets), reply.id
        assert reply.id not in answered, reply.id
        answered.add(reply.id)
        assert packets[reply.id][:2] == wire[:2]


def fuzz(exchange: Exchange, packets: list[bytes], *, tcp: bool) -> None:
    deadline = time.monotonic() + BUDGET
    for start in range(0, len(packets), BATCH):
        batch = numbered(packets[start : start + BATCH])
        check_replies(batch, exchange(batch), tcp=tcp)
        assert time.monotonic() < deadline, "fuzzing took too long"


def still_answers(port: int) -> None:
    """A valid query gets the right answer over UDP and over TCP."""
    for exchanges in (udp_exchange(port), tcp_exchange(port)):
        with exchanges as exchange:
            [wire] = exchange(numbered([make_query(APP).to_wire()]))
        reply = dns.message.from_wire(wire)
        assert reply.id == 0
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == ["192.0.2.1"]


# --- seeded mutations of valid queries -----------------------------------------------------------

NAMES = [APP, f"APP.{ZONE}", f"ns1.{ZONE}", ZONE, f"nope.{ZONE}", f"big.{ZONE}", "outside.test"]
TYPES = ["A", "AAAA", "ANY", "SOA", "NS", "TXT", "MX", "AXFR", "HTTPS", "CAA"]


def valid_queries() -> list[bytes]:
    queries = []
    for name in NAMES:
        for rdtype in TYPES:
            queries.append(make_query(name, rdtype).to_wire())
            for payload in (512, 1232, 4096):
                queries.append(make_query(name, rdtype, edns=0, payload=payload).to_wire())
    return queries


def flip_bits(rng: random.Random, wire: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        if wire:
            wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
    return wire


def truncate(rng: random.Random, wire: bytearray) -> bytearray:
    return wire[: rng.randrange(len(wire) + 1)]


def bad_label_length(rng: random.Random, wire: bytearray) -> bytearray:
    if len(wire) > 12:
        wire[12] = rng.choice([64, 65, 127, 191, 255, len(wire), rng.randrange(256)])
    return wire


def compression_in_question(rng: random.Random, wire: bytearray) -> bytearray:
    pointer = rng.choice([b"\xc0\x0c", b"\xc0\x0e\xc0\x0c", b"\xc0\x00", b"\xff\xff", b"\xc0"])
    prefix = rng.choice([b"", b"\x03app", b"\x01a\x01b"])
    return wire[:12] + prefix + pointer + wire[-4:]


def absurd_counts(rng: random.Random, wire: bytearray) -> bytearray:
    if len(wire) >= 12:
        offset = rng.choice([4, 6, 8, 10])
        wire[offset : offset + 2] = struct.pack("!H", rng.choice([0, 2, 255, 0x7FFF, 0xFFFF]))
    return wire


def random_opt(rng: random.Random, wire: bytearray) -> bytearray:
    """Append an OPT record with random fields, options and (possibly lying) RDLENGTH."""
    data = rng.randbytes(rng.randrange(40))
    rdlength = rng.choice([len(data), 0xFFFF, len(data) + 1, max(0, len(data) - 1)])
    owner = rng.choice([b"\x00", b"\x03app\x00", b"\xc0\x0c"])
    record = owner + struct.pack("!HHIH", 41, rng.randrange(65536), rng.getrandbits(32), rdlength)
    if len(wire) >= 12:
        (arcount,) = struct.unpack_from("!H", wire, 10)
        wire[10:12] = struct.pack("!H", (arcount + 1) & 0xFFFF)
    return wire + record + data


def garbage(rng: random.Random, wire: bytearray) -> bytearray:
    return wire + rng.randbytes(rng.randrange(1, 64))


def header_bits(rng: random.Random, wire: bytearray) -> bytearray:
    if len(wire) >= 4:
        wire[2:4] = struct.pack("!H", rng.getrandbits(16) & ~0x8000)  # QR=1 is silently dropped
    return wire


MUTATIONS = [
    flip_bits,
    truncate,
    bad_label_length,
    compression_in_question,
    absurd_counts,
    random_opt,
    garbage,
    header_bits,
]


def mutated(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    queries = valid_queries()
    packets = []
    for _ in range(count):
        wire = bytearray(rng.choice(queries))
        for mutation in rng.sample(MUTATIONS, rng.randint(1, 3)):
            wire = mutation(rng, wire)
        packets.append(bytes(wire[:65535]))
    return packets


def test_mutated_queries_over_udp(server: ServerThread) -> None:
    """20,000 mutated queries over UDP each get a valid reply with their ID, or none; the server
    then still answers correctly."""
    with udp_exchange(server.port) as exchange:
        fuzz(exchange, mutated(seed=20240601, count=UDP_PACKETS), tcp=False)
    still_answers(server.port)


def test_mutated_queries_over_tcp(server: ServerThread) -> None:
    """5,000 mutated queries over ten TCP connections each get a valid framed reply with their
    ID, or none; the server then still answers correctly."""
    packets = mutated(seed=20240602, count=TCP_PACKETS)
    per_connection = TCP_PACKETS // 10
    for start in range(0, TCP_PACKETS, per_connection):
        with tcp_exchange(server.port) as exchange:
            fuzz(exchange, packets[start : start + per_connection], tcp=True)
    still_answers(server.port)


@pytest.mark.parametrize(
    "stream",
    [
        b"\xff\xff" + b"\x00" * 100,  # a huge length, then silence and a hang-up
        b"\x00\x00" * 50,  # empty messages
        b"\x00\x05abc",  # a message cut short
        b"\x00",  # half a length prefix
        b"\x00\x0c" + b"\xff" * 12 + b"\x00\x02\xff\xff",  # a response, then a 2-byte message
    ],
    ids=["huge-length", "empty-messages", "short-message", "half-prefix", "response-then-runt"],
)
def test_broken_tcp_framing_then_hang_up(server: ServerThread, stream: bytes) -> None:
    """A TCP client whose framing is broken, then hangs up, gets no bogus reply and the server
    keeps answering."""
    with socket.create_connection((HOST, server.port), timeout=3) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65535) == b""
    still_answers(server.port)


# --- hypothesis ---------------------------------------------------------------------------------


@st.composite
def dns_like(draw: st.DrawFn) -> bytes:
    """A header with random flags and counts, a question of random labels (any length byte,
    pointers allowed), then random records or bytes."""
    header = struct.pack(
        "!6H",
        0,
        draw(st.integers(0, 0xFFFF)) & ~0x8000,
        draw(st.sampled_from([0, 1, 1, 1, 2, 0xFFFF])),
        draw(st.sampled_from([0, 0, 1, 0xFFFF])),
        draw(st.sampled_from([0, 0, 1, 0xFFFF])),
        draw(st.sampled_from([0, 1, 1, 2, 0xFFFF])),
    )
    labels = draw(st.lists(st.binary(max_size=70), max_size=6))
    name = b"".join(bytes([len(label) & 0xFF]) + label for label in labels)
    name += draw(st.sampled_from([b"\x00", b"\x00", b"\xc0\x0c", b"\xc0\x12", b""]))
    question = name + draw(st.binary(min_size=4, max_size=4))
    rest = draw(st.binary(max_size=80))
    opt = b"\x00\x00\x29" + draw(st.binary(min_size=8, max_size=8)) + draw(st.binary(max_size=20))
    return header + question + draw(st.sampled_from([b"", rest, opt]))


PACKETS = st.one_of(st.binary(max_size=600), dns_like())
HYPOTHESIS = settings(
    max_examples=1500,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_hypothesis_packets_over_udp(server: ServerThread) -> None:
    """Whatever hypothesis sends over UDP gets a valid reply with its ID, or none."""
    with udp_exchange(server.port) as exchange:

        @HYPOTHESIS
        @given(packet=PACKETS)
        def one(packet: bytes) -> None:
            batch = numbered([packet])
            check_replies(batch, exchange(batch), tcp=False)

        one()
    still_answers(server.port)


def test_hypothesis_packets_over_tcp(server: ServerThread) -> None:
    """Whatever hypothesis sends over one TCP connection gets a valid reply with its ID, or none."""
    with tcp_exchange(server.port) as exchange:

        @settings(HYPOTHESIS, max_examples=450)  # 2 messages each: under the 1,000 cap
        @given(packet=PACKETS)
        def one(packet: bytes) -> None:
            batch = numbered([packet])
            check_replies(batch, exchange(batch), tcp=True)

        one()
    still_answers(server.port)
