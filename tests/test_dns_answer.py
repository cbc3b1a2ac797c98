"""DnsAnswerer: DNS wire in, wire out, no sockets; replies are parsed with dnspython."""

from __future__ import annotations

import logging
import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glb.core.health import Health
from glb.core.snapshot import HealthSnapshot
from glb.dns.answerer import DnsAnswerer
from tests.dns_helpers import (
    SERIAL,
    ZONE,
    Box,
    addresses,
    ask,
    make_answerer,
    make_query,
    make_topology,
    snapshot_of,
)

TOPOLOGY = make_topology()
APP = f"app.{ZONE}"


@pytest.fixture
def box() -> Box:
    return Box(snapshot_of(TOPOLOGY))


@pytest.fixture
def answerer(box: Box) -> DnsAnswerer:
    return make_answerer(TOPOLOGY, box)


def raw(
    body: bytes = b"",
    *,
    ident: int = 0x1234,
    flags: int = 0x0100,
    counts: tuple[int, int, int, int] = (1, 0, 0, 0),
) -> bytes:
    """A hand-made DNS message: header fields as given, then `body` verbatim."""
    return struct.pack("!6H", ident, flags, *counts) + body


def wire_name(name: str) -> bytes:
    wire = dns.name.from_text(name).to_wire()
    assert wire is not None
    return wire


QUESTION_APP_A = wire_name(APP) + struct.pack("!HH", 1, 1)
OPT_RR = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def reply_to(answerer: DnsAnswerer, wire: bytes, *, tcp: bool = False) -> dns.message.Message:
    out = answerer.answer(wire, tcp=tcp)
    assert out is not None
    return dns.message.from_wire(out)


def soa_of(reply: dns.message.Message):
    (rrset,) = reply.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    return rrset


# ---------------------------------------------------------------------------------------------
# Service names


def test_a_query_answers_the_preferred_ipv4_endpoint(answerer):
    """An A query for a service returns its IPv4 answer with the service TTL, AA set, RA clear."""
    reply = ask(answerer, APP, "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == ["192.0.2.1"]
    assert reply.answer[0].ttl == 15
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA
    assert reply.flags & dns.flags.RD


def test_aaaa_query_answers_ipv6_endpoints(answerer):
    """An AAAA query for a service is steered over the IPv6 endpoints only."""
    reply = ask(answerer, APP, "AAAA")
    assert addresses(reply) == ["2001:db8::1"]
    assert reply.answer[0].rdtype == dns.rdatatype.AAAA


def test_query_name_case_is_preserved(answerer):
    """The reply echoes the query name's exact case in the question and the answer owner."""
    reply = ask(answerer, "ApP.GlB.example.TEST", "A")
    assert reply.question[0].name.to_text() == "ApP.GlB.example.TEST."
    assert reply.answer[0].name.to_text() == "ApP.GlB.example.TEST."
    assert addresses(reply) == ["192.0.2.1"]


def test_rd_is_copied_from_the_query(answerer):
    """RD in the reply mirrors RD in the query."""
    query = make_query(APP)
    query.flags &= ~dns.flags.RD
    reply = reply_to(answerer, query.to_wire())
    assert not reply.flags & dns.flags.RD
    assert addresses(reply) == ["192.0.2.1"]


@pytest.mark.parametrize(
    ("down", "expected"),
    [
        pytest.param(set(), ["192.0.2.1"], id="all-up"),
        pytest.param({"192.0.2.1"}, ["192.0.2.2"], id="primary-down"),
        pytest.param({"192.0.2.2"}, ["192.0.2.1"], id="secondary-down"),
    ],
)
def test_failover_answers_the_best_healthy_tier(box, answerer, down, expected):
    """Failover answers the lowest priority tier that has a healthy endpoint."""
    box.current = snapshot_of(TOPOLOGY, states=dict.fromkeys(down, Health.DOWN))
    assert addresses(ask(answerer, APP)) == expected


def test_latency_policy_answers_the_fastest_endpoint(box, answerer):
    """The latency policy answers the endpoint with the lowest probe latency."""
    latencies = {"192.0.2.1": 0.100, "192.0.2.2": 0.010, "192.0.2.3": 0.050}
    box.current = snapshot_of(TOPOLOGY, latencies=latencies)
    assert addresses(ask(answerer, f"fast.{ZONE}")) == ["192.0.2.2"]


def test_round_robin_rotates_per_query(answerer):
    """Round robin advances by one endpoint for each query of the service."""
    seen = [addresses(ask(answerer, f"rr.{ZONE}"))[0] for _ in range(4)]
    assert seen == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"]


def test_a_new_snapshot_changes_the_answer(box, answerer):
    """Each query reads the snapshot published most recently."""
    assert addresses(ask(answerer, APP)) == ["192.0.2.1"]
    box.current = snapshot_of(TOPOLOGY, states={"192.0.2.1": Health.DOWN})
    assert addresses(ask(answerer, APP)) == ["192.0.2.2"]


def test_all_down_return_all_fails_open(box, answerer):
    """With every endpoint down, a return_all service still answers its preferred endpoints."""
    box.current = snapshot_of(TOPOLOGY, default=Health.DOWN)
    reply = ask(answerer, APP)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == ["192.0.2.1"]


def test_all_down_servfail_answers_servfail(box, answerer):
    """With every endpoint down, a servfail service answers SERVFAIL without AA."""
    box.current = snapshot_of(TOPOLOGY, default=Health.DOWN)
    reply = ask(answerer, f"strict.{ZONE}")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.answer
    assert not reply.flags & dns.flags.AA


def test_all_down_no_answer_answers_nodata(box, answerer):
    """With every endpoint down, a no_answer service answers NOERROR with no records and the SOA."""
    box.current = snapshot_of(TOPOLOGY, default=Health.DOWN)
    reply = ask(answerer, f"quiet.{ZONE}")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert soa_of(reply).name.to_text() == f"{ZONE}."


@pytest.mark.parametrize(
    "drain",
    [
        pytest.param({"drained_clusters": frozenset({"eu"})}, id="cluster"),
        pytest.param({"drained_endpoints": frozenset({(APP, "eu")})}, id="endpoint"),
    ],
)
def test_drained_endpoints_are_not_answered(box, answerer, drain):
    """A drained cluster or service endpoint is skipped even though it is healthy."""
    box.current = snapshot_of(TOPOLOGY, **drain)
    assert addresses(ask(answerer, APP)) == ["192.0.2.2"]


def test_drained_everything_under_return_all_answers_nodata(box, answerer):
    """Failing open never hands out drained endpoints: with all drained, the answer is NODATA."""
    box.current = snapshot_of(TOPOLOGY, drained_clusters=frozenset({"eu", "us"}))
    reply = ask(answerer, APP)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert soa_of(reply)


def test_family_without_endpoints_is_nodata_not_servfail(answerer):
    """AAAA for an IPv4-only servfail service is NODATA: there is nothing down, only nothing."""
    reply = ask(answerer, f"v4.{ZONE}", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert soa_of(reply)


def test_unexpected_error_answers_servfail_and_logs(caplog):
    """An exception while answering a well-formed query is logged with its traceback and
    answered SERVFAIL with the question."""

    def broken() -> HealthSnapshot:
        raise RuntimeError("monitor exploded")

    answerer = DnsAnswerer(TOPOLOGY, broken)
    with caplog.at_level(logging.ERROR, logger="glb.dns.answerer"):
        reply = ask(answerer, APP)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert reply.question[0].name.to_text() == f"{APP}."
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "monitor exploded" in str(record.exc_info[1])
    assert ask(answerer, f"ns1.{ZONE}").rcode() == dns.rcode.NOERROR


# ---------------------------------------------------------------------------------------------
# Zone data: apex, nameservers, negative answers


def test_apex_soa(answerer):
    """The apex SOA names the first nameserver and the hostmaster, with the zone's timers."""
    reply = ask(answerer, ZONE, "SOA")
    (rrset,) = reply.answer
    (soa,) = rrset
    assert rrset.ttl == 600
    assert soa.mname.to_text() == f"ns1.{ZONE}."
    assert soa.rname.to_text() == "dns-admin.example.test."
    assert (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum) == (
        SERIAL,
        3600,
        600,
        604800,
        45,
    )
    assert reply.flags & dns.flags.AA


def test_apex_ns_with_glue(answerer):
    """The apex NS answer lists every nameserver and adds glue for the in-zone ones only."""
    reply = ask(answerer, ZONE, "NS")
    (rrset,) = reply.answer
    assert rrset.ttl == 600
    assert sorted(rd.target.to_text() for rd in rrset) == [
        "ns.provider.test.",
        f"ns1.{ZONE}.",
        f"ns2.{ZONE}.",
    ]
    glue = {(r.name.to_text(), r.rdtype, r[0].address, r.ttl) for r in reply.additional}
    assert glue == {
        (f"ns1.{ZONE}.", dns.rdatatype.A, "192.0.2.53", 600),
        (f"ns2.{ZONE}.", dns.rdatatype.AAAA, "2001:db8::53", 600),
    }


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        pytest.param(f"ns1.{ZONE}", "A", ["192.0.2.53"], id="ns1-A"),
        pytest.param(f"ns2.{ZONE}", "AAAA", ["2001:db8::53"], id="ns2-AAAA"),
        pytest.param(f"ns1.{ZONE}", "AAAA", [], id="ns1-AAAA-nodata"),
    ],
)
def test_in_zone_nameserver_addresses(answerer, name, rdtype, expected):
    """A/AAAA for an in-zone nameserver return its configured address, else NODATA."""
    reply = ask(answerer, name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert addresses(reply) == expected


def test_service_at_the_apex(answerer):
    """A service at a zone apex answers A from steering while SOA and NS stay zone data."""
    assert addresses(ask(answerer, "apex.test", "A")) == ["192.0.2.3"]
    assert ask(answerer, "apex.test", "AAAA").answer == []
    ns = ask(answerer, "apex.test", "NS")
    assert [rd.target.to_text() for rd in ns.answer[0]] == ["ns.apex.test."]
    assert ns.additional[0][0].address == "198.51.100.53"
    assert ask(answerer, "apex.test", "SOA").answer[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f"nope.{ZONE}", id="unknown"),
        pytest.param(f"x.app.{ZONE}", id="below-a-service"),
        pytest.param(f"x.y.ns1.{ZONE}", id="below-a-nameserver"),
        pytest.param(f"www.www.eu.{ZONE}", id="below-a-deep-service"),
    ],
)
def test_unknown_name_in_zone_is_nxdomain_with_soa(answerer, name):
    """An unknown name inside a zone is NXDOMAIN with the SOA at TTL min(ttl, negative_ttl)."""
    reply = ask(answerer, name)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AA
    soa = soa_of(reply)
    assert soa.name.to_text() == f"{ZONE}."
    assert soa.ttl == 45
    assert soa[0].minimum == 45


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        pytest.param(f"eu.{ZONE}", "A", id="empty-non-terminal"),
        pytest.param(f"EU.{ZONE}", "AAAA", id="empty-non-terminal-case"),
        pytest.param(APP, "TXT", id="service-txt"),
        pytest.param(APP, "MX", id="service-mx"),
        pytest.param(APP, "SOA", id="soa-below-apex"),
        pytest.param(APP, "NS", id="ns-below-apex"),
        pytest.param(f"ns1.{ZONE}", "SOA", id="nameserver-soa"),
        pytest.param(ZONE, "A", id="apex-without-service"),
        pytest.param(ZONE, "CNAME", id="apex-cname"),
    ],
)
def test_existing_name_with_missing_type_is_nodata(answerer, name, rdtype):
    """A name that exists (incl. empty non-terminals) but lacks the type is NODATA with SOA."""
    reply = ask(answerer, name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert not reply.answer
    assert soa_of(reply).ttl == 45


def test_longest_matching_zone_wins(answerer):
    """In a nested zone, names take that zone's SOA and data, not the parent's."""
    assert addresses(ask(answerer, f"svc.nested.{ZONE}")) == ["192.0.2.2"]
    reply = ask(answerer, f"nope.nested.{ZONE}")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    soa = soa_of(reply)
    assert (soa.name.to_text(), soa.ttl) == (f"nested.{ZONE}.", 20)
    apex = ask(answerer, f"nested.{ZONE}", "NS")
    assert [rd.target.to_text() for rd in apex.answer[0]] == [f"ns1.{ZONE}."]
    assert apex.answer[0].ttl == 20


@pytest.mark.parametrize(
    "name", ["example.org", "example.test", "test", ".", f"{ZONE}.evil.org", "lb.example.test"]
)
def test_name_outside_every_zone_is_refused(answerer, name):
    """A name outside every configured zone is REFUSED without AA."""
    reply = ask(answerer, name)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert not reply.authority


@pytest.mark.parametrize("rdclass", [dns.rdataclass.CH, dns.rdataclass.ANY, 1234])
def test_non_in_class_is_refused(answerer, rdclass):
    """A query in a class other than IN is REFUSED."""
    query = dns.message.make_query(APP, "A", rdclass=rdclass)
    reply = reply_to(answerer, query.to_wire())
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.question[0].rdclass == rdclass


@pytest.mark.parametrize("name", ["id.server", "HOSTNAME.bind"])
def test_chaos_id_server_names_the_answering_process(box, name):
    """CH TXT id.server and hostname.bind answer the server id; other CH queries stay REFUSED."""
    answerer = DnsAnswerer(TOPOLOGY, box, random.Random(7), server_id="glb-42 worker 1")
    query = dns.message.make_query(name, "TXT", rdclass=dns.rdataclass.CH)
    reply = reply_to(answerer, query.to_wire())
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert rrset.rdclass == dns.rdataclass.CH
    assert [b"".join(item.strings) for item in rrset] == [b"glb-42 worker 1"]
    for other, rdtype in (("version.bind", "TXT"), (name, "A")):
        query = dns.message.make_query(other, rdtype, rdclass=dns.rdataclass.CH)
        assert reply_to(answerer, query.to_wire()).rcode() == dns.rcode.REFUSED
    unnamed = DnsAnswerer(TOPOLOGY, box, random.Random(7))  # no server id: REFUSED as before
    query = dns.message.make_query(name, "TXT", rdclass=dns.rdataclass.CH)
    assert reply_to(unnamed, query.to_wire()).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(answerer, rdtype):
    """Zone transfers are not offered."""
    assert ask(answerer, ZONE, rdtype, tcp=True).rcode() == dns.rcode.REFUSED


# ---------------------------------------------------------------------------------------------
# ANY (RFC 8482)


def test_any_at_a_service_answers_its_a_set_only(answerer):
    """ANY for a service answers only its A answer, never every type at the name."""
    reply = ask(answerer, APP, "ANY")
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.A]
    assert addresses(reply) == ["192.0.2.1"]


def test_any_at_an_ipv6_only_service_answers_its_aaaa_set(answerer):
    """ANY for a service with no IPv4 endpoint answers its AAAA answer."""
    reply = ask(answerer, f"big.{ZONE}", "ANY", tcp=True)
    assert {r.rdtype for r in reply.answer} == {dns.rdatatype.AAAA}


def test_any_with_nothing_to_answer_synthesizes_hinfo(box, answerer):
    """ANY at a service with no answer synthesizes the RFC 8482 HINFO."""
    box.current = snapshot_of(TOPOLOGY, default=Health.DOWN)
    reply = ask(answerer, f"strict.{ZONE}", "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert rrset.rdtype == dns.rdatatype.HINFO
    assert (rrset[0].cpu, rrset[0].os) == (b"RFC8482", b"")


def test_any_elsewhere_answers_one_rrset_or_nodata(answerer):
    """ANY at the apex answers one record set; at an empty non-terminal it is NODATA."""
    apex = ask(answerer, ZONE, "ANY")
    assert [r.rdtype for r in apex.answer] == [dns.rdatatype.SOA]
    ent = ask(answerer, f"eu.{ZONE}", "ANY")
    assert (ent.rcode(), ent.answer) == (dns.rcode.NOERROR, [])
    assert soa_of(ent)


# ---------------------------------------------------------------------------------------------
# EDNS and truncation


def test_opt_is_echoed_when_the_query_has_one(answerer):
    """A query with EDNS gets an OPT (version 0, our payload 1232); one without gets none."""
    with_edns = ask(answerer, APP, edns=0, payload=4096)
    assert with_edns.edns == 0
    assert with_edns.payload == 1232
    assert not with_edns.ednsflags & dns.flags.DO
    assert ask(answerer, APP).edns == -1


def test_edns_version_above_zero_is_badvers(answerer):
    """An EDNS version above 0 is answered BADVERS (extended rcode) with an OPT of version 0."""
    reply = ask(answerer, APP, edns=1)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.flags & 0xF == 0
    assert reply.edns == 0
    assert not reply.answer


def test_the_do_bit_is_copied_into_badvers_too(answerer):
    """RFC 3225 3: DO set in the query, DO set in the reply, BADVERS included; clear if not."""
    for dnssec in (True, False):
        query = dns.message.make_query(APP, "A", use_edns=1, want_dnssec=dnssec)
        reply = dns.message.from_wire(answerer.answer(query.to_wire(), False) or b"")
        assert reply.rcode() == dns.rcode.BADVERS
        assert bool(reply.ednsflags & dns.flags.DO) is dnssec


def test_two_opt_records_are_formerr(answerer):
    """A query with more than one OPT record is FORMERR."""
    wire = raw(QUESTION_APP_A + OPT_RR + OPT_RR, counts=(1, 0, 0, 2))
    reply = reply_to(answerer, wire)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == 0x1234


@pytest.mark.parametrize(
    ("edns", "payload"),
    [
        pytest.param(-1, 512, id="no-edns"),
        pytest.param(0, 512, id="edns-512"),
        pytest.param(0, 1232, id="edns-1232"),
        pytest.param(0, 4096, id="edns-4096-clamped"),
    ],
)
def test_oversized_udp_reply_is_truncated_keeping_the_question(answerer, edns, payload):
    """Over UDP a reply above the size limit is TC=1 with the question and no records."""
    query = make_query(f"Big.{ZONE}", "AAAA", edns=edns, payload=payload)
    wire = answerer.answer(query.to_wire(), tcp=False)
    assert wire is not None
    assert len(wire) <= max(512, min(payload, 1232))
    reply = dns.message.from_wire(wire)
    assert query.is_response(reply)
    assert reply.flags & dns.flags.TC
    assert reply.question[0].name.to_text() == f"Big.{ZONE}."
    assert (reply.answer, reply.authority) == ([], [])
    assert reply.edns == edns


def test_the_same_query_over_tcp_gets_the_full_answer(answerer):
    """Over TCP there is no size limit: all 64 addresses come back without TC."""
    reply = ask(answerer, f"big.{ZONE}", "AAAA", tcp=True, edns=0, payload=512)
    assert not reply.flags & dns.flags.TC
    assert len(addresses(reply)) == 64


def test_small_advertised_payload_is_raised_to_512(answerer):
    """A client advertising less than 512 bytes still gets up to 512 bytes over UDP."""
    reply = ask(answerer, ZONE, "NS", edns=0, payload=100)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 3


# ---------------------------------------------------------------------------------------------
# Malformed and unsupported messages


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00", id="11-bytes"),
        pytest.param(raw(QUESTION_APP_A, flags=0x8100), id="response"),
        pytest.param(raw(b"", flags=0x8000, counts=(0, 0, 0, 0)), id="empty-response"),
    ],
)
def test_unanswerable_messages_are_dropped(answerer, wire):
    """Messages shorter than a header, and responses (QR=1), get no reply at all."""
    assert answerer.answer(wire, tcp=False) is None


@pytest.mark.parametrize(
    ("wire", "keeps_question"),
    [
        pytest.param(raw(counts=(0, 0, 0, 0)), False, id="no-question"),
        pytest.param(raw(QUESTION_APP_A * 2, counts=(2, 0, 0, 0)), False, id="two-questions"),
        pytest.param(raw(QUESTION_APP_A[:-3]), False, id="cut-question"),
        pytest.param(raw(b"\x03app"), False, id="cut-name"),
        pytest.param(raw(b"\xc0\x0c" + b"\x00\x01\x00\x01"), False, id="pointer-loop"),
        pytest.param(raw(b"\xc0\x20" + b"\x00\x01\x00\x01"), False, id="forward-pointer"),
        pytest.param(raw(b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"), False, id="label-64"),
        pytest.param(
            raw(b"\x3fa" + b"\x3f" + b"a" * 63 * 4 + b"\x00\x00\x01\x00\x01"),
            False,
            id="name-too-long",
        ),
        pytest.param(raw(QUESTION_APP_A + b"junk"), True, id="trailing-garbage"),
        pytest.param(raw(QUESTION_APP_A, counts=(1, 3, 0, 0)), True, id="bogus-answer-count"),
        pytest.param(raw(QUESTION_APP_A, counts=(1, 0, 0, 1)), True, id="bogus-additional"),
        pytest.param(raw(QUESTION_APP_A + OPT_RR[:-2]), True, id="cut-opt"),
        pytest.param(raw(QUESTION_APP_A + OPT_RR, counts=(1, 1, 0, 0)), True, id="opt-in-answer"),
        pytest.param(
            raw(QUESTION_APP_A + b"\x01x" + OPT_RR[1:], counts=(1, 0, 0, 1)),
            True,
            id="opt-not-at-root",
        ),
    ],
)
def test_malformed_queries_are_formerr(answerer, wire, keeps_question):
    """A malformed query with a readable header is FORMERR, echoing the ID and the question only
    when it could be read."""
    reply = reply_to(answerer, wire)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == 0x1234
    assert bool(reply.question) is keeps_question
    assert not reply.answer


def test_a_formerr_does_not_stop_the_next_query(answerer):
    """After junk, the next valid query is answered normally."""
    assert reply_to(answerer, raw(b"\xff" * 40)).rcode() == dns.rcode.FORMERR
    assert addresses(ask(answerer, APP)) == ["192.0.2.1"]


@pytest.mark.parametrize(
    "opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE]
)
def test_opcodes_other_than_query_are_notimp(answerer, opcode):
    """Any opcode but QUERY is answered NOTIMP, header only, with the opcode echoed."""
    flags = dns.opcode.to_flags(opcode)
    reply = reply_to(answerer, raw(wire_name(ZONE) + struct.pack("!HH", 6, 1), flags=flags))
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == opcode
    assert reply.id == 0x1234
    assert (reply.question, reply.answer) == ([], [])


# ---------------------------------------------------------------------------------------------
# Robustness: nothing thrown at answer() makes it raise


def _valid_queries() -> list[bytes]:
    queries = [
        make_query(APP, "A"),
        make_query(ZONE, "NS", edns=0),
        make_query(f"big.{ZONE}", "AAAA", edns=0, payload=600),
        make_query(f"nope.{ZONE}", "TXT"),
        make_query("example.org", "ANY", edns=0),
    ]
    for query in queries:
        query.id = 0xBEEF
    return [q.to_wire() for q in queries]


VALID = _valid_queries()


def _check_never_raises(answerer: DnsAnswerer, wire: bytes) -> None:
    for tcp in (False, True):
        out = answerer.answer(wire, tcp=tcp)
        if out is None:
            assert len(wire) < 12 or wire[2] & 0x80
            continue
        reply = dns.message.from_wire(out)
        assert reply.id == struct.unpack_from("!H", wire)[0]
        assert reply.flags & dns.flags.QR
        if not tcp:
            assert len(out) <= 1232


def _mutate(rnd: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(4)
        position = rnd.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(position, len(data) - 1)] = rnd.randrange(256)
        elif kind == 1:
            data[position:position] = rnd.randbytes(rnd.randint(1, 8))
        elif kind == 2:
            del data[position : position + rnd.randint(1, 8)]
        else:
            data[2] &= 0x7F  # keep it a query so more of it gets parsed
    return bytes(data)


def test_seeded_mutations_never_raise(answerer, caplog):
    """Thousands of mutated valid queries never make answer() raise or fail internally; every
    reply parses."""
    rnd = random.Random(20240101)
    with caplog.at_level(logging.ERROR):
        for _ in range(3000):
            _check_never_raises(answerer, _mutate(rnd, rnd.choice(VALID)))
    assert not caplog.records


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    """Arbitrary bytes never make answer() raise; any reply parses and echoes the ID."""
    _check_never_raises(make_answerer(TOPOLOGY), data)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_byte_flipped_queries_never_raise(wire, flips):
    """Valid queries with bytes overwritten never make answer() raise; any reply parses."""
    data = bytearray(wire)
    for position, value in flips:
        data[position % len(data)] = value
    _check_never_raises(make_answerer(TOPOLOGY), bytes(data))
