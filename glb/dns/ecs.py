"""EDNS Client Subnet (RFC 7871): reading a query's option and writing the one its reply echoes.

`parse_client_subnet` reads the option's data (FAMILY, SOURCE PREFIX-LENGTH, SCOPE
PREFIX-LENGTH, ADDRESS) into a `ClientSubnet`, or raises `MalformedSubnet` for what section 6
says a server answers FORMERR to: a FAMILY other than 1 (IPv4) or 2 (IPv6), a SOURCE
PREFIX-LENGTH longer than the family's addresses, ADDRESS octets more or fewer than the prefix
needs, or non-zero bits beyond the prefix. `echo_option` is the option a reply carries: the
query's FAMILY, SOURCE PREFIX-LENGTH and ADDRESS, with glb's SCOPE PREFIX-LENGTH.

`opt_payload` is the pre-packed fast path's one scan of a query's OPT record: its payload size,
where its one ECS option starts, or that it has the DO bit or a COOKIE option.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from glb.dns.wire import DO_BIT, EDNS_VERSION, OPT_RECORD, OptionType

FAMILIES: Final = {1: (4, 32), 2: (6, 128)}  # ECS FAMILY -> (IP version, address bits)
_OPTION_HEAD: Final = struct.Struct("!HH")  # OPTION-CODE, OPTION-LENGTH
_ECS: Final = int(OptionType.ECS)
_COOKIE: Final = int(OptionType.COOKIE)
_DO_HIGH: Final = DO_BIT >> 8  # the DO bit in the OPT TTL's third byte
EXTRAS: Final = -3  # `opt_payload`: the OPT has the DO bit or a COOKIE option
_RDLENGTH: Final = struct.Struct("!H")
_ECS_CODE: Final = _ECS.to_bytes(2, "big")
_OPT_START: Final = OPT_RECORD[:3]  # root owner, type OPT

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class MalformedSubnet(ValueError):
    """An ECS option RFC 7871 section 6 answers FORMERR to."""


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """A query's client subnet: its address (the prefix's bits, zero after) and prefix length.
    A SOURCE PREFIX-LENGTH of 0 asks the server not to use client information."""

    source: int
    address: Address
    data: bytes  # the option's data as sent, for the echo


def parse_client_subnet(data: bytes) -> ClientSubnet:
    """The ECS option data of a query; `MalformedSubnet` for a FORMERR case."""
    if len(data) < 4:
        raise MalformedSubnet(f"ECS option of {len(data)} bytes: FAMILY and prefixes need 4")
    family, source = (data[0] << 8) | data[1], data[2]
    shape = FAMILIES.get(family)
    if shape is None:
        raise MalformedSubnet(f"ECS FAMILY {family} is neither 1 (IPv4) nor 2 (IPv6)")
    version, bits = shape
    if source > bits:
        raise MalformedSubnet(f"ECS SOURCE PREFIX-LENGTH {source} is over {bits}")
    address = data[4:]
    if len(address) != (source + 7) // 8:
        raise MalformedSubnet(
            f"ECS ADDRESS of {len(address)} bytes for a /{source} (needs {(source + 7) // 8})"
        )
    number = int.from_bytes(address.ljust(bits // 8, b"\0"), "big")
    if number & ((1 << (bits - source)) - 1):
        raise MalformedSubnet(f"ECS ADDRESS has bits set beyond its /{source} prefix")
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return ClientSubnet(source, make(number), data)


def echo_option(data: bytes, scope: int) -> bytes:
    """The ECS option of a reply to a query whose option data was `data` (valid): FAMILY, SOURCE
    PREFIX-LENGTH and ADDRESS copied, SCOPE PREFIX-LENGTH `scope`."""
    return _OPTION_HEAD.pack(_ECS, len(data)) + data[:3] + bytes((scope,)) + data[4:]


def subnet_record(data: bytes, scope: int) -> bytes:
    """glb's OPT record carrying the echo of the ECS option data `data` with `scope`."""
    option = echo_option(data, scope)
    return OPT_RECORD[:-2] + _RDLENGTH.pack(len(option)) + option


def opt_payload(wire: bytes, at: int) -> int:
    """The advertised payload of an OPT record that exactly ends `wire` at `at`; -1 when the fast
    path cannot take it (not an OPT at the root, version > 0, bad lengths, several ECS options);
    `EXTRAS` when it has the DO bit set or a COOKIE option (`glb.dns.opt_extras` takes it); for
    a well-framed OPT with one ECS option, -2 - (where that option starts)."""
    end = len(wire)
    if at + 11 > end or wire[at : at + 3] != _OPT_START or wire[at + 6] != EDNS_VERSION:
        return -1
    length = (wire[at + 9] << 8) | wire[at + 10]
    if at + 11 + length != end:
        return -1
    extras = wire[at + 7] & _DO_HIGH  # or a COOKIE option, found below
    if not length:  # the common cases first: no option, or one ECS option alone
        return EXTRAS if extras else (wire[at + 3] << 8) | wire[at + 4]
    option = at + 11
    if (
        not extras
        and length >= 4
        and wire[option : option + 2] == _ECS_CODE
        and 4 + ((wire[option + 2] << 8) | wire[option + 3]) == length
    ):
        return -2 - option
    subnet = -1
    for _ in range(end - option):  # bounded: each option takes at least 4 bytes
        if option == end:
            break
        if option + 4 > end:
            return -1
        code = (wire[option] << 8) | wire[option + 1]
        if code == _ECS:
            if subnet >= 0:
                return -1  # the full path answers FORMERR
            subnet = option
        elif code == _COOKIE:
            extras = 1
        option += 4 + ((wire[option + 2] << 8) | wire[option + 3])
    if option != end:
        return -1
    if extras:
        return EXTRAS
    return (wire[at + 3] << 8) | wire[at + 4] if subnet < 0 else -2 - subnet
