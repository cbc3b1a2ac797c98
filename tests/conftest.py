"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests.clusters import ClusterProcess, start_clusters
from tests.redis_server import REDIS_SERVER, RedisServer


@pytest.fixture
async def clusters() -> AsyncIterator[list[ClusterProcess]]:
    """Two simulated clusters, eu-west and us-east, as real processes sharing one port."""
    started = await start_clusters(["eu-west", "us-east"])
    yield started
    await asyncio.gather(*(c.stop() for c in started))


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A real redis-server on a free loopback port (skips if it is not installed)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/test)")
    server = await RedisServer.started()
    yield server
    await server.kill()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority (trustme), shared by the TLS tests."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The test CA's certificate as a PEM file, as `probes.ca_file` takes it."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
