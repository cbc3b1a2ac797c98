"""Zone records through a real unbound resolver stubbed to glb: it follows a CNAME chain into a
steered service and a wildcard, takes DS at a delegation from the parent side, and follows the
referral below the delegation to the child's nameserver (a small responder on port 53 of a
fresh loopback address: the part that needs the right to bind port 53 skips without it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import address_block
from tests.dns_helpers import addresses
from tests.test_dns_records import RECORDS, config
from tests.unbound_server import UNBOUND, UnboundServer

CHILD_ADDRESS = "198.51.100.7"  # what the child zone's own server answers


class ChildServer(asyncio.DatagramProtocol):
    """The delegated zone's nameserver: authoritative A `CHILD_ADDRESS` for every name asked
    (NODATA for other types)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        question = query.question[0]
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", CHILD_ADDRESS))
        self.transport.sendto(reply.to_wire(), addr)


@contextlib.asynccontextmanager
async def child_server() -> AsyncIterator[str | None]:
    """The child's server on port 53 of a fresh loopback address; None without the right."""
    [address] = address_block(1)
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(ChildServer, local_addr=(address, 53))
    except PermissionError:
        yield None
        return
    try:
        yield address
    finally:
        transport.close()


@pytest.fixture
async def resolved(
    tmp_path: Path, clusters
) -> AsyncIterator[tuple[Running, UnboundServer, str | None]]:
    if UNBOUND is None:
        pytest.skip("unbound is not installed (Debian package unbound; scripts/test)")
    async with child_server() as child:
        glue = "{name: ns1.child, type: A, values: 192.0.2.53}"
        records = RECORDS.replace(glue, glue.replace("192.0.2.53", child or "192.0.2.53"))
        path = config(tmp_path, clusters, records)
        async with running(load_settings(path)) as glb:
            unbound = await UnboundServer.started("glb.test", glb.dns_addr)
            try:
                yield glb, unbound, child
            finally:
                await unbound.stop()


async def ask(unbound: UnboundServer, name: str, rdtype: str = "A") -> dns.message.Message:
    host, port = unbound.address
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, host, port=port, timeout=5)


async def test_a_resolver_follows_cnames_into_a_service_and_a_wildcard(resolved, clusters):
    _, unbound, _ = resolved
    chain = await ask(unbound, "alias.glb.test")
    assert chain.rcode() == dns.rcode.NOERROR
    assert [r.name.to_text() for r in chain.answer] == [
        "alias.glb.test.",
        "www.glb.test.",
        "app.glb.test.",
    ]
    assert addresses(chain) == [clusters[0].address]  # the service's steered answer
    assert addresses(await ask(unbound, "anything.apps.glb.test")) == ["192.0.2.80"]


async def test_a_resolver_follows_the_delegation(resolved):
    _, unbound, child = resolved
    ds = await ask(unbound, "child.glb.test", "DS")
    assert (ds.rcode(), ds.answer) == (dns.rcode.NOERROR, [])
    if child is None:
        pytest.skip("binding port 53 needs privileges: the referral is not followed here")
    below = await ask(unbound, "www.child.glb.test")
    assert addresses(below) == [CHILD_ADDRESS]  # answered by the child's server, not glb
