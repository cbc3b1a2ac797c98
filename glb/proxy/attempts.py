"""The HTTP front end's one retry loop: `Attempts.in_order` tries a request on the ranked
endpoints in order, within the service's retry budget (`retries`), whatever the kind of request.
The kind is an `Attempt`: it sends the request to one endpoint up to the response's head
(`send`), and hands that response to the client (`deliver`). Plain requests are
`glb.proxy.forward.Forwarder`'s, websocket upgrades `glb.proxy.websocket.WebSocketUpgrade`'s.
What every attempt sends, the `UpstreamRequest`, is built once by `glb.proxy.handler`.

For each attempt:

- It produced a response: passive health hears of it (failed only for a 5xx when the service
  ejects on 5xx) and the response is delivered, whatever its status: no retry.
- It failed and the client's body is to blame (`glb.proxy.body.ClientBody.fault`: the client
  stalled, broke its body, left or sent too much): the client is answered 408, 400 or 413 (or
  not at all once gone); nothing is reported and nothing retried.
- It failed otherwise: the endpoint is reported failed, and the next endpoint is tried if
  `glb.proxy.failures.may_retry` allows it (each retry counted in `Stats.proxy_retries`).
- No attempt left: the client gets `failure_text` of the last failure (502, or 504 for a
  timeout).

While an attempt waits for its response head, `glb.proxy.down_watch.DownWatch` cuts it short if
the endpoint is marked down meanwhile (probes or ejection): the attempt fails as "marked down"
at once (not reported again to passive health), and the request goes on to the next endpoint if
it is idempotent and its body can be sent again, else gets 504 at once instead of waiting out
`timeouts.first_byte`.

An attempt raising anything but a connection failure or a timeout (glb.http1.client's
`UpstreamError`, `TimeoutError`, `OSError`) is a bug: it goes to the server's error boundary.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import NamedTuple, Protocol

from multidict import CIMultiDict

from glb.core.model import Endpoint
from glb.core.ports import PassiveHealth
from glb.core.stats import Stats
from glb.http1.response import Response, UpstreamError
from glb.http1.server import Request
from glb.proxy.body import ClientBody, answer_client_fault
from glb.proxy.down_watch import DownWatch, EndpointMarkedDown
from glb.proxy.failures import Failure, classify, failure_text, may_retry
from glb.proxy.upstream import Route

# what a failed attempt raises
_FAILURES = (UpstreamError, TimeoutError, OSError, EndpointMarkedDown)


class UpstreamRequest:
    """A client request as each attempt sends it: method, origin-form target, the headers
    built for upstreams (`glb.proxy.headers.upstream_headers`), the client's body, and the
    client's request it comes from (what interim responses are relayed to)."""

    __slots__ = ("body", "client", "headers", "method", "path_qs")

    def __init__(
        self, client: Request, path_qs: str, headers: CIMultiDict[str], body: ClientBody
    ) -> None:
        self.client = client
        self.method = client.method
        self.path_qs = path_qs
        self.headers = headers
        self.body = body


class UpstreamAnswer(NamedTuple):
    """The response that was delivered: its status, and the seconds from sending the request
    to the endpoint that answered until its response's head was in."""

    status: int
    seconds: float


class Attempt(Protocol):
    """One kind of request, as the retry loop attempts it at an endpoint."""

    def send(
        self, route: Route, endpoint: Endpoint, outgoing: UpstreamRequest
    ) -> Awaitable[Response]:
        """Send `outgoing` to `endpoint`; the response once its head is in. Raises an
        `UpstreamError`, a `TimeoutError` or an `OSError` when no response came."""
        ...

    def deliver(self, request: Request, response: Response, cluster: str | None) -> Awaitable[None]:
        """Hand `response` to the client (`cluster`: the X-GLB-Cluster to add, if any)."""
        ...


class Attempts:
    """Runs requests over the ranked endpoints, reporting each outcome to passive health."""

    def __init__(
        self, passive: PassiveHealth, stats: Stats, down: DownWatch, *, cluster_header: bool
    ) -> None:
        self._passive = passive
        self._stats = stats
        self._down = down
        self._cluster_header = cluster_header

    async def in_order(
        self,
        request: Request,
        route: Route,
        ranked: Sequence[Endpoint],
        attempt: Attempt,
        outgoing: UpstreamRequest,
    ) -> UpstreamAnswer | None:
        """Attempt the endpoints in order while the retry rule allows; deliver the first
        response (and say what it was), or answer why none came (None)."""
        failure: Failure | None = None
        body = outgoing.body
        for endpoint in ranked[: route.service.proxy.retries + 1]:
            if failure is not None:
                if not may_retry(failure, request.method, replayable=body.replayable):
                    break
                self._stats.proxy_retries[route.service.name] += 1
            request.served_by = endpoint.cluster
            sent = time.monotonic()
            try:
                with self._down.watching(endpoint.target):
                    response = await attempt.send(route, endpoint, outgoing)
            except Exception as exc:
                if body.client_error is None and not isinstance(exc, _FAILURES):
                    raise  # a bug: the error boundary logs it
                if (fault := await body.fault()) is not None:
                    answer_client_fault(request, fault)
                    return None
                failure = classify(exc, route, endpoint)
                if not failure.marked_down:  # already down: nothing more to tell
                    self._passive.report_request(endpoint, failed=True, detail=failure.detail)
                continue
            answer = UpstreamAnswer(response.status, time.monotonic() - sent)
            self._report_answer(route, endpoint, response.status)
            cluster = endpoint.cluster if self._cluster_header else None
            try:
                await attempt.deliver(request, response, cluster)
            finally:
                response.release()
            return answer
        assert failure is not None  # noqa: S101 (ranked is never empty here)
        request.text(*failure_text(failure))
        return None

    def _report_answer(self, route: Route, endpoint: Endpoint, status: int) -> None:
        failed = status >= 500 and route.service.proxy.eject_on_5xx
        self._passive.report_request(
            endpoint, failed=failed, detail=f"status {status}" if failed else ""
        )
