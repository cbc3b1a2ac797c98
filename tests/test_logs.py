"""Log output: JSON lines with structured fields, text lines, and the sampled DNS query log."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import dns.message
import pytest

from glb.config import parse_settings, to_topology
from glb.core.health import Health, TargetHealth
from glb.core.snapshot import HealthSnapshot
from glb.dns.answerer import DnsAnswerer
from glb.logs import JsonFormatter, setup_logging

CONFIG = """
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 192.0.2.53}]}]
clusters: [{name: eu, addresses: [192.0.2.1]}]
services: [{name: app.z.test, backends: [{cluster: eu}]}]
"""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("glb.test")
    return logger.makeRecord(
        "glb.test", logging.INFO, __file__, 1, message, args, None, extra=extra
    )


def test_json_lines_carry_message_level_time_and_extra_fields() -> None:
    """A JSON log line has the rendered message, level, logger, UTC time and every extra field."""
    line = JsonFormatter().format(
        record("%s: up -> down", "eu app.z.test", event="state_change", cluster="eu")
    )
    entry = json.loads(line)
    assert entry["message"] == "eu app.z.test: up -> down"
    assert (entry["level"], entry["logger"]) == ("info", "glb.test")
    assert (entry["event"], entry["cluster"]) == ("state_change", "eu")
    assert entry["time"].endswith("Z")
    assert "args" not in entry
    assert "msg" not in entry


def test_json_lines_include_exceptions() -> None:
    """An exception logged with exc_info appears as a traceback string in the JSON object."""
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("glb.test")
        rec = logger.makeRecord(
            "glb.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_setup_logging_writes_the_chosen_format(fmt: str) -> None:
    """setup_logging sends records at the level or above in the configured format."""
    stream = io.StringIO()
    setup_logging("warning", fmt, stream)
    logging.getLogger("glb.x").info("hidden")
    logging.getLogger("glb.x").warning("shown %d", 1, extra={"event": "test"})
    [line] = stream.getvalue().splitlines()
    if fmt == "json":
        assert json.loads(line)["message"] == "shown 1"
        assert json.loads(line)["event"] == "test"
    else:
        assert line.endswith("WARNING glb.x: shown 1")


def answerer(sample: float) -> DnsAnswerer:
    topology = to_topology(parse_settings(CONFIG))
    [target] = topology.targets()
    snapshot = HealthSnapshot.of({target: TargetHealth(state=Health.UP)})
    return DnsAnswerer(topology, lambda: snapshot, query_sample=sample)


@pytest.mark.parametrize(("sample", "logged"), [(0.0, 0), (1.0, 20)])
def test_dns_query_log_is_sampled(
    caplog: pytest.LogCaptureFixture, sample: float, logged: int
) -> None:
    """With query_sample 0 no query is logged; with 1 every query is, with name and answer."""
    caplog.set_level("INFO", logger="glb.dns.answerer")
    answer = answerer(sample)
    for _ in range(20):
        answer.answer(dns.message.make_query("App.z.test", "A").to_wire(), False)
    lines = [r for r in caplog.records if getattr(r, "event", None) == "dns_query"]
    assert len(lines) == logged
    if lines:
        assert lines[0].getMessage() == "query udp App.z.test. A -> NOERROR 192.0.2.1"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("level", "kept"), [("info", False), ("debug", True)])
def test_malformed_http_tracebacks_are_kept_out_unless_debugging(level: str, kept: bool) -> None:
    """aiohttp's traceback for a malformed request is dropped at info and kept at debug; other
    aiohttp server errors are always kept."""
    from aiohttp.http_exceptions import BadHttpMessage

    stream = io.StringIO()
    setup_logging(level, "text", stream)
    server = logging.getLogger("aiohttp.server")
    try:
        raise BadHttpMessage("Content-Length can't be present with Transfer-Encoding")
    except BadHttpMessage:
        server.exception("Error handling request from %s", "127.0.0.1")
    try:
        raise RuntimeError("a real bug")
    except RuntimeError:
        server.exception("Unhandled exception")
    text = stream.getvalue()
    assert ("BadHttpMessage" in text) is kept
    assert "RuntimeError: a real bug" in text
