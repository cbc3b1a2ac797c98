"""Host names in clusters' addresses as configured: what is accepted, the errors glb words
(an invalid name, a name inside glb's own zones, `hostname_answer: cname` at a zone apex) and
the `hostnames` section."""

from __future__ import annotations

import pytest

from glb.config import parse_settings
from glb.core.model import HostnameAnswer
from glb.errors import ConfigError

BASE = """\
zones:
  - name: example.test
    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]
clusters:
  - {name: europe, addresses: [%s]}
services:
  - {name: %s, hostname_answer: %s, backends: [{cluster: europe}]}
"""


def config(address: str, service: str = "app.example.test", answer: str = "resolve") -> str:
    return BASE % (address, service, answer)


def reasons_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.reasons


def test_host_names_are_accepted_beside_addresses_lowercased_without_the_dot():
    settings = parse_settings(config("A1B2.elb.Amazonaws.COM., 192.0.2.1", answer="cname"))
    assert settings.clusters[0].addresses == ["a1b2.elb.amazonaws.com", "192.0.2.1"]
    assert settings.services[0].hostname_answer is HostnameAnswer.CNAME
    assert parse_settings(config("192.0.2.1")).services[0].hostname_answer is (
        HostnameAnswer.RESOLVE
    )


@pytest.mark.parametrize(
    "name",
    ["localhost", "bad_label.example.net", "-lead.example.net", "a..b.example.net", "10.0.0.256"],
)
def test_an_invalid_host_name_is_an_error_naming_it(name):
    [reason] = reasons_of(config(f'"{name}"'))
    assert "clusters[0].addresses[0]" in reason
    assert f"{name!r} is not an IPv4 or IPv6 address, nor a host name" in reason


def test_a_host_name_inside_glbs_own_zone_is_an_error():
    [reason] = reasons_of(config("ingress.example.test"))
    assert reason.endswith(
        "clusters[0].addresses[0]: ingress.example.test is inside glb's own zone example.test, "
        "which glb answers itself: it cannot resolve it into the cluster's addresses "
        "(give the addresses, or a host name outside glb's zones)"
    ), reason


def test_cname_at_a_zone_apex_is_an_error():
    [reason] = reasons_of(config("ingress.example.net", service="example.test", answer="cname"))
    assert reason.endswith(
        "services[0].hostname_answer: cname cannot be answered at example.test, the apex of a "
        "zone (a CNAME cannot sit beside the zone's SOA and NS records); use resolve"
    ), reason
    parse_settings(config("ingress.example.net", service="example.test"))  # resolve: fine


def test_an_unknown_hostname_answer_names_the_choices():
    [reason] = reasons_of(config("192.0.2.1", answer="alias"))
    assert "services[0].hostname_answer" in reason
    assert "'cname'" in reason
    assert "'resolve'" in reason


def test_the_hostnames_section():
    settings = parse_settings(
        config("192.0.2.1")
        + "hostnames: {nameservers: ['10.0.0.2', '10.0.0.3:5353', '[2001:db8::53]:53'], "
        "min_interval: 250ms, max_interval: 1m, timeout: 2s}\n"
    )
    options = settings.hostnames
    assert options.nameservers == [("10.0.0.2", 53), ("10.0.0.3", 5353), ("2001:db8::53", 53)]
    assert (options.min_interval, options.max_interval, options.timeout) == (0.25, 60, 2)
    defaults = parse_settings(config("192.0.2.1")).hostnames
    assert (defaults.nameservers, defaults.min_interval, defaults.max_interval) == ([], 5, 300)


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ("{nameservers: [dns.example.net]}", "'dns.example.net' is not a DNS server address"),
        ("{min_interval: 10m, max_interval: 1m}", "min_interval (600s) is longer than"),
    ],
)
def test_bad_hostnames_settings_are_errors(section, fragment):
    [reason] = reasons_of(config("192.0.2.1") + f"hostnames: {section}\n")
    assert "hostnames" in reason
    assert fragment in reason, reason
