"""Log output: plain text lines (the default) or JSON lines, one object per record.

Records may carry structured fields through `extra=` (event, service, cluster, address, reason,
...); the JSON format puts them at the top level of the object, the text format leaves the
message as it is (the message already says everything on one line).

`glb.cli` is the one place that installs this.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final, TextIO

# attributes every LogRecord has; anything else on a record came from `extra=`
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class MalformedRequestFilter(logging.Filter):
    """Keeps aiohttp's per-request tracebacks for malformed HTTP (bad request lines, oversized or
    conflicting headers...) out of the log unless debugging: hostile clients must not be able to
    flood it. Such requests are still answered 400 (or 413, 431...) as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or type(exc).__module__ != "aiohttp.http_exceptions":
            return True
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def setup_logging(level: str, format: str = "text", stream: TextIO | None = None) -> None:
    """Send every glb log record at `level` or above to `stream` (stderr) in `format`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # no line per request
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())
