"""The shared state store's settings: its address (`state.redis`, a `redis://` or `rediss://`
(TLS) URL) and the quorum of vantage points applied to the verdicts shared there
(`state.quorum`)."""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("redis", "rediss")
QUORUM_RULES = ("majority", "any", "all")


def parse_redis_url(value: object) -> str:
    """`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS; db a number 0-15 or
    more (whatever the server allows), the port 1-65535. Returned as given, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a URL like redis://10.0.0.5:6379/0")
    text = value.strip()
    example = f"{text[:60]!r} is not a Redis URL like redis://10.0.0.5:6379/0"
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError:
        raise ValueError(example) from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{example}: the scheme must be redis:// or rediss:// (TLS)")
    if not parts.hostname:
        raise ValueError(f"{example}: it names no host")
    if port == 0:
        raise ValueError(f"{example}: port 0")
    database = parts.path.removeprefix("/")
    if database and not (database.isascii() and database.isdigit() and len(database) <= 5):
        raise ValueError(f"{example}: the path must be a database number, e.g. /0")
    if parts.query or parts.fragment:
        raise ValueError(f"{example}: no query or fragment")
    return text


def parse_quorum(value: object) -> str | int:
    """`majority`, `any`, `all`, or an integer >= 1 (a number of vantage points)."""
    if isinstance(value, str) and value.strip().lower() in QUORUM_RULES:
        return value.strip().lower()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return parse_quorum(int(value.strip()))
    raise ValueError(
        f"{str(value)[:40]!r} is not a quorum: majority, any, all, or a number of vantage "
        "points (1 or more)"
    )
