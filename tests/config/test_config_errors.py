"""Configuration errors as a user reads them: keys given twice, bad YAML, file:line:column of
each problem, glb's own wording of pydantic's errors, did-you-mean hints, the GLB_* variable
behind an environment error, and `glb check` printing all of it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from glb.config import load_settings, parse_settings
from glb.errors import ConfigError
from tests.clusters import ROOT

BASE = """\
zones:
  - name: example.test
    nameservers: [{name: ns1.example.test, address: 192.0.2.53}]
clusters:
  - {name: europe, addresses: [192.0.2.1]}
  - {name: us, addresses: [192.0.2.2]}
"""  # six lines: services start at line 7


def reasons_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.reasons


def with_service(*lines: str) -> str:
    """BASE plus one service (line 8 is `  - name: app.example.test`), then `lines`."""
    body = "".join(f"    {line}\n" for line in lines)
    return BASE + "services:\n  - name: app.example.test\n" + body


# ---------------------------------------------------------------------------------------------
# Keys given twice


def test_a_top_level_key_given_twice_is_an_error_naming_both_lines() -> None:
    """YAML would keep the later `log` silently; glb refuses it and names both lines."""
    text = BASE + "log: {level: info}\nlog: {level: debug}\n"
    assert reasons_of(text) == [
        "<config>:8:1: log: key 'log' is given twice (lines 7 and 8); remove one of them"
    ]


def test_a_nested_key_given_twice_is_an_error_at_its_key_path() -> None:
    """A repeat deep inside a service is found too, with its full key path."""
    text = with_service(
        "backends: [{cluster: europe}]",
        "probe:",
        "  interval: 2s",
        "  timeout: 1s",
        "  interval: 5s",
    )
    assert reasons_of(text) == [
        "<config>:13:7: services[0].probe.interval: key 'interval' is given twice "
        "(lines 11 and 13); remove one of them"
    ]


def test_every_repeat_is_reported_at_once() -> None:
    """Two repeats in different places are two reasons, in file order."""
    text = BASE.replace("{name: us,", "{name: us, name: us2,") + "dns: {}\ndns: {}\n"
    assert reasons_of(text) == [
        "<config>:6:16: clusters[1].name: key 'name' is given twice (one line); remove one of them",
        "<config>:8:1: dns: key 'dns' is given twice (lines 7 and 8); remove one of them",
    ]


def test_repeats_are_reported_with_the_other_problems() -> None:
    """A repeated key does not hide what validation finds elsewhere (nor the reverse)."""
    text = with_service(
        "backends: [{cluster: europe}]", "probe: {rise: 2, rise: 3}", "colour: blue"
    )
    assert reasons_of(text) == [
        "<config>:10:22: services[0].probe.rise: key 'rise' is given twice (one line); "
        "remove one of them",
        "<config>:11:5: services[0].colour: unknown key",
    ]


def test_a_merge_key_overriding_a_key_is_not_a_repeat() -> None:
    """`<<: *probe` then a key of the merged mapping is an override, as YAML means it."""
    text = (
        BASE
        + "services:\n"
        + "  - name: a.example.test\n"
        + "    probe: &probe {interval: 2s, timeout: 1s}\n"
        + "    backends: [{cluster: europe}]\n"
        + "  - name: b.example.test\n"
        + "    probe: {<<: *probe, interval: 4s}\n"
        + "    backends: [{cluster: europe}]\n"
    )
    probe = parse_settings(text).services[1].probe
    assert (probe.interval, probe.timeout) == (4.0, 1.0)


def test_a_repeat_in_a_merged_mapping_is_reported_once() -> None:
    """A mapping merged elsewhere (`<<: *dns`) is checked once, where it is written."""
    text = BASE + "dns: &dns {listen: '127.0.0.1:0', listen: '127.0.0.1:0'}\nhttp: {<<: *dns}\n"
    assert reasons_of(text) == [
        "<config>:7:35: dns.listen: key 'listen' is given twice (one line); remove one of them"
    ]


# ---------------------------------------------------------------------------------------------
# Where: file, line and column


def test_bad_yaml_names_the_file_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error names the file (not `<unicode string>`) and where the parser
    stopped."""
    path = tmp_path / "glb.yaml"
    path.write_text(BASE + "services:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (reason,) = caught.value.reasons
    assert reason.startswith(f"{path}:9:1: not valid YAML: ")
    assert "unicode string" not in reason


def test_a_type_error_deep_in_services_names_its_line_and_column(tmp_path: Path) -> None:
    """The value's own line and column lead the reason, then its key path."""
    path = tmp_path / "glb.yaml"
    path.write_text(
        with_service("backends: [{cluster: europe}]", "probe:", "  rise: 2", "  interval: fast")
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.reasons == [
        f"{path}:12:17: services[0].probe.interval: 'fast' is not a duration "
        "(use 1s, 250ms, 2m or a number of seconds)"
    ]


def test_an_unknown_key_is_reported_at_the_key() -> None:
    """An unknown key points at the key itself (column of the key, not of its value)."""
    text = with_service("backends: [{cluster: europe}]", "colour: blue")
    assert reasons_of(text) == ["<config>:10:5: services[0].colour: unknown key"]


def test_a_missing_key_is_reported_at_the_mapping_that_lacks_it() -> None:
    """A missing key has no line of its own: the mapping it belongs in is named."""
    assert reasons_of(with_service("port: 80")) == [
        "<config>:8:5: services[0].backends: required key is missing"
    ]


def test_a_cross_key_problem_names_the_line_of_its_key() -> None:
    """Checks spanning keys (here an unknown cluster) name the line of the key they are about."""
    text = with_service("backends:", "  - {cluster: europe}", "  - {cluster: eurpoe}")
    assert reasons_of(text) == [
        "<config>:11:19: services[0].backends[1].cluster: unknown cluster 'eurpoe' "
        "(known: europe, us); did you mean 'europe'?"
    ]


# ---------------------------------------------------------------------------------------------
# glb's own words


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["backends: [{cluster: europe}]", "probe: [1s]"],
         "10:12: services[0].probe: expected a mapping, got a list"),
        (["backends: {cluster: europe}"],
         "9:15: services[0].backends: expected a list, got a mapping"),
        (["backends: [{cluster: europe}]", "ttl: ten"],
         "10:10: services[0].ttl: 'ten' is not a whole number"),
        (["backends: [{cluster: europe}]", "ttl: 1.5"],
         "10:10: services[0].ttl: 1.5 is not a whole number"),
        (["backends: [{cluster: europe}]", "latency_band: {relative: lots}"],
         "10:30: services[0].latency_band.relative: 'lots' is not a number"),
        (["backends: [{cluster: europe}]", "eject_on_5xx: maybe"],
         "10:19: services[0].eject_on_5xx: 'maybe' is not a boolean (use true or false)"),
        (["backends: [{cluster: europe}]", "policy: fastest"],
         "10:13: services[0].policy: 'fastest' is not one of "
         "'latency', 'failover', 'weighted', 'round_robin' or 'geo'"),
        (["backends: [{cluster: europe}]", "probe: {path: no-slash}"],
         "10:19: services[0].probe.path: 'no-slash' does not match the pattern ^/[^\\s]*$"),
        (["backends: [{cluster: europe}]", "probe: {rise: 0}"],
         "10:19: services[0].probe.rise: 0 is out of range: it must be at least 1"),
        (["backends: [{cluster: europe}]", "retries: 11"],
         "10:14: services[0].retries: 11 is out of range: it must be at most 10"),
        (["backends: [{cluster: europe}]", "probe: {latency_alpha: 0}"],
         "10:28: services[0].probe.latency_alpha: 0 is out of range: it must be greater than 0"),
        (["backends: []"], "9:15: services[0].backends: needs at least 1 item, got 0"),
        (["backends: [{cluster: europe}]", "probe: {body_contains: ''}"],
         "10:28: services[0].probe.body_contains: '' is too short: at least 1 character(s)"),
        (["backends: [{cluster: europe}]", "probe: {intervall: 1s}"],
         "10:13: services[0].probe.intervall: unknown key; did you mean 'interval'?"),
    ],
    ids=[
        "mapping-expected", "list-expected", "int-parsing", "int-from-float", "float-parsing",
        "bool-parsing", "enum", "pattern", "at-least", "at-most", "greater-than", "too-short",
        "string-too-short", "unknown-key-did-you-mean",
    ],
)  # fmt: skip
def test_pydantic_errors_are_in_glbs_words(lines: list[str], expected: str) -> None:
    """Each common kind of error quotes the value given and says what is expected."""
    assert reasons_of(with_service(*lines)) == [f"<config>:{expected}"]


def test_a_wrong_section_type_says_what_was_expected() -> None:
    """`dns: [..]` says a mapping was expected, not pydantic's "valid dictionary or instance"."""
    assert reasons_of(BASE + "dns: [1, 2]\n") == [
        "<config>:7:6: dns: expected a mapping, got a list"
    ]


def test_a_key_that_is_not_text_is_named_at_its_place() -> None:
    """`null: 1` inside a service is a key that is not a name."""
    text = BASE + "services: [{null: 1, name: a.example.test, backends: [{cluster: europe}]}]\n"
    assert reasons_of(text) == [
        "<config>:7:12: services[0].None: a key must be a name (text), not nothing (null)"
    ]


def test_an_unknown_top_level_key_suggests_the_close_one() -> None:
    assert reasons_of(BASE + "servces: []\n") == [
        "<config>:7:1: servces: unknown key; did you mean 'services'?"
    ]


def test_a_log_level_lists_the_allowed_values() -> None:
    assert reasons_of(BASE + "log: {level: loud}\n") == [
        "<config>:7:14: log.level: 'loud' is not one of 'debug', 'info', 'warning' or 'error'"
    ]


def test_an_unknown_cluster_far_from_any_name_has_no_suggestion() -> None:
    text = with_service("backends: [{cluster: mars}]")
    assert reasons_of(text) == [
        "<config>:9:26: services[0].backends[0].cluster: unknown cluster 'mars' (known: europe, us)"
    ]


# ---------------------------------------------------------------------------------------------
# The environment


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GLB_DNS__LISTEN", "x", "dns.listen: 'x' is not host:port"),
        ("GLB_LOG__LEVEL", "loud", "log.level: 'loud' is not one of 'debug', 'info'"),
        ("GLB_PROBES__HOLD_CONNECTION", "maybe", "probes.hold_connection: 'maybe' is not a bool"),
        ("GLB_HTTP__TRUSTED_PROXIES", "10.0.0.0/8", "http.trusted_proxies: '10.0.0.0/8' is not "
         "valid JSON"),
        ("GLB_DNS", "{not json", "dns: '{not json' is not valid JSON"),
    ],
    ids=["listen", "level", "boolean", "list-not-json", "section-not-json"],
)  # fmt: skip
def test_environment_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """A bad GLB_* value names the variable (and the key it sets), never a file line."""
    monkeypatch.setenv(name, value)
    (reason,) = reasons_of(BASE)
    assert reason.startswith(f"environment {name}: {expected}"), reason


def test_a_section_set_in_part_by_the_environment_leaves_the_rest_to_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GLB_DNS sets dns.listen only: a bad dns key from the file is reported at its line, not
    blamed on the variable."""
    monkeypatch.setenv("GLB_DNS", '{"listen": "127.0.0.1:53"}')
    assert reasons_of(BASE + "dns: {tcp_idle_timeout: never}\n") == [
        "<config>:7:25: dns.tcp_idle_timeout: 'never' is not a duration (use 1s, 250ms, 2m or a "
        "number of seconds)"
    ]


def test_only_the_variable_that_should_be_json_is_blamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Of two variables under `dns`, the section (JSON) one that does not parse is named; the
    listen text is glb's to parse, not JSON."""
    monkeypatch.setenv("GLB_DNS__LISTEN", "127.0.0.1:53")
    monkeypatch.setenv("GLB_DNS__RRL", "{bad")
    (reason,) = reasons_of(BASE)
    assert reason.startswith("environment GLB_DNS__RRL: dns.rrl: '{bad' is not valid JSON")


def test_a_misspelt_environment_variable_suggests_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLB_DSN__LISTEN", "127.0.0.1:53")
    assert reasons_of(BASE) == [
        "environment: GLB_DSN__LISTEN is not a glb setting (nested keys are joined with __, "
        "e.g. GLB_DNS__LISTEN); did you mean 'dns'?"
    ]


# ---------------------------------------------------------------------------------------------
# glb check


async def test_glb_check_prints_file_line_and_column(tmp_path: Path) -> None:
    """`glb check` prints every problem as file:line:column: key.path: reason and exits 2."""
    path = tmp_path / "glb.yaml"
    path.write_text(
        with_service("backends: [{cluster: europe}]", "probe: {interval: fast}", "colour: x")
        + "  - {name: api.example.test, backends: [{cluster: eurpoe}]}\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "glb",
        "check",
        "-c",
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    lines = err.decode().splitlines()
    assert lines[0] == f"glb: {path} is invalid (3 problem(s)):"
    assert sorted(line.strip() for line in lines[1:]) == sorted(
        [
            f"{path}:10:23: services[0].probe.interval: 'fast' is not a duration "
            "(use 1s, 250ms, 2m or a number of seconds)",
            f"{path}:11:5: services[0].colour: unknown key",
            f"{path}:12:51: services[1].backends[0].cluster: unknown cluster 'eurpoe' "
            "(known: europe, us); did you mean 'europe'?",
        ]
    )
