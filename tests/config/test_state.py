"""`instance` and `state`: the instance name and where the durable state (drains) is kept."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from glb.config import parse_settings
from glb.config.runtime import state_path
from glb.errors import ConfigError

MINIMAL = """
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]
clusters: [{name: eu, addresses: [127.0.0.1]}]
"""


def test_defaults_are_the_host_name_and_no_path() -> None:
    settings = parse_settings(MINIMAL)
    assert settings.instance.name == socket.gethostname()
    assert settings.state.path is None


def test_state_path_as_configured_wins() -> None:
    settings = parse_settings(MINIMAL + "instance: {name: glb-eu}\nstate: {path: /srv/s.json}\n")
    assert settings.instance.name == "glb-eu"
    environ = {"STATE_DIRECTORY": "/var/lib/glb"}
    assert state_path(settings, "/etc/glb/glb.yaml", environ) == Path("/srv/s.json")


def test_state_path_defaults_to_state_directory_then_next_to_the_config() -> None:
    settings = parse_settings(MINIMAL)
    systemd = {"STATE_DIRECTORY": "/var/lib/glb:/var/lib/other"}
    assert state_path(settings, "/etc/glb/glb.yaml", systemd) == Path("/var/lib/glb/state.json")
    assert state_path(settings, "/etc/glb/glb.yaml", {}) == Path("/etc/glb/glb-state.json")
    relative = state_path(settings, "glb.yaml", {})
    assert relative == Path.cwd() / "glb-state.json"


def test_unknown_state_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"state\.quorums"):
        parse_settings(MINIMAL + "state: {quorums: majority}\n")


def test_quorum_defaults_to_majority_and_stale_after_to_5s() -> None:
    state = parse_settings(MINIMAL).state
    assert (state.quorum, state.stale_after) == ("majority", 5.0)


@pytest.mark.parametrize(
    ("given", "quorum"),
    [("majority", "majority"), ("any", "any"), ("all", "all"), ("ALL", "all"), (2, 2), ("3", 3)],
)
def test_state_quorum_takes_a_rule_or_a_number(given: object, quorum: object) -> None:
    text = MINIMAL + f"state: {{quorum: {given!r}, stale_after: 2s}}\n"
    state = parse_settings(text).state
    assert (state.quorum, state.stale_after) == (quorum, 2.0)


@pytest.mark.parametrize("given", ["most", 0, -1, "1.5", True, "[2]"])
def test_a_bad_state_quorum_is_refused_saying_why(given: object) -> None:
    with pytest.raises(ConfigError, match=r"state\.quorum") as refused:
        parse_settings(MINIMAL + f"state: {{quorum: {given}}}\n")
    assert "is not a quorum: majority, any, all, or a number" in str(refused.value)


def test_a_bad_stale_after_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"state\.stale_after"):
        parse_settings(MINIMAL + "state: {stale_after: soon}\n")


@pytest.mark.parametrize(
    "url",
    [
        "redis://10.0.0.5:6379/0",
        "redis://redis.internal",
        "rediss://user:secret@[2001:db8::5]:6380/3",
    ],
)
def test_state_redis_takes_a_redis_url(url: str) -> None:
    settings = parse_settings(MINIMAL + f"state: {{redis: '{url}'}}\n")
    assert settings.state.redis == url
    assert parse_settings(MINIMAL).state.redis is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.0.0.5:6379/0", "the scheme must be redis:// or rediss://"),
        ("redis://:6379/0", "it names no host"),
        ("redis://10.0.0.5:99999/0", "is not a Redis URL"),
        ("redis://10.0.0.5:6379/zero", "the path must be a database number"),
        ("redis://10.0.0.5:6379/0?timeout=1", "no query or fragment"),
        ("", "must be a URL like redis://"),
    ],
)
def test_a_bad_state_redis_is_refused_saying_why(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"state\.redis") as refused:
        parse_settings(MINIMAL + f"state: {{redis: {url!r}}}\n")
    assert problem in str(refused.value)
