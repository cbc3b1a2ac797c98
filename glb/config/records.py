"""Zone records (`zones[].records`): a record's owner name and values, parsed into the
presentation form the core keeps (`glb.core.model.StaticRecord`).

Each parser raises ValueError with glb's wording (the offending value quoted); the cross-key
checks (`glb.config.record_checks`) report them with their key path, and `glb.config.topology`
converts valid settings with the same parsers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from glb.config.models import RecordSettings, ZoneSettings
from glb.core.model import StaticRecord

RECORD_TYPES: Final = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "PTR")
TXT_STRING: Final = 255  # bytes in one character-string (RFC 1035 3.3)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_CAA_TAG = re.compile(r"^[A-Za-z0-9]{1,15}$")


def owner_name(name: str, zone: str) -> str:
    """The absolute name (lowercase, no trailing dot) of a record named `name` in `zone`: `@` is
    the apex, a name ending in a dot is absolute, anything else is relative to the zone."""
    text = name.strip().lower()
    if text == "@":
        return zone
    absolute = text[:-1] if text.endswith(".") else f"{text}.{zone}"
    labels = absolute.split(".")
    bad = [label for label in labels[1:] if not _LABEL.match(label)]
    if labels[0] != "*" and not _LABEL.match(labels[0]):
        bad.insert(0, labels[0])
    if bad or len(absolute) > 253:
        why = f"bad label {bad[0]!r}" if bad else "longer than 253 characters"
        raise ValueError(
            f"{name!r} is not a record name ({why}; use @ for the apex, a name relative to the "
            "zone such as www or *.apps, or a name ending in a dot)"
        )
    return absolute


def target_name(value: str) -> str:
    """A name inside a value: fully qualified, with the trailing dot (kept, lowercased)."""
    if not value.endswith("."):
        raise ValueError(
            f"{value!r} is not fully qualified: a name in a value ends with a dot ({value + '.'!r})"
        )
    if value == ".":
        return value
    name = value[:-1].lower()
    bad = [label for label in name.split(".") if not _LABEL.match(label)]
    if bad or len(name) > 253:
        why = f"bad label {bad[0]!r}" if bad else "longer than 253 characters"
        raise ValueError(f"{value!r} is not a domain name ({why})")
    return name + "."


def _number(text: str, what: str, high: int, value: str) -> int:
    if not text.isdigit() or int(text) > high:
        raise ValueError(f"{value!r}: the {what} {text!r} is not a number from 0 to {high}")
    return int(text)


def _fields(value: str, count: int, shape: str) -> list[str]:
    fields = value.split()
    if len(fields) != count:
        raise ValueError(f"{value!r} is not {shape}")
    return fields


def _address(version: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return str(address)

    return parse


def _mx(value: str) -> str:
    preference, exchange = _fields(
        value, 2, "a preference and a mail server (10 mail.example.com.)"
    )
    return f"{_number(preference, 'preference', 65535, value)} {target_name(exchange)}"


def _srv(value: str) -> str:
    shape = "a priority, weight, port and target (10 5 443 target.example.com.)"
    priority, weight, port, target = _fields(value, 4, shape)
    numbers = [
        _number(text, what, 65535, value)
        for text, what in ((priority, "priority"), (weight, "weight"), (port, "port"))
    ]
    return " ".join(map(str, numbers)) + " " + target_name(target)


def _caa(value: str) -> str:
    shape = 'flags, a tag and a value (0 issue "letsencrypt.org")'
    parts = value.split(None, 2)
    if len(parts) != 3:
        raise ValueError(f"{value!r} is not {shape}")
    flags, tag, data = parts
    if not _CAA_TAG.match(tag):
        raise ValueError(f"{value!r}: the tag {tag!r} is not 1 to 15 letters and digits")
    if len(data) >= 2 and data[0] == data[-1] == '"':
        data = data[1:-1]
    if '"' in data:
        raise ValueError(f"{value!r}: the value may hold no quote inside its quotes")
    return f'{_number(flags, "flags", 255, value)} {tag.lower()} "{data}"'


def txt_strings(value: str | list[str]) -> list[bytes]:
    """The character-strings of one TXT record: a text split into 255-byte strings, or each
    string of a list (one multi-string record), each split likewise when longer."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise ValueError("an empty list is no TXT record (give at least one string)")
    strings: list[bytes] = []
    for text in texts:
        data = text.encode()
        strings += [data[i : i + TXT_STRING] for i in range(0, len(data), TXT_STRING)] or [b""]
    return strings


def txt_presentation(strings: list[bytes]) -> str:
    """Quoted character-strings as a zone file writes them (`"a" "b"`, `\\"`, `\\DDD`)."""
    return " ".join(f'"{_escaped(s)}"' for s in strings)


def _escaped(data: bytes) -> str:
    out = []
    for byte in data:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


_PARSERS: Final[dict[str, Callable[[str], str]]] = {
    "A": _address(4),
    "AAAA": _address(6),
    "CNAME": target_name,
    "NS": target_name,
    "PTR": target_name,
    "MX": _mx,
    "SRV": _srv,
    "CAA": _caa,
}


def record_value(rtype: str, value: str | list[str]) -> str:
    """One value of a record of type `rtype` in presentation form; ValueError says why not."""
    if rtype == "TXT":
        return txt_presentation(txt_strings(value))
    if not isinstance(value, str):
        raise ValueError(f"a list of strings is one TXT record's strings, not a {rtype} value")
    return _PARSERS[rtype](value.strip())


def static_record(record: RecordSettings, zone: ZoneSettings) -> StaticRecord:
    """The core's form of a valid record of `zone`."""
    values = tuple(dict.fromkeys(record_value(record.type, v) for v in record.values))
    ttl = zone.ttl if record.ttl is None else record.ttl
    return StaticRecord(owner_name(record.name, zone.name), record.type, ttl, values)
