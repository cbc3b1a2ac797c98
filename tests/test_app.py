"""End to end: glb started from a real config file in front of real backend processes, queried
over UDP and TCP with dnspython while clusters are killed, frozen and brought back."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from glb.app import Running, running
from glb.config import load_settings, parse_settings
from tests.clusters import start_clusters, write_config
from tests.dns_helpers import query_over


async def query(
    glb: Running, name: str, rdtype: str | dns.rdatatype.RdataType = "A", *, tcp: bool = False
) -> dns.message.Message:
    return await query_over(glb.dns_addr, name, rdtype, tcp=tcp)


def addresses(reply: dns.message.Message) -> set[str]:
    return {item.address for rrset in reply.answer for item in rrset}


async def wait_for_answer(glb: Running, name: str, expected: set[str], within: float) -> float:
    """Query every 20 ms until the answer is `expected`; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a resolver would, bounded by the timeout
            if addresses(await query(glb, name)) == expected:
                return loop.time() - started
            await asyncio.sleep(0.02)


async def test_answers_point_at_the_preferred_healthy_cluster(tmp_path, clusters):
    """With every cluster up, UDP and TCP answers name the failover policy's first cluster."""
    eu, _ = clusters
    async with running(load_settings(write_config(tmp_path, clusters))) as glb:
        udp = await query(glb, "app.glb.test")
        tcp = await query(glb, "APP.glb.test", tcp=True)
    assert addresses(udp) == {eu.address}
    assert addresses(tcp) == {eu.address}
    assert udp.answer[0].ttl == 10
    assert str(tcp.answer[0].name) == "APP.glb.test."


async def test_killed_cluster_leaves_the_answers_and_returns_after_restart(tmp_path, clusters):
    """A cluster whose port refuses connections leaves the answers, and comes back on restart."""
    eu, us = clusters
    async with running(load_settings(write_config(tmp_path, clusters))) as glb:
        assert addresses(await query(glb, "app.glb.test")) == {eu.address}
        await eu.kill()
        await wait_for_answer(glb, "app.glb.test", {us.address}, within=5)
        await eu.start()
        await wait_for_answer(glb, "app.glb.test", {eu.address}, within=10)


async def test_frozen_cluster_leaves_the_answers_and_returns_after_thaw(tmp_path, clusters):
    """A cluster that accepts connections but never answers leaves the answers, and returns."""
    eu, us = clusters
    async with running(load_settings(write_config(tmp_path, clusters))) as glb:
        eu.freeze()
        await wait_for_answer(glb, "app.glb.test", {us.address}, within=8)
        eu.thaw()
        await wait_for_answer(glb, "app.glb.test", {eu.address}, within=10)


async def test_every_cluster_down_fails_open_with_return_all(tmp_path, clusters):
    """When no cluster is healthy, return_all answers with every cluster's address."""
    eu, us = clusters
    await asyncio.gather(eu.kill(), us.kill())
    config = write_config(tmp_path, clusters, max_answers=2, policy="latency")
    async with running(load_settings(config)) as glb:
        reply = await query(glb, "app.glb.test")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {eu.address, us.address}


async def test_every_cluster_down_gives_servfail_when_asked(tmp_path, clusters):
    """With when_all_down: servfail, a service with no healthy cluster answers SERVFAIL."""
    for cluster in clusters:
        await cluster.kill()
    config = write_config(tmp_path, clusters, when_all_down="servfail")
    async with running(load_settings(config)) as glb:
        reply = await query(glb, "app.glb.test")
    assert reply.rcode() == dns.rcode.SERVFAIL


async def test_latency_policy_prefers_the_faster_cluster(tmp_path):
    """The latency policy answers with the cluster whose probes return faster."""
    clusters = await start_clusters(["slow", "fast"], delays=[0.08, 0.0])
    try:
        config = write_config(tmp_path, clusters, policy="latency")
        async with running(load_settings(config)) as glb:
            assert addresses(await query(glb, "app.glb.test")) == {clusters[1].address}
    finally:
        await asyncio.gather(*(c.stop() for c in clusters))


async def test_state_changes_are_logged_with_their_reason(tmp_path, clusters, caplog):
    """Every state change is logged in one line naming cluster, service, address and reason."""
    eu, _ = clusters
    caplog.set_level("INFO", logger="glb.health.monitor")
    async with running(load_settings(write_config(tmp_path, clusters))) as glb:
        await eu.kill()
        async with asyncio.timeout(5):
            await glb.monitor.wait_for(
                lambda snap: any(h.state == "down" for h in snap.targets.values())
            )
    expected = f"eu-west app.glb.test {eu.address}: up -> down after 2 failures: connection refused"
    assert expected in caplog.messages


async def test_drain_through_the_api_moves_dns_and_proxy_and_undrain_restores(tmp_path, clusters):
    """A drain via the admin API moves the DNS answer and the proxy target at once; undrain
    puts them back."""
    eu, us = clusters
    token = "drain-test-token-0123456789"
    config = write_config(tmp_path, clusters)
    config.write_text(
        config.read_text().replace(
            "admin: {listen: '127.0.0.1:0'}", f"admin: {{listen: '127.0.0.1:0', token: {token}}}"
        )
    )
    auth = {"Authorization": f"Bearer {token}"}
    async with running(load_settings(config)) as glb, aiohttp.ClientSession() as session:

        async def served_by() -> str:
            async with session.get(glb.http_url + "/", headers={"Host": "app.glb.test"}) as r:
                assert r.status == 200
                return (await r.text()).split()[2]  # "hello from <cluster> (...)"

        assert addresses(await query(glb, "app.glb.test")) == {eu.address}
        assert await served_by() == "eu-west"
        drain = f"{glb.admin_url}/api/v1/clusters/eu-west/drain"
        async with session.post(drain, headers=auth) as response:
            assert response.status == 200
        assert addresses(await query(glb, "app.glb.test")) == {us.address}
        assert addresses(await query(glb, "app.glb.test", tcp=True)) == {us.address}
        assert await served_by() == "us-east"
        async with session.post(drain.replace("/drain", "/undrain"), headers=auth) as response:
            assert response.status == 200
        assert addresses(await query(glb, "app.glb.test")) == {eu.address}
        assert await served_by() == "eu-west"


@pytest.mark.parametrize(
    ("server_id", "expected"),
    [("process", f"glb-{os.getpid()} main"), ("edge-7 (eu)", "edge-7 (eu)"), ("none", None)],
)
async def test_server_id_setting_decides_what_id_server_answers(
    server_id: str, expected: str | None
) -> None:
    """`dns.server_id`: the process (default), a fixed text, or nothing (REFUSED) for
    CH TXT id.server."""
    config = (
        f"dns: {{listen: '127.0.0.1:0', server_id: '{server_id}'}}\n"
        "http: {listen: '127.0.0.1:0'}\nadmin: {listen: '127.0.0.1:0'}\n"
        "zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]\n"
        "clusters: [{name: eu, addresses: [127.0.0.1]}]\n"
        "services: [{name: app.glb.test, port: 9, probe: {type: tcp}, backends: [{cluster: eu}]}]\n"
    )
    async with running(parse_settings(config)) as glb:
        request = dns.message.make_query("id.server", "TXT", rdclass=dns.rdataclass.CH)
        host, port = glb.dns_addr
        reply = await dns.asyncquery.udp(request, host, port=port, timeout=2)
    if expected is None:
        assert (reply.rcode(), reply.answer) == (dns.rcode.REFUSED, [])
    else:
        assert b"".join(reply.answer[0][0].strings).decode() == expected
