"""The parsers of the configuration's values (durations, sizes, domains, addresses or host
names, listen addresses, networks, status ranges, Host headers, the geo database) and the
annotated types the models (`glb.config.models`) declare their fields with. Each parser raises
ValueError in glb's own words, quoting the value."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import NoDecode

from glb.errors import GeoDatabaseError
from glb.geodb import MmdbDatabase, open_database

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """`1s`, `250ms`, `2m`, `1h` or a number of seconds; must be positive and finite."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 1s, 250ms, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(f"{value!r} is not a duration (use 1s, 250ms, 2m or a number of seconds)")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be greater than zero")
    return seconds


def parse_duration_or_zero(value: object) -> float:
    return parse_duration(value, allow_zero=True)


def parse_size(value: object) -> int:
    """A number of bytes: an integer, or a string like `512KiB`, `10MiB`, `1GB` (KB, MB, GB, TB
    are powers of 1000; KiB, MiB, GiB, TiB powers of 1024); must be at least 1."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like 10MiB or 1GB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]
    else:
        raise ValueError(f"{value!r} is not a size (use bytes or e.g. 512KiB, 10MiB, 1GB)")
    if size < 1:
        raise ValueError("a size must be at least 1 byte")
    return size


def parse_domain(value: object) -> str:
    """A DNS name, lowercased, without the trailing dot."""
    if not isinstance(value, str):
        raise ValueError("a domain name must be a string")
    name = value.strip().lower().removesuffix(".")
    if not name or len(name) > 253:
        raise ValueError(f"{value!r} is not a domain name (1 to 253 characters)")
    bad = [label for label in name.split(".") if not _LABEL.match(label)]
    if bad:
        raise ValueError(f"{value!r} is not a domain name (bad label {bad[0]!r})")
    return name


def parse_address(value: object) -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_address_or_host(value: object) -> str:
    """An IP address in its canonical text form, or a host name (letters, digits and hyphens,
    two labels or more, the last not all digits), lowercased without the trailing dot."""
    try:
        return parse_address(value)
    except ValueError:
        pass
    name = value.strip().lower().removesuffix(".") if isinstance(value, str) else ""
    labels = name.split(".")
    if (
        len(name) > 253
        or len(labels) < 2
        or labels[-1].isdigit()
        or not all(_HOST_LABEL.match(label) for label in labels)
    ):
        raise ValueError(
            f"{value!r} is not an IPv4 or IPv6 address, nor a host name "
            "(two labels or more of letters, digits and hyphens, e.g. ingress.example.net)"
        )
    return name


def parse_nameserver(value: object) -> tuple[str, int]:
    """A DNS server: `address`, `address:port` or `[v6]:port` (port 53 when not given)."""
    text = str(value).strip()
    try:
        return parse_address(text.removeprefix("[").removesuffix("]")), 53
    except ValueError:
        pass
    try:
        return parse_listen(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a DNS server address (e.g. 10.0.0.2:53)") from None


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(value: object) -> str:
    """An IP network (`198.51.100.0/24`, `2001:db8::/32`) in its canonical text form; its host
    bits must be zero, and an IPv4-mapped IPv6 network is written as the IPv4 network it is."""
    try:
        interface = ipaddress.ip_interface(value.strip() if isinstance(value, str) else "")
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP network (e.g. 198.51.100.0/24 or 2001:db8::/32)"
        ) from None
    network = interface.network
    if interface.ip != network.network_address:
        raise ValueError(f"{interface} has host bits set: the network is {network}")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        ipv4 = ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
        raise ValueError(f"{value!r} is IPv4-mapped: write it as {ipv4}")
    return str(network)


def parse_degrees(value: object) -> float:
    """A latitude or longitude in decimal degrees: a finite number (its range is the field's)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number of degrees")
    try:
        degrees = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of degrees") from None
    if not math.isfinite(degrees):
        raise ValueError("a coordinate must be a finite number of degrees")
    return degrees


def open_geo_database(value: object) -> MmdbDatabase:
    """The MaxMind DB file at the path `value`, opened (glb.geodb.open_database)."""
    if isinstance(value, MmdbDatabase):
        return value
    if not isinstance(value, str | os.PathLike) or not os.fspath(value).strip():
        raise ValueError("the path of a MaxMind DB file is needed (or null: no database)")
    try:
        return open_database(value)
    except GeoDatabaseError as exc:
        raise ValueError(exc.reasons[0]) from None


def parse_listen(value: object) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all addresses)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}:{value[1]}"
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:5353 or [::1]:5353)")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:5353")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return parse_address(host), int(port)


def parse_status_ranges(value: object) -> tuple[tuple[int, int], ...]:
    """HTTP status codes and ranges: [200, "200-399", "204"]."""
    items = value if isinstance(value, list | tuple) else [value]
    ranges = []
    for item in items:
        low, _, high = str(item).strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"{item!r} is not a status code or a range like 200-399")
        pair = (int(low), int(high or low))
        if not 100 <= pair[0] <= pair[1] <= 599:
            raise ValueError(f"{item!r} is not a status range within 100-599")
        ranges.append(pair)
    if not ranges:
        raise ValueError("at least one status code is needed")
    return tuple(ranges)


def check_header_text(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    return value


def parse_host_header(value: object) -> str:
    """A Host header: a name or address, with an optional :port ([v6]:port for IPv6)."""
    text = check_header_text(str(value).strip())
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r} is not host:port")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"{value!r} has a bad port")
    if not (_parses(parse_domain, host) or _parses(parse_address, host)):
        raise ValueError(f"{value!r} is not a host name or address")
    return text


PROBE_HOST_ADDRESS = "$address"  # probe.host: send the probed address:port as Host


def parse_probe_host(value: object) -> str:
    """A probe's Host header, or `$address` for the probed address itself."""
    if isinstance(value, str) and value.strip() == PROBE_HOST_ADDRESS:
        return PROBE_HOST_ADDRESS
    return parse_host_header(value)


def _parses(parse: Callable[[object], str], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


Duration = Annotated[float, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[float, BeforeValidator(parse_duration_or_zero)]
HeaderText = Annotated[str, AfterValidator(check_header_text)]
Domain = Annotated[str, BeforeValidator(parse_domain)]
Address = Annotated[str, BeforeValidator(parse_address)]
AddressOrHost = Annotated[str, BeforeValidator(parse_address_or_host)]
Listen = Annotated[tuple[str, int], BeforeValidator(parse_listen), NoDecode]
StatusRanges = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_status_ranges)]
Port = Annotated[int, Field(ge=1, le=65535)]
IpNetwork = Annotated[str, BeforeValidator(parse_network)]
Latitude = Annotated[float, BeforeValidator(parse_degrees), Field(ge=-90, le=90)]
Longitude = Annotated[float, BeforeValidator(parse_degrees), Field(ge=-180, le=180)]
GeoDatabase = Annotated[MmdbDatabase, BeforeValidator(open_geo_database), NoDecode]
Size = Annotated[int, BeforeValidator(parse_size)]
