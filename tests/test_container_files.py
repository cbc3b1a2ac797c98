"""The container image's files: the Dockerfile, its entry point and health check, and the lock of
runtime dependencies it installs with.

Docker is not needed: the Dockerfile is parsed, and the commands it runs (the entry point, the
health check) are run here as the image would run them, against a real `glb serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.clusters import ROOT, start_clusters, write_config
from tests.serve import start_serve, stop_serve

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
LOCK = ROOT / "requirements.lock"
DEFAULT_CONFIG_EXISTS = Path("/etc/glb/glb.yaml").exists()  # the image's path, on this machine


def instructions(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions in order: (KEYWORD, arguments), continuations joined."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is made of."""
    steps = instructions(DOCKERFILE)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def environment() -> dict[str, str]:
    """The ENV of the final stage (KEY=VALUE form)."""
    pairs = (p for k, a in final_stage() if k == "ENV" for p in shlex.split(a))
    return dict(pair.split("=", 1) for pair in pairs)


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    [arguments] = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    return list(json.loads(arguments[arguments.index("CMD") + 3 :]))


def test_the_image_has_no_configuration_built_in() -> None:
    """No file of config/ is copied into the image: it refuses to start without a mounted one."""
    copies = [a for k, a in instructions(DOCKERFILE) if k in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing?"
    assert not [a for a in copies if "config/" in a or "/etc/glb" in a]
    assert environment()["GLB_CONFIG"] == "/etc/glb/glb.yaml"


def test_the_admin_api_listens_on_loopback_in_the_image() -> None:
    """The admin API stays inside the container unless the operator opens it; DNS and HTTP are
    reachable; durable state has a directory of its own."""
    env = environment()
    assert env["GLB_ADMIN__LISTEN"].startswith("127.0.0.1:")
    assert env["GLB_DNS__LISTEN"] == "0.0.0.0:5353"
    assert env["GLB_HTTP__LISTEN"] == "0.0.0.0:8080"
    assert env["STATE_DIRECTORY"] == "/var/lib/glb"
    exposed = " ".join(a for k, a in final_stage() if k == "EXPOSE")
    assert "9100" not in exposed


def test_the_build_installs_with_the_lock() -> None:
    """The build copies requirements.lock and installs glb constrained by it."""
    steps = instructions(DOCKERFILE)
    assert any(k == "COPY" and "requirements.lock" in a for k, a in steps)
    installs = [a for k, a in steps if k == "RUN" and "pip install" in a]
    assert installs
    assert all("-c requirements.lock" in a for a in installs)


def test_the_lock_pins_every_runtime_dependency() -> None:
    """Every dependency of pyproject.toml is in requirements.lock, pinned (==) to a version its
    specifier admits; every line of the lock is a pin."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert re.fullmatch(r"[A-Za-z0-9._-]+", name), line
            assert version, line
            pins[canonicalize_name(name)] = version
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{dependency.name} is not in requirements.lock"
        assert dependency.specifier.contains(pins[name]), f"{name}=={pins[name]}: {dependency}"


async def run(command: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def entry_env(**extra: str) -> dict[str, str]:
    """The environment of the entry point: `glb` on PATH (this interpreter's), no GLB_CONFIG."""
    env = {k: v for k, v in os.environ.items() if k != "GLB_CONFIG"}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return {**env, **extra}


def test_the_entry_point_is_the_dockerfiles() -> None:
    """The image runs deploy/docker/entrypoint.sh, with `serve` as its default command."""
    steps = final_stage()
    assert ("COPY", "deploy/docker/entrypoint.sh /usr/local/bin/glb-entrypoint") in steps
    assert ("ENTRYPOINT", '["glb-entrypoint"]') in steps
    assert ("CMD", '["serve"]') in steps


async def test_serve_without_a_mounted_configuration_says_where_to_mount_it(
    tmp_path: Path,
) -> None:
    """The entry point without the configuration file exits 2, naming the expected path and the
    docker run -v line that mounts it; without GLB_CONFIG the path is /etc/glb/glb.yaml."""
    missing = tmp_path / "glb.yaml"
    code, _, err = await run([str(ENTRYPOINT), "serve"], entry_env(GLB_CONFIG=str(missing)))
    assert code == 2
    assert f"no configuration file at {missing}" in err
    assert f'docker run -v "$PWD/glb.yaml:{missing}:ro"' in err
    if DEFAULT_CONFIG_EXISTS:
        pytest.skip("this machine has an /etc/glb/glb.yaml")
    code, _, err = await run([str(ENTRYPOINT)], entry_env())
    assert code == 2
    assert "no configuration file at /etc/glb/glb.yaml" in err


async def test_other_commands_pass_through_the_entry_point() -> None:
    """`docker run IMAGE check` runs `glb check` on the configured file."""
    example = ROOT / "config" / "example.yaml"
    code, out, _ = await run([str(ENTRYPOINT), "check"], entry_env(GLB_CONFIG=str(example)))
    assert code == 0
    assert f"{example}: OK" in out


async def test_the_healthcheck_passes_when_glb_is_ready_and_fails_without_it(
    tmp_path: Path,
) -> None:
    """The HEALTHCHECK command, run as the image runs it, exits 0 when /readyz answers 200 on
    the admin address of GLB_ADMIN__LISTEN, and fails when nothing answers there."""
    command = healthcheck_command()
    assert command[0] == "python"
    assert "/readyz" in command[-1]
    command[0] = sys.executable
    [cluster] = await start_clusters(["eu-west"])
    try:
        served = await start_serve(write_config(tmp_path, [cluster]))
        admin = served.admin.removeprefix("http://")
        try:  # glb logs its addresses after its first probe round: /readyz is 200 by then
            code, _, err = await run(command, entry_env(GLB_ADMIN__LISTEN=admin))
            assert code == 0, err
        finally:
            assert await stop_serve(served) == 0
        code, _, err = await run(command, entry_env(GLB_ADMIN__LISTEN=admin))
        assert code != 0
        assert "Connection refused" in err
    finally:
        await cluster.stop()
