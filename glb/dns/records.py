"""Static zone records (`glb.core.model.StaticRecord`, presentation form) as dnslib rdata.

The configuration has validated every value (`glb.config.records`), so parsing here trusts the
form: a TXT value is its quoted strings (with `\\"`, `\\\\` and `\\DDD` escapes), names carry
their trailing dot.

Pure: no sockets, no asyncio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT, A, DNSLabel

from glb.core.model import StaticRecord
from glb.dns.wire import RdataType

_QUOTED: Final = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE: Final = re.compile(rb"\\(\d{3}|.)")


def txt_strings(value: str) -> list[bytes]:
    """The character-strings of a TXT value in presentation form (`"a" "b"`)."""
    return [_ESCAPE.sub(_unescape, quoted) for quoted in _QUOTED.findall(value.encode("latin-1"))]


def _unescape(match: re.Match[bytes]) -> bytes:
    escaped = match[1]
    return bytes((int(escaped),)) if len(escaped) == 3 else escaped


def _label(name: str) -> DNSLabel:
    return DNSLabel(name)


def _mx(value: str) -> MX:
    preference, exchange = value.split()
    return MX(_label(exchange), int(preference))


def _srv(value: str) -> SRV:
    priority, weight, port, target = value.split()
    return SRV(int(priority), int(weight), int(port), _label(target))


def _caa(value: str) -> CAA:
    flags, tag, data = value.split(None, 2)
    return CAA(int(flags), tag, data[1:-1])


_RDATA: Final[dict[str, tuple[int, Callable[[str], Any]]]] = {
    "A": (RdataType.A, A),
    "AAAA": (RdataType.AAAA, AAAA),
    "CNAME": (RdataType.CNAME, lambda v: CNAME(_label(v))),
    "NS": (RdataType.NS, lambda v: NS(_label(v))),
    "PTR": (RdataType.PTR, lambda v: PTR(_label(v))),
    "MX": (RdataType.MX, _mx),
    "SRV": (RdataType.SRV, _srv),
    "CAA": (RdataType.CAA, _caa),
    "TXT": (RdataType.TXT, lambda v: TXT(txt_strings(v))),
}


def record_rdata(record: StaticRecord) -> tuple[int, list[Any]]:
    """The record type's number and one dnslib rdata per value."""
    rtype, parse = _RDATA[record.type]
    return int(rtype), [parse(value) for value in record.values]


def target_of(rdata: Any) -> str | None:
    """The name an NS, MX, SRV, CNAME or PTR rdata points at (lowercase, no trailing dot)."""
    name = getattr(rdata, "label", None) or getattr(rdata, "target", None)
    return None if name is None else str(name).lower().rstrip(".")
