"""Who the client of a proxied request is, for steering by its location: the TCP peer, or, when
the peer is a trusted proxy (`http.trusted_proxies`), the right-most X-Forwarded-For address
that is not itself trusted.

`peer_address(remote)` reads the peer's address text (an IPv4-mapped IPv6 peer is its IPv4
address; None if it is not an address). `TrustedProxies.trusts(address)` says whether an address
lies in a trusted prefix; `TrustedProxies.forwarded_client(peer, lines)` walks the
X-Forwarded-For lines a trusted peer sent, as nginx's realip module does with
`real_ip_recursive on`:

- the lines are joined in order into one comma-separated list; blanks around each entry are
  trimmed and empty entries ignored (RFC 9110 5.6.1);
- from the right, trusted addresses are skipped; the first untrusted one is the client;
- when every entry is trusted, the left-most is the client;
- a malformed entry stops the walk: the client is the last address read before it (the peer
  when there is none), since nothing left of a malformed entry can be believed;
- `198.51.100.7:1234`, `[2001:db8::1]` and `[2001:db8::1]:443` are read as their address; a
  zone index (`fe80::1%eth0`), `unknown` and the like are malformed.

The caller reads X-Forwarded-For only from a trusted peer: anyone else's is whatever its
sender made up. Pure: text in, addresses out, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Final

from glb.core.networks import Address, Network, NetworkTable

_BLANKS: Final = " \t"
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_MAX_PORT: Final = 65535
# longer than any address with a port: [0000:0000:0000:0000:0000:ffff:255.255.255.255]:65535
_LONGEST_ENTRY: Final = 64
_TRUST_MEMO: Final = 4096  # addresses whose trust is remembered (forgotten all at once beyond)


def unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as its IPv4 address; others as they are."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=4096)
def peer_address(remote: str) -> Address | None:
    """The TCP peer's address from its text (`request.remote`); None if it is not an address
    (a Unix socket's peer, for one). Cached: a client sends many requests."""
    try:
        return unmapped(ipaddress.ip_address(remote))
    except ValueError:
        return None


def forwarded_address(entry: str) -> Address | None:
    """One X-Forwarded-For entry's address: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
    `[2001:db8::1]` or `[2001:db8::1]:443`, blanks around it ignored; None if it is none of
    these."""
    text = entry.strip(_BLANKS)
    return None if len(text) > _LONGEST_ENTRY else _entry_address(text)


@lru_cache(maxsize=4096)
def _entry_address(text: str) -> Address | None:
    """`forwarded_address` of a stripped entry; cached, since the same proxies and clients come
    back (entries are short: the cache holds at most 4096 of _LONGEST_ENTRY characters)."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not _port(rest)):
            return None
        return _address(inside, version=6)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return _address(host, version=4) if _port(":" + port) else None
    return _address(text)


def _port(text: str) -> bool:
    """Whether `text` is `:` and a port number (ASCII digits, at most 65535)."""
    digits = text[1:]
    return (
        text.startswith(":")
        and 0 < len(digits) <= 5
        and digits.isascii()
        and digits.isdigit()
        and int(digits) <= _MAX_PORT
    )


def _address(text: str, version: int | None = None) -> Address | None:
    if "%" in text:  # a zone index means nothing beyond the link it was written on
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if version is not None and address.version != version:
        return None
    return unmapped(address)


def unmapped_network(network: Network) -> Network:
    """A network within ::ffff:0:0/96 as the IPv4 network it maps; others as they are (so that
    it matches the unmapped addresses of this module)."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        number = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((number, network.prefixlen - 96))
    return network


class TrustedProxies:
    """The prefixes whose peers' X-Forwarded-For is believed (see the module docstring). A
    prefix is a network without host bits set or a single address (`ValueError` otherwise)."""

    def __init__(self, prefixes: Iterable[str | Network] = ()) -> None:
        networks = [unmapped_network(ipaddress.ip_network(p, strict=True)) for p in prefixes]
        self.networks: tuple[Network, ...] = tuple(networks)
        self._table: NetworkTable[bool] = NetworkTable((network, True) for network in networks)
        self._memo: dict[Address, bool] = {}

    def __bool__(self) -> bool:
        """Whether any proxy is trusted at all."""
        return bool(self.networks)

    def trusts(self, address: Address) -> bool:
        """Whether `address` (unmapped, see `unmapped`) lies in a trusted prefix. Remembered:
        the same proxies come back with every request."""
        if not self.networks:
            return False
        trusted = self._memo.get(address)
        if trusted is None:
            trusted = self._table.lookup(address) is not None
            if len(self._memo) >= _TRUST_MEMO:
                self._memo.clear()
            self._memo[address] = trusted
        return trusted

    def forwarded_client(self, peer: Address, forwarded_for: Sequence[str]) -> Address:
        """The client a trusted `peer` forwarded for, from its X-Forwarded-For lines in order;
        `peer` itself when they name none."""
        client = peer
        for entry in reversed(",".join(forwarded_for).split(",")):
            if not entry.strip(_BLANKS):
                continue  # an empty list element (RFC 9110 5.6.1)
            address = forwarded_address(entry)
            if address is None:
                return client
            if not self.trusts(address):
                return address
            client = address
        return client
