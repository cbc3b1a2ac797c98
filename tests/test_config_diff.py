"""The configuration diff: what a reload reports as added, removed and changed."""

from __future__ import annotations

import copy
from typing import Any

from glb.config import parse_settings
from glb.core.config_diff import (
    MISSING,
    ConfigDiff,
    KeyChange,
    ObjectChange,
    diff_configs,
    diff_values,
    render,
)
from glb.reload import plain_settings, zones_changed


def base() -> dict[str, Any]:
    """Plain data of a small configuration, as `glb.reload.plain_settings` gives it."""
    return {
        "dns": {"listen": ["127.0.0.1", 5353]},
        "probes": {"ca_file": None, "hold_connection": True},
        "zones": [{"name": "example.test", "ttl": 300}],
        "clusters": [
            {"name": "eu", "addresses": ["10.0.0.1"]},
            {"name": "us", "addresses": ["10.0.1.1"]},
        ],
        "services": [
            {
                "name": "app.example.test",
                "ttl": 10,
                "probe": {"interval": 1.0, "headers": {}},
                "backends": [{"cluster": "eu", "weight": 100}, {"cluster": "us", "weight": 100}],
            }
        ],
    }


def test_equal_configurations_are_no_change():
    diff = diff_configs(base(), base())
    assert diff.unchanged
    assert diff.changes == ()
    assert diff.summary() == "no change"


def test_a_changed_service_names_its_keys_with_old_and_new_values():
    """The example of the reload log: nested probe keys joined with dots, sorted by key."""
    new = base()
    new["services"][0]["probe"]["interval"] = 2.0
    new["services"][0]["ttl"] = 30
    diff = diff_configs(base(), new)
    assert diff.changes == (
        ObjectChange(
            "service",
            "app.example.test",
            "changed",
            (KeyChange("probe.interval", 1.0, 2.0), KeyChange("ttl", 10, 30)),
        ),
    )
    assert str(diff.changes[0]) == (
        "service app.example.test changed: probe.interval 1 -> 2, ttl 10 -> 30"
    )
    assert diff.summary() == "services: 1 changed"


def test_added_and_removed_services_clusters_and_zones():
    old, new = base(), base()
    new["services"].append({"name": "new.example.test", "ttl": 10})
    new["clusters"] = [c for c in new["clusters"] if c["name"] != "us"]
    new["clusters"].append({"name": "ap", "addresses": ["10.0.2.1"]})
    new["zones"] = [{"name": "other.test", "ttl": 300}]
    diff = diff_configs(old, new)
    assert [str(change) for change in diff.changes] == [
        "zone example.test removed",
        "zone other.test added",
        "cluster us removed",
        "cluster ap added",
        "service new.example.test added",
    ]
    assert diff.summary() == (
        "zones: 1 added, 1 removed; clusters: 1 added, 1 removed; services: 1 added"
    )


def test_objects_are_matched_by_name_not_position():
    """Reordering the clusters (key order, list order) is no change."""
    new = base()
    new["clusters"].reverse()
    new["services"][0] = dict(reversed(list(new["services"][0].items())))
    assert diff_configs(base(), new).unchanged


def test_a_list_of_scalars_is_one_change_with_both_lists():
    new = base()
    new["clusters"][0]["addresses"] = ["10.0.0.1", "10.0.0.2"]
    [change] = diff_configs(base(), new).changes
    assert change == ObjectChange(
        "cluster",
        "eu",
        "changed",
        (KeyChange("addresses", ["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]),),
    )
    assert str(change) == "cluster eu changed: addresses [10.0.0.1] -> [10.0.0.1, 10.0.0.2]"


def test_a_list_of_records_of_the_same_length_is_compared_item_by_item():
    new = base()
    new["services"][0]["backends"][1]["weight"] = 50
    [change] = diff_configs(base(), new).changes
    assert change.keys == (KeyChange("backends[1].weight", 100, 50),)


def test_a_list_of_records_of_another_length_is_one_change():
    new = base()
    del new["services"][0]["backends"][1]
    [change] = diff_configs(base(), new).changes
    [key] = change.keys
    assert key.path == "backends"
    assert str(key) == (
        "backends [{cluster: eu, weight: 100}, {cluster: us, weight: 100}]"
        " -> [{cluster: eu, weight: 100}]"
    )


def test_a_key_only_one_side_has_is_unset_on_the_other():
    new = base()
    new["services"][0]["probe"]["headers"] = {"X-Probe": "glb"}
    [change] = diff_configs(base(), new).changes
    assert change.keys == (KeyChange("probe.headers.X-Probe", MISSING, "glb"),)
    assert str(change.keys[0]) == "probe.headers.X-Probe (unset) -> glb"


def test_probe_settings_and_other_sections_are_section_changes():
    new = base()
    new["probes"]["hold_connection"] = False
    new["dns"]["listen"] = ["127.0.0.1", 5354]
    diff = diff_configs(base(), new)
    assert [str(change) for change in diff.changes] == [
        "section dns changed: listen [127.0.0.1, 5353] -> [127.0.0.1, 5354]",
        "section probes changed: hold_connection true -> false",
    ]
    assert diff.summary() == "settings changed: dns, probes"


def test_a_section_only_one_side_has_is_changed_from_or_to_unset():
    new = copy.deepcopy(base())
    new["geo"] = {"networks": []}
    [change] = diff_configs(base(), new).changes
    assert change == ObjectChange(
        "section", "geo", "changed", (KeyChange("", MISSING, {"networks": []}),)
    )
    assert str(change) == "section geo changed: (unset) -> {networks: []}"


def test_several_kinds_summarised_in_one_line():
    new = base()
    new["zones"][0]["ttl"] = 60
    new["services"][0]["ttl"] = 5
    new["services"].append({"name": "b.example.test"})
    new["probes"]["ca_file"] = "/etc/ca.pem"
    assert diff_configs(base(), new).summary() == (
        "zones: 1 changed; services: 1 added, 1 changed; settings changed: probes"
    )


def test_diff_values_of_nested_mappings():
    old = {"a": {"b": {"c": 1, "d": [1, 2]}}, "e": None}
    new = {"a": {"b": {"c": 2, "d": [1, 2]}}, "e": True}
    assert list(diff_values(old, new)) == [KeyChange("a.b.c", 1, 2), KeyChange("e", None, True)]
    assert list(diff_values(old, old)) == []


def test_render_spells_values_as_a_file_would():
    assert [render(v) for v in (None, True, False, 0.5, 2.0, 3, "x", ["a", 1])] == [
        "null",
        "true",
        "false",
        "0.5",
        "2",
        "3",
        "x",
        "[a, 1]",
    ]
    assert render({"k": None}) == "{k: null}"


def test_an_empty_diff_is_unchanged():
    assert ConfigDiff().unchanged
    assert ConfigDiff().summary() == "no change"


SETTINGS = """
dns: {listen: '[::1]:5353'}
admin: {listen: '127.0.0.1:9100', token: TOKEN}
zones: [{name: example.test, nameservers: [{name: ns1.example.test, address: 192.0.2.53}]}]
clusters: [{name: eu, addresses: [192.0.2.1]}]
services:
  - {name: app.example.test, port: 80, probe: {type: tcp}, backends: [{cluster: eu}]}
"""
FIRST_TOKEN = "first-admin-token-0123"


def settings_plain(text: str, token: str = FIRST_TOKEN) -> dict[str, object]:
    return plain_settings(parse_settings(text.replace("TOKEN", token)))


def test_settings_spelled_otherwise_are_no_change():
    """Comments, key order and defaults written out mean the same settings: no change."""
    respelled = """
# the same settings, spelled otherwise
services:
  - {backends: [{cluster: eu}], probe: {interval: 1s, type: tcp}, name: app.example.test}
clusters: [{addresses: [192.0.2.1], name: eu}]  # one cluster
zones: [{nameservers: [{name: ns1.example.test, address: 192.0.2.53}], name: example.test}]
admin: {token: TOKEN, listen: '127.0.0.1:9100'}
dns: {listen: '[::1]:5353'}
"""
    assert diff_configs(settings_plain(SETTINGS), settings_plain(respelled)).unchanged


def test_settings_as_plain_data_show_listen_addresses_and_enums_as_written():
    plain = settings_plain(SETTINGS)
    dns, services = plain["dns"], plain["services"]
    assert isinstance(dns, dict)
    assert isinstance(services, list)
    assert dns["listen"] == "[::1]:5353"
    assert services[0]["probe"]["type"] == "tcp"


def test_a_changed_token_is_a_change_that_does_not_show_the_token():
    second = "second-admin-token-0123"
    diff = diff_configs(settings_plain(SETTINGS), settings_plain(SETTINGS, second))
    [change] = diff.changes
    assert (change.kind, change.name, [key.path for key in change.keys]) == (
        "section",
        "admin",
        ["token"],
    )
    assert FIRST_TOKEN not in str(change)
    assert second not in str(change)
    assert str(change).startswith("section admin changed: token <secret ")


ZONES = """
zones:
  - {name: example.test, nameservers: [{name: ns1.example.test, address: 192.0.2.53}]}
  - {name: other.test, nameservers: [{name: ns1.other.test, address: 192.0.2.53}]}
clusters: [{name: eu, addresses: [192.0.2.1]}, {name: us, addresses: [192.0.2.2]}]
services:
  - {name: app.example.test, probe: {type: tcp}, backends: [{cluster: eu}]}
  - {name: app.sub.example.test, probe: {type: tcp}, backends: [{cluster: eu}]}
  - {name: app.other.test, probe: {type: tcp}, backends: [{cluster: us}]}
"""


def changed_zones(old_text: str, new_text: str) -> set[str]:
    old, new = parse_settings(old_text), parse_settings(new_text)
    return zones_changed(diff_configs(plain_settings(old), plain_settings(new)), old, new)


def test_a_changed_cluster_changes_the_zones_of_the_services_using_it():
    us = ZONES.replace("addresses: [192.0.2.2]", "addresses: [192.0.2.3]")
    assert changed_zones(ZONES, us) == {"other.test"}
    eu = ZONES.replace("addresses: [192.0.2.1]", "addresses: [192.0.2.4]")
    assert changed_zones(ZONES, eu) == {"example.test"}


def test_a_zone_added_inside_another_changes_both():
    """sub.example.test takes app.sub.example.test over from example.test: both changed."""
    sub = "  - {name: sub.example.test, nameservers: [{name: ns1.example.test}]}\n"
    added = ZONES.replace("clusters:", sub + "clusters:")
    assert changed_zones(ZONES, added) == {"example.test", "sub.example.test"}


def test_a_removed_service_changes_its_zone_and_settings_elsewhere_none():
    removed = ZONES.replace(
        "  - {name: app.other.test, probe: {type: tcp}, backends: [{cluster: us}]}\n", ""
    )
    assert changed_zones(ZONES, removed) == {"other.test"}
    assert changed_zones(ZONES, "probes: {hold_connection: false}\n" + ZONES) == set()
