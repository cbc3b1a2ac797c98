"""Drain calls with a reason and an expiry: `until` or `for`, validated with a clear 400; the
record shown per endpoint; a save that fails is a 500 and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from glb.admin.api import admin_app
from glb.core.drains import Drains, format_instant
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains
from glb.state.file import StateSaveError
from tests.stack import monitored, upstreams
from tests.test_admin_api import AUTH, TOKEN, backend, config, endpoint_of, expect_error

NOW = 1_796_637_600.0  # 2026-12-07T10:00:00Z, the API's wall clock here
CLUSTER = "/api/v1/clusters/eu"
ENDPOINT = "/api/v1/services/app.glb.test/endpoints/eu"


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    async with (
        upstreams({"eu": backend(), "us": backend()}) as where,
        monitored(config(where)) as monitor,
    ):
        yield monitor


class Saves:
    """A save function that records what it saved, or fails when told to."""

    def __init__(self) -> None:
        self.saved: list[Drains] = []
        self.failing = False

    async def __call__(self, drains: Drains) -> None:
        if self.failing:
            raise StateSaveError("cannot write /var/lib/glb/state.json: No space left on device")
        self.saved.append(drains)


@pytest.fixture
def saves() -> Saves:
    return Saves()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, monitor: Monitor, saves: Saves
) -> TestClient[Any, Any]:
    drains = DurableDrains(monitor, saves)
    return await aiohttp_client(admin_app(monitor, drains, token=TOKEN, wall_clock=lambda: NOW))


async def post(client: TestClient[Any, Any], path: str, body: object) -> Any:
    return await client.post(path, headers=AUTH, json=body)


async def test_until_and_reason_are_recorded_saved_and_shown(
    client: TestClient[Any, Any], saves: Saves
) -> None:
    body = {"reason": "rack move", "until": "2026-12-07T12:30:00+01:00"}
    response = await post(client, f"{CLUSTER}/drain", body)
    assert response.status == 200, await response.text()
    shown = {
        "scope": "cluster",
        "who": "api",
        "since": "2026-12-07T10:00:00.000Z",
        "reason": "rack move",
        "until": "2026-12-07T11:30:00.000Z",
    }
    assert (await response.json())["drain"] == shown
    (saved,) = saves.saved
    assert saved.get("eu") is not None
    view = await (await client.get("/api/v1/services/app.glb.test")).json()
    assert endpoint_of(view, "eu")["drain"] == shown


async def test_for_sets_until_from_now(client: TestClient[Any, Any]) -> None:
    response = await post(client, f"{ENDPOINT}/drain", {"for": "2h"})
    drain = (await response.json())["drain"]
    assert drain["until"] == format_instant(NOW + 7200)
    assert (drain["scope"], drain["reason"]) == ("service", None)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"until": "2026-12-07T10:00:00"}, "no time zone"),
        ({"until": "next tuesday"}, "not an ISO 8601 time"),
        ({"until": "2026-12-07T09:00:00Z"}, "must be in the future"),
        ({"until": 5}, '"until" must be a string'),
        ({"for": "2 weeks"}, "is not a duration"),
        ({"for": "0s"}, "above zero"),
        ({"for": -3}, "above zero"),
        ({"for": True}, "is not a duration"),
        ({"for": "99999999d"}, "ten years at most"),
        ({"for": "1h", "until": "2026-12-08T00:00:00Z"}, 'give "until" or "for", not both'),
        ({"reason": 7}, '"reason" must be a string'),
        ({"expires": "1h"}, "unknown key(s) in the request body: expires"),
    ],
)
async def test_bad_values_are_a_clear_400_and_change_nothing(
    client: TestClient[Any, Any], monitor: Monitor, saves: Saves, body: object, says: str
) -> None:
    await expect_error(await post(client, f"{CLUSTER}/drain", body), 400, says)
    assert (len(monitor.drains), saves.saved) == (0, [])


async def test_undrain_takes_a_reason_only(client: TestClient[Any, Any]) -> None:
    response = await post(client, f"{CLUSTER}/undrain", {"for": "1h"})
    await expect_error(response, 400, "unknown key(s) in the request body: for")


async def test_a_failed_save_is_a_500_and_the_drain_is_not_applied(
    client: TestClient[Any, Any], monitor: Monitor, saves: Saves
) -> None:
    saves.failing = True
    response = await post(client, f"{CLUSTER}/drain", {"reason": "x"})
    await expect_error(response, 500, "not applied: cannot write /var/lib/glb/state.json")
    assert len(monitor.drains) == 0
    assert "eu" not in monitor.current().drained_clusters
    saves.failing = False
    assert (await post(client, f"{CLUSTER}/drain", {})).status == 200
    saves.failing = True
    await expect_error(await post(client, f"{CLUSTER}/undrain", {}), 500, "not applied")
    assert "eu" in monitor.current().drained_clusters  # still drained: nothing changed
