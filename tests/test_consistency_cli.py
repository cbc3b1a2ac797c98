"""`glb consistency` as an operator runs it: two real `glb serve` (no shared store) and the
command as a real process. A cluster drained on one instance only makes it exit 1 naming the
service and the drained endpoint; undrained, it exits 0; an instance gone makes it exit 2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import pytest

from tests.clusters import ClusterProcess
from tests.serve import Served, start_serve
from tests.test_cli import run_glb
from tests.test_durable_drains import config_with_token, post
from tests.test_quorum import stopped_cleanly
from tests.test_shared_drains import until_true


@pytest.fixture
async def two(tmp_path: Path, clusters: list[ClusterProcess]) -> AsyncIterator[list[Served]]:
    """glb-a and glb-b on the same configuration, each in its own directory."""
    async with AsyncExitStack() as stack:
        instances = []
        for name in ("glb-a", "glb-b"):
            directory = tmp_path / name
            directory.mkdir()
            path = config_with_token(directory, clusters)
            path.write_text(path.read_text() + f"instance: {{name: {name}}}\n")
            served = await start_serve(path)
            stack.push_async_callback(stopped_cleanly, served)
            instances.append(served)
        yield instances


async def consistency(*instances: Served) -> tuple[int, str, str]:
    return await run_glb("consistency", "--peers", *(s.admin for s in instances))


async def exits(code: int, *instances: Served) -> bool:
    return (await consistency(*instances))[0] == code


async def test_a_drain_on_one_instance_is_a_disagreement_until_undrained(
    two: list[Served], clusters: list[ClusterProcess]
) -> None:
    a, b = two
    eu = clusters[0]
    await until_true(partial(exits, 0, a, b), within=15)  # both have probed every endpoint
    status, _ = await post(a, f"/api/v1/clusters/{eu.name}/drain", {"reason": "maintenance"})
    assert status == 200

    code, out, err = await consistency(a, b)
    assert code == 1, (out, err)
    (line,) = out.splitlines()
    assert line.startswith("app.glb.test: instances disagree")
    assert f"{eu.name} {eu.address} is drained on glb-a, not on glb-b" in line
    assert "Traceback" not in err

    status, _ = await post(a, f"/api/v1/clusters/{eu.name}/undrain", {})
    assert status == 200
    code, out, _ = await consistency(a, b)
    assert code == 0
    assert out.strip() == "2 instance(s) agree on 1 service(s)"


async def test_an_instance_that_cannot_be_read_exits_2_with_the_reason(
    two: list[Served],
) -> None:
    a, _ = two
    code, _, err = await run_glb(
        "consistency", "--peers", a.admin, "http://127.0.0.1:1", "--timeout", "2"
    )
    assert code == 2
    assert "glb: cannot read http://127.0.0.1:1: " in err
    assert "Traceback" not in err


async def test_a_peer_that_is_not_a_url_is_refused_before_anything_is_read() -> None:
    code, _, err = await run_glb("consistency", "--peers", "127.0.0.1:9100")
    assert code == 2
    assert "'127.0.0.1:9100' is not an admin API URL (http://HOST:PORT)" in err
    assert "Traceback" not in err
