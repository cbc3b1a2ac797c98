"""The drains as they live in Redis, shared by every glb instance that names the same store.

One hash, `glb:drains`: a field per drain scope (`eu-west/*` for every service,
`eu-west/app.example.com` for one service) whose value is the drain as JSON, the same object as
in the state file (`Drain.to_json`). Each change touches its own field only (HSET, HDEL, or a
compare-and-delete script for an expired drain), so two instances changing different scopes
never lose one another's change. After a change the writer publishes its instance name on the
channel `glb:drains`; the others re-read the hash. The key `glb:drains:seeded` says the hash has
been written by some instance: a store without it has lost its data (restarted without
persistence) or was never used, and is seeded from the instances' local copies.

`parse_fields` turns what HGETALL returned into `Drains`; a field that is not a valid drain is
logged (once per distinct value) and ignored, never an exception. `RedisDrainStore` is the I/O;
its calls raise `StoreUnreachable` when Redis cannot be reached or answers too slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from glb.core.drains import DOCUMENT_VERSION, BadStateDocument, Drain, Drains, Scope

logger = logging.getLogger(__name__)

DRAINS_KEY: Final = "glb:drains"
SEEDED_KEY: Final = "glb:drains:seeded"
CHANNEL: Final = "glb:drains"
TIMEOUT: Final = 2.0  # seconds: connecting, and any one call
_EVERY_SERVICE: Final = "*"
_DELETE_IF_SAME: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


MAX_BACKOFF: Final = 2.0  # seconds between attempts to reach an unreachable store, at most
_FIRST_BACKOFF: Final = 0.1


class StoreUnreachable(Exception):
    """Redis could not be reached, or did not answer in time; the message says why."""


async def keep_trying(
    attempt: Callable[[Callable[[], None]], Awaitable[None]],
    failed: Callable[[str], None],
    what: str,
) -> None:
    """Run `attempt(reached)` forever (until cancelled): when it fails, tell `failed` why and
    try again after a backoff, 0.1 s doubling up to MAX_BACKOFF, short again once the attempt
    has called `reached()`. The store being unreachable (StoreUnreachable, alone or in a task
    group's ExceptionGroup) is expected; any other exception is a bug, logged with its
    traceback, and tried again all the same: it must not end the sharing for good."""
    backoff = _FIRST_BACKOFF

    def reached() -> None:
        nonlocal backoff
        backoff = _FIRST_BACKOFF  # the next outage starts with a short wait again

    while True:
        try:
            await attempt(reached)
        except* StoreUnreachable as unreachable:
            failed(str(unreachable.exceptions[0]))
        except* Exception:
            logger.exception("%s failed", what)
            failed("see the error above")
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


def field_of(scope: Scope) -> str:
    cluster, service = scope
    return f"{cluster}/{service or _EVERY_SERVICE}"


def value_of(drain: Drain) -> str:
    return json.dumps(drain.to_json(), separators=(",", ":"))


def shown_url(url: str) -> str:
    """The store's URL for logs: without a user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class FieldParser:
    """Reads the hash's fields; remembers which bad values it already logged."""

    def __init__(self) -> None:
        self._logged: set[tuple[str, str]] = set()

    def parse(self, fields: Mapping[str, str]) -> Drains:
        drains: list[Drain] = []
        for field, value in sorted(fields.items()):
            try:
                drains.append(parse_field(field, value))
            except BadStateDocument as exc:
                self._log_once(field, value, str(exc))
        return Drains.of(drains)

    def _log_once(self, field: str, value: str, problem: str) -> None:
        if (field, value) in self._logged:
            return
        self._logged.add((field, value))
        logger.error(
            "shared state store: ignoring %s field %r: %s",
            DRAINS_KEY,
            field[:80],
            problem,
            extra={"event": "state_store_bad_field"},
        )


def parse_field(field: str, value: str) -> Drain:
    """One field of the hash as a Drain; BadStateDocument naming the problem if it is not one."""
    try:
        item = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise BadStateDocument(f"not valid JSON: {exc}") from None
    document = {"version": DOCUMENT_VERSION, "drains": [item]}
    (drain,) = Drains.from_document(document)
    if field != field_of(drain.scope):
        raise BadStateDocument(f"the field does not name the drain's scope {field_of(drain.scope)}")
    return drain


class RedisClient:
    """A connection to one Redis database (`url`: redis:// or rediss://), and the change
    announcements on the subclass's `channel`; every call raises StoreUnreachable on failure."""

    channel: str = CHANNEL

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = aioredis.Redis.from_url(
            url,
            decode_responses=False,  # decoded here: junk bytes in the store must not raise
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # no retries: the caller decides (and backs off)
        )

    async def announce(self, instance: str) -> None:
        async with reaching(self.url):
            await self._client.publish(self.channel, instance)

    async def subscribe(self) -> PubSub:
        """A subscription to the change announcements (closed by the caller)."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            async with reaching(self.url):
                await pubsub.subscribe(self.channel)
        except StoreUnreachable:
            await pubsub.aclose()
            raise
        return pubsub

    async def wait_for_announcement(self, pubsub: PubSub, within: float) -> bool:
        """True when a change was announced within `within` seconds, False if none was."""
        async with reaching(self.url):
            message = await pubsub.get_message(timeout=within)
            return message is not None

    async def unsubscribe(self, pubsub: PubSub) -> None:
        """Close a subscription, within TIMEOUT (also when the task doing it is cancelled)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await pubsub.aclose()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await self._client.aclose()


class RedisDrainStore(RedisClient):
    """The shared drains in one Redis database."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._delete_if_same = self._client.register_script(_DELETE_IF_SAME)

    async def read(self) -> dict[str, str]:
        """Every field of the hash (HGETALL)."""
        async with reaching(self.url):
            fields = await self._client.hgetall(DRAINS_KEY)
        return {text_of(k): text_of(v) for k, v in fields.items()}

    async def seeded(self) -> bool:
        async with reaching(self.url):
            return bool(await self._client.exists(SEEDED_KEY))

    async def put(self, drain: Drain, *, keep_existing: bool = False) -> bool:
        """Write `drain` to its scope's field (HSETNX with `keep_existing`); True if written."""
        field, value = field_of(drain.scope), value_of(drain)
        async with reaching(self.url):
            async with self._client.pipeline(transaction=True) as pipe:
                if keep_existing:
                    pipe.hsetnx(DRAINS_KEY, field, value)
                else:
                    pipe.hset(DRAINS_KEY, field, value)
                pipe.set(SEEDED_KEY, "1")
                written, _ = await pipe.execute()
            return keep_existing is False or bool(written)

    async def remove(self, scope: Scope) -> None:
        async with reaching(self.url), self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(DRAINS_KEY, field_of(scope))
            pipe.set(SEEDED_KEY, "1")
            await pipe.execute()

    async def remove_if_same(self, drain: Drain) -> None:
        """Delete `drain`'s field only if it still holds `drain` (an expired drain: another
        instance may have drained the same scope again meanwhile)."""
        async with reaching(self.url):
            await self._delete_if_same(
                keys=[DRAINS_KEY], args=[field_of(drain.scope), value_of(drain)]
            )

    async def mark_seeded(self) -> None:
        async with reaching(self.url):
            await self._client.set(SEEDED_KEY, "1")


class reaching:
    """Turns every way a Redis call can fail into StoreUnreachable."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if exc is None:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # redis-py can swallow a cancellation: not here
            return
        if isinstance(exc, RedisError | OSError | TimeoutError):
            raise StoreUnreachable(f"{shown_url(self._url)}: {_reason(exc)}") from exc


def text_of(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
