"""The drains as they live in Redis (`glb.state.redis_store`) and the shared drain controls over
them (`glb.state.shared`), in-process against a real redis-server: the field format, junk in the
store (logged once, ignored, never a crash), concurrent changes of different scopes, expired
drains, and a store that cannot be reached at start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from glb.core.drains import BadStateDocument, Drain, Drains, format_instant
from glb.state.durable import DurableDrains
from glb.state.file import StateFile
from glb.state.redis_store import (
    DRAINS_KEY,
    FieldParser,
    RedisDrainStore,
    field_of,
    parse_field,
    shown_url,
    value_of,
)
from glb.state.shared import SharedDrains
from tests.redis_server import RedisServer, free_port

NOW = 1_800_000_000.0


class MemoryDrains:
    """The monitor's part in this: drains held in memory (`glb.core.ports.LocalDrains`)."""

    def __init__(self) -> None:
        self.drains = Drains()

    def drain(self, drain: Drain) -> bool:
        before, self.drains = self.drains, self.drains.add(drain)
        return self.drains is not before

    def undrain(self, cluster: str, service: str | None = None) -> bool:
        before, self.drains = self.drains, self.drains.remove(cluster, service)
        return self.drains is not before

    def restore(self, drains: Drains) -> None:
        self.drains = drains


def shared_drains(directory: Path, url: str, name: str) -> SharedDrains:
    file = StateFile(directory / f"{name}.json")
    return SharedDrains(DurableDrains(MemoryDrains(), file.save_async), RedisDrainStore(url), name)


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


def test_a_field_holds_the_drain_of_its_scope_as_json() -> None:
    drain = Drain("eu-west", "app.glb.test", "api", NOW, "kernel upgrade", NOW + 3600)
    assert field_of(drain.scope) == "eu-west/app.glb.test"
    assert field_of(("eu-west", None)) == "eu-west/*"
    assert json.loads(value_of(drain))["until"] == format_instant(NOW + 3600)
    assert parse_field("eu-west/app.glb.test", value_of(drain)) == drain


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("eu-west/*", "{not json", "not valid JSON"),
        ("eu-west/*", "[1, 2]", "must be a JSON object"),
        ("eu-west/*", '{"cluster": "eu-west", "who": "api"}', "since: missing"),
        ("eu-west/*", '{"cluster": "eu-west", "who": "api", "since": "x"}', "not an ISO 8601"),
        ("eu-west/*", '{"cluster": "eu", "who": "api", "since": "2026-01-01T00:00:00Z"}', "eu/*"),
        ("eu/*", '{"cluster": "eu", "who": "a", "since": "2026-01-01T00:00:00Z", "x": 1}', "x"),
    ],
)
def test_a_bad_field_names_its_problem(field: str, value: str, problem: str) -> None:
    with pytest.raises(BadStateDocument, match=problem):
        parse_field(field, value)


def test_bad_fields_are_logged_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    good = Drain("us-east", None, "api", NOW)
    fields = {"eu-west/*": "{junk", field_of(good.scope): value_of(good)}
    parser = FieldParser()
    with caplog.at_level(logging.ERROR, "glb.state.redis_store"):
        assert list(parser.parse(fields)) == [good]
        assert list(parser.parse(fields)) == [good]
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1
    assert "ignoring glb:drains field 'eu-west/*': not valid JSON" in errors[0]


def test_the_url_shown_in_logs_has_no_password() -> None:
    assert shown_url("rediss://glb:s3cret@10.0.0.5:6380/2") == "rediss://10.0.0.5:6380/2"
    assert shown_url("redis://[2001:db8::5]/0") == "redis://[2001:db8::5]/0"


async def test_junk_in_the_store_is_logged_and_ignored(
    tmp_path: Path,
    redis_server: RedisServer,
    raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = Drain("us-east", None, "glb-b", NOW, "real")
    await raw.hset(DRAINS_KEY, mapping={"eu-west/*": "{junk", "us-east/*": value_of(good)})
    await raw.hset(DRAINS_KEY, "ap-south/*", b"\xff\xfe not utf-8")
    await raw.set("glb:drains:seeded", "1")
    instance = shared_drains(tmp_path, redis_server.url, "glb-a")
    with caplog.at_level(logging.INFO):
        await instance.join()
    assert list(instance.drains) == [good]
    assert instance.shared is True
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(problems) == 2, [r.getMessage() for r in problems]
    assert all(r.exc_info is None for r in problems)
    await instance.close()


async def test_a_store_key_of_the_wrong_type_is_no_crash(
    tmp_path: Path, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """`glb:drains` that is not a hash: the instance keeps its drains and says why."""
    await raw.set(DRAINS_KEY, "not a hash")
    await raw.set("glb:drains:seeded", "1")
    instance = shared_drains(tmp_path, redis_server.url, "glb-a")
    await instance.join()
    assert instance.shared is False
    assert await instance.drain(Drain("eu-west", None, "api", NOW)) is True
    assert instance.drains.get("eu-west") is not None
    await instance.close()


async def test_two_instances_draining_different_scopes_keep_both(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    a = shared_drains(tmp_path, redis_server.url, "glb-a")
    b = shared_drains(tmp_path, redis_server.url, "glb-b")
    await asyncio.gather(a.join(), b.join())
    await asyncio.gather(
        *(a.drain(Drain(f"a{i}", None, "api", NOW)) for i in range(20)),
        *(b.drain(Drain(f"b{i}", "app.glb.test", "api", NOW)) for i in range(20)),
    )
    store = RedisDrainStore(redis_server.url)
    fields = await store.read()
    assert len(FieldParser().parse(fields)) == 40
    await b.join()  # a re-read, as an announcement would cause
    assert len(b.drains) == 40
    for each in (a, b, store):
        await each.close()


async def test_an_expired_drain_in_the_store_is_removed_not_applied(
    tmp_path: Path, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    old = Drain("eu-west", None, "api", time.time() - 7200, "over", time.time() - 3600)
    await raw.hset(DRAINS_KEY, field_of(old.scope), value_of(old))
    await raw.set("glb:drains:seeded", "1")
    instance = shared_drains(tmp_path, redis_server.url, "glb-a")
    await instance.join()
    assert len(instance.drains) == 0
    assert await raw.hgetall(DRAINS_KEY) == {}
    await instance.close()


async def test_an_empty_store_is_seeded_from_the_local_file(
    tmp_path: Path, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    kept = Drain("eu-west", None, "api", NOW, "from the file")
    StateFile(tmp_path / "glb-a.json").save(Drains.of([kept]))
    local = MemoryDrains()
    local.restore(StateFile(tmp_path / "glb-a.json").load())
    file = StateFile(tmp_path / "glb-a.json")
    instance = SharedDrains(
        DurableDrains(local, file.save_async), RedisDrainStore(redis_server.url), "glb-a"
    )
    await instance.join()
    stored = await raw.hget(DRAINS_KEY, "eu-west/*")
    assert isinstance(stored, str)
    assert parse_field("eu-west/*", stored) == kept
    assert list(instance.drains) == [kept]
    await instance.close()


async def test_an_unreachable_store_at_start_up_leaves_the_local_drains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    instance = shared_drains(tmp_path, url, "glb-a")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "glb.state.shared"):
        await instance.join()
        assert await instance.drain(Drain("eu-west", None, "api", NOW)) is True
    assert time.monotonic() - started < 3.5
    assert instance.shared is False
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"shared state store {url} unreachable: drains are local until it returns"
    ]
    assert Drains.from_document(json.loads((tmp_path / "glb-a.json").read_text())).get("eu-west")
    await instance.close()
