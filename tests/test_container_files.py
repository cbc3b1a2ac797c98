"""The files that run glb as a service: the container image's (Dockerfile, its entry point and
health check, the lock of runtime dependencies it installs with) and the systemd unit's
(deploy/systemd/glb.service, and the READY=1/STOPPING=1 notifications its Type=notify needs).

Docker is not needed: the Dockerfile is parsed, and the commands it runs (the entry point, the
health check) are run here as the image would run them, against a real `glb serve`. The unit is
checked by `systemd-analyze verify` where it exists, and parsed everywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from glb.service_manager import notify
from tests.clusters import ROOT, start_clusters, write_config
from tests.processes import run
from tests.serve import start_serve, stop_serve

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
LOCK = ROOT / "requirements.lock"
UNIT = ROOT / "deploy" / "systemd" / "glb.service"
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


async def run_entry(command: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The image's entry point (or glb) as a process from the repository, to its end."""
    return await run(command, cwd=ROOT, env=env, within=20)


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
    code, _, err = await run_entry([str(ENTRYPOINT), "serve"], entry_env(GLB_CONFIG=str(missing)))
    assert code == 2
    assert f"no configuration file at {missing}" in err
    assert f'docker run -v "$PWD/glb.yaml:{missing}:ro"' in err
    if DEFAULT_CONFIG_EXISTS:
        pytest.skip("this machine has an /etc/glb/glb.yaml")
    code, _, err = await run_entry([str(ENTRYPOINT)], entry_env())
    assert code == 2
    assert "no configuration file at /etc/glb/glb.yaml" in err


async def test_other_commands_pass_through_the_entry_point(tmp_path: Path) -> None:
    """`docker run IMAGE check` runs `glb check` on the configured file; `serve -c FILE` is
    glb's to judge (its own message for a missing FILE)."""
    example = ROOT / "config" / "example.yaml"
    code, out, _ = await run_entry([str(ENTRYPOINT), "check"], entry_env(GLB_CONFIG=str(example)))
    assert code == 0
    assert f"{example}: OK" in out
    missing = tmp_path / "other.yaml"
    command = [str(ENTRYPOINT), "serve", "-c", str(missing)]
    code, _, err = await run_entry(command, entry_env(GLB_CONFIG=str(example)))
    assert code == 2
    assert f"{missing}: cannot read the file" in err
    assert "docker run" not in err


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
            code, _, err = await run_entry(command, entry_env(GLB_ADMIN__LISTEN=admin))
            assert code == 0, err
        finally:
            assert await stop_serve(served) == 0
        code, _, err = await run_entry(command, entry_env(GLB_ADMIN__LISTEN=admin))
        assert code != 0
        assert "Connection refused" in err
    finally:
        await cluster.stop()


# --- the systemd unit ---------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, as "Section.Key" -> its values in order (keys repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def test_the_unit_runs_glb_serve_hardened() -> None:
    """The unit runs `glb serve` on /etc/glb/glb.yaml as Type=notify, reloads with SIGHUP, keeps
    state in StateDirectory=glb, and runs with the hardening it promises."""
    unit = unit_settings(UNIT)
    assert unit["Service.ExecStart"][0].endswith("/glb serve -c /etc/glb/glb.yaml")
    required = {
        "Service.Type": "notify",
        "Service.NotifyAccess": "main",
        "Service.ExecReload": "/bin/kill -HUP $MAINPID",
        "Service.StateDirectory": "glb",
        "Service.DynamicUser": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "Service.AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "Service.SystemCallFilter": "@system-service",
        "Install.WantedBy": "multi-user.target",
    }
    assert {key: unit.get(key, [""])[-1] for key in required} == required
    # AF_UNIX: the notification socket and the workers' socket pairs
    families = unit["Service.RestrictAddressFamilies"][-1].split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning (its glb: this one's)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    glb = Path(sys.executable).parent / "glb"
    unit = tmp_path / "glb.service"
    unit.write_text(UNIT.read_text().replace("/opt/glb/bin/glb", str(glb)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def notification_socket(name: str) -> socket.socket:
    """A datagram socket as systemd listens on for a service's notifications (non-blocking)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(name)
    listener.setblocking(False)
    return listener


async def received(listener: socket.socket) -> str:
    async with asyncio.timeout(10):
        return (await asyncio.get_running_loop().sock_recv(listener, 4096)).decode()


async def test_serve_tells_systemd_when_it_is_ready_and_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`glb serve` under NOTIFY_SOCKET (an abstract name, as systemd uses) sends READY=1 once it
    serves and STOPPING=1 on SIGTERM, then exits 0."""
    name = f"glb-test-notify-{os.getpid()}-{id(tmp_path)}"
    [cluster] = await start_clusters(["eu-west"])
    try:
        with notification_socket("\0" + name) as listener:
            monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
            served = await start_serve(write_config(tmp_path, [cluster]))
            try:
                assert await received(listener) == "READY=1"
            finally:
                code = await stop_serve(served)
            assert await received(listener) == "STOPPING=1"
            assert code == 0
    finally:
        await cluster.stop()


def test_notify_sends_to_a_socket_path_and_nothing_without_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A NOTIFY_SOCKET path gets the datagram; none set: nothing sent; a path nobody listens on:
    a warning, and glb goes on."""
    with tempfile.TemporaryDirectory(prefix="glb-") as directory:  # unix paths are short
        path = str(Path(directory) / "notify")
        with notification_socket(path) as listener:
            assert notify("READY=1", {"NOTIFY_SOCKET": path})
            assert listener.recv(4096) == b"READY=1"
        assert not notify("READY=1", {})
        assert not notify("READY=1", {"NOTIFY_SOCKET": path})  # closed: nobody listens
    assert "cannot tell systemd READY=1 on NOTIFY_SOCKET" in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
