"""The configuration: value parsers, defaults, validation with key paths, env overrides and
the conversion to the core topology."""

from __future__ import annotations

import math
import os
import re
import textwrap
from pathlib import Path

import pytest

from glb.config import (
    Settings,
    load_settings,
    parse_address,
    parse_domain,
    parse_duration,
    parse_listen,
    parse_settings,
    parse_status_ranges,
    runtime,
    to_topology,
    zone_of,
)
from glb.core.model import (
    Cluster,
    LatencyBand,
    Nameserver,
    PolicyName,
    ProbeSpec,
    ProbeType,
    Topology,
    WhenAllDown,
    Zone,
)
from glb.errors import ConfigError

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[1] / "config" / "example.yaml"

BASE = """\
zones:
  - name: example.test
    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]
clusters:
  - {name: eu, addresses: [192.0.2.1]}
  - {name: us, addresses: [192.0.2.2]}
"""


@pytest.fixture(autouse=True)
def no_glb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep GLB_* variables of the developer's shell out of these tests."""
    for name in list(os.environ):
        if name.upper().startswith("GLB_"):
            monkeypatch.delenv(name)


def with_services(services: str, base: str = BASE) -> str:
    """BASE plus a services section given as indented YAML list items."""
    return base + "services:\n" + textwrap.indent(textwrap.dedent(services), "  ")


def reasons_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.reasons


def topology_of(text: str) -> Topology:
    return to_topology(parse_settings(text))


# ---------------------------------------------------------------------------------------------
# Value parsers


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5", 1.5),
        ("0.5s", 0.5),
        (" 3s ", 3.0),
        ("10", 10.0),
        (1.5, 1.5),
        (2, 2.0),
    ],
    ids=str,
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    """Durations are seconds, as numbers or with an ms/s/m/h unit."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [0, 0.0, -1, -0.5, "0s", "0", "-1s", "abc", "", "1d", "1 s s", "1e3", True, False, None, []],
    ids=repr,
)
def test_parse_duration_rejects(value: object) -> None:
    """Zero, negative, unitless text, unknown units, booleans and non-numbers are not durations."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_parse_duration_rejects_nan() -> None:
    """NaN is not a duration."""
    with pytest.raises(ValueError, match="finite"):
        parse_duration(math.nan)


def test_parse_duration_rejects_infinity() -> None:
    """An infinite duration (YAML `.inf`) is rejected."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(math.inf)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("example.test", "example.test"),
        ("Example.TEST.", "example.test"),
        ("  app.example.test ", "app.example.test"),
        ("_dns-sd._udp.example.test", "_dns-sd._udp.example.test"),
        ("a" * 63 + ".test", "a" * 63 + ".test"),
        ("localhost", "localhost"),
    ],
    ids=["plain", "case-and-dot", "spaces", "underscores", "63-char-label", "single-label"],
)
def test_parse_domain_accepts(value: str, name: str) -> None:
    """Domain names are lowercased and lose the trailing dot."""
    assert parse_domain(value) == name


@pytest.mark.parametrize(
    "value",
    ["", ".", "a..test", "-a.test", "a-.test", "a b.test", "a" * 64 + ".test", "é.test", 5, None,
     ".".join(["abcdefghi"] * 26)],
    ids=[
        "empty", "root", "empty-label", "leading-hyphen", "trailing-hyphen", "space",
        "64-char-label", "non-ascii", "number", "none", "over-253",
    ],
)  # fmt: skip
def test_parse_domain_rejects(value: object) -> None:
    """Empty names and labels, bad characters, long labels or names and non-strings are rejected."""
    with pytest.raises(ValueError, match="domain name"):
        parse_domain(value)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::1", "::1"),
    ],
    ids=["v4", "v4-spaces", "v6-canonical", "v6-loopback"],
)
def test_parse_address_accepts(value: str, address: str) -> None:
    """Addresses come back in their canonical text form."""
    assert parse_address(value) == address


@pytest.mark.parametrize("value", ["256.0.0.1", "example.test", "", "192.0.2.1/24", None], ids=repr)
def test_parse_address_rejects(value: object) -> None:
    """Anything but a single IPv4 or IPv6 address is rejected."""
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        parse_address(value)


@pytest.mark.parametrize(
    ("value", "listen"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("[0:0::1]:53", ("::1", 53)),
        (":8080", ("0.0.0.0", 8080)),  # noqa: S104 (asserting the parsed value, not binding)
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        (["10.0.0.1", 80], ("10.0.0.1", 80)),
        (("10.0.0.1", "80"), ("10.0.0.1", 80)),
    ],
    ids=["v4", "v6", "v6-canonical", "any-address", "port-0", "list", "tuple"],
)
def test_parse_listen_accepts(value: object, listen: tuple[str, int]) -> None:
    """Listen addresses are host:port, [v6]:port, :port or a [host, port] pair."""
    assert parse_listen(value) == listen


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1", "localhost:53", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http", "", "[::1]"],
    ids=["no-port", "hostname", "port-too-big", "negative-port", "named-port", "empty",
         "v6-no-port"],
)  # fmt: skip
def test_parse_listen_rejects(value: str) -> None:
    """A listen address needs a literal IP (or none) and a numeric port up to 65535."""
    with pytest.raises(ValueError, match="is not"):
        parse_listen(value)


@pytest.mark.parametrize(
    ("value", "ranges"),
    [
        ([200, "200-399", "204"], ((200, 200), (200, 399), (204, 204))),
        ("500", ((500, 500),)),
        (204, ((204, 204),)),
        (["100-599"], ((100, 599),)),
    ],
    ids=["mixed", "one-string", "one-int", "widest"],
)
def test_parse_status_ranges_accepts(value: object, ranges: tuple[tuple[int, int], ...]) -> None:
    """Status codes and low-high ranges become (low, high) pairs, in order."""
    assert parse_status_ranges(value) == ranges


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("399-200", "within 100-599"),
        ("99", "within 100-599"),
        ("600", "within 100-599"),
        ("200-600", "within 100-599"),
        ("2xx", "not a status code"),
        ("abc", "not a status code"),
        ("-200", "not a status code"),
        ([], "at least one"),
    ],
    ids=["reversed", "too-low", "too-high", "range-too-high", "2xx", "text", "open-range", "empty"],
)
def test_parse_status_ranges_rejects(value: object, message: str) -> None:
    """Reversed or out-of-range codes, wildcards and empty lists are rejected."""
    with pytest.raises(ValueError, match=message):
        parse_status_ranges(value)


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("app.glb.example.test", "glb.example.test"),
        ("glb.example.test", "glb.example.test"),
        ("app.example.test", "example.test"),
        ("xglb.example.test", "example.test"),
        ("app.other.test", None),
    ],
    ids=["longest", "apex", "outer", "not-a-label-suffix", "outside"],
)
def test_zone_of_is_the_longest_matching_zone(name: str, zone: str | None) -> None:
    """A name belongs to the longest configured zone it is inside, matched on whole labels."""
    assert zone_of(name, ["example.test", "glb.example.test"]) == zone
    assert zone_of(name, ["glb.example.test", "example.test"]) == zone


# ---------------------------------------------------------------------------------------------
# Defaults


def test_minimal_file_takes_every_default() -> None:
    """A file with only names and addresses gets the documented defaults everywhere."""
    settings = load_settings(DATA / "minimal.yaml")
    assert settings.dns.listen == ("127.0.0.1", 5353)
    assert settings.http.listen == ("127.0.0.1", 8080)
    assert settings.admin.listen == ("127.0.0.1", 9100)
    assert settings.admin.token is None
    assert settings.log.level == "info"
    backend = settings.services[0].backends[0]
    assert (backend.weight, backend.priority) == (100, 1)


def test_minimal_topology_defaults() -> None:
    """The minimal file becomes a topology with default zone, service and probe values."""
    topology = to_topology(load_settings(DATA / "minimal.yaml"))
    assert topology.zones == (
        Zone(
            name="example.test",
            nameservers=(Nameserver("ns1.example.test", "192.0.2.53"),),
            hostmaster="hostmaster.example.test",
            ttl=300,
            negative_ttl=30,
            serial=1,
            refresh=3600,
            retry=600,
            expire=604800,
        ),
    )
    assert topology.clusters == (Cluster("eu", "eu", ("192.0.2.1",)),)
    (service,) = topology.services
    assert (service.name, service.zone, service.policy) == (
        "app.example.test",
        "example.test",
        PolicyName.LATENCY,
    )
    assert (service.ttl, service.max_answers, service.port) == (10, 1, 80)
    assert service.when_all_down is WhenAllDown.RETURN_ALL
    assert service.latency_band == LatencyBand(relative=0.2, absolute=0.005)
    assert service.endpoints[0].target.probe == ProbeSpec(
        type=ProbeType.HTTP,
        port=80,
        interval=1.0,
        timeout=0.75,
        rise=2,
        fall=2,
        fast_interval=0.25,
        latency_alpha=0.3,
        path="/",
        host="app.example.test",
        headers=(),
        expect_status=((200, 399),),
        body_contains=None,
        tls_verify=True,
    )


@pytest.mark.parametrize(
    ("probe", "field", "value"),
    [
        ("{interval: 2s}", "fast_interval", 0.5),
        ("{interval: 2s, fast_interval: 100ms}", "fast_interval", 0.1),
        ("{}", "port", 8443),
        ("{port: 9000}", "port", 9000),
        ("{}", "host", "svc.example.test"),
        ("{host: health.internal}", "host", "health.internal"),
        ("{type: tcp}", "host", ""),
        ("{headers: {b: '2', a: '1'}}", "headers", (("a", "1"), ("b", "2"))),
        ("{expect_status: [204, '300-302']}", "expect_status", ((204, 204), (300, 302))),
        ("{timeout: 250ms, rise: 3, fall: 5}", "timeout", 0.25),
        ("{latency_alpha: 1}", "latency_alpha", 1.0),
        ("{type: https, tls_verify: false}", "tls_verify", False),
        ("{}", "adaptive_timeout", True),
        ("{adaptive_timeout: false}", "adaptive_timeout", False),
        ("{}", "min_timeout", 0.25),
        ("{timeout: 150ms}", "min_timeout", 0.15),
        ("{min_timeout: 100ms}", "min_timeout", 0.1),
        ("{}", "hold_connection", True),
        ("{hold_connection: false}", "hold_connection", False),
    ],
    ids=[
        "fast-interval-quarter", "fast-interval-given", "port-from-service", "port-given",
        "host-is-service-name", "host-given", "tcp-has-no-host", "headers-sorted",
        "status-ranges", "timeout", "alpha", "tls-verify", "adaptive-by-default",
        "adaptive-off", "min-timeout-default", "min-timeout-at-most-timeout", "min-timeout-given",
        "held-by-default", "not-held",
    ],
)  # fmt: skip
def test_probe_spec_from_settings(probe: str, field: str, value: object) -> None:
    """Probe keys map onto the ProbeSpec, with defaults taken from the interval and the service."""
    text = with_services(f"""\
        - name: svc.example.test
          port: 8443
          probe: {probe}
          backends: [{{cluster: eu}}]
        """)
    spec = topology_of(text).services[0].endpoints[0].target.probe
    assert getattr(spec, field) == value


def test_probes_hold_connection_is_the_default_a_probe_may_override() -> None:
    """probes.hold_connection: false turns held connections off for every probe that does not
    say otherwise."""
    services = """\
        - name: held.example.test
          probe: {hold_connection: true}
          backends: [{cluster: eu}]
        - name: plain.example.test
          backends: [{cluster: eu}]
        """
    text = with_services(services, BASE + "probes: {hold_connection: false}\n")
    held, plain = topology_of(text).services
    assert held.endpoints[0].target.probe.hold_connection is True
    assert plain.endpoints[0].target.probe.hold_connection is False


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (
            "{timeout: 500ms, min_timeout: 600ms}",
            "9:42: services[0].probe.min_timeout: 0.6s is longer than the timeout (0.5s)",
        ),
        (
            "{min_timeout: soon}",
            "9:26: services[0].probe.min_timeout: 'soon' is not a duration (use 1s, 250ms, 2m "
            "or a number of seconds)",
        ),
        (
            "{adaptive_timeout: maybe}",
            "9:31: services[0].probe.adaptive_timeout: 'maybe' is not a boolean (use true or "
            "false)",
        ),
        (
            "{hold_connection: 2}",
            "9:30: services[0].probe.hold_connection: 2 is not a boolean (use true or false)",
        ),
    ],
    ids=["min-over-timeout", "min-not-a-duration", "adaptive-not-a-boolean", "hold-not-a-boolean"],
)
def test_adaptive_timeout_and_held_connection_errors(probe: str, reason: str) -> None:
    """Bad adaptive-timeout and held-connection settings are refused with their line, column
    and key path."""
    text = with_services(f"""\
        - name: svc.example.test
          probe: {probe}
          backends: [{{cluster: eu}}]
        """)
    assert reasons_of(text) == [f"<config>:{reason}"]


def test_serial_is_passed_to_every_zone() -> None:
    """to_topology's serial becomes the SOA serial of every zone."""
    topology = to_topology(load_settings(DATA / "topology.yaml"), serial=2024010101)
    assert [z.serial for z in topology.zones] == [2024010101, 2024010101]


def test_empty_file_reports_the_required_keys() -> None:
    """An empty file is a mapping with zones and clusters missing."""
    assert reasons_of("") == [
        "<config>: zones: required key is missing",
        "<config>: clusters: required key is missing",
    ]


# ---------------------------------------------------------------------------------------------
# The example file and a richer topology


def test_example_file_loads() -> None:
    """config/example.yaml is valid and becomes the topology it describes."""
    topology = to_topology(load_settings(EXAMPLE))
    (zone,) = topology.zones
    assert (zone.name, zone.hostmaster) == ("glb.example.test", "hostmaster.example.test")
    assert [(r.name, r.type) for r in zone.records] == [
        ("glb.example.test", "MX"),
        ("mail.glb.example.test", "A"),
        ("glb.example.test", "TXT"),
        ("glb.example.test", "CAA"),
        ("www.glb.example.test", "CNAME"),
    ]
    (service,) = topology.services
    assert service.zone == "glb.example.test"
    assert [(e.cluster, e.address, e.priority, e.index) for e in service.endpoints] == [
        ("eu-west", "127.0.1.1", 1, 0),
        ("us-east", "127.0.1.2", 2, 1),
        ("us-east", "fd00::2", 2, 2),
    ]
    probe = service.endpoints[0].target.probe
    assert (probe.path, probe.port, probe.timeout, probe.fast_interval) == (
        "/healthz",
        8080,
        0.75,
        0.25,
    )


def test_topology_has_an_endpoint_per_cluster_address() -> None:
    """Each backend contributes one endpoint per cluster address, indexed in config order."""
    topology = to_topology(load_settings(DATA / "topology.yaml"))
    www = topology.service("www.example.test")
    assert www is not None
    assert [(e.cluster, e.address, e.priority, e.index, e.family) for e in www.endpoints] == [
        ("eu", "192.0.2.1", 1, 0, 4),
        ("eu", "2001:db8::1", 1, 1, 6),
        ("us", "192.0.2.2", 2, 2, 4),
    ]
    db = topology.service("db.glb.example.test")
    assert db is not None
    assert [(e.address, e.weight, e.index) for e in db.endpoints] == [
        ("192.0.2.1", 100, 0),
        ("2001:db8::1", 100, 1),
        ("192.0.2.3", 0, 2),
        ("192.0.2.4", 0, 3),
    ]
    assert topology.service("nope.example.test") is None


def test_topology_zones_and_clusters() -> None:
    """Zones keep their settings, hostmaster defaults per zone, and a cluster's region defaults to
    its name."""
    topology = to_topology(load_settings(DATA / "topology.yaml"))
    assert [(z.name, z.hostmaster, z.ttl, z.negative_ttl) for z in topology.zones] == [
        ("example.test", "hostmaster.example.test", 300, 30),
        ("glb.example.test", "ops.example.test", 600, 60),
    ]
    assert topology.zones[0].nameservers == (
        Nameserver("ns1.example.test", "192.0.2.53"),
        Nameserver("ns.elsewhere.test", None),
    )
    assert topology.clusters == (
        Cluster("eu", "europe", ("192.0.2.1", "2001:db8::1")),
        Cluster("us", "us", ("192.0.2.2",)),
        Cluster("ap", "ap", ("192.0.2.3", "192.0.2.4")),
    )


def test_service_zone_is_the_longest_matching_zone() -> None:
    """A service inside nested zones belongs to the innermost one."""
    topology = to_topology(load_settings(DATA / "topology.yaml"))
    assert {s.name: s.zone for s in topology.services} == {
        "www.example.test": "example.test",
        "api.glb.example.test": "glb.example.test",
        "db.glb.example.test": "glb.example.test",
        "db-ro.glb.example.test": "glb.example.test",
    }


def test_identical_tcp_probes_share_targets_across_services() -> None:
    """Two services probing the same address with the same tcp spec share one target."""
    topology = to_topology(load_settings(DATA / "topology.yaml"))
    db, ro = topology.service("db.glb.example.test"), topology.service("db-ro.glb.example.test")
    assert db is not None
    assert ro is not None
    assert db.endpoints[2].target == ro.endpoints[0].target
    assert db.endpoints[3].target == ro.endpoints[1].target
    shared = ro.endpoints[0].target
    assert [(e.service, e.index) for e in topology.endpoints_of(shared)] == [
        ("db.glb.example.test", 2),
        ("db-ro.glb.example.test", 0),
    ]


def test_http_probes_with_different_default_hosts_are_distinct() -> None:
    """HTTP probes default their Host to the service name, so two services never share them."""
    topology = to_topology(load_settings(DATA / "topology.yaml"))
    www, api = topology.service("www.example.test"), topology.service("api.glb.example.test")
    assert www is not None
    assert api is not None
    www_eu, api_eu = www.endpoints[0], api.endpoints[1]
    assert (www_eu.address, api_eu.address) == ("192.0.2.1", "192.0.2.1")
    assert www_eu.target != api_eu.target
    assert (www_eu.target.probe.host, api_eu.target.probe.host) == (
        "www.example.test",
        "api.glb.example.test",
    )
    # www 3 + api 3 distinct http targets; db 4 tcp targets, of which db-ro's 2 are shared.
    assert len(topology.targets()) == 10


def test_http_probes_with_the_same_host_are_shared() -> None:
    """Two HTTP services with the same explicit host, port and path share their targets."""
    text = with_services("""\
        - {name: a.example.test, probe: {host: h.test}, backends: [{cluster: eu}]}
        - {name: b.example.test, probe: {host: h.test}, backends: [{cluster: eu}]}
        """)
    a, b = topology_of(text).services
    assert a.endpoints[0].target == b.endpoints[0].target


# ---------------------------------------------------------------------------------------------
# Validation: every reason, with its key path


def assert_reasons(reasons: list[str], source: str, expected: list[tuple[str, str]]) -> None:
    """Exactly one reason per (key path, message fragment), in any order, and no others. A
    reason from a file names the line and column after `source` when the file gives the key."""
    assert len(reasons) == len(expected), reasons
    for path, fragment in expected:
        lead = re.compile(rf"{re.escape(source)}(:\d+:\d+)?: {re.escape(path)}: ")
        matching = [r for r in reasons if lead.match(r) and fragment in r]
        assert len(matching) == 1, (path, fragment, reasons)


def test_field_errors_are_all_reported_with_key_paths() -> None:
    """Every field-level problem of a file is reported at once, each with its key path."""
    path = DATA / "invalid_fields.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert_reasons(
        caught.value.reasons,
        str(path),
        [
            ("dns.listen", "'localhost' is not an IPv4 or IPv6 address"),
            ("log.level", "'debug', 'info', 'warning' or 'error'"),
            ("colour", "unknown key"),
            ("zones[0].name", "bad label '-bad-'"),
            ("zones[0].nameservers[0].address", "'192.0.2.300' is not an IPv4 or IPv6"),
            ("clusters[0].addresses[1]", "'not-an-ip' is not an IPv4 or IPv6 address"),
            ("clusters[0].zone", "unknown key"),
            ("services[0].policy", "'latency', 'failover', 'weighted', 'round_robin' or 'geo'"),
            ("services[0].probe.rise", "it must be at least 1"),
            ("services[0].probe.fall", "it must be at least 1"),
            ("services[0].probe.interval", "'soon' is not a duration"),
            ("services[0].probe.expect_status", "'399-200' is not a status range"),
            ("services[0].probe.port", "it must be at least 1"),
            ("services[0].backends[0].weight", "it must be at least 0"),
        ],
    )


def test_cross_field_errors_are_all_reported_with_key_paths() -> None:
    """Every problem spanning several keys is reported at once, in order, with its key path."""
    path = DATA / "invalid_references.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    tcp_only = "tcp probes only connect; body_contains and headers need http(s)"
    assert caught.value.reasons == [
        f"{path}:{reason}"
        for reason in [
            "8:11: zones[1].name: duplicate name 'example.test'",
            "12:12: clusters[1].name: duplicate name 'eu'",
            "19:11: services[2].name: duplicate name 'db.example.test'",
            "3:17: http.listen: 127.0.0.1:5353 collides with dns.listen (127.0.0.1:5353)",
            "4:17: admin.listen: 127.0.0.1:5353 collides with dns.listen (127.0.0.1:5353)",
            "7:19: zones[0].nameservers[0].address: ns1.example.test is inside the zone, "
            "so it needs an address (glue)",
            "14:11: services[0].name: app.other.test is not inside any configured zone",
            "15:41: services[0].backends[1].cluster: unknown cluster 'mars' (known: eu)",
            "15:58: services[0].backends[2].cluster: cluster 'eu' is listed twice",
            "17:52: services[1].probe.timeout: 2s is longer than the interval (1s)",
            f"17:19: services[1].probe.type: {tcp_only}",
            "20:28: services[2].probe.fast_interval: 2s is longer than the interval (1s)",
            f"20:38: services[2].probe.type: {tcp_only}",
        ]
    ]


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        (
            "- {name: a.example.test, backends: [{cluster: eu}], typo: 1}",
            ("services[0].typo", "unknown key"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], probe: {intervall: 1s}}",
            ("services[0].probe.intervall", "unknown key"),
        ),
        (
            "- {name: a.other.test, backends: [{cluster: eu}]}",
            ("services[0].name", "a.other.test is not inside any configured zone"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}, {cluster: ap}]}",
            ("services[0].backends[1].cluster", "unknown cluster 'ap' (known: eu, us)"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: us}, {cluster: eu}, {cluster: us}]}",
            ("services[0].backends[2].cluster", "cluster 'us' is listed twice"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}]}\n"
            "- {name: A.Example.Test., backends: [{cluster: eu}]}",
            ("services[1].name", "duplicate name 'a.example.test'"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], probe: {rise: 0}}",
            ("services[0].probe.rise", "it must be at least 1"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], probe: {fall: 0}}",
            ("services[0].probe.fall", "it must be at least 1"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], probe: {timeout: 1001ms}}",
            ("services[0].probe.timeout", "1.001s is longer than the interval (1s)"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}],"
            " probe: {type: tcp, body_contains: OK}}",
            ("services[0].probe.type", "tcp probes only connect"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], probe: {latency_alpha: 0}}",
            ("services[0].probe.latency_alpha", "greater than 0"),
        ),
        (
            "- {name: a.example.test, backends: []}",
            ("services[0].backends", "at least 1 item"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], max_answers: 0}",
            ("services[0].max_answers", "it must be at least 1"),
        ),
        (
            "- {name: a.example.test, backends: [{cluster: eu}], when_all_down: panic}",
            ("services[0].when_all_down", "'return_all', 'servfail' or 'no_answer'"),
        ),
        (
            "- {name: a.example.test}",
            ("services[0].backends", "required key is missing"),
        ),
    ],
    ids=[
        "unknown-service-key", "unknown-probe-key", "outside-every-zone", "unknown-cluster",
        "cluster-twice", "duplicate-service", "rise-0", "fall-0", "timeout-over-interval",
        "tcp-body-contains", "alpha-0", "no-backends", "max-answers-0", "bad-when-all-down",
        "missing-backends",
    ],
)  # fmt: skip
def test_service_error(services: str, expected: tuple[str, str]) -> None:
    """Each kind of service error is reported alone, with its key path."""
    assert_reasons(reasons_of(with_services(services)), "<config>", [expected])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE + "dns: {listen: '127.0.0.1:8080'}\nhttp: {listen: '127.0.0.1:8080'}\n",
            ("http.listen", "127.0.0.1:8080 collides with dns.listen (127.0.0.1:8080)"),
        ),
        (
            BASE + "admin: {listen: '127.0.0.1:8080'}\n",
            ("admin.listen", "127.0.0.1:8080 collides with http.listen (127.0.0.1:8080)"),
        ),
        (
            BASE.replace("address: 192.0.2.53", "address: 192.0.2"),
            ("zones[0].nameservers[0].address", "'192.0.2' is not an IPv4 or IPv6 address"),
        ),
        (
            BASE.replace("addresses: [192.0.2.2]", "addresses: []"),
            ("clusters[1]", "a cluster needs addresses (addresses or host names), or kubernetes:"),
        ),
        (
            BASE.replace("address: 192.0.2.53", "address: null"),
            ("zones[0].nameservers[0].address", "inside the zone, so it needs an address (glue)"),
        ),
        (
            BASE + "  - {name: eu, addresses: [192.0.2.9]}\n",
            ("clusters[2].name", "duplicate name 'eu'"),
        ),
        (
            BASE.replace("{name: us,", "{name: 'u s',"),
            ("clusters[1].name", "'u s' does not match the pattern"),
        ),
        (
            BASE + "log: {level: loud}\n",
            ("log.level", "'debug', 'info', 'warning' or 'error'"),
        ),
        (
            BASE.replace("    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]\n", ""),
            ("zones[0].nameservers", "required key is missing"),
        ),
    ],
    ids=[
        "dns-http-collide", "http-admin-collide", "bad-glue-address", "cluster-without-address",
        "in-zone-ns-without-glue", "duplicate-cluster", "bad-cluster-name", "bad-log-level",
        "zone-without-nameservers",
    ],
)  # fmt: skip
def test_top_level_error(text: str, expected: tuple[str, str]) -> None:
    """Each kind of listener, zone and cluster error is reported alone, with its key path."""
    assert_reasons(reasons_of(text), "<config>", [expected])


def test_port_zero_listeners_do_not_collide() -> None:
    """Several listeners on port 0 (any free port) are not a collision."""
    text = BASE + "dns: {listen: '127.0.0.1:0'}\nhttp: {listen: '127.0.0.1:0'}\n"
    settings = parse_settings(text + "admin: {listen: '127.0.0.1:0'}\n")
    assert settings.admin.listen == ("127.0.0.1", 0)


def test_nameserver_outside_the_zone_needs_no_glue() -> None:
    """A nameserver outside its zone may omit its address."""
    text = BASE.replace("{name: ns1.example.test, address: 192.0.2.53}", "{name: ns1.other.test}")
    assert topology_of(text).zones[0].nameservers == (Nameserver("ns1.other.test", None),)


def test_field_and_cross_field_errors_are_reported_together() -> None:
    """A field error in one service does not hide a reference error in another."""
    reasons = reasons_of(
        with_services("""\
            - {name: a.example.test, backends: [{cluster: eu}], probe: {rise: 0}}
            - {name: b.example.test, backends: [{cluster: mars}]}
            """)
    )
    assert_reasons(
        reasons,
        "<config>",
        [
            ("services[0].probe.rise", "it must be at least 1"),
            ("services[1].backends[0].cluster", "unknown cluster 'mars'"),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Reading files


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfezones: []\n", "cannot read the file"),
        (b"zones: [unclosed\n", "2:1: not valid YAML: did not find expected ',' or ']'"),
        (b"- zones\n- clusters\n", "the top level must be a mapping"),
        (b"just some text\n", "the top level must be a mapping"),
    ],
    ids=["not-utf8", "bad-yaml", "list", "scalar"],
)
def test_unreadable_file_names_the_file(tmp_path: Path, content: bytes, fragment: str) -> None:
    """A file that is not UTF-8, not YAML or not a mapping gives one reason naming the file
    (and, for bad YAML, the line and column where the parser stopped)."""
    path = tmp_path / "glb.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (reason,) = caught.value.reasons
    assert reason.startswith(
        f"{path}:{fragment}" if fragment[0].isdigit() else f"{path}: {fragment}"
    )


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the file, not an empty configuration."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (reason,) = caught.value.reasons
    assert reason.startswith(f"{path}: cannot read the file")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    """A directory given as the config path is reported as unreadable."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path)


def test_config_error_message_lists_every_reason() -> None:
    """str(ConfigError) lists each reason on its own line."""
    error = ConfigError(["a: one", "b: two"])
    assert str(error) == "invalid configuration:\n  a: one\n  b: two"
    assert error.reasons == ["a: one", "b: two"]


def test_non_string_top_level_key_is_a_config_error() -> None:
    """A top-level key that is not a string (`1: x`) is reported as a ConfigError."""
    with pytest.raises(ConfigError, match="1"):
        parse_settings(BASE + "1: x\n")


# ---------------------------------------------------------------------------------------------
# Environment overrides


def test_env_listen_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLB_DNS__LISTEN overrides dns.listen from the file and leaves other keys alone."""
    monkeypatch.setenv("GLB_DNS__LISTEN", "127.0.0.1:53")
    settings = load_settings(EXAMPLE)
    assert settings.dns.listen == ("127.0.0.1", 53)
    assert settings.http.listen == ("127.0.0.1", 8080)
    assert settings.zones[0].name == "glb.example.test"


def test_env_sets_the_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLB_ADMIN__TOKEN sets a secret admin token that is not shown in reprs."""
    monkeypatch.setenv("GLB_ADMIN__TOKEN", "s3cret-s3cret-s3cret")
    settings = load_settings(EXAMPLE)
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.admin.listen == ("127.0.0.1", 9100)


def test_env_overrides_nested_keys_of_a_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLB_LOG__LEVEL overrides log.level from the file."""
    monkeypatch.setenv("GLB_LOG__LEVEL", "debug")
    assert load_settings(EXAMPLE).log.level == "debug"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GLB_DNS__LISTEN", "nope", ("dns.listen", "'nope' is not host:port")),
        ("GLB_LOG__LEVEL", "loud", ("log.level", "'debug', 'info', 'warning' or 'error'")),
    ],
    ids=["bad-listen", "bad-level"],
)
def test_invalid_env_value_is_reported(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: tuple[str, str]
) -> None:
    """An invalid GLB_* value is reported with the variable's name and the key path it sets."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE)
    assert_reasons(caught.value.reasons, f"environment {name}", [expected])


def test_env_value_colliding_with_the_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GLB_* listener that collides with one from the file is a cross-key problem, reported
    at the variable that set it."""
    monkeypatch.setenv("GLB_HTTP__LISTEN", "127.0.0.1:5353")
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE)
    assert_reasons(
        caught.value.reasons,
        "environment GLB_HTTP__LISTEN",
        [("http.listen", "collides with dns.listen")],
    )


@pytest.mark.parametrize("name", ["GLB_DNS_LISTEN", "GLB_PROXY__LISTEN", "glb_bogus"])
def test_env_variable_naming_no_setting_is_reported(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A GLB_* variable that names no setting (a typo) is an error, not silently ignored."""
    monkeypatch.setenv(name, "127.0.0.1:53")
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE)
    assert caught.value.reasons == [
        f"environment: {name} is not a glb setting (nested keys are joined with __, "
        "e.g. GLB_DNS__LISTEN)"
    ]


@pytest.mark.parametrize(
    ("name", "value"), [("GLB_CONFIG", "/etc/glb/glb.yaml"), ("GLB_WORKERS", "3")]
)
def test_command_line_variables_are_not_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """GLB_CONFIG and GLB_WORKERS (read by the command line) are not mistaken for settings."""
    monkeypatch.setenv(name, value)
    assert load_settings(EXAMPLE).dns.listen == ("127.0.0.1", 5353)


def test_env_section_that_is_not_json_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole-section GLB_DNS value that is not valid JSON is a ConfigError, not a crash."""
    monkeypatch.setenv("GLB_DNS", "{not json")
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE)
    (reason,) = caught.value.reasons
    assert reason.startswith("environment GLB_DNS: dns: '{not json' is not valid JSON")


def test_settings_are_frozen() -> None:
    """Validated settings cannot be changed in place."""
    settings: Settings = load_settings(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        settings.dns = settings.http  # type: ignore[misc, assignment]


# ---------------------------------------------------------------------------------------------
# Addresses, listeners, probe headers and hosts


def test_ipv6_listen_address_needs_brackets() -> None:
    """An IPv6 listen address without brackets is rejected as ambiguous, with the fix named."""
    with pytest.raises(ValueError, match=r"brackets, e.g. \[::1\]:5353"):
        parse_listen("::1:53")
    assert parse_listen("[::1]:53") == ("::1", 53)


def test_address_listed_twice_in_a_cluster_is_reported() -> None:
    """The same address twice in one cluster would give duplicate records and is rejected."""
    text = BASE.replace("addresses: [192.0.2.1]", "addresses: [192.0.2.1, 192.0.2.1]")
    assert_reasons(
        reasons_of(text), "<config>", [("clusters[0].addresses[1]", "192.0.2.1 is listed twice")]
    )


def test_address_shared_by_two_clusters_of_a_service_is_reported() -> None:
    """Two clusters of one service may not share an address."""
    text = BASE.replace("addresses: [192.0.2.2]", "addresses: [192.0.2.1]")
    reasons = reasons_of(
        with_services("- {name: a.example.test, backends: [{cluster: eu}, {cluster: us}]}\n", text)
    )
    assert_reasons(
        reasons,
        "<config>",
        [("services[0].backends[1].cluster", "192.0.2.1 is also in cluster 'eu'")],
    )


@pytest.mark.parametrize(
    ("dns", "http", "collides"),
    [
        ("0.0.0.0:8080", "127.0.0.1:8080", True),
        ("127.0.0.1:8080", "0.0.0.0:8080", True),
        ("[::]:8080", "127.0.0.1:8080", False),
        ("127.0.0.2:8080", "127.0.0.1:8080", False),
        ("[::]:8080", "[::1]:8080", True),
    ],
)
def test_wildcard_listener_collides_with_the_same_port_of_its_family(
    dns: str, http: str, collides: bool
) -> None:
    """A wildcard listener takes its port on every address of its family, not the other family."""
    text = BASE + f"dns: {{listen: '{dns}'}}\nhttp: {{listen: '{http}'}}\n"
    if collides:
        assert_reasons(reasons_of(text), "<config>", [("http.listen", "collides with dns.listen")])
    else:
        parse_settings(text)


@pytest.mark.parametrize(
    ("probe", "path", "fragment"),
    [
        ('{headers: {X-A: "a\\r\\nX-B: b"}}', "services[0].probe.headers.X-A", "CR, LF or NUL"),
        (
            '{headers: {"Bad Name": a}}',
            "services[0].probe.headers.Bad Name",
            "bad name: 'Bad Name' does not match the pattern",
        ),
        ('{host: "a b"}', "services[0].probe.host", "not a host name or address"),
        ('{host: "example.test:99999"}', "services[0].probe.host", "bad port"),
    ],
    ids=["crlf-value", "bad-name", "host-space", "host-port"],
)
def test_probe_headers_and_host_are_checked(probe: str, path: str, fragment: str) -> None:
    """Probe headers and Host are validated up front, not discovered broken at probe time."""
    text = with_services(
        f"- {{name: a.example.test, probe: {probe}, backends: [{{cluster: eu}}]}}\n"
    )
    assert_reasons(reasons_of(text), "<config>", [(path, fragment)])


@pytest.mark.parametrize(
    "host", ["example.test", "example.test:8443", "192.0.2.1", "[2001:db8::1]:443"]
)
def test_valid_probe_hosts_are_kept_as_written(host: str) -> None:
    """A probe host may be a name or an address, with an optional port."""
    text = with_services(
        f"- {{name: a.example.test, probe: {{host: '{host}'}}, backends: [{{cluster: eu}}]}}\n"
    )
    assert topology_of(text).services[0].endpoints[0].target.probe.host == host


def test_latency_band_may_be_purely_relative() -> None:
    """latency_band.absolute: 0 is allowed, leaving only the relative band."""
    text = with_services(
        "- {name: a.example.test, latency_band: {absolute: 0}, backends: [{cluster: eu}]}\n"
    )
    assert topology_of(text).services[0].latency_band == LatencyBand(0.2, 0.0)


# ---------------------------------------------------------------------------------------------
# HTTP front end keys


def test_proxy_keys_have_defaults_and_reach_the_topology() -> None:
    """Every proxy key has a default, and given values land in the service's ProxyOptions."""
    default = topology_of(with_services("- {name: a.example.test, backends: [{cluster: eu}]}\n"))
    proxy = default.services[0].proxy
    assert (proxy.scheme, proxy.upstream_host, proxy.retries, proxy.eject_after) == (
        "http",
        None,
        2,
        3,
    )
    assert (proxy.connect_timeout, proxy.first_byte_timeout, proxy.idle_timeout) == (2, 30, 60)
    assert default.services[0].aliases == ()
    given = topology_of(
        with_services(
            """\
            - name: a.example.test
              aliases: [App.Example.COM.]
              scheme: https
              upstream_host: internal.example.test:8443
              upstream_tls_verify: false
              upstream_sni: internal.example.test
              timeouts: {connect: 250ms, first_byte: 5s, idle: 1m}
              retries: 0
              eject_after: 1
              eject_on_5xx: true
              backends: [{cluster: eu}]
            """
        )
    ).services[0]
    assert given.aliases == ("app.example.com",)
    assert given.proxy.scheme == "https"
    assert given.proxy.upstream_host == "internal.example.test:8443"
    assert (given.proxy.tls_verify, given.proxy.sni) == (False, "internal.example.test")
    assert (given.proxy.connect_timeout, given.proxy.first_byte_timeout) == (0.25, 5.0)
    assert (given.proxy.idle_timeout, given.proxy.retries) == (60.0, 0)
    assert (given.proxy.eject_after, given.proxy.eject_on_5xx) == (1, True)


def test_an_alias_may_not_name_two_services() -> None:
    """An alias repeating another service's name or alias is reported at the second place."""
    reasons = reasons_of(
        with_services(
            """\
            - {name: a.example.test, aliases: [www.example.com], backends: [{cluster: eu}]}
            - name: b.example.test
              aliases: [a.example.test, www.example.com]
              backends: [{cluster: us}]
            """
        )
    )
    assert_reasons(
        reasons,
        "<config>",
        [
            ("services[1].aliases[0]", "a.example.test is already used by services[0].name"),
            ("services[1].aliases[1]", "www.example.com is already used by services[0].aliases[0]"),
        ],
    )


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("retries: 11", "it must be at most 10"),
        ("eject_after: 0", "it must be at least 1"),
        ("scheme: ftp", "'http' or 'https'"),
        ("timeouts: {connect: 0}", "greater than zero"),
    ],
)
def test_bad_proxy_keys_are_reported(key: str, fragment: str) -> None:
    """Out-of-range proxy settings are reported with their key path."""
    path = "services[0]." + key.split(":")[0] + (".connect" if key.startswith("timeouts") else "")
    text = with_services(f"- {{name: a.example.test, {key}, backends: [{{cluster: eu}}]}}\n")
    assert_reasons(reasons_of(text), "<config>", [(path, fragment)])


def test_trusted_proxies_default_to_none_and_are_canonical() -> None:
    """http.trusted_proxies is empty by default; networks and single addresses (as /32 or
    /128) are kept in canonical form and handed to the proxy as they are."""
    assert parse_settings(BASE).http.trusted_proxies == []
    text = BASE + "http: {trusted_proxies: [10.0.0.0/8, ' 192.0.2.7 ', '2001:DB8::/32', '::1']}\n"
    settings = parse_settings(text)
    expected = ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128"]
    assert settings.http.trusted_proxies == expected
    assert runtime.trusted_proxies(settings) == tuple(expected)


def test_bad_trusted_proxies_are_reported_by_entry() -> None:
    """Each bad http.trusted_proxies entry is reported with its index: host bits set (naming the
    network meant), not a network, not text."""
    text = BASE + "http: {trusted_proxies: [10.0.0.0/8, 10.0.0.1/8, nope, 192.0.2.0/33, 7]}\n"
    key = "http.trusted_proxies"
    assert_reasons(
        reasons_of(text),
        "<config>",
        [
            (f"{key}[1]", "'10.0.0.1/8' has host bits set: write the network as 10.0.0.0/8"),
            (f"{key}[2]", "'nope' is not an IP network"),
            (f"{key}[3]", "'192.0.2.0/33' is not an IP network"),
            (f"{key}[4]", "7 is not an IP network"),
        ],
    )


def test_env_sets_trusted_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLB_HTTP__TRUSTED_PROXIES takes a JSON list."""
    monkeypatch.setenv("GLB_HTTP__TRUSTED_PROXIES", '["10.0.0.0/8", "2001:db8::1"]')
    assert parse_settings(BASE).http.trusted_proxies == ["10.0.0.0/8", "2001:db8::1/128"]


def test_probe_ca_file_must_exist(tmp_path: Path) -> None:
    """probes.ca_file naming a missing file is a config error; an existing one is accepted."""
    text = BASE + f"probes: {{ca_file: {tmp_path / 'nope.pem'}}}\n"
    assert_reasons(reasons_of(text), "<config>", [("probes.ca_file", "does not point to a file")])
    (tmp_path / "ca.pem").write_text("x")
    assert parse_settings(BASE + f"probes: {{ca_file: {tmp_path / 'ca.pem'}}}\n").probes.ca_file


@pytest.mark.parametrize("bad", ["nope", "10.0.0.300", "10.0.0.0/8", "[::1]"])
def test_probe_source_must_be_an_address(bad: str) -> None:
    """probes.source is an IPv4 or IPv6 address; anything else is a config error at its key."""
    text = BASE + f"probes: {{source: '{bad}'}}\n"
    assert_reasons(reasons_of(text), "<config>", [("probes.source", "is not an IPv4 or IPv6")])


def test_probe_source_is_kept_in_canonical_form() -> None:
    assert parse_settings(BASE + "probes: {source: 10.0.1.7}\n").probes.source == "10.0.1.7"
    assert parse_settings(BASE + "probes: {source: '2001:DB8::0:7'}\n").probes.source == (
        "2001:db8::7"
    )
    assert parse_settings(BASE).probes.source is None


def test_service_named_like_a_nameserver_is_reported() -> None:
    """A service may not share its name with a nameserver of the zone."""
    text = with_services("- {name: ns1.example.test, backends: [{cluster: eu}]}\n")
    assert_reasons(
        reasons_of(text), "<config>", [("services[0].name", "is also a nameserver's name")]
    )


@pytest.mark.parametrize("token", ["", "short", "has a space in it somewhere"])
def test_weak_admin_tokens_are_rejected(token: str) -> None:
    """An admin token must be at least 16 characters without spaces."""
    text = BASE + f"admin: {{token: '{token}'}}\n"
    assert_reasons(reasons_of(text), "<config>", [("admin.token", "at least 16 characters")])


@pytest.mark.parametrize("value", ["''", "'caf\u00e9'", "'tab\there'", "'" + "x" * 256 + "'"])
def test_dns_server_id_must_be_short_printable_ascii(value: str) -> None:
    """dns.server_id is answered as one TXT string: 1-255 printable ASCII characters."""
    service = "- {name: app.example.test, backends: [{cluster: eu}]}\n"
    reasons = reasons_of(f"dns: {{server_id: {value}}}\n" + with_services(service))
    assert len(reasons) == 1
    assert "dns.server_id: " in reasons[0], reasons
    assert "1-255 printable ASCII characters" in reasons[0], reasons
