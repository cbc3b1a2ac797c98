"""The HTTP front end's access log (`http.access_log`, `glb.proxy.access_log`): real requests
through a whole glb to real upstreams, the `glb.access` records read from the log (text: the
message; JSON: `glb.logs.JsonFormatter`, as `log.format: json` writes them)."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import pytest

from glb.app import Running, running
from glb.config import parse_settings
from glb.http1.server import BadBody, ClientGone
from glb.logs import JsonFormatter
from glb.proxy.access_log import clf_time, unanswered_status
from tests.front_glb import HOST, front_config, glb_front, port_of, two_upstreams, until
from tests.stack import tcp_connection, upstreams

ACCESS = "glb.access"
TEXT_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[(?P<time>[^]]+)\] "GET /path\?q=1 HTTP/1\.1" 200 (?P<bytes>\d+) '
    r'"https://referrer\.test/" "curl/8 \\"quoted\\" \\\\ end" service=app\.glb\.test '
    r"cluster=primary upstream_status=200 upstream_time=(?P<upstream>\d+\.\d{3}) "
    r"time=(?P<total>\d+\.\d{3})$"
)


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS]


async def get(glb: Running, path: str, host: str = HOST, **headers: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{glb.http_url}{path}", headers={"Host": host, **headers}) as response,
    ):
        return response.status, await response.read()


async def logged(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[logging.LogRecord]:
    """The access records once there are `count` (logged as the handler ends, which may be
    just after the client has its response)."""
    await until(lambda: len(access_records(caplog)) >= count)
    return access_records(caplog)


def counted(glb: Running, status: str) -> bool:
    """Whether /metrics has counted a proxied request answered `status` (counted just before
    the access log is written, in the same step)."""
    return any(code == status for (_, _, code) in glb.pool.stats().proxy_requests)


UA = 'curl/8 "quoted" \\ end'
REFERER = "https://referrer.test/"


async def test_a_proxied_request_is_one_text_line_with_every_field(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front() as (glb, _):
        status, body = await get(glb, "/path?q=1", Referer=REFERER, **{"User-Agent": UA})
        (record,) = await logged(caplog)
    assert status == 200
    assert record.levelno == logging.INFO
    line = record.getMessage()
    match = TEXT_LINE.match(line)
    assert match is not None, line
    assert int(match["bytes"]) == len(body)
    assert float(match["upstream"]) <= float(match["total"])
    assert match["time"].endswith(" +0000")
    assert "\n" not in line


async def test_the_json_line_carries_the_same_fields(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front() as (glb, _):
        _, body = await get(glb, "/path?q=1", Referer=REFERER, **{"User-Agent": UA})
        (record,) = await logged(caplog)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["logger"] == ACCESS
    assert entry["level"] == "info"
    assert entry["message"] == record.getMessage()
    assert entry["event"] == "access"
    assert {k: entry[k] for k in ("remote", "method", "target", "protocol", "status")} == {
        "remote": "127.0.0.1",
        "method": "GET",
        "target": "/path?q=1",
        "protocol": "HTTP/1.1",
        "status": 200,
    }
    assert entry["bytes"] == len(body)
    assert (entry["referer"], entry["user_agent"]) == (REFERER, UA)
    assert (entry["service"], entry["cluster"], entry["upstream_status"]) == (
        HOST,
        "primary",
        200,
    )
    assert 0 <= entry["upstream_time"] <= entry["request_time"] < 5
    assert entry["time"].endswith("Z")  # the record's own timestamp is kept


@pytest.mark.parametrize("setting", ["access_log: {sample: 0}", "access_log: {enabled: false}"])
async def test_sampling_zero_or_disabled_logs_nothing(caplog, setting):
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front(setting) as (glb, _):
        for _ in range(5):
            assert (await get(glb, "/x"))[0] == 200
        await until(lambda: sum(glb.pool.stats().proxy_requests.values()) >= 5)
    assert access_records(caplog) == []


async def test_glbs_own_503_and_421_are_logged_without_a_cluster(caplog):
    """No healthy endpoint (and `when_all_down: servfail`): glb's own 503 is logged with
    cluster, upstream status and upstream time "-"; a host naming no service (421) with
    service "-" too."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with upstreams(two_upstreams()) as where:
        config = front_config(where, extra="    when_all_down: servfail\n")
        await where.stop("primary")
        await where.stop("secondary")
        settings = parse_settings(config)
        async with running(settings) as glb:
            status, _ = await get(glb, "/down")
            assert status == 503
            (down,) = await logged(caplog)
            assert (await get(glb, "/", host="nowhere.test"))[0] == 421
            records = await logged(caplog, 2)
    assert re.search(
        r'"GET /down HTTP/1\.1" 503 \d+ "-" "[^"]*" service=app\.glb\.test cluster=- '
        r"upstream_status=- upstream_time=- time=\d+\.\d{3}$",
        down.getMessage(),
    ), down.getMessage()
    fields = json.loads(JsonFormatter().format(down))
    assert (fields["cluster"], fields["upstream_status"], fields["upstream_time"]) == (
        None,
        None,
        None,
    )
    misdirected = records[1].getMessage()
    assert re.search(r'"GET / HTTP/1\.1" 421 \d+ .* service=- cluster=- ', misdirected)


async def test_a_failed_upstream_is_glbs_own_502_without_a_cluster(caplog):
    """Every endpoint refusing (probes not yet noticing): glb's 502 is logged with cluster "-"."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front(retries=1) as (glb, where):
        await where.stop("primary")
        await where.stop("secondary")
        assert (await get(glb, "/gone"))[0] == 502
        (record,) = await logged(caplog)
    assert re.search(
        r'" 502 \d+ .* service=app\.glb\.test cluster=- upstream_status=- ', record.getMessage()
    )


async def test_a_client_leaving_before_the_response_is_logged_499(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front() as (glb, _):
        async with tcp_connection("127.0.0.1", port_of(glb)) as (_, writer):
            writer.write(f"GET /slow?delay=5 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            await writer.drain()
            await until(lambda: sum(glb.pool.stats().proxy_active.values()) == 1)
        (record,) = await logged(caplog)
    assert re.search(
        r'"GET /slow\?delay=5 HTTP/1\.1" 499 0 "-" "-" service=app\.glb\.test cluster=- ',
        record.getMessage(),
    ), record.getMessage()


async def test_bytes_outside_printable_ascii_are_escaped_as_sent(caplog):
    """A User-Agent in UTF-8 and one byte that is not: each byte logged as \\xHH, one line."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with glb_front() as (glb, _):
        async with tcp_connection("127.0.0.1", port_of(glb)) as (reader, writer):
            writer.write(
                b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: app.glb.test\r\n"
                b"User-Agent: caf\xc3\xa9 \xff\r\nConnection: close\r\n\r\n"
            )
            assert (await reader.read()).startswith(b"HTTP/1.1 ")
        (record,) = await logged(caplog)
    line = record.getMessage()
    assert '"GET /caf\\xc3\\xa9 HTTP/1.1"' in line, line
    assert '"caf\\xc3\\xa9 \\xff" service=app.glb.test' in line, line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (asyncio.CancelledError(), 499),
        (ClientGone(), 499),
        (BadBody("broken chunk"), 400),
        (RuntimeError("a bug"), 502),
        (None, 502),  # the handler returned without answering
    ],
)
def test_an_unanswered_request_has_the_status_the_server_then_sends(error, status):
    assert unanswered_status(error) == status


def test_clf_time_is_utc_with_english_months():
    assert clf_time(1796602200.0) == "07/Dec/2026:00:10:00 +0000"
