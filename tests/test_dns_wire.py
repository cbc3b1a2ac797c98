"""The DNS wire constants (glb.dns.wire) against dnspython's, and the UDP size rule."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from glb.dns.wire import (
    CLASSIC_PAYLOAD,
    COPIED_FLAGS,
    EDNS_PAYLOAD,
    HEADER,
    HEADER_SIZE,
    OPCODE_MASK,
    OPT_RECORD,
    Flag,
    OptionType,
    Rcode,
    RdataClass,
    RdataType,
    udp_limit,
)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Flag, dns.flags.Flag),
        (Rcode, dns.rcode.Rcode),
        (RdataType, dns.rdatatype.RdataType),
        (RdataClass, dns.rdataclass.RdataClass),
        (OptionType, dns.edns.OptionType),
    ],
)
def test_every_value_is_dnspythons(ours, theirs):
    """Each member has the value dnspython gives the same name (Z, reserved, has none there)."""
    for member in ours:
        if member.name in theirs.__members__:
            assert member.value == theirs[member.name].value, member.name
        else:
            assert member is Flag.Z


def test_header_layout():
    """The opcode mask holds exactly dnspython's opcodes; a reply copies opcode, RD and CD."""
    assert HEADER.size == HEADER_SIZE == 12
    assert all(dns.opcode.to_flags(op) & ~OPCODE_MASK == 0 for op in dns.opcode.Opcode)
    assert OPCODE_MASK == 0xF << 11  # 4 bits from bit 11 (RFC 1035 4.1.1)
    assert COPIED_FLAGS == OPCODE_MASK | dns.flags.RD | dns.flags.CD


def test_our_opt_record_as_dnspython_reads_it():
    """OPT_RECORD: EDNS version 0, payload 1232, no options, at the root."""
    query = dns.message.make_query("example.test", "A")
    wire = query.to_wire()
    with_opt = wire[:11] + b"\x01" + wire[12:] + OPT_RECORD  # ARCOUNT 1
    parsed = dns.message.from_wire(with_opt)
    assert parsed.edns == 0
    assert parsed.payload == EDNS_PAYLOAD
    assert parsed.options == ()


@pytest.mark.parametrize(
    ("payload", "limit"),
    [(-1, 512), (0, 512), (511, 512), (512, 512), (1000, 1000), (1232, 1232), (4096, 1232)],
)
def test_udp_limit(payload, limit):
    """512 without EDNS; else the advertised size clamped to 512..1232."""
    assert udp_limit(payload) == limit
    assert CLASSIC_PAYLOAD <= udp_limit(payload) <= EDNS_PAYLOAD
