"""/metrics end to end: glb started with `running()` in front of real backend processes, scraped
while probes run, clusters die or are drained and DNS queries arrive. The exposition is parsed
with prometheus_client and linted with `promtool check metrics`.

Also home of the helpers tests/test_prometheus.py shares: the config, the scrape, `needs()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import socket
import string
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from glb import __version__
from glb.app import Running, running
from glb.config import load_settings
from glb.core.drains import MAX_REASON, Drain
from glb.core.model import Endpoint
from glb.core.snapshot import EndpointState, HealthSnapshot
from glb.core.stats import QTYPES
from glb.health.failing_open import logger as failing_open_logger
from tests.clusters import ClusterProcess, address_block
from tests.dns_helpers import query_over
from tests.drain_records import drain_of

SERVICE = "app.glb.test"
WIDE = "wide.glb.test"  # many addresses that refuse: fails open with an answer too big for UDP
WIDE_ADDRESSES = 40  # 40 A records > 512 bytes
RCODES = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"}


def needs(binary: str) -> str:
    """The path of a Prometheus binary; skip without it locally, fail on CI where it must be."""
    path = shutil.which(binary)
    if path is None:
        reason = f"{binary} not found: apt-get install -y prometheus"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def write_config(tmp_path: Path, clusters: list[ClusterProcess], port: int) -> Path:
    """glb on loopback port 0 with SERVICE on `clusters` (failover) and WIDE on dead addresses."""
    wide = ", ".join(address_block(WIDE_ADDRESSES))
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        "admin: {listen: '127.0.0.1:0'}",
        "probes: {source: 127.0.0.2}",  # the proxy connects from 127.0.0.1: see the retry test
        "zones:",
        "  - name: glb.test",
        "    nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]",
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        f"  - {{name: wide, addresses: [{wide}]}}",
        "services:",
        f"  - name: {SERVICE}",
        f"    port: {port}",
        "    policy: failover",
        "    probe: {type: http, path: /healthz}",
        "    backends:",
        *(f"      - {{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters)),
        f"  - name: {WIDE}",
        f"    port: {port}",
        "    max_answers: 64",
        "    probe: {type: tcp}",
        "    backends: [{cluster: wide}]",
    ]
    path = tmp_path / "glb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Scrape:
    """One parsed exposition; samples are looked up by name and a subset of their labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [sample for family in self.families for sample in family.samples]

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample that matches."""
        found = self.find(name, **labels)
        assert len(found) == 1, (name, labels, found)
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        """The sum over every matching sample (0 when none: a counter not yet counted)."""
        return sum(sample.value for sample in self.find(name, **labels))


async def scrape_text(admin_url: str) -> str:
    async with (
        asyncio.timeout(5),
        aiohttp.ClientSession() as session,
        session.get(f"{admin_url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        return await response.text()


async def scrape(glb: Running) -> Scrape:
    return Scrape(await scrape_text(glb.admin_url))


async def query(
    glb: Running, name: str, rdtype: str | dns.rdatatype.RdataType = "A", *, tcp: bool = False
) -> dns.message.Message:
    return await query_over(glb.dns_addr, name, rdtype, tcp=tcp)


async def send_raw(glb: Running, datagram: bytes) -> dns.message.Message:
    """Send one raw UDP datagram and parse the reply."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(glb.dns_addr)
        await loop.sock_sendall(sock, datagram)
        async with asyncio.timeout(5):
            return dns.message.from_wire(await loop.sock_recv(sock, 512))


def endpoint(glb: Running, service: str, cluster: str) -> Endpoint:
    (configured,) = (s for s in glb.topology.services if s.name == service)
    (found,) = (e for e in configured.endpoints if e.cluster == cluster)
    return found


async def run(*command: str, stdin: str = "") -> tuple[int, str]:
    """Run a command to completion (20 s at most); its exit status and stdout + stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(20):
            output, _ = await process.communicate(stdin.encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def wait_state(glb: Running, cluster: str, state: EndpointState) -> None:
    target = endpoint(glb, SERVICE, cluster)
    async with asyncio.timeout(5):
        await glb.monitor.wait_for(lambda snapshot: snapshot.state(target) is state)


@pytest.fixture
async def glb(tmp_path: Path, clusters: list[ClusterProcess]) -> AsyncIterator[Running]:
    """glb in front of `clusters`, once both are up (a slow first probe may leave one unknown)."""
    async with running(load_settings(write_config(tmp_path, clusters, clusters[0].port))) as glb:
        for cluster in clusters:
            await wait_state(glb, cluster.name, EndpointState.UP)
        yield glb


async def test_killed_cluster_goes_from_up_to_down(glb, clusters):
    """Killing a cluster turns its up gauge 0, its state "down", and counts the transition."""
    eu = {"service": SERVICE, "cluster": "eu-west"}
    before = await scrape(glb)
    assert before.value("glb_endpoint_up", **eu) == 1
    assert before.value("glb_endpoint_state", **eu, state="up") == 1
    assert before.total("glb_endpoint_transitions_total", **eu, to="down") == 0
    assert before.total("glb_probe_results_total", cluster="eu-west", result="refused") == 0
    await clusters[0].kill()
    await wait_state(glb, "eu-west", EndpointState.DOWN)
    after = await scrape(glb)
    assert after.value("glb_endpoint_up", **eu) == 0
    states = {s.labels["state"]: s.value for s in after.find("glb_endpoint_state", **eu)}
    assert states == {"up": 0, "down": 1, "unknown": 0, "drained": 0, "ejected": 0, "not_ready": 0}
    assert after.value("glb_endpoint_transitions_total", **eu, to="down") == 1
    results = {
        s.labels["result"]: s.value
        for s in after.find("glb_probe_results_total", cluster="eu-west")
    }
    assert results["refused"] >= 1  # a probe in flight at the kill may fail otherwise (reset)
    assert sum(results.values()) - results["success"] >= 2  # fall: 2
    assert after.value("glb_endpoint_up", service=SERVICE, cluster="us-east") == 1


async def test_a_failover_is_measured_for_the_sli(glb, clusters):
    """A killed cluster leaving the answers is one failover of the service: detection from its
    first failed probe to the answers without it, exposure adding the TTL (10 s) the answers
    carried until the failure was noticed. A drain is no failover."""
    sli = {"service": SERVICE}
    drained = Drain("eu-west", None, "test", time.time())
    assert glb.monitor.drain(drained)
    assert glb.monitor.undrain("eu-west")
    before = await scrape(glb)
    assert before.total("glb_failover_detection_seconds_count", **sli) == 0
    assert before.total("glb_failover_exposure_seconds_count", **sli) == 0
    await clusters[0].kill()
    await wait_state(glb, "eu-west", EndpointState.DOWN)
    after = await scrape(glb)
    assert after.value("glb_failover_detection_seconds_count", **sli) == 1
    detection = after.value("glb_failover_detection_seconds_sum", **sli)
    assert 0 < detection < 1.5  # the held connection notices a kill at once; a probe at worst
    exposure = after.value("glb_failover_exposure_seconds_sum", **sli)
    assert 10 <= exposure <= detection + 10  # answers before the first failure carried ttl 10
    assert after.value("glb_failover_exposure_seconds_bucket", **sli, le="+Inf") == 1
    assert after.total("glb_failover_detection_seconds_count", service=WIDE) == 0


def failing_open_lines(
    caplog: pytest.LogCaptureFixture, service: str
) -> list[tuple[int, str, str | None]]:
    """The failing-open log lines of `service`: level, message and event."""
    return [
        (r.levelno, r.getMessage(), getattr(r, "event", None))
        for r in caplog.records
        if r.name == failing_open_logger.name and getattr(r, "service", None) == service
    ]


async def test_a_service_with_every_cluster_killed_fails_open_and_says_so_once(
    glb, clusters, caplog
):
    """Every cluster of a service killed: glb_service_failing_open goes 0 -> 1, answers still
    name an address, and one warning is logged however many snapshots follow; a cluster
    back turns it 0 with one info line. WIDE, all of whose addresses refuse, fails open
    throughout."""
    caplog.set_level(logging.INFO, logger=failing_open_logger.name)
    before = await scrape(glb)
    assert before.value("glb_service_failing_open", service=SERVICE) == 0
    assert before.value("glb_service_failing_open", service=WIDE) == 1
    await asyncio.gather(*(cluster.kill() for cluster in clusters))
    for cluster in clusters:
        await wait_state(glb, cluster.name, EndpointState.DOWN)
    assert (await scrape(glb)).value("glb_service_failing_open", service=SERVICE) == 1
    answer = (await query(glb, SERVICE)).answer
    assert {r.address for rrset in answer for r in rrset} == {clusters[0].address}  # tier 1
    for _ in range(3):  # more rounds of probes, still failing open
        async with asyncio.timeout(5):
            await glb.monitor.wait_for(newer_than(glb.monitor.current().version))
    warning = (
        logging.WARNING,
        f"{SERVICE} is failing open: no endpoint is up, its answers hand out every undrained"
        " one (when_all_down: return_all)",
        "failing_open",
    )
    assert failing_open_lines(caplog, SERVICE) == [warning]
    await clusters[1].start()
    await wait_state(glb, "us-east", EndpointState.UP)
    after = await scrape(glb)
    assert after.value("glb_service_failing_open", service=SERVICE) == 0
    assert after.value("glb_service_failing_open", service=WIDE) == 1
    ended = (logging.INFO, f"{SERVICE} no longer fails open", "failing_open_ended")
    assert failing_open_lines(caplog, SERVICE) == [warning, ended]
    assert not failing_open_lines(caplog, WIDE)  # failing open since the start: no transition


async def test_workers_serving_and_configured_are_exported(tmp_path, clusters):
    """glb_workers_configured is the processes `workers` asks for, the main one included;
    glb_workers, the ones serving, equals it once they all serve."""
    settings = load_settings(write_config(tmp_path, clusters, clusters[0].port))
    async with running(settings, workers=2) as glb:
        scraped = await scrape(glb)
    assert scraped.value("glb_workers_configured") == 2
    assert scraped.value("glb_workers") == 2


async def test_a_single_process_glb_is_configured_for_one_worker(glb):
    """Without workers, the main process is the one configured and the one serving."""
    scraped = await scrape(glb)
    assert scraped.value("glb_workers_configured") == 1
    assert scraped.value("glb_workers") == 1


async def test_latency_is_exported_for_up_endpoints(glb):
    """Every up endpoint has a positive EWMA probe latency, in seconds."""
    scraped = await scrape(glb)
    for cluster in ("eu-west", "us-east"):
        latency = scraped.value("glb_endpoint_latency_seconds", service=SERVICE, cluster=cluster)
        assert 0 < latency < 1


def newer_than(version: int) -> Callable[[HealthSnapshot], bool]:
    return lambda snapshot: snapshot.version > version


async def test_probe_histogram_is_consistent_and_grows(glb):
    """Probe histograms are cumulative, their count equals the results counted, and they grow."""
    first = await scrape(glb)
    before = sum(s.value for s in first.find("glb_probe_duration_seconds_count"))
    async with asyncio.timeout(5):  # results are counted at once, published within 50 ms
        while True:
            await glb.monitor.wait_for(newer_than(glb.monitor.current().version))
            second = await scrape(glb)
            if sum(s.value for s in second.find("glb_probe_duration_seconds_count")) > before:
                break
    counts = {
        cluster: [
            s.find("glb_probe_duration_seconds_count", cluster=cluster) for s in (first, second)
        ]
        for cluster in ("eu-west", "us-east", "wide")
    }
    assert all(len(before) == len(after) > 0 for before, after in counts.values())
    assert sum(s.value for s in second.find("glb_probe_duration_seconds_count")) > sum(
        s.value for s in first.find("glb_probe_duration_seconds_count")
    )
    for series in second.find("glb_probe_duration_seconds_count"):
        assert_histogram(second, series.labels)


def assert_histogram(scraped: Scrape, labels: dict[str, str]) -> None:
    buckets = scraped.find("glb_probe_duration_seconds_bucket", **labels)
    bounds = [float(b.labels["le"]) for b in buckets]
    values = [b.value for b in buckets]
    assert bounds == sorted(bounds)
    assert bounds[-1] == float("inf")
    assert values == sorted(values)  # cumulative
    count = scraped.value("glb_probe_duration_seconds_count", **labels)
    assert values[-1] == count
    assert count == scraped.total("glb_probe_results_total", **labels)
    assert 0 < scraped.value("glb_probe_duration_seconds_sum", **labels) < count * 2


async def test_dns_queries_are_counted_by_transport_qtype_and_rcode(glb, clusters):
    """Each query is counted once under its transport, qtype and rcode; TC and FORMERR too."""
    assert (await query(glb, SERVICE)).rcode() == dns.rcode.NOERROR
    assert (await query(glb, "nosuch.glb.test")).rcode() == dns.rcode.NXDOMAIN
    assert (await query(glb, SERVICE, "AAAA", tcp=True)).rcode() == dns.rcode.NOERROR
    formerr = await send_raw(glb, b"\xbe\xef\x01\x00\x00\x00" + b"\x00" * 6)  # no question
    assert formerr.rcode() == dns.rcode.FORMERR
    assert (await query(glb, WIDE)).flags & dns.flags.TC
    full = await query(glb, WIDE, tcp=True)
    assert sum(len(rrset) for rrset in full.answer) == WIDE_ADDRESSES
    scraped = await scrape(glb)
    counted = {
        tuple(s.labels[k] for k in ("transport", "qtype", "rcode")): s.value
        for s in scraped.find("glb_dns_queries_total")
    }
    assert counted == {
        ("udp", "A", "NOERROR"): 2,
        ("udp", "A", "NXDOMAIN"): 1,
        ("tcp", "AAAA", "NOERROR"): 1,
        ("udp", "other", "FORMERR"): 1,
        ("tcp", "A", "NOERROR"): 1,
    }
    assert scraped.value("glb_dns_malformed_total") == 1
    assert scraped.value("glb_dns_truncated_total") == 1
    assert scraped.value("glb_dns_answers_total", service=SERVICE, cluster="eu-west") == 1
    assert scraped.total("glb_dns_answers_total", service=SERVICE, cluster="us-east") == 0


async def test_truncated_reply_hands_out_no_addresses(glb):
    """A TC reply carries no addresses, so only the full TCP retry counts them as answers."""
    assert (await query(glb, WIDE)).flags & dns.flags.TC
    await query(glb, WIDE, tcp=True)
    scraped = await scrape(glb)
    assert scraped.value("glb_dns_answers_total", service=WIDE, cluster="wide") == WIDE_ADDRESSES


async def test_repeated_queries_are_each_counted(glb):
    """Queries answered from the exact-query memo (the same query again) count once each."""
    for _ in range(5):
        assert (await query(glb, SERVICE)).rcode() == dns.rcode.NOERROR
    scraped = await scrape(glb)
    udp_a = {"transport": "udp", "qtype": "A", "rcode": "NOERROR"}
    assert scraped.value("glb_dns_queries_total", **udp_a) == 5
    assert scraped.value("glb_dns_answers_total", service=SERVICE, cluster="eu-west") == 5
    await query(glb, SERVICE)
    assert (await scrape(glb)).value("glb_dns_queries_total", **udp_a) == 6  # none twice


async def test_drained_cluster_shows_drained_then_up_again(glb):
    """A drain shows as state "drained" (and not up) until the undrain brings "up" back."""
    us = {"service": SERVICE, "cluster": "us-east"}
    assert glb.monitor.drain(drain_of("us-east"))
    drained = await scrape(glb)
    assert drained.value("glb_endpoint_state", **us, state="drained") == 1
    assert drained.value("glb_endpoint_state", **us, state="up") == 0
    assert drained.value("glb_endpoint_up", **us) == 0
    assert drained.value("glb_endpoint_transitions_total", **us, to="drained") == 1
    assert glb.monitor.undrain("us-east")
    undrained = await scrape(glb)
    assert undrained.value("glb_endpoint_state", **us, state="up") == 1
    assert undrained.value("glb_endpoint_up", **us) == 1


async def test_drains_are_info_series_with_who_reason_and_times(glb):
    """Each drain in force is one glb_drain_info series (service * for every service) with its
    who and reason ("" for none), its since and, when it has one, its until; undrains remove
    them, and no reason ever becomes a label of glb_endpoint_state."""
    since = time.time()
    reason = 'kernel upgrade, ticket "OPS-1"\nback soon'
    ops = Drain("us-east", SERVICE, "ops", since, reason, until=since + 7200)
    assert glb.monitor.drain(ops)
    assert glb.monitor.drain(drain_of("eu-west", since=since - 60))
    drained = await scrape(glb)
    keys = ("cluster", "service", "who", "reason")
    info = {tuple(s.labels[k] for k in keys): s.value for s in drained.find("glb_drain_info")}
    assert info == {("us-east", SERVICE, "ops", reason): 1, ("eu-west", "*", "test", ""): 1}
    us, eu = {"cluster": "us-east", "service": SERVICE}, {"cluster": "eu-west", "service": "*"}
    assert drained.value("glb_drain_since_timestamp_seconds", **us) == pytest.approx(since)
    assert drained.value("glb_drain_since_timestamp_seconds", **eu) == pytest.approx(since - 60)
    assert drained.value("glb_drain_until_timestamp_seconds", **us) == pytest.approx(since + 7200)
    assert not drained.find("glb_drain_until_timestamp_seconds", **eu)  # until undrained
    assert not [s for s in drained.find("glb_endpoint_state") if "reason" in s.labels]
    assert glb.monitor.undrain("us-east", SERVICE)
    partly = await scrape(glb)
    assert [s.labels["cluster"] for s in partly.find("glb_drain_info")] == ["eu-west"]
    assert not partly.find("glb_drain_until_timestamp_seconds")
    assert glb.monitor.undrain("eu-west")
    undrained = await scrape(glb)
    for name in ("info", "since_timestamp_seconds", "until_timestamp_seconds"):
        assert not undrained.find(f"glb_drain_{name}")


async def test_drain_reason_label_is_at_most_max_reason_characters(glb):
    """A reason longer than the API allows (a hand-edited state file) is cut in the label."""
    assert glb.monitor.drain(Drain("us-east", None, "ops", time.time(), "x" * (MAX_REASON + 50)))
    (info,) = (await scrape(glb)).find("glb_drain_info")
    assert info.labels["reason"] == "x" * MAX_REASON


async def test_build_config_and_process_metrics_are_present(glb):
    """Build info, configured counts, reload counters and process metrics are exported."""
    scraped = await scrape(glb)
    info = scraped.find("glb_build_info")
    assert [(s.labels["version"], s.value) for s in info] == [(__version__, 1)]
    assert scraped.value("glb_services") == 2
    assert scraped.value("glb_clusters") == 3
    assert scraped.value("glb_config_reloads_total", result="error") == 0
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert scraped.find(name), name
    assert scraped.value("process_open_fds") > 0


async def test_client_chosen_names_never_become_label_values(glb):
    """Hundreds of random names and qtypes add no label value a client chose and few series."""
    rng = random.Random(20240601)
    labels = ["".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(200)]
    names = [f"{label}.glb.test" if i % 2 else f"{label}.example" for i, label in enumerate(labels)]
    meta = {0, 41, *range(249, 256)}  # OPT, TKEY, TSIG, IXFR, AXFR...: not plain questions
    plain = [dns.rdatatype.RdataType.make(t) for t in range(1, 300) if t not in meta]
    qtypes = [rng.choice(plain) for _ in names]
    before = await scrape(glb)
    asked = list(zip(names, qtypes, strict=True))
    for start in range(0, len(asked), 50):
        await asyncio.gather(
            *(query(glb, name, qtype) for name, qtype in asked[start : start + 50])
        )
    after = await scrape(glb)
    assert not [label for label in labels if label in after.text]
    dns_series = after.find("glb_dns_queries_total")
    assert {s.labels["qtype"] for s in dns_series} <= QTYPES | {"other"}
    assert {s.labels["rcode"] for s in dns_series} <= RCODES
    assert len(after.samples) - len(before.samples) <= len(dns_series)
    assert len(dns_series) <= 2 * (len(QTYPES) + 1) * len(RCODES)


async def test_exposition_passes_promtool_check_metrics(glb, clusters):
    """`promtool check metrics` finds nothing to complain about in a busy glb's exposition."""
    promtool = needs("promtool")
    await query(glb, SERVICE)
    await query(glb, WIDE)
    await clusters[1].kill()
    await wait_state(glb, "us-east", EndpointState.DOWN)
    glb.monitor.drain(drain_of("eu-west"))
    now = time.time()
    glb.monitor.drain(Drain("us-east", SERVICE, "ops", now, 'say "why"\\\n', until=now + 60))
    text = await scrape_text(glb.admin_url)
    assert "glb_drain_until_timestamp_seconds" in text
    assert await run(promtool, "check", "metrics", stdin=text) == (0, "")


async def test_proxied_requests_are_counted_by_service_cluster_and_code(glb, clusters):
    """Proxied requests count by serving cluster and code; retries count once per extra attempt."""
    eu = clusters[0]
    url = glb.http_url + "/"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(url, headers={"Host": SERVICE}) as response:
                assert response.status == 200
        async with session.get(url, headers={"Host": "nobody.example"}) as response:
            assert response.status == 421
        # eu-west cuts the proxy's connections (from 127.0.0.1) but not the probes' (from
        # probes.source): glb cannot know, so the next request fails there and is retried on
        # us-east (a kill would be noticed at once, through the connections it closes)
        await eu.refuse_from("127.0.0.1")
        async with session.get(url, headers={"Host": SERVICE}) as response:
            assert response.status == 200
            assert "us-east" in await response.text()
    scraped = await scrape(glb)
    requests = "glb_proxy_requests_total"
    assert scraped.value(requests, service=SERVICE, cluster="eu-west", code="200") == 3
    assert scraped.value(requests, service=SERVICE, cluster="us-east", code="200") == 1
    assert scraped.value("glb_proxy_retries_total", service=SERVICE) == 1
    assert scraped.value("glb_proxy_request_duration_seconds_count", service=SERVICE) == 4
    assert scraped.value("glb_proxy_active_requests", service=SERVICE) == 0
    assert "nobody.example" not in scraped.text  # no label ever takes a client's Host
