"""The `glb` command as a user runs it: a real process, real config files, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message

from glb.cli import taken_port_advice
from glb.config import load_settings
from glb.errors import StartupError
from tests.clusters import ROOT, address_block, start_clusters
from tests.processes import run
from tests.serve import start_serve, stop_serve
from tests.test_hostnames import until

GOOD = """
dns: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]
clusters: [{name: eu-west, addresses: [ADDRESS]}]
services:
  - {name: app.glb.test, port: PORT, probe: {type: tcp}, backends: [{cluster: eu-west}]}
"""

BAD = """
dns: {listen: "127.0.0.1:99999"}
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test}]}]
clusters: [{name: eu-west, addresses: [127.0.0.300]}]
services:
  - name: app.other.test
    colour: blue
    probe: {timeout: 2s, rise: 0}
    backends: [{cluster: nowhere}]
"""


async def run_glb(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run([sys.executable, "-m", "glb", *args], cwd=ROOT, env=env, within=30)


async def test_check_accepts_the_example_config():
    """glb check on the shipped example prints OK and exits 0."""
    code, out, _ = await run_glb("check", "-c", "config/example.yaml")
    assert code == 0
    assert "OK (1 zone(s), 2 cluster(s), 1 service(s))" in out


async def test_check_lists_every_problem_with_its_key_path(tmp_path: Path):
    """glb check on a bad file prints each problem with file, line, column and key path, and
    exits 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, _, err = await run_glb("check", "-c", str(path))
    assert code == 2
    for expected in (
        f"{path}:2:15: dns.listen: '127.0.0.1:99999' is not host:port",
        f"{path}:4:40: clusters[0].addresses[0]: '127.0.0.300' is not an IPv4 or IPv6 address",
        f"{path}:7:5: services[0].colour: unknown key",
        f"{path}:8:32: services[0].probe.rise: 0 is out of range: it must be at least 1",
    ):
        assert expected in err


async def test_check_reports_cross_field_problems(tmp_path: Path):
    """Problems spanning keys (zone, cluster references, timeouts) are all reported together."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        BAD.replace("99999", "5353")
        .replace("127.0.0.300", "127.0.0.3")
        .replace("    colour: blue\n", "")
        .replace("rise: 0", "rise: 1")
    )
    code, _, err = await run_glb("check", "-c", str(path))
    assert code == 2
    assert "services[0].name: app.other.test is not inside any configured zone" in err
    assert "services[0].backends[0].cluster: unknown cluster 'nowhere'" in err
    assert "services[0].probe.timeout: 2s is longer than the interval (1s)" in err
    assert "zones[0].nameservers[0].address: ns1.glb.test is inside the zone" in err


async def test_serve_refuses_an_invalid_config(tmp_path: Path):
    """glb serve exits 2 without serving when the file is invalid."""
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, _, err = await run_glb("serve", "-c", str(path))
    assert code == 2
    assert "is invalid" in err
    assert f"{path}:7:5: services[0].colour: unknown key" in err  # the words of glb check


async def test_missing_config_is_a_clear_error(tmp_path: Path):
    """A config path that does not exist, or none at all, is named in a one-line error."""
    code, _, err = await run_glb("check", "-c", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read the file" in err
    code, _, err = await run_glb("serve", env={"PATH": "/usr/bin:/bin"})
    assert code == 2
    assert "pass -c FILE or set GLB_CONFIG" in err


async def test_serve_answers_dns_and_stops_cleanly_on_sigterm(tmp_path: Path):
    """glb serve answers queries for its zone and exits 0 on SIGTERM."""
    [cluster] = await start_clusters(["eu-west"])
    try:
        path = tmp_path / "glb.yaml"
        path.write_text(GOOD.replace("ADDRESS", cluster.address).replace("PORT", str(cluster.port)))
        served = await start_serve(path)
        reply = await dns.asyncquery.udp(
            dns.message.make_query("app.glb.test", "A"),
            "127.0.0.1",
            port=served.dns_port,
            timeout=2,
        )
        assert [item.address for item in reply.answer[0]] == [cluster.address]
        assert await stop_serve(served) == 0
    finally:
        await cluster.stop()


async def _dns_port(stderr: asyncio.StreamReader) -> int:
    async with asyncio.timeout(20):
        while line := (await stderr.readline()).decode():
            if match := re.search(r"serving DNS on 127\.0\.0\.1 port (\d+)", line):
                return int(match[1])
    raise AssertionError("glb never said it was serving")


def demo_config(tmp_path: Path) -> tuple[Path, list[str], int]:
    """config/demo.yaml on fresh loopback addresses and free ports: its path, the clusters'
    addresses and their port."""
    addresses = address_block(3)
    probe = socket.socket()  # a port free on these fresh addresses, which nothing else uses
    probe.bind((addresses[0], 0))
    port = probe.getsockname()[1]
    probe.close()
    config = (ROOT / "config" / "demo.yaml").read_text()
    for n, address in enumerate(addresses):
        config = config.replace(f"127.0.1.{n + 1}", address)
    for listen in ("127.0.0.1:5353", "127.0.0.1:8080", "127.0.0.1:9100"):
        config = config.replace(listen, "127.0.0.1:0")
    config = config.replace("8080", str(port))
    path = tmp_path / "demo.yaml"
    path.write_text(config)
    return path, addresses, port


async def start_demo(*args: str) -> asyncio.subprocess.Process:
    """`glb demo ARGS` as a real process, its output piped."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "glb", "demo", *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def demo_banner(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """The DNS port a running demo logs, and the banner it prints once serving."""
    assert process.stdout is not None
    assert process.stderr is not None
    dns_port = await _dns_port(process.stderr)
    async with asyncio.timeout(10):
        banner = (await process.stdout.readuntil(b"Press Ctrl-C")).decode()
    return dns_port, banner


async def test_demo_serves_its_simulated_clusters(tmp_path: Path):
    """glb demo starts the simulated clusters and glb, and prints the dig commands to try."""
    path, addresses, port = demo_config(tmp_path)
    process = await start_demo("-c", str(path))
    try:
        dns_port, banner = await demo_banner(process)
        assert f"dig @127.0.0.1 -p {dns_port} app.glb.example.test A +short" in banner
        assert f"curl -X POST http://{addresses[0]}:{port}/fail" in banner
        reply = await dns.asyncquery.udp(
            dns.message.make_query("app.glb.example.test", "A"),
            "127.0.0.1",
            port=dns_port,
            timeout=2,
        )
        assert [item.address for item in reply.answer[0]] == [addresses[0]]  # the fastest
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == 0


async def test_watch_needs_a_sensible_number_of_seconds() -> None:
    """`--watch` takes 0.05 to 3600 seconds; anything else is a usage error (exit 2)."""
    for value in ("0", "-1", "abc", "4000"):
        code, _, err = await run_glb("serve", "-c", "x.yaml", "--watch", value)
        assert code == 2, value
        assert "number of seconds" in err, err


def taken_udp_port() -> socket.socket:
    """A UDP socket holding a loopback port, as mDNS holds 5353."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    return holder


async def test_demo_says_how_to_pick_another_dns_port_when_its_is_taken(tmp_path: Path):
    """glb demo on a DNS port another process holds exits 1, saying how to run it on another."""
    path, _, _ = demo_config(tmp_path)
    with taken_udp_port() as holder:
        taken = holder.getsockname()[1]
        env = {**os.environ, "GLB_DNS__LISTEN": f"127.0.0.1:{taken}"}
        code, _, err = await run_glb("demo", "-c", str(path), env=env)
    assert code == 1
    assert f"cannot listen on 127.0.0.1 port {taken} (UDP)" in err
    assert "pick another port: GLB_DNS__LISTEN=127.0.0.1:5399 scripts/demo" in err
    assert "Traceback" not in err


async def test_serve_names_the_setting_of_a_taken_port(tmp_path: Path):
    """glb serve on a DNS port another process holds names dns.listen and its variable."""
    with taken_udp_port() as holder:
        taken = holder.getsockname()[1]
        path = tmp_path / "glb.yaml"
        config = GOOD.replace("ADDRESS", "127.0.0.1").replace("PORT", "8080")
        path.write_text(
            config.replace('dns: {listen: "127.0.0.1:0"}', f'dns: {{listen: "127.0.0.1:{taken}"}}')
        )
        code, _, err = await run_glb("serve", "-c", str(path))
    assert code == 1
    assert f"cannot listen on 127.0.0.1 port {taken} (UDP)" in err
    assert f"change dns.listen in {path}, or pick another port: GLB_DNS__LISTEN=" in err
    assert "Traceback" not in err


def test_a_taken_mdns_port_is_named_as_mdns() -> None:
    """The demo's default DNS port is mDNS's too: the advice says so before the override."""
    settings = load_settings(ROOT / "config" / "demo.yaml")
    taken = StartupError("cannot listen", listen=("127.0.0.1", 5353))
    advice = taken_port_advice(taken, settings, "scripts/demo")
    assert "mDNS" in advice[0]
    assert advice[1] == "pick another port: GLB_DNS__LISTEN=127.0.0.1:5399 scripts/demo"
    assert taken_port_advice(StartupError("other"), settings, "scripts/demo") == []


async def test_help_describes_every_command_and_hides_the_internal_worker():
    """`glb --help` lists each command with what it does; serve is more than DNS; no worker."""
    code, out, _ = await run_glb("--help")
    assert code == 0
    listed = " ".join(out.split())  # argparse wraps lines at the terminal's width
    assert (
        "serve run glb: authoritative DNS, the HTTP front end, health probes and the admin API"
        in listed
    )
    assert "check validate a configuration file" in listed
    assert "demo try glb: three simulated clusters on loopback" in listed
    assert "consistency compare what several running glb instances answer now" in listed
    assert "explain per service: how long clients take to leave a failed cluster" in listed
    assert "worker" not in out
    code, out, _ = await run_glb("serve", "--help")
    assert code == 0
    assert "the HTTP reverse proxy front end" in " ".join(out.split())


def test_a_reader_that_goes_away_ends_the_output_quietly() -> None:
    """`glb explain ... | head`: the pipe's reader is gone before glb writes; glb exits 1 with
    no traceback instead of a BrokenPipeError's."""
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)  # before glb starts: its first write meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "glb", "explain", "-c", "config/example.yaml"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    assert b"BrokenPipeError" not in done.stderr


def free_port(address: str) -> int:
    """A TCP port free on `address` now."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
    return port


def kubernetes_demo_config(tmp_path: Path) -> tuple[Path, str, int]:
    """config/demo-kubernetes.yaml on free ports, its kubeconfigs (in tmp_path) pointing at free
    ports: its path, the address prefix for the clusters and their port."""
    prefix = address_block(1)[0].rsplit(".", 1)[0]
    port = free_port(f"{prefix}.1")
    config = (ROOT / "config" / "demo-kubernetes.yaml").read_text()
    for name in ("eu-west", "us-east", "ap-south"):
        shipped = (ROOT / "config" / "kube" / f"{name}.kubeconfig").read_text()
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        kubeconfig.write_text(
            re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{free_port('127.0.0.1')}", shipped)
        )
        config = config.replace(f"config/kube/{name}.kubeconfig", str(kubeconfig))
    for listen in ("127.0.0.1:5353", "127.0.0.1:8080", "127.0.0.1:9100"):
        config = config.replace(listen, "127.0.0.1:0")
    path = tmp_path / "demo-kubernetes.yaml"
    path.write_text(config.replace("8080", str(port)))
    return path, prefix, port


async def _admin_url(stderr: asyncio.StreamReader) -> str:
    async with asyncio.timeout(20):
        while line := (await stderr.readline()).decode():
            if match := re.search(r"admin API on (http://\S+)", line):
                return match[1]
    raise AssertionError("glb never said where its admin API is")


async def _answers(dns_port: int, name: str) -> set[str]:
    query = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=dns_port, timeout=2)
    return {item.address for rrset in reply.answer for item in rrset if rrset.rdtype == 1}


async def test_the_kubernetes_demo_shows_addresses_arriving_and_moving(tmp_path: Path):
    """glb demo --kubernetes: glb answers the address the emulated Ingress gets once its load
    balancer arrives, then the one it moves to; the admin API names the Ingress as the origin
    (the annotated one for the annotation route), and shows the cluster losing its ready
    endpoints as not_ready."""
    path, prefix, _ = kubernetes_demo_config(tmp_path)
    args = ["--kubernetes", "-c", str(path), "--move-every", "2", "--address-prefix", prefix]
    process = await start_demo(*args)
    try:
        dns_port, banner = await demo_banner(process)
        assert process.stderr is not None
        admin = await _admin_url(process.stderr)  # logged after the DNS port: still buffered
        assert "us-east: http://127.0.0.1:" in banner
        assert f"(load balancer {prefix}.2 / {prefix}.12)" in banner
        www, store = "www.glb.example.test", "store.glb.example.test"

        async def answered(name: str, expected: set[str]) -> bool:
            return await _answers(dns_port, name) == expected

        await until(lambda: answered(www, {f"{prefix}.2"}), 20)  # arrived: us-east first
        async with aiohttp.ClientSession() as session:

            async def service(name: str) -> Any:
                async with session.get(f"{admin}/api/v1/services/{name}") as reply:
                    return await reply.json()

            endpoints = (await service(www))["endpoints"]
            assert {e["origin"] for e in endpoints} == {"Ingress shop/app"}
            assert {e["cluster"] for e in endpoints} == {"eu-west", "us-east", "ap-south"}
            stored = (await service(store))["endpoints"]
            assert [(e["cluster"], e["origin"]) for e in stored] == [
                ("ap-south", "Ingress shop/store")
            ]

            async def ap_south_not_ready() -> bool:
                states = {e["cluster"]: e["state"] for e in (await service(www))["endpoints"]}
                return states.get("ap-south") == "not_ready"

            await until(ap_south_not_ready, 20)
        await until(lambda: answered(www, {f"{prefix}.12"}), 20)  # moved
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == 0


async def test_check_accepts_the_kubernetes_demo_config():
    """The Kubernetes demo's configuration (and its shipped kubeconfigs) pass glb check."""
    code, out, _ = await run_glb("check", "-c", "config/demo-kubernetes.yaml")
    assert code == 0
    assert "OK (1 zone(s), 3 cluster(s), 3 service(s))" in out


async def test_the_kubernetes_demo_says_when_a_kubeconfig_is_missing(tmp_path: Path):
    """A kubeconfig the demo cannot read (to know where to serve that cluster's API) is a clear
    error (exit 1), as is an address prefix that is not three octets (exit 2)."""
    path, prefix, _ = kubernetes_demo_config(tmp_path)
    (tmp_path / "us-east.kubeconfig").unlink()
    code, _, err = await run_glb(
        "demo", "--kubernetes", "-c", str(path), "--address-prefix", prefix
    )
    assert code == 1
    assert "demo cluster 'us-east': cannot read its kubeconfig" in err
    assert "Traceback" not in err
    code, _, err = await run_glb("demo", "--kubernetes", "--address-prefix", "127.0.300")
    assert code == 2
    assert "'127.0.300' is not the first three octets of an IPv4 address" in err
