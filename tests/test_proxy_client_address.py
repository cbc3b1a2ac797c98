"""Who the client of a proxied request is (glb.proxy.client_address): the peer, X-Forwarded-For
from trusted proxies walked from the right, entry forms, and the whole against a plain
reference."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.networks import Address, Network
from glb.proxy.client_address import (
    TrustedProxies,
    forwarded_address,
    peer_address,
    unmapped_network,
)

PROXIES = [
    "10.0.0.0/8",
    "192.168.1.0/24",
    "2001:db8:ffff::/48",
    "198.51.100.7",
    "::ffff:172.16.0.0/108",
]


def ip(text: str) -> Address:
    return ipaddress.ip_address(text)


def client_of(proxies: TrustedProxies, remote: str, forwarded_for: list[str]) -> Address | None:
    """What the proxy steers by: the peer, unless it is trusted (as `HttpProxy.client_address`)."""
    peer = peer_address(remote)
    if peer is None or not proxies.trusts(peer):
        return peer
    return proxies.forwarded_client(peer, forwarded_for)


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "lines", "client"),
    [
        ("10.0.0.1", ["203.0.113.9, 198.51.100.2, 10.0.0.5"], "198.51.100.2"),
        ("10.0.0.1", ["203.0.113.9", "10.0.0.5, 192.168.1.20"], "203.0.113.9"),
        ("10.0.0.1", ["10.0.0.9, 192.168.1.20,10.0.0.5"], "10.0.0.9"),
        ("10.0.0.1", ["203.0.113.9, unknown, 10.0.0.5"], "10.0.0.5"),
        ("10.0.0.1", ["unknown"], "10.0.0.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", [""], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.9,, 10.0.0.5 ,\t"], "203.0.113.9"),
        ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.1", ["198.51.100.9:1234, 10.0.0.2:80"], "198.51.100.9"),
        ("10.0.0.1", ["::ffff:203.0.113.9"], "203.0.113.9"),
        ("::ffff:10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("::ffff:172.16.5.5", ["203.0.113.9, 172.31.0.1"], "203.0.113.9"),
        ("2001:db8:ffff::1", ["2001:db8:1::5"], "2001:db8:1::5"),
        ("198.51.100.7", ["203.0.113.9"], "203.0.113.9"),
    ],
    ids=[
        "right-most-untrusted",
        "lines-joined-in-order",
        "all-trusted-left-most",
        "malformed-stops-the-walk",
        "malformed-only-is-the-peer",
        "no-header-is-the-peer",
        "empty-header-is-the-peer",
        "empty-elements-ignored",
        "bracketed-with-port",
        "ipv4-with-port",
        "mapped-entry-is-ipv4",
        "mapped-peer-is-ipv4",
        "mapped-trusted-network",
        "ipv6-proxy",
        "single-address-proxy",
    ],
)
def test_trusted_peers_name_their_client(remote: str, lines: list[str], client: str) -> None:
    """A trusted peer's X-Forwarded-For names the client: the right-most untrusted entry."""
    assert client_of(TrustedProxies(PROXIES), remote, lines) == ip(client)


@pytest.mark.parametrize(
    ("remote", "client"),
    [
        ("203.0.113.1", "203.0.113.1"),
        ("::ffff:203.0.113.1", "203.0.113.1"),
        ("198.51.100.8", "198.51.100.8"),
        ("11.0.0.1", "11.0.0.1"),
        ("2001:db8:fffe::1", "2001:db8:fffe::1"),
    ],
)
def test_an_untrusted_peer_is_the_client(remote: str, client: str) -> None:
    """An untrusted peer's X-Forwarded-For is never read: the peer is the client."""
    assert client_of(TrustedProxies(PROXIES), remote, ["192.0.2.77"]) == ip(client)


def test_nothing_is_trusted_by_default() -> None:
    """Without prefixes no proxy is trusted, loopback included."""
    proxies = TrustedProxies()
    assert not proxies
    assert not proxies.trusts(ip("127.0.0.1"))
    assert client_of(proxies, "127.0.0.1", ["192.0.2.77"]) == ip("127.0.0.1")


@pytest.mark.parametrize("remote", ["", "unix", "not an address", "10.0.0.1:80"])
def test_a_peer_that_is_no_address_is_unknown(remote: str) -> None:
    """A peer without an address (a Unix socket's) is no client to steer by."""
    assert peer_address(remote) is None
    assert client_of(TrustedProxies(PROXIES), remote, ["192.0.2.77"]) is None


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" \t192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1:0", "192.0.2.1"),
        ("192.0.2.1:65535", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:DB8::1]:8443", "2001:db8::1"),
        ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ("  [0000:0000:0000:0000:0000:ffff:255.255.255.255]:65535\t", "255.255.255.255"),
    ],
)
def test_forwarded_entries_are_read_as_their_address(entry: str, address: str) -> None:
    """Ports and brackets around an entry are dropped; mapped addresses are IPv4."""
    assert forwarded_address(entry) == ip(address)


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "unknown",
        "_hidden",
        "192.0.2",
        "192.0.2.01",
        "192.0.2.1:",
        "192.0.2.1:65536",
        "192.0.2.1:123456",
        "192.0.2.1:\uff18\uff10",
        "192.0.2.1:+80",
        "[192.0.2.1]",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
        "fe80::1%eth0",
        "[fe80::1%25eth0]",
        '"192.0.2.1"',
        "192.0.2.1 192.0.2.2",
        "0" * 60 + "192.0.2.1",
    ],
    ids=repr,
)
def test_malformed_entries_are_no_address(entry: str) -> None:
    """Anything but an address with an optional port is malformed."""
    assert forwarded_address(entry) is None


def test_prefixes_with_host_bits_are_refused() -> None:
    """A trusted prefix with host bits set is a ValueError (the configuration refuses it first)."""
    with pytest.raises(ValueError, match="host bits"):
        TrustedProxies(["10.0.0.1/8"])


def test_mapped_networks_are_ipv4_networks() -> None:
    """A network inside ::ffff:0:0/96 is the IPv4 network it maps; others stay as they are."""
    assert unmapped_network(ipaddress.ip_network("::ffff:10.0.0.0/104")) == ipaddress.ip_network(
        "10.0.0.0/8"
    )
    assert unmapped_network(ipaddress.ip_network("::/0")) == ipaddress.ip_network("::/0")


# --- against a plain reference ----------------------------------------------------------------

_BRACKETED = re.compile(r"\[([^\]]*)\](?::([0-9]{1,5}))?")
_WITH_PORT = re.compile(r"([^:]*):([0-9]{1,5})")


def reference_entry(entry: str) -> Address | None:
    """One entry's address, by regular expressions."""
    text = entry.strip(" \t")
    if "%" in text:
        return None
    bracketed = _BRACKETED.fullmatch(text)
    with_port = _WITH_PORT.fullmatch(text)
    try:
        if bracketed:
            if bracketed[2] is not None and int(bracketed[2]) > 65535:
                return None
            address: Address = ipaddress.IPv6Address(bracketed[1])
        elif with_port:
            if int(with_port[2]) > 65535:
                return None
            address = ipaddress.IPv4Address(with_port[1])
        elif text.count(":") == 1:
            return None
        else:
            address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def reference_client(prefixes: list[str], remote: str, lines: list[str]) -> Address | None:
    """The client, by a forward scan: the chain of addresses read right to left up to the first
    malformed entry; the first untrusted one in it, else its last."""
    networks: list[Network] = [ipaddress.ip_network(p) for p in prefixes]
    for network in list(networks):
        if network.version == 6 and network.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")):
            start = ipaddress.IPv4Address(int(network.network_address) - 0xFFFF00000000)
            networks.append(ipaddress.ip_network(f"{start}/{network.prefixlen - 96}"))

    def trusted(address: Address) -> bool:
        return any(address in network for network in networks)

    try:
        peer: Address = ipaddress.ip_address(remote)
    except ValueError:
        return None
    peer = getattr(peer, "ipv4_mapped", None) or peer
    if not trusted(peer):
        return peer
    entries = [e for line in lines for e in line.split(",") if e.strip(" \t")]
    chain = [peer]
    for entry in reversed(entries):
        address = reference_entry(entry)
        if address is None:
            break
        chain.append(address)
    untrusted = [a for a in chain[1:] if not trusted(a)]
    return untrusted[0] if untrusted else chain[-1]


_NEAR_PROXIES = st.sampled_from(
    ["10.0.0.1", "10.255.255.255", "11.0.0.1", "192.168.1.9", "192.168.2.9", "198.51.100.7",
     "198.51.100.6", "172.16.0.1", "172.32.0.1", "2001:db8:ffff::9", "2001:db8:fffe::9",
     "203.0.113.5", "2001:db8:1::1"]
)  # fmt: skip
_MALFORMED = st.sampled_from(["unknown", "_x", "1.2.3", "[::1", "", "1.2.3.4:", "::1]:80"])
_ADDRESSES = st.one_of(_NEAR_PROXIES, st.ip_addresses().map(str))


@st.composite
def entries(draw: st.DrawFn) -> str:
    """An X-Forwarded-For entry: an address, maybe mapped, bracketed or with a port, with blanks
    around it, or something malformed."""
    address = ipaddress.ip_address(draw(_ADDRESSES))
    if address.version == 4 and draw(st.booleans()):
        address = ipaddress.IPv6Address(f"::ffff:{address}")
    text = str(address)
    port = str(draw(st.integers(0, 70000)))
    if address.version == 6:
        form = draw(st.sampled_from(["{a}", "[{a}]", "[{a}]:{p}", "{a}%eth0"]))
    else:
        form = draw(st.sampled_from(["{a}", "{a}:{p}", "[{a}]"]))
    text = form.format(a=text, p=port)
    if draw(st.integers(0, 9)) == 0:
        text = draw(_MALFORMED)
    blank = st.sampled_from(["", " ", "\t", "  "])
    return draw(blank) + text + draw(blank)


_LINES = st.lists(st.lists(entries(), max_size=4).map(",".join), max_size=3)
_PEERS = st.one_of(_NEAR_PROXIES, st.ip_addresses().map(str), st.just("::ffff:10.1.2.3"))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PROXIES), max_size=5), _PEERS, _LINES)
def test_the_client_is_the_references(prefixes: list[str], remote: str, lines: list[str]) -> None:
    """For any trusted prefixes, peer and X-Forwarded-For lines, the client is the reference's."""
    assert client_of(TrustedProxies(prefixes), remote, lines) == reference_client(
        prefixes, remote, lines
    )


@settings(max_examples=500, deadline=None)
@given(entries())
def test_entries_read_as_the_references(entry: str) -> None:
    """Every entry, well formed or not, is read as the reference reads it."""
    assert forwarded_address(entry) == reference_entry(entry)
