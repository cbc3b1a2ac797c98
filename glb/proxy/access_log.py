"""The HTTP front end's access log: one info record per request the proxy handled (a sampled
share of them, `http.access_log`), on its own logger, `glb.access`, so it can be routed or
silenced apart from glb's other records. Never used on the DNS path.

The message is the combined log format followed by glb's own fields:

    127.0.0.1 - - [07/Dec/2026:00:10:00 +0000] "GET /path HTTP/1.1" 200 1234 "-" "curl/8"
    service=app.example.test cluster=eu-west upstream_status=200 upstream_time=0.012 time=0.013

(one line). The record carries the same fields as `extra` (`event: "access"`, remote, method,
target, protocol, status, bytes, referer, user_agent, service, cluster, upstream_status,
upstream_time, request_time), which the JSON log format puts at the top level of each line
(`request_time` there, as `time` is the record's own timestamp).

- `service` is the service routed to, "-" when the host named none (glb's 421 or 400).
- `cluster`, `upstream_status` and `upstream_time` (seconds from sending the request to the
  endpoint that answered until its response head arrived) are "-" (JSON null) when no upstream
  answered: glb's own 502, 503 or 504, or a client fault answered by glb.
- `status` is what the client was sent. A request the handler left unanswered is answered by
  glb.http1.server's error boundary after the line is written, so its status is the one that
  boundary sends (`unanswered_status`): 499 (nginx's "client closed request") when the client went
  away before any response started, 400 for a bad request body, else 502. `bytes` counts the
  response body sent. `time` is the seconds from routing the request to the end of its
  response.
- Text from the client (target, Referer, User-Agent) is escaped: `"` and `\\` get a backslash,
  control and non-ASCII characters become `\\xHH`, so one request is always one line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Final

from glb.http1.server import BodyError, ClientGone, Request
from glb.proxy.attempts import UpstreamAnswer

logger = logging.getLogger("glb.access")

CLIENT_GONE: Final = 499  # the status logged for a client that left before any response
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_UNSAFE: Final = re.compile(r'[^\x20-\x7e]|["\\]')


def _escape(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text  # the common case, without the regex
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in '"\\':
        return "\\" + char
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))


def clf_time(moment: float) -> str:
    """`moment` (epoch seconds) as the common log format writes it, in UTC."""
    return _clf_second(int(moment))


@functools.lru_cache(maxsize=4)  # most lines are written in the same second as the one before
def _clf_second(second: int) -> str:
    t = time.gmtime(second)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def unanswered_status(error: BaseException | None) -> int:
    """The status of a request the proxy's handler ended without answering, `error` what it
    raised (None: nothing): what glb.http1.server's error boundary then answers, or 499 when
    the client left."""
    if isinstance(error, asyncio.CancelledError | ClientGone):
        return CLIENT_GONE
    return 400 if isinstance(error, BodyError) else 502


class AccessLog:
    """Logs a `sample` share (0 to 1) of the requests the proxy handled; 0 logs none."""

    def __init__(
        self,
        sample: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sample = sample
        self._rng = rng or random.Random()
        self._clock = clock

    def wanted(self) -> bool:
        """Whether this request gets a line (sampled, and info records are on)."""
        sample = self.sample
        if sample <= 0.0 or not logger.isEnabledFor(logging.INFO):
            return False
        return sample >= 1.0 or self._rng.random() < sample

    def record(
        self,
        request: Request,
        service: str,
        upstream: UpstreamAnswer | None,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """Log `request` if it is sampled: routed to `service` ("-": to none), answered by
        `upstream` (None: by glb itself), handled in `seconds`, the handler raising `error`."""
        if not self.wanted():
            return
        status = request.status if request.started else unanswered_status(error)
        fields = _fields(request, status, service, upstream, seconds)
        logger.info(_line(fields, self._clock()), extra=fields)


def _fields(
    request: Request, status: int, service: str, upstream: UpstreamAnswer | None, seconds: float
) -> dict[str, object]:
    headers = request.headers
    return {
        "event": "access",
        "remote": request.remote,
        "method": request.method,
        "target": request.target,
        "protocol": f"HTTP/{request.version}",
        "status": status,
        "bytes": request.sent,
        "referer": headers.get("Referer"),
        "user_agent": headers.get("User-Agent"),
        "service": service,
        "cluster": None if upstream is None else request.served_by,
        "upstream_status": None if upstream is None else upstream.status,
        "upstream_time": None if upstream is None else round(upstream.seconds, 3),
        "request_time": round(seconds, 3),
    }


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _quoted(value: object) -> str:
    return '"-"' if value is None else f'"{_escape(str(value))}"'


def _line(fields: dict[str, object], now: float) -> str:
    upstream_time = fields["upstream_time"]
    request_line = f"{fields['method']} {fields['target']} {fields['protocol']}"
    return (
        f"{fields['remote'] or '-'} - - [{clf_time(now)}] {_quoted(request_line)} "
        f"{fields['status']} {fields['bytes']} "
        f"{_quoted(fields['referer'])} {_quoted(fields['user_agent'])} "
        f"service={fields['service']} cluster={_text(fields['cluster'])} "
        f"upstream_status={_text(fields['upstream_status'])} "
        f"upstream_time={'-' if upstream_time is None else f'{upstream_time:.3f}'} "
        f"time={fields['request_time']:.3f}"
    )
