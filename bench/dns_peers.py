"""Peer DNS servers for the DNS benchmark: gdnsd and PowerDNS with health-checked records.

    python -m bench.dns_peers --check            # self-check every installed peer
    python -m bench.dns_peers --check --install  # apt-get the missing peers first

bench/dns.py runs dnsperf against glb and a reference echo server; this module lets it run the
same files against two real authoritative servers that do what glb does (answer a name with the
healthy ones of a set of addresses, each checked by an HTTP probe):

    for kind in peer_kinds(ensure_peers(install=True)):
        with peer_server(kind, zone=ZONE, names=["s0", "s1"], addresses=["127.0.1.1", ...],
                         health_port=port, health_path="/healthz", core=0) as peer:
            run dnsperf -s peer.address -p peer.port ...

Each peer runs in the foreground as a child process (pinned with ``taskset -c core`` when
``core`` is given), configured from scratch in a temporary directory (no file under /etc is
read), listening on 127.0.0.1 on a free port for UDP and TCP. ``peer_server`` yields once the
peer answers SOA for the zone, and always stops it on exit (SIGTERM, SIGKILL after 5 s).

Names: each entry of ``names`` is a label relative to ``zone`` ("svc0" is svc0.<zone>) or a
full name inside it ("svc0.<zone>", with or without the final dot). Every name gets the same
``addresses`` (IPv4 loopback only, such as 127.0.1.1-3: anything else is refused, so probes
never leave the machine), and each address is probed with HTTP GET
http://<address>:<health_port><health_path> (200 is up). The probes are shared by all names
(one probe per address, as glb shares one probe per target across services). The server stays
in our process group and gets SIGTERM if the thread that started it dies, even by SIGKILL.

Record semantics: every peer answers A with *all healthy addresses*, the same set for every
name, and with *all addresses* when none is healthy (fail open). In glb terms that is a service
with one endpoint per address, all of one ``priority``, ``policy: failover`` (an answer holds the
best priority tier present, in config order), ``max_answers`` at least the number of addresses
and ``when_all_down: return_all``; ``round_robin`` answers the same set, rotated. The record
order differs per server (gdnsd rotates, PowerDNS keeps the list order), the set does not. A
glb failover chain (distinct priorities, ``max_answers: 1``: the first healthy address only) has
no counterpart here: gdnsd's ordered failover is two-address (simplefo) or across resources
(metafo), so the record all three can serve alike is "the healthy set".

gdnsd 3.8 ("gdnsd"):
    ``<name> 10 DYNA multifo!r<i>``, one multifo resource per name over the addresses, with
    ``up_thresh = 0.01`` (the non-DOWN subset as long as one address is up; every address when
    all are DOWN; while any is DOWN the TTL is halved to 5). Monitoring: service type
    ``http_status`` (port ``health_port``, ``url_path = health_path``, Host ``health.<zone>``,
    ok code 200), ``interval = 2`` (gdnsd 3.8 refuses 1 s: its range is 2-3600),
    ``timeout = 1``, ``down_thresh = 2``, ``ok_thresh = 2``, ``up_thresh = 2``: glb's
    ``fall: 2``/``rise: 2`` without glb's faster re-probe of an unconfirmed change, so a dead
    address leaves after 2 failed probes 2 s apart (about 2-4 s). gdnsd probes each (address,
    service type) once however many resources use it, and runs one round of probes before it
    starts listening, so its first answers are already health-checked. Threads: gdnsd's
    defaults (2 UDP + 2 TCP per listener).

PowerDNS 4.7 with the bind backend ("powerdns-lua", "powerdns-lua-shared"):
    ``<name> 10 IN LUA A "ifurlup('http://health.<zone>:<port><path>', {'a1', 'a2', ...},
    {selector='all', backupSelector='all', timeout='1'})"``: one set of addresses, of which
    ``selector='all'`` returns every one that is up, and ``backupSelector='all'`` every address
    when none is up. The URL host is never resolved: PowerDNS pins it to each address in turn
    (curl's resolve list), so it only names the Host header. Every name uses the same URL and
    options, so PowerDNS runs one check per address for all names. Checks run every
    ``lua-health-checks-interval = 1`` s (default 5); one failure marks an address down and one
    success up (no anti-flap), so a dead address leaves within about 1 s. A check starts only
    once a query has used the record: the very first answer is the all-down fallback (every
    address), then the checks run (and expire after an hour unused). Answers from LUA records
    are not put in the packet cache (measured: ``packetcache-hit`` stays 0), so every query
    runs the Lua and sees the current state. "powerdns-lua" builds a fresh Lua state per query
    (``enable-lua-records=yes``); "powerdns-lua-shared" reuses one per thread
    (``enable-lua-records=shared``, about 12x the QPS here). Threads: PowerDNS's defaults (1
    receiver, 3 distributors). Security polling is off (``security-poll-suffix=``) and proxy
    variables are removed from its environment, so nothing leaves loopback.

``ensure_peers(install)`` says which programs are installed (and with ``install`` apt-gets the
missing ones: gdnsd, pdns-server, pdns-backend-bind). After an install the packaged services are
disabled and stopped (``systemctl disable --now`` where systemd runs, ``service ... stop``
elsewhere) and any gdnsd/pdns_server process that appeared during the install is terminated,
so nothing holds port 53. The self-check (``--check``) starts three HTTP health backends on
127.0.1.1-3, starts each available peer with the names svc0..svc2, stops the first backend and
prints how long each peer took to drop 127.0.1.1 from its answers.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.server
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

PEER_KINDS = ("gdnsd", "powerdns-lua", "powerdns-lua-shared")
PROGRAMS = ("gdnsd", "pdns_server")
PROGRAM_OF_KIND = {
    "gdnsd": "gdnsd",
    "powerdns-lua": "pdns_server",
    "powerdns-lua-shared": "pdns_server",
}
PACKAGES_OF_PROGRAM = {"gdnsd": ("gdnsd",), "pdns_server": ("pdns-server", "pdns-backend-bind")}
SERVICES_OF_PROGRAM = {"gdnsd": "gdnsd", "pdns_server": "pdns"}
PDNS_BIND_BACKEND = "libbindbackend.so"
PDNS_MODULE_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/pdns"),
    Path("/usr/lib/aarch64-linux-gnu/pdns"),
    Path("/usr/lib/pdns"),
)

LISTEN = "127.0.0.1"
RECORD_TTL = 10  # glb's default service TTL
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
APT_TIMEOUT = 600.0
SETTLE_SECONDS = 4.0
TEMP_PREFIX = "glb-peer-"
LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._~/%+=&?-]*$")


@dataclass(frozen=True)
class Peer:
    name: str  # "gdnsd", "powerdns-lua", "powerdns-lua-shared"
    address: str  # "127.0.0.1"
    port: int  # the UDP/TCP port it answers on


# ---------------------------------------------------------------------------------------------
# Installation


def _pdns_bind_backend() -> Path | None:
    for directory in PDNS_MODULE_DIRS:
        if (directory / PDNS_BIND_BACKEND).is_file():
            return directory / PDNS_BIND_BACKEND
    return None


def _program_available(program: str) -> bool:
    if shutil.which(program) is None and not Path("/usr/sbin", program).is_file():
        return False
    return program != "pdns_server" or _pdns_bind_backend() is not None


def _program_path(program: str) -> str:
    found = shutil.which(program)
    if found is not None:
        return found
    return str(Path("/usr/sbin", program))


def _pids_of(program: str) -> set[int]:
    """Process ids whose executable name is `program` (from /proc, no pattern matching)."""
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == program[:15]:
            pids.add(int(entry.name))
    return pids


def _run_bounded(cmd: list[str], timeout: float) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"dns_peers: {' '.join(cmd)}: {e}", file=sys.stderr)
        return False
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        print(f"dns_peers: {' '.join(cmd)} exited {done.returncode}\n{tail}", file=sys.stderr)
        return False
    return True


def _quiesce_packaged_services(programs: Sequence[str], before: dict[str, set[int]]) -> None:
    """Disable and stop the services the packages set up, and end daemons the install started."""
    services = [SERVICES_OF_PROGRAM[p] for p in programs]
    systemd_running = Path("/run/systemd/system").is_dir()
    if shutil.which("systemctl") is not None:
        # `disable` only removes the wants/ links, so it works whether systemd runs or not.
        args = ["disable", "--now"] if systemd_running else ["disable"]
        _run_bounded(["systemctl", *args, *(f"{s}.service" for s in services)], 60)
    if not systemd_running and shutil.which("service") is not None:
        for service in services:
            if Path("/etc/init.d", service).exists():
                _run_bounded(["service", service, "stop"], 60)
    for program in programs:
        for pid in sorted(_pids_of(program) - before.get(program, set())):
            if _is_our_peer(pid):
                continue
            print(f"dns_peers: stopping {program} (pid {pid}) started by the package")
            _stop_pid(pid)


def _is_our_peer(pid: int) -> bool:
    """Whether `pid` runs in a peer_server temporary directory (ours, not the package's)."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd.parent == Path(tempfile.gettempdir()) and cwd.name.startswith(TEMP_PREFIX)


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def ensure_peers(install: bool) -> list[str]:
    """Which of gdnsd / pdns_server are available (installing the Debian packages gdnsd,
    pdns-server, pdns-backend-bind with apt-get when `install` and missing; apt-get bounded by a
    timeout; failures leave the peer out).

    Returns program names, a subset of ["gdnsd", "pdns_server"] in that order (pdns_server only
    with its bind backend); `peer_kinds()` turns them into the kinds `peer_server` runs.
    """
    missing = [p for p in PROGRAMS if not _program_available(p)]
    if install and missing and shutil.which("apt-get") is not None:
        before = {p: _pids_of(p) for p in PROGRAMS}
        packages = [pkg for p in missing for pkg in PACKAGES_OF_PROGRAM[p]]
        started = time.monotonic()
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        print(f"dns_peers: apt-get install {' '.join(packages)}", flush=True)
        if not _run_bounded(cmd, APT_TIMEOUT):
            # Perhaps stale package lists: refresh once and retry within the same budget.
            left = APT_TIMEOUT - (time.monotonic() - started)
            if left > 30 and _run_bounded(["apt-get", "update", "-q"], left):
                _run_bounded(cmd, max(30.0, APT_TIMEOUT - (time.monotonic() - started)))
        _quiesce_packaged_services([p for p in missing if _program_available(p)], before)
    return [p for p in PROGRAMS if _program_available(p)]


def peer_kinds(programs: Sequence[str]) -> list[str]:
    """The peer kinds that the given available programs can run, in PEER_KINDS order."""
    return [k for k in PEER_KINDS if PROGRAM_OF_KIND[k] in programs]


# ---------------------------------------------------------------------------------------------
# Configuration


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _owner(name: str, zone: str) -> str:
    """The absolute owner name of `name` (a label relative to `zone`, or a full name in it)."""
    zone_fqdn = _fqdn(zone)
    full = _fqdn(name)
    if full == zone_fqdn or full.endswith("." + zone_fqdn):
        owner = full
    else:
        owner = _fqdn(f"{name.rstrip('.')}.{zone_fqdn}")
    for label in owner.rstrip(".").split("."):
        if not LABEL.match(label):
            raise ValueError(f"bad name {name!r}")
    return owner


def _owners(names: Sequence[str], zone: str) -> list[str]:
    owners = [_owner(n, zone) for n in names]
    if not owners:
        raise ValueError("no names")
    if len(set(owners)) != len(owners):
        raise ValueError("duplicate names")
    return owners


def _check_inputs(zone: str, addresses: Sequence[str], health_port: int, health_path: str) -> None:
    for label in zone.rstrip(".").split("."):
        if not LABEL.match(label):
            raise ValueError(f"bad zone {zone!r}")
    if not addresses:
        raise ValueError("no addresses")
    for address in addresses:
        # Probes go to these addresses: loopback only, so a benchmark never sends traffic away.
        if not ipaddress.IPv4Address(address).is_loopback:
            raise ValueError(f"{address}: health-checked addresses must be IPv4 loopback")
    if not 0 < health_port < 65536:
        raise ValueError(f"bad health port {health_port}")
    if not SAFE_PATH.match(health_path):
        raise ValueError(f"bad health path {health_path!r}")


def _soa_ns(zone: str) -> list[str]:
    z = _fqdn(zone)
    return [
        f"$TTL {RECORD_TTL}",
        f"{z} 300 IN SOA ns1.{z} hostmaster.{z} 1 3600 600 604800 30",
        f"{z} 300 IN NS ns1.{z}",
        f"ns1.{z} 300 IN A {LISTEN}",
    ]


def health_host(zone: str) -> str:
    """The Host both peers send in their probes (never resolved: probes go to the addresses)."""
    return f"health.{zone.rstrip('.').lower()}"


def gdnsd_files(
    zone: str,
    names: Sequence[str],
    addresses: Sequence[str],
    health_port: int,
    health_path: str,
    *,
    port: int,
    directory: Path,
) -> dict[str, str]:
    """The gdnsd config dir's files, by path relative to it: `config` and `zones/<zone>`."""
    _check_inputs(zone, addresses, health_port, health_path)
    owners = _owners(names, zone)
    addrs = ", ".join(addresses)
    resources = "\n".join(f"    r{i} => [ {addrs} ]" for i in range(len(owners)))
    config = f"""\
options => {{
  listen => [ {LISTEN}:{port} ]
  run_dir => "{directory / "run"}"
  state_dir => "{directory / "state"}"
  zones_default_ttl => {RECORD_TTL}
}}
service_types => {{
  health => {{
    plugin => http_status
    port => {health_port}
    url_path => "{health_path}"
    vhost => {health_host(zone)}
    ok_codes => [ 200 ]
    interval => 2
    timeout => 1
    up_thresh => 2
    ok_thresh => 2
    down_thresh => 2
  }}
}}
plugins => {{
  multifo => {{
    up_thresh => 0.01
    service_types => [ health ]
{resources}
  }}
}}
"""
    records = [f"{o} {RECORD_TTL} DYNA multifo!r{i}" for i, o in enumerate(owners)]
    zone_text = "\n".join([*_soa_ns(zone), *records]) + "\n"
    return {"config": config, f"zones/{zone.rstrip('.').lower()}": zone_text}


def pdns_lua_record(zone: str, addresses: Sequence[str], health_port: int, health_path: str) -> str:
    """The LUA A record content (Lua, without the zone-file quotes) for one name."""
    url = f"http://{health_host(zone)}:{health_port}{health_path}"
    addrs = ", ".join(f"'{a}'" for a in addresses)
    return f"ifurlup('{url}', {{{addrs}}}, {{selector='all', backupSelector='all', timeout='1'}})"


def pdns_files(
    zone: str,
    names: Sequence[str],
    addresses: Sequence[str],
    health_port: int,
    health_path: str,
    *,
    directory: Path,
) -> dict[str, str]:
    """The bind backend's named.conf and zone file, by path relative to `directory`."""
    _check_inputs(zone, addresses, health_port, health_path)
    z = zone.rstrip(".").lower()
    lua = pdns_lua_record(zone, addresses, health_port, health_path)
    records = [f'{o} {RECORD_TTL} IN LUA A "{lua}"' for o in _owners(names, zone)]
    named = (
        f'options {{ directory "{directory}"; }};\n'
        f'zone "{z}" {{ type master; file "{directory / (z + ".zone")}"; }};\n'
    )
    return {"named.conf": named, f"{z}.zone": "\n".join([*_soa_ns(zone), *records]) + "\n"}


def pdns_command(kind: str, *, port: int, directory: Path) -> list[str]:
    lua = "shared" if kind == "powerdns-lua-shared" else "yes"
    return [
        _program_path("pdns_server"),
        "--no-config",
        "--daemon=no",
        "--guardian=no",
        "--disable-syslog",
        "--write-pid=no",
        f"--socket-dir={directory}",
        f"--local-address={LISTEN}",
        f"--local-port={port}",
        "--launch=bind",
        f"--bind-config={directory / 'named.conf'}",
        f"--enable-lua-records={lua}",
        "--lua-health-checks-interval=1",
        "--security-poll-suffix=",
        "--loglevel=4",
    ]


# ---------------------------------------------------------------------------------------------
# Running


def free_port(address: str = LISTEN) -> int:
    """A port free for both UDP and TCP on `address` (another process may still take it)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port on {address}")


def query_a(name: str, port: int, *, address: str = LISTEN, timeout: float = 0.5) -> list[str]:
    """The A addresses the server answers for `name` (sorted); raises on no reply or an error."""
    reply = dns.query.udp(dns.message.make_query(name, "A"), address, port=port, timeout=timeout)
    if reply.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"{name}: {dns.rcode.to_text(reply.rcode())}")
    found: list[str] = []
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.A:
            found.extend(rdata.to_text() for rdata in rrset)
    return sorted(found)


def _answers_soa(zone: str, port: int) -> bool:
    query = dns.message.make_query(_fqdn(zone), "SOA")
    try:
        reply = dns.query.udp(query, LISTEN, port=port, timeout=0.3)
    except (OSError, dns.exception.DNSException):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def _clean_env() -> dict[str, str]:
    """The parent environment without proxies (libcurl would send PowerDNS's probes there)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C"
    return env


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it dies (even by
    SIGKILL), so a killed benchmark leaves no server behind. It stays in our process group, so a
    Ctrl-C or `timeout` reaches it too."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def peer_server(
    kind: str,
    *,
    zone: str,
    names: list[str],
    addresses: list[str],
    health_port: int,
    health_path: str,
    core: int | None,
) -> Iterator[Peer]:
    """Run one peer (kind: "gdnsd", "powerdns-lua" or "powerdns-lua-shared") authoritative for
    `zone`, each of `names` (labels relative to `zone`, or full names in it) answering A with the
    healthy ones of `addresses` (all of them when none is healthy), each probed with HTTP GET
    http://<address>:<health_port><health_path> (200 is up). Pinned to CPU `core` with taskset
    when given; listens on 127.0.0.1 on a free port; config and state in a temporary directory.
    Yields once it answers SOA for the zone; stops it (SIGTERM, then SIGKILL) on exit, always.
    """
    if kind not in PEER_KINDS:
        raise ValueError(f"unknown peer kind {kind!r} (known: {', '.join(PEER_KINDS)})")
    if not _program_available(PROGRAM_OF_KIND[kind]):
        raise RuntimeError(f"{PROGRAM_OF_KIND[kind]} is not installed (ensure_peers(install=True))")
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{kind}-") as tmp:
        directory = Path(tmp)
        port = free_port()
        if kind == "gdnsd":
            files = gdnsd_files(
                zone, names, addresses, health_port, health_path, port=port, directory=directory
            )
            cmd = [_program_path("gdnsd"), "-c", str(directory), "start"]
        else:
            files = pdns_files(
                zone, names, addresses, health_port, health_path, directory=directory
            )
            cmd = pdns_command(kind, port=port, directory=directory)
        for relative, text in files.items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        log_path = directory / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
                env=_clean_env(),
                preexec_fn=_die_with_parent,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers_soa(zone, port):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{kind} exited with {proc.returncode}:\n{_log_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    waited = f"{kind} did not answer within {START_TIMEOUT:.0f} s"
                    raise RuntimeError(f"{waited}:\n{_log_tail(log_path)}")
                time.sleep(0.05)
            yield Peer(name=kind, address=LISTEN, port=port)
        finally:
            _stop(proc)


# ---------------------------------------------------------------------------------------------
# Self-check


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:
        ok = self.path.split("?", 1)[0] == self.server.health_path
        if ok:
            self.server.hits += 1
        body = b"ok\n" if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _HealthServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, port: int, health_path: str) -> None:
        super().__init__((address, port), _HealthHandler)
        self.health_path = health_path
        self.hits = 0

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # gdnsd closes its probe connection once it has the status line: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def health_backends(
    addresses: Sequence[str], port: int, health_path: str
) -> Iterator[dict[str, _HealthServer]]:
    """HTTP servers answering 200 on `health_path` at each address; `stop_backend` kills one."""
    servers: dict[str, _HealthServer] = {}
    threads: list[threading.Thread] = []
    try:
        for address in addresses:
            server = _HealthServer(address, port, health_path)
            servers[address] = server
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            threads.append(thread)
        yield servers
    finally:
        for server in servers.values():
            stop_backend(server)
        for thread in threads:
            thread.join(timeout=STOP_TIMEOUT)


def stop_backend(server: _HealthServer) -> None:
    """Stop serving and close the listening socket: new probes get connection refused."""
    if server.socket.fileno() != -1:
        server.shutdown()
        server.server_close()


def free_port_on_all(addresses: Sequence[str]) -> int:
    for _ in range(50):
        port = free_port(addresses[0])
        try:
            for address in addresses:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every health address")


@dataclass
class CheckResult:
    peer: str
    before: list[str]
    after: list[str]
    drop_seconds: float | None
    others_dropped: bool
    probes_per_second: float
    error: str = ""


def _wait_for(
    name: str, port: int, want: set[str], absent: str | None, timeout: float
) -> tuple[list[str], float | None]:
    """Poll `name` until the answer is `want` (or lacks `absent`); (last answer, seconds)."""
    start = time.monotonic()
    last: list[str] = []
    while time.monotonic() - start < timeout:
        try:
            last = query_a(name, port)
        except (OSError, RuntimeError, dns.exception.DNSException):
            last = []
        if (absent is not None and last and absent not in last) or (
            absent is None and set(last) == want
        ):
            return last, time.monotonic() - start
        time.sleep(0.05)
    return last, None


def check_peer(kind: str, *, zone: str, core: int | None, drop_timeout: float) -> CheckResult:
    addresses = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    names = ["svc0", "svc1", "svc2"]
    path = "/healthz"
    port = free_port_on_all(addresses)
    qname = f"svc0.{zone}"
    with (
        health_backends(addresses, port, path) as backends,
        peer_server(
            kind,
            zone=zone,
            names=names,
            addresses=addresses,
            health_port=port,
            health_path=path,
            core=core,
        ) as peer,
    ):
        # Up: every address answered once the probes have run (PowerDNS starts its probes on
        # the first query, and answers every address until then anyway).
        for name in names:
            with contextlib.suppress(OSError, RuntimeError, dns.exception.DNSException):
                query_a(f"{name}.{zone}", peer.port)
        _wait_for(qname, peer.port, set(addresses), None, 10.0)
        # Let every probe settle into UP (gdnsd: up_thresh 2 at 2 s), counting probes meanwhile.
        hits_start, t_hits = backends[addresses[1]].hits, time.monotonic()
        time.sleep(SETTLE_SECONDS)
        rate = (backends[addresses[1]].hits - hits_start) / (time.monotonic() - t_hits)
        before = query_a(qname, peer.port)
        stop_backend(backends[addresses[0]])
        after, seconds = _wait_for(qname, peer.port, set(), addresses[0], drop_timeout)
        others = True
        for name in names[1:]:
            _, took = _wait_for(f"{name}.{zone}", peer.port, set(), addresses[0], 3.0)
            others = others and took is not None
    return CheckResult(kind, before, after, seconds, others, rate)


def _short(answer: Sequence[str]) -> str:
    return ",".join(a.rsplit(".", 1)[-1] for a in answer) or "-"


def self_check(kinds: Sequence[str], core: int | None, drop_timeout: float) -> int:
    zone = "peers.test"
    results: list[CheckResult] = []
    for kind in kinds:
        print(f"checking {kind} ...", end=" ", flush=True)
        started = time.monotonic()
        try:
            results.append(check_peer(kind, zone=zone, core=core, drop_timeout=drop_timeout))
        except (OSError, RuntimeError, ValueError, dns.exception.DNSException) as e:
            results.append(CheckResult(kind, [], [], None, False, 0.0, error=str(e)))
        print(f"{time.monotonic() - started:.1f} s", flush=True)
    print()
    print("answers list the last octet of 127.0.1.x; backend .1 stopped after 'before'")
    header = (
        f"{'peer':<20} {'before':<8} {'after':<8} {'drop (s)':>9} {'svc1-2':>7} {'probes/s':>9}"
    )
    print(header)
    print("-" * len(header))
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            print(f"{r.peer:<20} error: {r.error}")
            continue
        drop = f"{r.drop_seconds:.2f}" if r.drop_seconds is not None else "never"
        ok = r.drop_seconds is not None and r.others_dropped and len(r.before) == 3
        failed += not ok
        others = "yes" if r.others_dropped else "no"
        print(
            f"{r.peer:<20} {_short(r.before):<8} {_short(r.after):<8} {drop:>9} {others:>7}"
            f" {r.probes_per_second:>9.1f}"
        )
    print("(svc1-2: svc1 and svc2 dropped it too; probes/s: probes one backend got while up)")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="self-check each available peer")
    parser.add_argument("--install", action="store_true", help="apt-get missing peers first")
    parser.add_argument("--core", type=int, default=None, help="pin peers to this CPU")
    parser.add_argument("--drop-timeout", type=float, default=10.0, help="seconds to wait")
    parser.add_argument("--kind", action="append", choices=PEER_KINDS, help="only these peers")
    args = parser.parse_args(argv)
    programs = ensure_peers(install=args.install)
    kinds = [k for k in peer_kinds(programs) if not args.kind or k in args.kind]
    print(f"available: {', '.join(programs) or 'none'}")
    if not args.check:
        return 0
    if not kinds:
        print("no peer available (python -m bench.dns_peers --check --install)")
        return 1
    return self_check(kinds, args.core, args.drop_timeout)


if __name__ == "__main__":
    sys.exit(main())
