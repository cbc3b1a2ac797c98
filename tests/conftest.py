"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.clusters import ClusterProcess, start_clusters


@pytest.fixture
async def clusters() -> AsyncIterator[list[ClusterProcess]]:
    """Two simulated clusters, eu-west and us-east, as real processes sharing one port."""
    started = await start_clusters(["eu-west", "us-east"])
    yield started
    await asyncio.gather(*(c.stop() for c in started))
