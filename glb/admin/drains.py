"""What a drain call may say, and how a drain is shown.

A drain call's optional JSON body: `{"reason": "...", "until": "2026-12-07T10:00:00Z"}` or
`{"reason": "...", "for": "2h"}` (not both); `until` must be ISO 8601 with `Z` or an offset and in
the future, `for` a duration (`30m`, `2h`, `90s`, or seconds). An undrain call takes a reason
only. Bad values raise `BadDrainRequest` with a sentence for the 400 answer. `read_body` reads
any changing call's optional JSON object body (400 when it is not one, or has unknown keys).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from glb.core.drains import MAX_REASON, BadInstant, Drain, Drains, format_instant, parse_instant

Json = dict[str, object]

DRAIN_KEYS: Final = frozenset({"reason", "until", "for"})
UNDRAIN_KEYS: Final = frozenset({"reason"})
_DURATION: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(s|m|h|d)?", re.ASCII)
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_AHEAD: Final = 10 * 366 * 86400  # seconds: a drain may last ten years at most


class BadDrainRequest(ValueError):
    """A drain call's body that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class DrainRequest:
    reason: str | None
    until: float | None  # epoch seconds


def drain_request(body: Json, *, now: float) -> DrainRequest:
    """The reason and expiry a drain call's body (already a JSON object) asks for."""
    unknown = sorted(set(body) - DRAIN_KEYS)
    if unknown:
        raise BadDrainRequest(f"unknown key(s) in the request body: {', '.join(unknown)}")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise BadDrainRequest(f'"reason" must be a string of at most {MAX_REASON} chars')
    if body.get("until") is not None and body.get("for") is not None:
        raise BadDrainRequest('give "until" or "for", not both')
    until = _until(body, now)
    if until is not None and until - now > MAX_AHEAD:
        raise BadDrainRequest("a drain may last ten years at most")
    return DrainRequest(reason or None, until)


def _until(body: Json, now: float) -> float | None:
    if (until := body.get("until")) is not None:
        if not isinstance(until, str):
            raise BadDrainRequest('"until" must be a string like "2026-12-07T10:00:00Z"')
        try:
            at = parse_instant(until)
        except BadInstant as exc:
            raise BadDrainRequest(f'"until": {exc}') from None
        if at <= now:
            raise BadDrainRequest(f'"until" must be in the future (now: {format_instant(now)})')
        return at
    if (length := body.get("for")) is not None:
        return now + parse_length(length)
    return None


def parse_length(value: object) -> float:
    """How long a drain lasts: `90s`, `30m`, `2h`, `1d`, or a number of seconds; above zero."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _UNIT[match[2]]
    else:
        raise BadDrainRequest(f'"for": {str(value)[:40]!r} is not a duration (e.g. 30m, 2h, 1d)')
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadDrainRequest('"for" must be a duration above zero')
    return seconds


def drain_json(drain: Drain) -> Json:
    """How the API shows a drain: its scope, who, since, reason and until."""
    return {
        "scope": "cluster" if drain.service is None else "service",
        "who": drain.who,
        "since": format_instant(drain.since),
        "reason": drain.reason,
        "until": None if drain.until is None else format_instant(drain.until),
    }


def endpoint_drain(drains: Drains, service: str, cluster: str) -> Json | None:
    """The drain keeping an endpoint out: the cluster's (every service) first, else the
    service's own; None when it is not drained."""
    drain = drains.get(cluster) or drains.get(cluster, service)
    return None if drain is None else drain_json(drain)


async def read_reason(request: web.Request) -> str | None:
    """The optional {"reason": "..."} body of a changing call; 400 if bad."""
    try:
        return drain_request(await read_body(request, UNDRAIN_KEYS), now=0.0).reason
    except BadDrainRequest as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def read_body(request: web.Request, allowed: frozenset[str]) -> Json:
    """The optional JSON object body of a changing call, with only `allowed` keys; 400 if bad."""
    raw = await request.read()  # over client_max_size: 413
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, or nested too deep
        raise web.HTTPBadRequest(text=f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown key(s) in the request body: {', '.join(unknown)}")
    return body
