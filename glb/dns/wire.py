"""The DNS wire constants, in dnspython's style: header flags (`Flag`), the opcode and rcode
fields, rcodes, record types and classes, EDNS option codes, the header layout, the
sizes that bound a message, and the OPT record glb sends.

Every numeric DNS constant glb uses is defined here, once. The enums are for tables built once
and for reading; an enum member lookup costs several times a module-level int, so the hot paths
(`glb.dns.cache`, `glb.dns.memo`, `DnsAnswerer.answer_udp`) bind what they need as plain ints
(`_TC: Final = int(Flag.TC)`), and nothing computes with `Flag` members per query.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import Final


class Flag(IntFlag):
    """The single-bit fields of the header's flags word (RFC 1035 4.1.1, RFC 4035 3.2)."""

    QR = 0x8000  # a response
    AA = 0x0400  # authoritative answer
    TC = 0x0200  # truncated
    RD = 0x0100  # recursion desired
    RA = 0x0080  # recursion available
    Z = 0x0040  # reserved: zero in a query
    AD = 0x0020  # authentic data
    CD = 0x0010  # checking disabled


OPCODE_MASK: Final = 0x7800  # the opcode's 4 bits in the flags word (0: QUERY, all glb answers)
RCODE_MASK: Final = 0x000F  # the rcode's low 4 bits; the high 8 travel in the OPT TTL
EXTENDED_RCODE_SHIFT: Final = 4  # rcode >> 4: the OPT TTL's high byte (RFC 6891 6.1.3)
COPIED_FLAGS: Final = OPCODE_MASK | int(Flag.RD | Flag.CD)  # what a reply copies from its query


class Rcode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # extended: its high bits travel in the OPT TTL (RFC 6891)
    BADCOOKIE = 23  # extended (RFC 7873): glb never sends it, see `glb.dns.cookies`


class RdataType(IntEnum):
    """Record types (and the query-only types IXFR, AXFR and ANY)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    HINFO = 13
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    DS = 43
    DNSKEY = 48
    SVCB = 64
    HTTPS = 65
    IXFR = 251
    AXFR = 252
    ANY = 255
    CAA = 257


class RdataClass(IntEnum):
    IN = 1
    CH = 3  # CHAOS: server identification (RFC 4892)


class OptionType(IntEnum):
    """EDNS option codes (RFC 6891)."""

    ECS = 8  # client subnet (RFC 7871)
    COOKIE = 10  # DNS Cookies (RFC 7873)


DO_BIT: Final = 0x8000  # DNSSEC OK: the top bit of the OPT TTL's flags (RFC 3225)


HEADER: Final = struct.Struct("!6H")  # ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
HEADER_SIZE: Final = 12
QTYPE_QCLASS: Final = struct.Struct("!HH")  # a question's type and class, after its name
CLASSIC_PAYLOAD: Final = 512  # the UDP limit without EDNS (RFC 1035 2.3.4)
EDNS_PAYLOAD: Final = 1232  # what glb advertises, and the most it sends over UDP
MAX_NAME: Final = 255  # octets of a name on the wire (RFC 1035 2.3.4)
MAX_LABEL: Final = 63  # octets of a label; a length byte over it is no plain label
POINTER: Final = 0xC0  # a length byte with both top bits set starts a compression pointer
QUESTION_POINTER: Final = (POINTER << 8) | HEADER_SIZE  # a pointer to the question's name
EDNS_VERSION: Final = 0  # the only version glb speaks: others get BADVERS

# glb's OPT record: the root, type OPT, our payload size, extended rcode 0, version 0, no options
OPT_RECORD: Final = b"\x00" + struct.pack("!HHIH", RdataType.OPT, EDNS_PAYLOAD, 0, 0)


def udp_limit(payload: int) -> int:
    """The most bytes a UDP reply may take to a client advertising `payload` (-1: no EDNS): 512
    without EDNS, else the advertised size clamped to 512..1232 (no IP fragmentation on common
    paths)."""
    return max(CLASSIC_PAYLOAD, min(payload, EDNS_PAYLOAD))
