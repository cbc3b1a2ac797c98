"""Probes from a chosen local address (`probes.source`): the peer the backend sees, a source of
the other address family, a source that is not local, and two vantage points on one host of which
one loses its path to a backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from glb.app import running
from glb.config import parse_settings
from glb.core.health import Health, Outcome
from glb.core.model import ProbeType
from glb.errors import StartupError
from glb.health.monitor import Monitor
from glb.health.probes import Prober, source_problem
from tests.clusters import ClusterProcess, start_clusters, write_config
from tests.probe_backends import TLS_NAME, serve_backend, serve_raw
from tests.serve import Served, start_serve, stop_serve
from tests.stack import monitored
from tests.test_cli import run_glb
from tests.test_durable_drains import answer
from tests.test_probes import has_ipv6_loopback, make_target, probe
from tests.test_shared_drains import until_true

NOT_LOCAL = "192.0.2.1"  # TEST-NET-1: never an address of the test machine
FAST_PROBE = "{type: http, path: /healthz, interval: 0.2s, timeout: 0.2s, rise: 1, fall: 1}"


@pytest.fixture
async def prober_from(ca_file: str) -> AsyncIterator[Prober]:
    prober = Prober(ca_file=ca_file, source="127.0.0.2")
    yield prober
    await prober.close()


async def test_http_probes_connect_from_the_source(prober_from: Prober) -> None:
    async with serve_backend() as backend:
        result = await probe(prober_from, make_target(backend.port, path="/echo"))
    assert result.outcome is Outcome.SUCCESS, result.detail
    assert [seen.peer[0] for seen in backend.seen] == ["127.0.0.2"]


async def test_https_probes_connect_from_the_source(prober_from: Prober, ca: trustme.CA) -> None:
    cert = ca.issue_cert(TLS_NAME, "127.0.0.1")
    async with serve_backend(cert=cert) as backend:
        assert backend.tls_port is not None
        target = make_target(backend.tls_port, ProbeType.HTTPS, path="/echo", host=TLS_NAME)
        result = await probe(prober_from, target)
    assert result.outcome is Outcome.SUCCESS, result.detail
    assert [seen.peer[0] for seen in backend.seen] == ["127.0.0.2"]


async def test_tcp_probes_connect_from_the_source(prober_from: Prober) -> None:
    async with serve_raw(None) as raw:
        result = await probe(prober_from, make_target(raw.port, ProbeType.TCP))
        async with asyncio.timeout(5):
            await raw.connected.wait()
    assert result.outcome is Outcome.SUCCESS, result.detail
    assert raw.peers == ["127.0.0.2"]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_targets_of_the_other_family_are_probed_unbound_and_said_once(
    prober_from: Prober, caplog: pytest.LogCaptureFixture
) -> None:
    """An IPv4 source cannot reach ::1: such targets are probed from the system's choice of
    address, and one warning says so."""
    async with serve_backend("::1") as backend:
        target = make_target(backend.port, path="/echo", address="::1")
        for _ in range(2):
            assert (await probe(prober_from, target)).outcome is Outcome.SUCCESS
    assert [seen.peer[0] for seen in backend.seen] == ["::1", "::1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "probes.source 127.0.0.2 is IPv4: IPv6 targets such as ::1 are probed from the "
        "system's choice of address"
    ]


async def test_a_source_that_is_not_local_fails_each_probe_with_a_clear_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prober = Prober(source=NOT_LOCAL)
    async with serve_backend() as backend:
        for target in (make_target(backend.port), make_target(backend.port, ProbeType.TCP)):
            result = await probe(prober, target)
            assert result.outcome is Outcome.OTHER
            assert result.detail == f"probes.source: {NOT_LOCAL} is not an address of this host"
    assert backend.seen == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_source_problem_names_a_source_that_is_not_local() -> None:
    assert source_problem("127.0.0.2") is None
    assert source_problem(NOT_LOCAL) == f"{NOT_LOCAL} is not an address of this host"


START_CONFIG = f"""\
dns: {{listen: '127.0.0.1:0'}}
http: {{listen: '127.0.0.1:0'}}
admin: {{listen: '127.0.0.1:0'}}
probes: {{source: {NOT_LOCAL}}}
zones: [{{name: glb.test, nameservers: [{{name: ns1.glb.test, address: 127.0.0.1}}]}}]
clusters: [{{name: eu-west, addresses: [127.0.0.1]}}]
"""


async def test_glb_refuses_to_start_with_a_source_that_is_not_local() -> None:
    with pytest.raises(StartupError, match=rf"^probes.source: {NOT_LOCAL} is not an address"):
        async with running(parse_settings(START_CONFIG)):
            pass


async def test_glb_serve_names_probes_source_when_it_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "glb.yaml"
    path.write_text(START_CONFIG)
    code, _, err = await run_glb("serve", "-c", str(path))
    assert code != 0
    assert f"glb: probes.source: {NOT_LOCAL} is not an address of this host" in err
    assert "Traceback" not in err


def health(monitor: Monitor, cluster: ClusterProcess) -> Health:
    [target] = [t for t in monitor.current().targets if t.address == cluster.address]
    return monitor.current().health(target).state


async def test_a_backend_refusing_one_source_is_down_for_that_vantage_point_only(
    tmp_path: Path,
) -> None:
    """Two monitors probe one backend, from 127.0.0.2 and 127.0.0.3; once the backend refuses
    127.0.0.3, only the second sees it down, while the first keeps probing it successfully;
    once it accepts 127.0.0.3 again, the second sees it up."""
    [cluster] = await start_clusters(["eu-west"])
    config = write_config(tmp_path, [cluster], probe=FAST_PROBE).read_text()
    try:
        async with (
            monitored(config + "probes: {source: 127.0.0.2}\n") as first,
            monitored(config + "probes: {source: 127.0.0.3}\n") as second,
        ):
            assert health(first, cluster) is health(second, cluster) is Health.UP
            await cluster.refuse_from("127.0.0.3")
            async with asyncio.timeout(10):
                await second.wait_for(lambda _: health(second, cluster) is Health.DOWN)
            assert health(first, cluster) is Health.UP
            [target] = first.current().targets
            seen_since = first.current().health(target).last_result
            async with asyncio.timeout(10):  # the first still probes it, and it still passes
                later = await first.wait_for(
                    lambda s: s.health(target).last_result is not seen_since
                )
            newest = later.health(target).last_result
            assert newest is not None
            assert newest.outcome is Outcome.SUCCESS, newest
            assert health(first, cluster) is Health.UP
            await cluster.refuse_from()
            async with asyncio.timeout(10):
                await second.wait_for(lambda _: health(second, cluster) is Health.UP)
    finally:
        await cluster.stop()


async def _answers(served: Served, expected: list[str]) -> bool:
    return await answer(served) == expected


def config_from(directory: Path, clusters: list[ClusterProcess], source: str) -> Path:
    directory.mkdir()
    path = write_config(directory, clusters, probe=FAST_PROBE)
    path.write_text(path.read_text() + f"probes: {{source: {source}}}\n")
    return path


async def test_two_glb_serve_answer_from_their_own_vantage_point(tmp_path: Path) -> None:
    """Two `glb serve` processes probe from 127.0.0.2 and 127.0.0.3; when eu-west refuses
    127.0.0.3, only the second fails over to us-east in its DNS answers."""
    eu, us = clusters = await start_clusters(["eu-west", "us-east"])
    first = second = None
    try:
        first = await start_serve(config_from(tmp_path / "first", clusters, "127.0.0.2"))
        second = await start_serve(config_from(tmp_path / "second", clusters, "127.0.0.3"))
        assert await answer(first) == await answer(second) == [eu.address]
        since = len(second.lines)
        await eu.refuse_from("127.0.0.3")
        await second.wait_for_line(r"eu-west.*: up -> down", since=since)
        # the change is logged before the snapshot reaches the answers: poll, with a deadline
        await until_true(lambda: _answers(second, [us.address]), within=5)
        assert await answer(first) == [eu.address]
        assert not [line for line in first.lines if "-> down" in line]
    finally:
        for served in (first, second):
            if served is not None:
                assert await stop_serve(served) == 0
        for cluster in clusters:
            await cluster.stop()
