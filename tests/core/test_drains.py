"""Operator drains as pure records: add/remove/expiry, the derived sets the answer path uses,
and the state document's round trip and validation (a hand-edited file gets a clear error)."""

from __future__ import annotations

import json

import pytest

from glb.core.drains import (
    BadInstant,
    BadStateDocument,
    Drain,
    Drains,
    format_instant,
    parse_instant,
)

T0 = 1_796_637_600.0  # 2026-12-07T10:00:00Z
EU = Drain("eu-west", None, "api", T0, "maintenance", T0 + 7200)
APP = Drain("us-east", "app.example.com", "api", T0 + 1.5)


def test_add_remove_and_the_derived_sets() -> None:
    drains = Drains().add(EU).add(APP)
    assert len(drains) == 2
    assert drains.clusters == frozenset({"eu-west"})
    assert drains.endpoints == frozenset({("app.example.com", "us-east")})
    assert drains.get("eu-west") is EU
    assert drains.get("us-east", "app.example.com") is APP
    assert drains.get("us-east") is None
    removed = drains.remove("eu-west")
    assert (removed.clusters, len(removed)) == (frozenset(), 1)
    assert removed.remove("eu-west") is removed  # nothing to remove: the same collection


def test_a_second_drain_of_the_same_scope_keeps_the_first() -> None:
    drains = Drains().add(EU)
    assert drains.add(Drain("eu-west", None, "api", T0 + 60, "other")) is drains


def test_expiry_is_on_until_and_next_expiry_is_the_earliest() -> None:
    soon = Drain("b", None, "api", T0, until=T0 + 60)
    drains = Drains.of([EU, APP, soon])
    assert drains.next_expiry() == T0 + 60
    assert drains.expired(T0 + 59.9) == ()
    assert drains.expired(T0 + 60) == (soon,)
    assert set(drains.expired(T0 + 7200)) == {soon, EU}
    assert Drains.of([APP]).next_expiry() is None


def test_describe_names_the_scope() -> None:
    assert EU.describe() == "eu-west (every service)"
    assert APP.describe() == "us-east in app.example.com"


def test_document_round_trip_keeps_every_field() -> None:
    drains = Drains.of([EU, APP])
    document = json.loads(json.dumps(drains.to_document()))
    assert document["version"] == 1
    assert document["drains"][0]["until"] == "2026-12-07T12:00:00.000Z"
    assert set(Drains.from_document(document)) == {EU, APP}
    assert Drains.from_document({"version": 1, "drains": []}) == Drains.of([])


def test_instants_need_a_time_zone() -> None:
    assert parse_instant("2026-12-07T10:00:00Z") == T0
    assert parse_instant("2026-12-07T11:00:00+01:00") == T0
    assert format_instant(T0 + 0.25) == "2026-12-07T10:00:00.250Z"
    with pytest.raises(BadInstant, match="no time zone"):
        parse_instant("2026-12-07T10:00:00")
    with pytest.raises(BadInstant, match="not an ISO 8601 time"):
        parse_instant("tomorrow")


GOOD = {"cluster": "eu", "who": "api", "since": "2026-12-07T10:00:00Z"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], r"^\(top level\): must be a JSON object"),
        ({"version": 1, "drains": [], "x": 1}, r"^\(top level\): unknown key\(s\): x"),
        ({"drains": []}, r"^version: must be 1, not None"),
        ({"version": 2, "drains": []}, r"^version: must be 1, not 2"),
        ({"version": 1, "drains": {}}, r"^drains: must be a list"),
        ({"version": 1, "drains": ["eu"]}, r"^drains\[0\]: must be a JSON object"),
        ({"version": 1, "drains": [{**GOOD, "by": 1}]}, r"^drains\[0\]: unknown key\(s\): by"),
        ({"version": 1, "drains": [{**GOOD, "cluster": 3}]}, r"^drains\[0\]\.cluster: must be"),
        ({"version": 1, "drains": [{**GOOD, "cluster": ""}]}, r"^drains\[0\]\.cluster: must be"),
        ({"version": 1, "drains": [{**GOOD, "who": None}]}, r"^drains\[0\]\.who: must be"),
        ({"version": 1, "drains": [{**GOOD, "service": []}]}, r"^drains\[0\]\.service: must"),
        ({"version": 1, "drains": [{**GOOD, "reason": "x" * 201}]}, r"^drains\[0\]\.reason:"),
        ({"version": 1, "drains": [{**GOOD, "since": None}]}, r"^drains\[0\]\.since: missing"),
        ({"version": 1, "drains": [{**GOOD, "since": 5}]}, r"^drains\[0\]\.since: must be an"),
        ({"version": 1, "drains": [{**GOOD, "until": "soon"}]}, r"^drains\[0\]\.until: 'soon'"),
        (
            {"version": 1, "drains": [GOOD, {**GOOD, "until": "2026-12-07T12:00:00"}]},
            r"^drains\[1\]\.until: .* has no time zone",
        ),
        ({"version": 1, "drains": [GOOD, GOOD]}, r"^drains\[1\]: a second drain of the same"),
    ],
)
def test_every_validation_error_names_its_path(document: object, message: str) -> None:
    with pytest.raises(BadStateDocument, match=message):
        Drains.from_document(document)
