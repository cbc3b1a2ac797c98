"""Parsing a DNS query for the full path: the header, the single question and the OPT record.

`parse_query` turns a message whose header is known to be readable into a `DnsQuery` (its ID,
flags, `Question` and `Edns`), or raises `Malformed` carrying the question when it was read, for
a FORMERR reply that echoes it.

Pure: no sockets, no asyncio.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from dnslib import DNSBuffer, DNSLabel

from glb.dns.cookies import MalformedCookie, check_cookie
from glb.dns.ecs import Address, ClientSubnet, MalformedSubnet, parse_client_subnet
from glb.dns.wire import (
    DO_BIT,
    HEADER,
    MAX_LABEL,
    MAX_NAME,
    QTYPE_QCLASS,
    OptionType,
    RdataType,
    udp_limit,
)
from glb.dns.zone import Key

_ECS: Final = int(OptionType.ECS)
_COOKIE: Final = int(OptionType.COOKIE)
_ADDITIONAL = 2  # the index of the additional section among the three record sections


@dataclass(frozen=True, slots=True)
class Question:
    name: DNSLabel  # as sent: the reply echoes its case
    key: Key  # lowercased labels, for lookups
    qtype: int
    qclass: int

    @property
    def owner(self) -> DNSLabel:
        """The name in lowercase: what replies are packed with (see `glb.dns.render.pack`)."""
        return DNSLabel(list(self.key))


@dataclass(frozen=True, slots=True)
class Edns:
    payload: int  # the client's advertised UDP payload size
    version: int
    subnet: ClientSubnet | None = None  # EDNS Client Subnet (RFC 7871)
    do: bool = False  # DNSSEC OK (RFC 3225): the reply's OPT copies it
    cookie: bytes | None = None  # the COOKIE option's data (RFC 7873), well-formed


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """A parsed DNS query: what the full path resolves and renders a reply for."""

    id: int
    flags: int
    question: Question
    edns: Edns | None

    def udp_limit(self) -> int:
        return udp_limit(-1 if self.edns is None else self.edns.payload)


class Malformed(Exception):
    """The query cannot be answered normally: reply FORMERR, with the question if it was read."""

    def __init__(self, question: Question | None, reason: str, *, subnet: bool = False) -> None:
        super().__init__(reason)
        self.question = question
        self.subnet = subnet  # the fault is a malformed EDNS Client Subnet option


def client_address(query: DnsQuery, source: str | None) -> Address | None:
    """Who the client is (issue: the ECS address, truncated to its source prefix; without ECS or
    with source prefix 0, the query's `source` address); None if neither is known."""
    subnet = query.edns.subnet if query.edns is not None else None
    if subnet is not None and subnet.source:
        return subnet.address
    if source is None:
        return None
    try:
        return ipaddress.ip_address(source)
    except ValueError:  # e.g. a scoped link-local address "fe80::1%eth0"
        return ipaddress.ip_address(source.partition("%")[0])


def parse_query(wire: bytes) -> DnsQuery:
    """Parse a query whose header is known to be readable; raise Malformed on any defect."""
    buffer = DNSBuffer(wire)
    ident, flags, qdcount, ancount, nscount, arcount = buffer.unpack(HEADER.format)
    if qdcount != 1:
        raise Malformed(None, f"{qdcount} questions")
    try:
        question = read_question(buffer)
    except Exception as exc:  # dnslib raises many kinds on junk
        raise Malformed(None, f"bad question: {exc!r}") from exc
    try:
        edns = _read_edns(buffer, (ancount, nscount, arcount))
    except MalformedSubnet as exc:
        raise Malformed(question, str(exc), subnet=True) from exc
    except MalformedCookie as exc:
        raise Malformed(question, str(exc)) from exc
    except Exception as exc:
        raise Malformed(question, f"bad records: {exc!r}") from exc
    if buffer.remaining():
        raise Malformed(question, f"{buffer.remaining()} bytes of trailing data")
    return DnsQuery(ident, flags, question, edns)


def read_question(buffer: DNSBuffer) -> Question:
    name = buffer.decode_name()
    qtype, qclass = buffer.unpack(QTYPE_QCLASS.format)
    labels = name.label
    too_long = sum(len(x) + 1 for x in labels) >= MAX_NAME
    if too_long or any(len(label) > MAX_LABEL for label in labels):
        raise ValueError("name too long")
    return Question(name, tuple(label.lower() for label in labels), qtype, qclass)


def _read_edns(buffer: DNSBuffer, counts: tuple[int, int, int]) -> Edns | None:
    """Skip the answer, authority and additional records, keeping the one OPT (RFC 6891)."""
    found: list[Edns] = []
    for section, count in enumerate(counts):
        for _ in range(count):
            owner = buffer.decode_name()
            rtype, rclass, ttl, rdlength = buffer.unpack("!HHIH")
            rdata = buffer.get(rdlength)
            if rtype == RdataType.OPT:
                if section != _ADDITIONAL or owner.label:
                    raise ValueError("OPT outside the additional section or not at the root")
                subnet, cookie = _options(bytes(rdata))
                version = (ttl >> 16) & 0xFF  # the TTL's 2nd byte
                found.append(Edns(rclass, version, subnet, bool(ttl & DO_BIT), cookie))
    if len(found) > 1:
        raise ValueError("more than one OPT record")
    return found[0] if found else None


def _options(options: bytes) -> tuple[ClientSubnet | None, bytes | None]:
    """The ECS and COOKIE options among an OPT record's options, if any; `MalformedSubnet` or
    `MalformedCookie` if there are several of one or one is malformed, ValueError if the options
    do not fill the data exactly."""
    subnet: ClientSubnet | None = None
    cookie: bytes | None = None
    at = 0
    while at < len(options):
        if at + 4 > len(options):
            raise ValueError("an EDNS option cut short")
        code, length = (
            (options[at] << 8) | options[at + 1],
            (options[at + 2] << 8) | options[at + 3],
        )
        data = options[at + 4 : at + 4 + length]
        if len(data) != length:
            raise ValueError("an EDNS option longer than its record")
        if code == _ECS:
            if subnet is not None:
                raise MalformedSubnet("more than one ECS option")
            subnet = parse_client_subnet(data)
        elif code == _COOKIE:
            if cookie is not None:
                raise MalformedCookie("more than one COOKIE option")
            check_cookie(data)
            cookie = data
        at += 4 + length
    return subnet, cookie
