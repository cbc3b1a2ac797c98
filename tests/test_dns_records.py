"""Static zone records (`zones[].records`) answered by a running glb over real UDP and TCP sockets:
every type, CNAME chains (to static data, to a steered service, out of the zones, to nothing),
referrals at a delegation, wildcards, and a reload adding a record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ClusterProcess, write_config
from tests.dns_helpers import addresses, query_over

LONG = "v=DKIM1; p=" + "A" * 300  # one value over 255 bytes: split into two strings
IODEF = "mailto:x@glb.test"
PROBE = "{type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}"
RECORDS = f"""\
    records:
      - {{name: "@", type: MX, values: ["10 mail.glb.test.", "20 mx.example.org."]}}
      - {{name: mail, type: A, values: 192.0.2.25}}
      - {{name: mail, type: AAAA, values: "2001:db8::25"}}
      - {{name: "@", type: TXT, values: [["part one", "part two"], "v=spf1 -all"]}}
      - {{name: dkim._domainkey, type: TXT, ttl: 60, values: "{LONG}"}}
      - {{name: "@", type: CAA, values: ['0 issue "letsencrypt.org"', '128 iodef "{IODEF}"']}}
      - {{name: _sip._tcp, type: SRV, values: "10 5 5060 mail.glb.test."}}
      - {{name: 4.2.0.192.in-addr, type: PTR, values: mail.glb.test.}}
      - {{name: www, type: CNAME, values: app.glb.test.}}
      - {{name: alias, type: CNAME, values: www.glb.test.}}
      - {{name: static, type: CNAME, values: mail.glb.test.}}
      - {{name: away, type: CNAME, values: www.example.org.}}
      - {{name: dangling, type: CNAME, values: nothing.glb.test.}}
      - {{name: child, type: NS, values: [ns1.child.glb.test., ns.example.org.]}}
      - {{name: ns1.child, type: A, values: 192.0.2.53}}
      - {{name: "*.apps", type: A, values: 192.0.2.80}}
      - {{name: "*.apps", type: TXT, values: wildcard}}
      - {{name: real.apps, type: TXT, values: real}}
      - {{name: x.ent.apps, type: TXT, values: below an empty non-terminal}}
"""


def config(directory: Path, clusters: list[ClusterProcess], records: str = RECORDS) -> Path:
    """`tests.clusters.write_config`'s glb.yaml (app.glb.test, failover) with `records`."""
    path = write_config(directory, clusters, probe=PROBE)
    nameservers = "    nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]\n"
    path.write_text(path.read_text().replace(nameservers, nameservers + records))
    return path


@pytest.fixture
async def glb(tmp_path: Path, clusters) -> AsyncIterator[tuple[Running, Path]]:
    path = config(tmp_path, clusters)
    async with running(load_settings(path), load=lambda: load_settings(path)) as started:
        yield started, path


async def both(glb: Running, name: str, rdtype: str = "A") -> dns.message.Message:
    """The reply over UDP, checked to be the same over TCP."""
    udp = await query_over(glb.dns_addr, name, rdtype)
    tcp = await query_over(glb.dns_addr, name, rdtype, tcp=True)
    assert (udp.rcode(), udp.flags, udp.answer, udp.authority, udp.additional) == (
        tcp.rcode(),
        tcp.flags,
        tcp.answer,
        tcp.authority,
        tcp.additional,
    )
    return udp


def texts(reply: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("glb.test", "MX", ["10 mail.glb.test.", "20 mx.example.org."]),
        ("mail.glb.test", "A", ["192.0.2.25"]),
        ("mail.glb.test", "AAAA", ["2001:db8::25"]),
        ("glb.test", "TXT", ['"part one" "part two"', '"v=spf1 -all"']),
        ("glb.test", "CAA", ['0 issue "letsencrypt.org"', '128 iodef "mailto:x@glb.test"']),
        ("_sip._tcp.glb.test", "SRV", ["10 5 5060 mail.glb.test."]),
        ("4.2.0.192.in-addr.glb.test", "PTR", ["mail.glb.test."]),
        ("www.glb.test", "CNAME", ["app.glb.test."]),
    ],
)
async def test_each_type_is_answered_as_configured(glb, name, rdtype, expected):
    running_glb, _ = glb
    reply = await both(running_glb, name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply) == expected
    assert reply.answer[0].ttl == 300  # the zone's ttl


async def test_mx_and_srv_answers_carry_their_targets_addresses(glb):
    running_glb, _ = glb
    for name, rdtype in (("glb.test", "MX"), ("_sip._tcp.glb.test", "SRV")):
        reply = await both(running_glb, name, rdtype)
        extra = sorted(rd.to_text() for rrset in reply.additional for rd in rrset)
        assert extra == ["192.0.2.25", "2001:db8::25"]


async def test_a_long_txt_value_is_split_into_255_byte_strings(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "dkim._domainkey.glb.test", "TXT")
    [rrset] = reply.answer
    assert rrset.ttl == 60
    [txt] = list(rrset)
    assert [len(s) for s in txt.strings] == [255, len(LONG) - 255]
    assert b"".join(txt.strings).decode() == LONG


async def test_a_cname_chain_to_static_data(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "static.glb.test", "AAAA")
    assert [(r.name.to_text(), r.rdtype) for r in reply.answer] == [
        ("static.glb.test.", dns.rdatatype.CNAME),
        ("mail.glb.test.", dns.rdatatype.AAAA),
    ]
    assert addresses(reply) == ["2001:db8::25"]
    nodata = await both(running_glb, "static.glb.test", "TXT")  # the last name's NODATA
    assert nodata.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in nodata.answer] == [dns.rdatatype.CNAME]
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]


async def until_answered(glb: Running, name: str, wanted: list[str], within: float = 10) -> None:
    """Poll `name` until its addresses are `wanted` (each poll a real query)."""
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a resolver would, bounded by the timeout
            if addresses(await query_over(glb.dns_addr, name)) == wanted:
                return
            await asyncio.sleep(0.05)


async def test_a_cname_chain_to_a_service_follows_its_health(glb, clusters):
    """alias -> www -> app: the service's steered address, which moves when its first cluster
    goes down, on both transports and on every repeat (the full path answers it)."""
    running_glb, _ = glb
    first, second = clusters[0].address, clusters[1].address
    reply = await both(running_glb, "alias.glb.test")
    assert [r.name.to_text() for r in reply.answer] == [
        "alias.glb.test.",
        "www.glb.test.",
        "app.glb.test.",
    ]
    assert addresses(reply) == [first]
    await clusters[0].kill()
    await until_answered(running_glb, "app.glb.test", [second])
    for _ in range(3):
        assert addresses(await both(running_glb, "alias.glb.test")) == [second]


async def test_a_chain_leaving_our_zones_stops_there(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "away.glb.test")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [(r.rdtype, r[0].to_text()) for r in reply.answer] == [
        (dns.rdatatype.CNAME, "www.example.org.")
    ]
    assert reply.authority == []


async def test_a_chain_ending_at_no_name_is_nxdomain_with_the_cname(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "dangling.glb.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the last name's rcode
    assert reply.flags & dns.flags.AA
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.CNAME]
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("child.glb.test", "A"),
        ("child.glb.test", "NS"),
        ("deep.below.child.glb.test", "MX"),
        ("ns1.child.glb.test", "A"),
        ("below.child.glb.test", "DS"),
    ],
)
async def test_a_name_at_or_below_a_delegation_gets_a_referral(glb, name, rdtype):
    running_glb, _ = glb
    reply = await both(running_glb, name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA
    assert reply.answer == []
    [ns] = reply.authority
    assert (ns.name.to_text(), sorted(rd.to_text() for rd in ns)) == (
        "child.glb.test.",
        ["ns.example.org.", "ns1.child.glb.test."],
    )
    glue = [(r.name.to_text(), rd.to_text()) for r in reply.additional for rd in r]
    assert glue == [("ns1.child.glb.test.", "192.0.2.53")]


async def test_ds_at_the_cut_is_the_parents_nodata(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "child.glb.test", "DS")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert reply.answer == []
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


async def test_a_wildcard_answers_names_that_do_not_exist(glb):
    running_glb, _ = glb
    reply = await both(running_glb, "anything.apps.glb.test")
    assert [r.name.to_text() for r in reply.answer] == ["anything.apps.glb.test."]  # the qname
    assert addresses(reply) == ["192.0.2.80"]
    assert texts(await both(running_glb, "Other.APPS.glb.test", "TXT")) == ['"wildcard"']
    nodata = await both(running_glb, "anything.apps.glb.test", "MX")  # a type it lacks
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("real.apps.glb.test", "A", dns.rcode.NOERROR),  # exists: NODATA, not synthesized
        ("ent.apps.glb.test", "A", dns.rcode.NOERROR),  # an empty non-terminal exists too
        ("y.ent.apps.glb.test", "A", dns.rcode.NXDOMAIN),  # its closest encloser has no '*'
        ("a.real.apps.glb.test", "A", dns.rcode.NXDOMAIN),
        ("apps.glb.test", "A", dns.rcode.NOERROR),
    ],
)
async def test_existing_names_block_the_wildcard(glb, name, rdtype, rcode):
    running_glb, _ = glb
    reply = await both(running_glb, name, rdtype)
    assert (reply.rcode(), reply.answer) == (rcode, [])
    assert reply.flags & dns.flags.AA


async def test_reload_adding_a_record_changes_the_serial_and_the_answer(glb, clusters):
    running_glb, path = glb
    soa = await both(running_glb, "glb.test", "SOA")
    before = soa.answer[0][0].serial
    assert (await both(running_glb, "new.glb.test", "TXT")).rcode() == dns.rcode.NXDOMAIN
    added = RECORDS + '      - {name: new, type: TXT, values: "fresh"}\n'
    config(path.parent, clusters, added)
    assert await running_glb.reload() == []
    assert texts(await both(running_glb, "new.glb.test", "TXT")) == ['"fresh"']
    assert (await both(running_glb, "glb.test", "SOA")).answer[0][0].serial > before


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("www.glb.test", dns.rdatatype.CNAME),  # the CNAME itself, not chased
        ("mail.glb.test", dns.rdatatype.A),
        ("dkim._domainkey.glb.test", dns.rdatatype.TXT),
        ("anything.apps.glb.test", dns.rdatatype.A),
    ],
)
async def test_any_is_one_record_set(glb, name, rdtype):
    """RFC 8482: ANY at a record's name answers one of its record sets."""
    running_glb, _ = glb
    reply = await both(running_glb, name, "ANY")
    assert [(r.name.to_text(), r.rdtype) for r in reply.answer] == [(f"{name}.", rdtype)]
