"""A Kubernetes API stand-in over real HTTP (aiohttp): what `glb demo --kubernetes` runs for
each demo cluster, and what the discovery tests drive glb's real client against. No real API
server can run on the machines glb is developed and tested on; this one speaks the API's paths,
list and watch formats for exactly the kinds glb's discovery reads.

It serves the list and watch requests of Services, Ingresses, EndpointSlices, Gateways and
HTTPRoutes on the real API paths (`/api/v1/...`, `/apis/<group>/<version>/...`, namespaced or
across all namespaces), with one resourceVersion counter like etcd's:

- a list answers `{"kind": "<Kind>List", "metadata": {"resourceVersion"}, "items"}`;
- a watch (`?watch=true&resourceVersion=N`) first replays the events after N, then streams new
  ones, one JSON line each (`{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object"}`);
  `bookmark()` sends BOOKMARK events to the watches that asked `allowWatchBookmarks=true`;
- `compact()` forgets the history: a watch from an older version is refused with 410 Gone, as
  an HTTP status or (`gone_as_event`) as an ERROR event, as API servers do;
- `fail_with(status)` answers every request with that error status until `heal()`;
  `drop_watches()` cuts the open watch connections, `end_watches()` ends them as the server
  does when a watch times out, `stop_serving()` and `serve_again()` close and reopen the port;
- `send_raw(kind, object)` sends any object, even malformed, to the watches of its kind.

Every request is logged (`requests`: path and query) for the tests to assert on.

`KubernetesEmulator(gateway_api=False)` serves no Gateway API, like a cluster without its CRDs.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

RESOURCES = {
    "services": ("/api/v1", "Service"),
    "ingresses": ("/apis/networking.k8s.io/v1", "Ingress"),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "EndpointSlice"),
    "gateways": ("/apis/gateway.networking.k8s.io/v1", "Gateway"),
    "httproutes": ("/apis/gateway.networking.k8s.io/v1", "HTTPRoute"),
}
PLURALS = {kind: plural for plural, (_, kind) in RESOURCES.items()}
ObjectKey = tuple[str, str]


@dataclass(frozen=True)
class Logged:
    path: str
    query: Mapping[str, str]

    @property
    def watching(self) -> bool:
        return _flag(self.query, "watch")


@dataclass
class _Watcher:
    plural: str
    namespace: str | None
    bookmarks: bool
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    request: web.Request | None = None


class KubernetesEmulator:
    def __init__(self, *, gateway_api: bool = True) -> None:
        self.gateway_api = gateway_api
        self.version = 1000
        self.objects: dict[str, dict[ObjectKey, dict[str, Any]]] = {p: {} for p in RESOURCES}
        self._history: dict[str, list[tuple[int, dict[str, Any]]]] = {p: [] for p in RESOURCES}
        self._compacted = 0
        self._watchers: list[_Watcher] = []
        self.requests: list[Logged] = []
        self.failing: int | None = None
        self.gone_as_event = False
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        """Serve on `host`:`port` (0: an ephemeral port)."""
        self.host = host
        await self._serve_on(port)

    async def stop_serving(self) -> None:
        """Close the port (connections are refused) and every open watch, keeping the state."""
        self.end_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve_again(self) -> None:
        await self._serve_on(self.port)

    async def _serve_on(self, port: int) -> None:
        app = web.Application()
        for plural, (prefix, _) in RESOURCES.items():
            app.router.add_get(f"{prefix}/{plural}", self._serve)
            app.router.add_get(f"{prefix}/namespaces/{{namespace}}/{plural}", self._serve)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self.stop_serving()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # The cluster's objects

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object (ADDED or MODIFIED); returns it as stored."""
        stored = copy.deepcopy(dict(obj))
        plural = PLURALS[stored["kind"]]
        metadata = stored.setdefault("metadata", {})
        key = (metadata["namespace"], metadata["name"])
        kind = "MODIFIED" if key in self.objects[plural] else "ADDED"
        self.version += 1
        metadata["resourceVersion"] = str(self.version)
        self.objects[plural][key] = stored
        self._publish(plural, {"type": kind, "object": stored})
        return stored

    def delete(self, kind: str, namespace: str, name: str) -> None:
        plural = PLURALS[kind]
        stored = self.objects[plural].pop((namespace, name))
        self.version += 1
        stored = copy.deepcopy(stored)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self._publish(plural, {"type": "DELETED", "object": stored})

    def bookmark(self) -> str:
        """A new version (as when other kinds change) told to the watches by a BOOKMARK."""
        self.version += 1
        for watcher in self._watchers:
            if watcher.bookmarks:
                object_ = {
                    "kind": RESOURCES[watcher.plural][1],
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.version)},
                }
                watcher.queue.put_nowait({"type": "BOOKMARK", "object": object_})
        return str(self.version)

    def compact(self) -> None:
        """Forget the history up to now: older watch versions are gone (410)."""
        self.version += 1
        self._compacted = self.version
        for history in self._history.values():
            history.clear()

    def fail_with(self, status: int) -> None:
        self.failing = status

    def heal(self) -> None:
        self.failing = None

    def end_watches(self) -> None:
        """End every open watch cleanly, after the events already queued for it."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    def send_raw(self, kind: str, obj: dict[str, Any], event: str = "ADDED") -> None:
        plural = PLURALS[kind]
        for watcher in self._watchers:
            if watcher.plural == plural:
                watcher.queue.put_nowait({"type": event, "object": obj})

    def drop_watches(self) -> None:
        for watcher in self._watchers:
            if watcher.request is not None and watcher.request.transport is not None:
                watcher.request.transport.abort()

    def watches(self, kind: str) -> list[Logged]:
        """The logged watch requests of one kind, oldest first."""
        prefix, _ = RESOURCES[PLURALS[kind]]
        plural = PLURALS[kind]
        return [
            r
            for r in self.requests
            if r.watching and r.path.startswith(prefix) and r.path.endswith("/" + plural)
        ]

    def _publish(self, plural: str, event: dict[str, Any]) -> None:
        self._history[plural].append((self.version, event))
        namespace = event["object"]["metadata"]["namespace"]
        for watcher in self._watchers:
            if watcher.plural == plural and watcher.namespace in (None, namespace):
                watcher.queue.put_nowait(event)

    # The API

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Logged(request.path, dict(request.query)))
        plural = request.path.rsplit("/", 1)[1]
        if not self.gateway_api and plural in ("gateways", "httproutes"):
            return _status(404, "NotFound", "the server could not find the requested resource")
        if self.failing is not None:
            return _status(self.failing, "InternalError", "the emulator is failing on purpose")
        namespace = request.match_info.get("namespace")
        if _flag(request.query, "watch"):
            return await self._watch(request, plural, namespace)
        items = [
            obj for (ns, _), obj in sorted(self.objects[plural].items()) if namespace in (None, ns)
        ]
        kind = RESOURCES[plural][1] + "List"
        body = {
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.version)},
            "items": items,
        }
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, plural: str, namespace: str | None
    ) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion", "0"))
        if since < self._compacted and not self.gone_as_event:
            return _status(410, "Expired", f"too old resource version: {since} ({self.version})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since < self._compacted:
            gone = _status_object(410, "Expired", f"too old resource version: {since}")
            await _send(response, {"type": "ERROR", "object": gone})
            return response
        watcher = _Watcher(plural, namespace, _flag(request.query, "allowWatchBookmarks"))
        watcher.request = request
        for version, past in self._history[plural]:
            if version > since and namespace in (None, past["object"]["metadata"]["namespace"]):
                watcher.queue.put_nowait(past)
        self._watchers.append(watcher)
        try:
            while (event := await watcher.queue.get()) is not None:
                await _send(response, event)
        finally:
            self._watchers.remove(watcher)
        return response


def _flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as the API server parses it (Go's strconv.ParseBool)."""
    return query.get(name, "false") in ("1", "t", "T", "TRUE", "true", "True")


async def _send(response: web.StreamResponse, event: Mapping[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status_object(code, reason, message), status=code)
