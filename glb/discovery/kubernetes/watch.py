"""The list-and-watch loop of one kind of object in one namespace (or the whole cluster).

It lists the objects, then watches from the list's resourceVersion with bookmarks, and re-watches
from the last resourceVersion it saw (an event's or a bookmark's) whenever the server ends the
watch. A watch refused with 410 Gone (the version is too old), as an HTTP status or as an ERROR
event with code 410, makes it list again. Any other failure (an error status, a refused or
dropped connection, a malformed answer) marks it unhealthy and retries after an exponential
backoff with jitter; its objects stay as last known until a list or an event replaces them.

Each object is read into its view once per change (glb.discovery.kubernetes.objects) and the
problems of the objects glb looks for are logged as warnings when they differ from the object's
previous ones; an object without identity is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from glb.discovery.kubernetes.client import Lister, list_objects, open_watch
from glb.discovery.kubernetes.objects import (
    MalformedObject,
    ObjectKey,
    Problems,
    object_key,
    resource_version,
)

logger = logging.getLogger(__name__)

View = TypeVar("View")
Reader = Callable[[Mapping[str, Any]], tuple[View, Problems]]

FAILURES = (ApiException, ConfigException, aiohttp.ClientError, OSError, TimeoutError, ValueError)
"""What a list or a watch may fail with: error statuses, credentials that cannot be refreshed,
connections, malformed answers."""


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Retry delays: doubling from `initial` up to `maximum`, each drawn in [half, whole]."""

    initial: float = 0.5
    maximum: float = 30.0


class Backoff:
    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng or random.Random()
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def delay(self) -> float:
        ceiling = min(self._policy.maximum, self._policy.initial * 2 ** min(self._failures, 32))
        self._failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    @property
    def longest(self) -> float:
        return self._policy.maximum


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclass(frozen=True, slots=True)
class Place:
    """Which objects one watch covers, for the log lines."""

    cluster: str
    kind: str
    namespace: str | None

    def __str__(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        return f"cluster {self.cluster}: {self.kind} in {where}"


class ResourceWatch(Generic[View]):
    """The objects of one kind in one namespace (or all), as views, kept up to date."""

    def __init__(
        self,
        place: Place,
        lister: Lister,
        reader: Reader[View],
        on_objects: Callable[[], None],
        on_health: Callable[[], None],
        backoff: Backoff,
        concerns: Callable[[View], bool] = lambda _: True,
    ) -> None:
        """`concerns` says whether an object's problems are worth a warning (an object glb
        looks for), not to warn about every Service of a cluster watched as a whole."""
        self.place = place
        self._lister = lister
        self._read = reader
        self._on_objects = on_objects
        self._on_health = on_health
        self._backoff = backoff
        self._concerns = concerns
        self.views: dict[ObjectKey, View] = {}
        self._problems: dict[ObjectKey, Problems] = {}
        self.resource_version: str | None = None
        self.healthy = False
        self._listed = False
        self._unserved = False

    async def run(self) -> NoReturn:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
            except Gone:
                logger.info(
                    "%s: resourceVersion %s is gone; listing again",
                    self.place,
                    self.resource_version,
                )
                self.resource_version = None
            except ApiException as error:
                await self._fail_or_wait_for_kind(error)
            except FAILURES as error:
                await self._fail(_describe(error))

    async def _list(self) -> None:
        answer = await list_objects(self._lister)
        version = resource_version(answer)
        if version is None:
            raise ValueError("the list answer has no metadata.resourceVersion")
        views: dict[ObjectKey, View] = {}
        for raw in answer["items"]:
            if read := self._read_object(raw):
                views[read[0]] = read[1]
        self._problems = {key: self._problems.get(key, ()) for key in views}
        self.views = views
        self.resource_version = version
        self._unserved = False
        self._listed = True
        self._set_healthy(True)
        self._backoff.reset()
        self._on_objects()

    async def _watch(self) -> None:
        assert self.resource_version is not None  # noqa: S101 (listed first)
        loop = asyncio.get_running_loop()
        started, events = loop.time(), 0
        async with self._open_watch(self.resource_version) as stream:
            self._set_healthy(True)
            async for event in stream:
                events += 1
                self._apply(event)
        if events == 0 and loop.time() - started < self._backoff.longest:
            await asyncio.sleep(self._backoff.delay())  # ended at once: do not spin
        else:
            self._backoff.reset()

    @asynccontextmanager
    async def _open_watch(self, version: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        try:
            async with open_watch(self._lister, version) as events:
                yield events
        except ApiException as error:
            if error.status == 410:
                raise Gone from error
            raise

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind, raw = event.get("type"), event.get("object")
        if kind == "ERROR":
            raise _watch_error(raw)
        if not isinstance(raw, Mapping):
            logger.warning("%s: skipping a %s watch event without an object", self.place, kind)
            return
        if version := resource_version(raw):
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            self._forget(raw)
        elif kind in ("ADDED", "MODIFIED"):
            if read := self._read_object(raw):
                self.views[read[0]] = read[1]
        else:
            logger.warning("%s: ignoring a watch event of type %r", self.place, kind)
            return
        self._on_objects()

    def _forget(self, raw: Mapping[str, Any]) -> None:
        try:
            key = object_key(raw)
        except MalformedObject:
            return
        self.views.pop(key, None)
        self._problems.pop(key, None)

    def _read_object(self, raw: object) -> tuple[ObjectKey, View] | None:
        if not isinstance(raw, Mapping):
            logger.warning("%s: skipping an item that is not an object", self.place)
            return None
        try:
            key = object_key(raw)
            view, problems = self._read(raw)
        except MalformedObject as error:
            logger.warning("%s: skipping an object: %s", self.place, error)
            return None
        if problems and problems != self._problems.get(key) and self._concerns(view):
            place = self.place
            for problem in problems:
                logger.warning("cluster %s: %s %s/%s %s", place.cluster, place.kind, *key, problem)
        self._problems[key] = problems
        return key, view

    async def _fail_or_wait_for_kind(self, error: ApiException) -> None:
        """404 before any list means the API serves no such kind (the Gateway API is not
        installed): there are none, which is no failure; look again now and then. After a list,
        a 404 fails like any error status (the objects stay as last known), and lists again."""
        if error.status != 404 or self._listed:
            if error.status == 404:
                self.resource_version = None
            await self._fail(_describe(error))
            return
        if not self._unserved:
            self._unserved = True
            logger.warning(
                "%s: the API serves no such objects (not installed?); looking again every %.1fs",
                self.place,
                self._backoff.longest,
            )
        self._set_healthy(True)
        await asyncio.sleep(self._backoff.longest)

    async def _fail(self, reason: str) -> None:
        delay = self._backoff.delay()
        logger.info("%s: %s; retrying in %.2fs", self.place, reason, delay)
        self._set_healthy(False)
        await asyncio.sleep(delay)

    def _set_healthy(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self._on_health()


def _watch_error(status: object) -> Exception:
    """What an ERROR event (its object a Status) means: Gone for 410, else an API error."""
    code = status.get("code") if isinstance(status, Mapping) else None
    if code == 410:
        return Gone()
    message = status.get("message") if isinstance(status, Mapping) else None
    return ApiException(
        status=code if isinstance(code, int) else 500, reason=str(message or "an ERROR watch event")
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"the API answered {error.status} {error.reason}".rstrip()
    if isinstance(error, json.JSONDecodeError):
        return f"the API answered malformed JSON ({error.msg})"
    return f"{type(error).__name__}: {error}".rstrip(": ")
