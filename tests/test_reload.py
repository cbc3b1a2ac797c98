"""Hot reload and graceful shutdown, on a real glb in front of real backend processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ClusterProcess, start_clusters
from tests.dns_helpers import query_over
from tests.drain_records import drain_of
from tests.serve import Served, start_serve

TOKEN = "reload-test-token-0123"


def config(clusters: list[ClusterProcess], services: list[str], **http: str) -> str:
    listens = ", ".join(f"{k}: {v}" for k, v in {"listen": "'127.0.0.1:0'", **http}.items())
    port = clusters[0].port
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        f"http: {{{listens}}}",
        f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}",
        "zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]",
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        "services:",
    ]
    for name in services:
        lines.append(
            f"  - {{name: {name}, port: {port}, policy: failover, probe: {{type: tcp}}, "
            "backends: ["
            + ", ".join(f"{{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters))
            + "]}"
        )
    return "\n".join(lines) + "\n"


async def query(glb: Running, name: str, rdtype: str = "A") -> dns.message.Message:
    return await query_over(glb.dns_addr, name, rdtype)


def serial_of(reply: dns.message.Message) -> int:
    return int(reply.answer[0][0].serial)


@pytest.fixture
async def glb(tmp_path: Path, clusters) -> AsyncIterator[tuple[Running, Path]]:
    path = tmp_path / "glb.yaml"
    path.write_text(config(clusters, ["app.glb.test"]))
    async with running(load_settings(path), load=lambda: load_settings(path)) as started:
        yield started, path


async def test_reload_adds_a_service_and_raises_the_serial(glb, clusters):
    """A valid new file is in force once reload() returns: new names answer, the serial grows."""
    running_glb, path = glb
    before = serial_of(await query(running_glb, "glb.test", "SOA"))
    assert (await query(running_glb, "new.glb.test")).rcode() == dns.rcode.NXDOMAIN
    path.write_text(config(clusters, ["app.glb.test", "new.glb.test"]))
    assert await running_glb.reload() == []
    reply = await query(running_glb, "new.glb.test")
    assert [item.address for item in reply.answer[0]] == [clusters[0].address]
    assert serial_of(await query(running_glb, "glb.test", "SOA")) > before


async def test_unchanged_targets_keep_health_drains_and_ejections(glb, clusters):
    """A reload keeps the health, latency and last change of unchanged targets, and every drain."""
    running_glb, path = glb
    monitor = running_glb.monitor
    [eu] = [e for e in running_glb.topology.services[0].endpoints if e.cluster == "eu-west"]
    monitor.drain(drain_of("us-east"))
    for _ in range(3):
        monitor.report_request(eu, failed=True, detail="connection reset")
    before = monitor.current().health(eu.target)
    assert before.ejected
    path.write_text(config(clusters, ["app.glb.test", "other.glb.test"]))
    assert await running_glb.reload() == []
    after = monitor.current()
    kept = after.health(eu.target)
    assert (kept.state, kept.ejected, kept.last_change, kept.reason) == (
        before.state,
        True,
        before.last_change,
        before.reason,
    )
    assert "us-east" in after.drained_clusters


async def test_an_invalid_file_changes_nothing_and_reports_every_problem(glb, clusters):
    """An invalid new file is rejected with its key paths; the old configuration keeps serving."""
    running_glb, path = glb
    path.write_text(config(clusters, ["app.glb.test"]).replace("policy: failover", "policy: best"))
    problems = await running_glb.reload()
    assert len(problems) == 1
    assert "services[0].policy: 'best' is not one of" in problems[0]
    reply = await query(running_glb, "app.glb.test")
    assert [item.address for item in reply.answer[0]] == [clusters[0].address]


async def test_reload_through_the_api_needs_the_token_and_reports_errors(glb, clusters):
    """POST /api/v1/reload applies a valid file (200), rejects a bad one (422), needs the token."""
    running_glb, path = glb
    url = f"{running_glb.admin_url}/api/v1/reload"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url) as response:
            assert response.status == 401
        path.write_text(config(clusters, ["app.glb.test", "api.glb.test"]))
        async with session.post(url, headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["reloaded"] is True
        path.write_text("zones: []\n")
        async with session.post(url, headers=auth) as response:
            body = await response.json()
            assert response.status == 422
            assert body["reloaded"] is False
            assert any("zones: needs at least 1 item, got 0" in e for e in body["errors"])
        async with session.get(f"{running_glb.admin_url}/metrics") as response:
            text = await response.text()
    assert 'glb_config_reloads_total{result="success"} 1.0' in text
    assert 'glb_config_reloads_total{result="error"} 1.0' in text
    assert (await query(running_glb, "api.glb.test")).rcode() == dns.rcode.NOERROR


async def test_queries_during_reloads_are_all_answered(glb, clusters):
    """DNS queries sent while the configuration is reloaded again and again all get answers."""
    running_glb, path = glb
    answered = 0

    async def ask() -> None:
        nonlocal answered
        for _ in range(100):
            reply = await query(running_glb, "app.glb.test")
            assert reply.rcode() == dns.rcode.NOERROR
            answered += 1

    async def reload_repeatedly() -> None:
        for n in range(5):
            services = ["app.glb.test"] + ([f"x{n}.glb.test"] if n % 2 else [])
            path.write_text(config(clusters, services))
            assert await running_glb.reload() == []

    async with asyncio.timeout(30):
        await asyncio.gather(ask(), ask(), reload_repeatedly())
    assert answered == 200


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records glb.reload logged (caplog set to INFO for it by the caller)."""
    return [record for record in caplog.records if record.name == "glb.reload"]


def with_comments_and_keys_reordered(text: str) -> str:
    """The same configuration spelled otherwise: comments added, the top-level keys reordered."""
    lines = text.splitlines()
    return "\n".join(["# the same glb", lines[1], lines[0], "# listeners above", *lines[2:]]) + "\n"


@pytest.mark.parametrize("rewrite", [lambda text: text, with_comments_and_keys_reordered])
async def test_an_unchanged_file_keeps_the_serial_and_says_no_change(
    glb, clusters, caplog: pytest.LogCaptureFixture, rewrite
):
    """A file meaning the same (as it was, or with comments and key order changed) reloads
    successfully as "no change": one line, no object lines, the SOA serial as it was."""
    caplog.set_level(logging.INFO, logger="glb.reload")
    running_glb, path = glb
    before = serial_of(await query(running_glb, "glb.test", "SOA"))
    path.write_text(rewrite(config(clusters, ["app.glb.test"])))
    assert await running_glb.reload() == []
    [line] = reload_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        f"configuration reloaded: 1 zone(s), 1 service(s), serial {before}; no change"
    )
    assert (line.__dict__["changed"], line.__dict__["summary"]) == (False, "no change")
    assert serial_of(await query(running_glb, "glb.test", "SOA")) == before
    assert running_glb.reloader.serial == before


def two_zones(text: str) -> str:
    """`text` with a second zone, other.test, next to glb.test."""
    other = "{name: other.test, nameservers: [{name: ns1.other.test, address: 127.0.0.1}]}"
    return text.replace(
        "nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]",
        (f"nameservers: [{{name: ns1.glb.test, address: 127.0.0.1}}]}}, {other}]"),
    )


async def test_a_changed_service_is_logged_with_its_keys_and_bumps_only_its_zone(
    tmp_path: Path, clusters, caplog: pytest.LogCaptureFixture
):
    """Changing a service's ttl and probe interval logs a summary and the service's keys with
    old and new values, and raises the serial of its zone only; adding a service to the other
    zone then raises that zone's serial only."""
    caplog.set_level(logging.INFO, logger="glb.reload")
    path = tmp_path / "glb.yaml"
    path.write_text(two_zones(config(clusters, ["app.glb.test"])))
    async with running(load_settings(path), load=lambda: load_settings(path)) as running_glb:
        glb_test = serial_of(await query(running_glb, "glb.test", "SOA"))
        other_test = serial_of(await query(running_glb, "other.test", "SOA"))
        changed = config(clusters, ["app.glb.test"]).replace(
            "probe: {type: tcp}", "probe: {type: tcp, interval: 2s}, ttl: 30"
        )
        path.write_text(two_zones(changed))
        assert await running_glb.reload() == []
        summary, change = reload_lines(caplog)
        assert summary.getMessage().endswith("; services: 1 changed")
        assert change.getMessage() == (
            "configuration change: service app.glb.test changed: "
            "probe.interval 1 -> 2, ttl 10 -> 30"
        )
        assert (change.__dict__["object_kind"], change.__dict__["object"]) == (
            "service",
            "app.glb.test",
        )
        assert change.__dict__["changed_keys"] == ["probe.interval 1 -> 2", "ttl 10 -> 30"]
        bumped = serial_of(await query(running_glb, "glb.test", "SOA"))
        assert bumped > glb_test
        assert serial_of(await query(running_glb, "other.test", "SOA")) == other_test

        caplog.clear()
        added = config(clusters, ["app.glb.test", "x.other.test"]).replace(
            "probe: {type: tcp}", "probe: {type: tcp, interval: 2s}, ttl: 30", 1
        )
        path.write_text(two_zones(added))
        assert await running_glb.reload() == []
        assert [r.getMessage() for r in reload_lines(caplog)][1:] == [
            "configuration change: service x.other.test added"
        ]
        assert serial_of(await query(running_glb, "other.test", "SOA")) > other_test
        assert serial_of(await query(running_glb, "glb.test", "SOA")) == bumped


async def test_a_restart_only_change_undone_warns_once(
    glb, clusters, caplog: pytest.LogCaptureFixture
):
    """Changing dns.listen warns, with the running and the new value, that it needs a restart;
    changing it back to what glb listens on does not warn again (nothing waits for a restart)."""
    caplog.set_level(logging.INFO, logger="glb.reload")
    running_glb, path = glb
    original = config(clusters, ["app.glb.test"])
    path.write_text(original.replace("dns: {listen: '127.0.0.1:0'}", "dns: {listen: ':5399'}"))
    assert await running_glb.reload() == []
    [warning] = [r for r in reload_lines(caplog) if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "configuration reloaded, but these changes take effect only at restart: "
        "dns.listen 127.0.0.1:0 -> 0.0.0.0:5399"
    )
    assert warning.__dict__["restart_needed"] == ["dns.listen"]
    caplog.clear()
    path.write_text(original)
    assert await running_glb.reload() == []
    lines = reload_lines(caplog)
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    assert lines[1].getMessage() == (
        "configuration change: section dns changed: listen 0.0.0.0:5399 -> 127.0.0.1:0"
    )


async def test_the_reload_api_answers_with_what_changed(glb, clusters):
    """POST /api/v1/reload answers with the summary and one line per change; reloading the
    same file again answers "no change" with the same serial."""
    running_glb, path = glb
    url = f"{running_glb.admin_url}/api/v1/reload"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    path.write_text(config(clusters, ["app.glb.test", "api.glb.test"]))
    async with aiohttp.ClientSession() as session:
        async with session.post(url, headers=auth) as response:
            assert response.status == 200
            first = await response.json()
        async with session.post(url, headers=auth) as response:
            assert response.status == 200
            again = await response.json()
    assert (first["reloaded"], first["changed"], first["summary"]) == (
        True,
        True,
        "services: 1 added",
    )
    assert first["changes"] == ["service api.glb.test added"]
    assert first["restart_needed"] == []
    assert (again["changed"], again["summary"], again["changes"]) == (False, "no change", [])
    assert again["serial"] == first["serial"]


@contextlib.asynccontextmanager
async def serving(path: Path, *args: str) -> AsyncIterator[Served]:
    """`glb serve` of `path` (with `args`); on exit SIGTERM, and it must exit 0."""
    served = await start_serve(path, *args)
    try:
        yield served
    finally:
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await served.process.wait() == 0


async def test_sighup_with_an_unchanged_file_says_no_change(tmp_path: Path, clusters):
    """`glb serve` given SIGHUP with its file as it was logs a successful reload of no change."""
    path = tmp_path / "glb.yaml"
    path.write_text(config(clusters, ["app.glb.test"]))
    async with serving(path) as served:
        served.process.send_signal(signal.SIGHUP)
        await served.wait_for_line(r"configuration reloaded: 1 zone\(s\), .*; no change")


async def test_sighup_reloads_the_file(tmp_path: Path, clusters):
    """SIGHUP makes glb serve re-read its file; a new service then answers."""
    path = tmp_path / "glb.yaml"
    path.write_text(config(clusters, ["app.glb.test"]))
    async with serving(path) as served:
        path.write_text(config(clusters, ["app.glb.test", "hup.glb.test"]))
        served.process.send_signal(signal.SIGHUP)
        request = dns.message.make_query("hup.glb.test", "A")
        async with asyncio.timeout(10):
            while True:  # polling from outside, as a resolver would
                reply = await dns.asyncquery.udp(
                    request, "127.0.0.1", port=served.dns_port, timeout=2
                )
                if reply.rcode() == dns.rcode.NOERROR:
                    break
                await asyncio.sleep(0.05)


async def test_watch_reloads_the_file_when_it_changes(tmp_path: Path, clusters):
    """`glb serve --watch 0.1` reloads its file once it has changed, swapped behind a symlink as
    Kubernetes swaps a ConfigMap; a broken file is rejected and the old one kept."""
    first = tmp_path / "v1.yaml"
    first.write_text(config(clusters, ["app.glb.test"]))
    link = tmp_path / "glb.yaml"
    link.symlink_to(first)
    async with serving(link, "--watch", "0.1") as served:
        second = tmp_path / "v2.yaml"
        second.write_text(config(clusters, ["app.glb.test", "watched.glb.test"]))
        swapped = tmp_path / "glb.yaml.new"
        swapped.symlink_to(second)
        swapped.replace(link)  # an atomic swap, as a ConfigMap update does
        await served.wait_for_line(r"glb\.yaml changed: reloading")
        await served.wait_for_line(r"configuration reloaded: 1 zone\(s\), 2 service\(s\)")
        reply = await dns.asyncquery.udp(
            dns.message.make_query("watched.glb.test", "A"),
            "127.0.0.1",
            port=served.dns_port,
            timeout=2,
        )
        assert reply.rcode() == dns.rcode.NOERROR
        since = len(served.lines)
        second.write_text("services: [oops")  # rewritten in place, broken
        await served.wait_for_line(r"reload rejected", since=since)


async def in_flight(session: aiohttp.ClientSession, admin: str) -> None:
    """Wait until glb reports one proxied request in flight (its metrics say so)."""
    wanted = 'glb_proxy_active_requests{service="app.glb.test"} 1.0'
    async with asyncio.timeout(10):
        while True:
            async with session.get(admin + "/metrics") as response:
                if wanted in await response.text():
                    return
            await asyncio.sleep(0.02)


async def not_ready(session: aiohttp.ClientSession, admin: str) -> None:
    """Wait until /readyz answers 503 (the admin API must stay up while the proxy drains)."""
    async with asyncio.timeout(5):
        while True:
            try:
                async with session.get(admin + "/readyz") as ready:
                    if ready.status == 503:
                        return
            except aiohttp.ClientConnectionError:
                pytest.fail("the admin API closed before the proxy drained")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def request_in_flight(
    directory: Path, *, delay: float, grace: str
) -> AsyncIterator[tuple[Served, asyncio.Task[aiohttp.ClientResponse]]]:
    """`glb serve` in front of a backend answering after `delay` seconds, with one proxied
    request to it in flight; the process is killed on exit if a test left it running."""
    [slow] = await start_clusters(["slow"], delays=[delay])
    path = directory / "glb.yaml"
    path.write_text(config([slow], ["app.glb.test"], shutdown_grace=grace))
    served = await start_serve(path)
    try:
        async with aiohttp.ClientSession() as session:
            pending = asyncio.create_task(
                session.get(served.http + "/", headers={"Host": "app.glb.test"})
            )
            await in_flight(session, served.admin)
            yield served, pending
            pending.cancel()
    finally:
        if served.process.returncode is None:
            served.process.kill()
        await slow.stop()


async def test_sigterm_lets_in_flight_requests_finish_and_fails_readiness(tmp_path: Path):
    """On SIGTERM, /readyz fails, a proxied request in flight completes, and glb exits 0."""
    async with (
        request_in_flight(tmp_path, delay=1.5, grace="10s") as (served, pending),
        aiohttp.ClientSession() as session,
    ):
        served.process.send_signal(signal.SIGTERM)
        await not_ready(session, served.admin)
        async with asyncio.timeout(10):
            response = await pending
            assert response.status == 200
            assert "hello from slow" in await response.text()
            response.release()
        async with asyncio.timeout(15):
            assert await served.process.wait() == 0


async def test_a_second_signal_exits_at_once(tmp_path: Path):
    """A second SIGTERM during a graceful shutdown ends the process at once, with status 1."""
    async with (
        request_in_flight(tmp_path, delay=30.0, grace="60s") as (served, _),
        aiohttp.ClientSession() as session,
    ):
        served.process.send_signal(signal.SIGTERM)
        await not_ready(session, served.admin)  # the first signal is being handled
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await served.process.wait() == 1
