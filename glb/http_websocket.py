"""Proxying a websocket: the upstream handshake (with the same retry rule as any GET), then
messages pumped both ways until either side closes, which closes the other with the same code.

`idle_timeout` bounds the silence in both directions together; when it runs out both sides are
closed with 1001 (going away).

Imports: glb.core, glb.http_headers, glb.http_upstream and aiohttp only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict

from glb.core.model import Endpoint
from glb.core.ports import PassiveHealth
from glb.http_headers import CLUSTER_HEADER, VIA_NAME
from glb.http_upstream import (
    SERVED_BY,
    Failure,
    Route,
    classify,
    failure_response,
    may_retry,
    text_response,
)

logger = logging.getLogger(__name__)

MAX_MESSAGE: Final = 4 * 1024 * 1024  # bytes, either direction (aiohttp's default)
CLOSE_TIMEOUT: Final = 2.0  # seconds to wait for the peer's close frame
_UNSENDABLE: Final = frozenset({1005, 1006, 1015})  # close codes never sent on the wire

ClientSocket = aiohttp.ClientWebSocketResponse[bool]
ServerSocket = web.WebSocketResponse[bool]


async def proxy_websocket(
    request: web.Request,
    session: aiohttp.ClientSession,
    passive: PassiveHealth,
    route: Route,
    ranked: Sequence[Endpoint],
    *,
    headers: CIMultiDict[str],
    path_qs: str,
    cluster_header: bool,
) -> web.StreamResponse:
    """Connect upstream (trying `ranked` in order), accept the client, splice the two."""
    proxy = route.service.proxy
    failure: Failure | None = None
    for endpoint in ranked[: proxy.retries + 1]:
        if failure is not None and not may_retry(failure, "GET", replayable=True):
            break
        request[SERVED_BY] = endpoint.cluster
        try:
            upstream = await _connect(session, route, endpoint, headers, path_qs, request)
        except aiohttp.WSServerHandshakeError as exc:
            failed = exc.status >= 500 and proxy.eject_on_5xx
            passive.report_request(endpoint, failed=failed, detail=f"status {exc.status}")
            status = exc.status if 400 <= exc.status < 600 else 502
            return text_response(status, f"glb: upstream answered {exc.status} to the upgrade")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = classify(exc, route, endpoint)
            passive.report_request(endpoint, failed=True, detail=failure.detail)
            continue
        passive.report_request(endpoint, failed=False, detail="websocket")
        cluster = endpoint.cluster if cluster_header else None
        return await _accept_and_splice(request, upstream, cluster, proxy.idle_timeout)
    assert failure is not None  # noqa: S101 (ranked is never empty here)
    return failure_response(failure)


async def _connect(
    session: aiohttp.ClientSession,
    route: Route,
    endpoint: Endpoint,
    headers: CIMultiDict[str],
    path_qs: str,
    request: web.Request,
) -> ClientSocket:
    proxy = route.service.proxy
    async with asyncio.timeout(proxy.connect_timeout + proxy.first_byte_timeout):
        return await session.ws_connect(
            route.url(endpoint, path_qs, websocket=True),
            protocols=_offered_protocols(request),
            headers=headers,
            ssl=route.ssl,
            server_hostname=route.server_hostname,
            max_msg_size=MAX_MESSAGE,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
        )


def _offered_protocols(request: web.Request) -> list[str]:
    values = request.headers.getall("Sec-WebSocket-Protocol", ())
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


async def _accept_and_splice(
    request: web.Request, upstream: ClientSocket, cluster: str | None, idle: float
) -> web.StreamResponse:
    client: ServerSocket = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        max_msg_size=MAX_MESSAGE,
        timeout=CLOSE_TIMEOUT,
    )
    client.headers["Via"] = f"1.1 {VIA_NAME}"
    if cluster is not None:
        client.headers[CLUSTER_HEADER] = cluster
    try:
        await client.prepare(request)
        await _splice(client, upstream, idle)
    except Exception as exc:
        level = logging.DEBUG if isinstance(exc, aiohttp.ClientError | OSError) else logging.ERROR
        logger.log(level, "websocket %s ended by an error", request.path, exc_info=exc)
    finally:  # also when cancelled: a side that closed has its code passed on to the other
        await upstream.close(code=_close_code(client.close_code, WSCloseCode.GOING_AWAY))
        if client.prepared:
            await client.close(code=_close_code(upstream.close_code, WSCloseCode.BAD_GATEWAY))
    return client


async def _splice(client: ServerSocket, upstream: ClientSocket, idle: float) -> None:
    """Pump both ways until both pumps are done or nothing moved for `idle` seconds."""
    try:
        async with asyncio.timeout(idle) as deadline, asyncio.TaskGroup() as pumps:
            pumps.create_task(_pump(client, upstream, deadline, idle, WSCloseCode.GOING_AWAY))
            pumps.create_task(_pump(upstream, client, deadline, idle, WSCloseCode.BAD_GATEWAY))
    except TimeoutError:
        logger.debug("websocket idle for %gs: closing both sides", idle)


async def _pump(
    source: ClientSocket | ServerSocket,
    sink: ClientSocket | ServerSocket,
    deadline: asyncio.Timeout,
    idle: float,
    abnormal: int,
) -> None:
    """Copy text and binary messages from `source` to `sink` until `source` closes, then close
    `sink` with `source`'s close code (`abnormal` if `source` just went away)."""
    loop = asyncio.get_running_loop()
    try:
        async for message in source:
            deadline.reschedule(loop.time() + idle)
            if message.type is WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type is WSMsgType.ERROR:
                break
    except (aiohttp.ClientError, ConnectionError) as exc:
        logger.debug("websocket pump stopped: %r", exc)
    await sink.close(code=_close_code(source.close_code, abnormal))


def _close_code(code: int | None, abnormal: int) -> int:
    """The code to close one side with, given the other side's close code (None: still open)."""
    if code is None:
        return WSCloseCode.GOING_AWAY
    if code == 1005:  # closed without a status
        return WSCloseCode.OK
    if code in _UNSENDABLE or not 1000 <= code < 5000:
        return abnormal
    return code
