"""Failing open: the rule (`glb.core.policies.fails_open`) and its log
(`glb.health.failing_open.FailingOpenLog`), a warning when a service starts failing open and an
info line when it stops, once per transition, on hand-made snapshots. A real glb's metric and
log: tests/test_metrics.py."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from glb.core.model import Service, Topology, WhenAllDown
from glb.core.policies import fails_open
from glb.health.failing_open import FailingOpenLog
from tests.core.factories import make_service, make_snapshot

A, B, A6 = "192.0.2.1", "192.0.2.2", "2001:db8::1"
OTHER = "other.example.test"


@pytest.mark.parametrize("when_all_down", list(WhenAllDown))
def test_only_return_all_fails_open_and_only_with_nothing_up(when_all_down: WhenAllDown) -> None:
    """Every endpoint down fails open with return_all only; one up does not."""
    service = make_service([A, B], when_all_down=when_all_down)
    down = fails_open(service, make_snapshot(service, down=[A, B]))
    assert down is (when_all_down is WhenAllDown.RETURN_ALL)
    assert fails_open(service, make_snapshot(service, down=[A])) is False
    assert fails_open(service, make_snapshot(service)) is False


def test_never_probed_and_drained_endpoints_count_as_not_up() -> None:
    """One endpoint unknown and the other drained fails open (on the unknown one); every
    endpoint drained answers nothing, which is no failing open."""
    service = make_service([A, B])
    assert fails_open(service, make_snapshot(service, unknown=[A], drained_clusters=["c1"]))
    assert not fails_open(
        service, make_snapshot(service, down=[A, B], drained_clusters=["c0", "c1"])
    )


def test_one_address_family_failing_open_is_enough() -> None:
    """The AAAA answers fail open while the A answers are fine: the service fails open."""
    service = make_service([A, A6])
    assert fails_open(service, make_snapshot(service, down=[A6]))


def topology(*services: Service) -> Topology:
    return Topology((), (), services)


def failing_open_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    return [
        (r.levelno, r.getMessage(), getattr(r, "event", ""))
        for r in caplog.records
        if r.name == "glb.health.failing_open"
    ]


STARTS = (
    "app.example.test is failing open: no endpoint is up, its answers hand out every undrained"
    " one (when_all_down: return_all)"
)
STOPS = "app.example.test no longer fails open"


def test_each_transition_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Up, down, still down (twice), up: one warning as it starts, one info line as it stops."""
    service = make_service([A, B])
    log = FailingOpenLog(lambda: topology(service), make_snapshot(service))
    caplog.set_level(logging.INFO, logger="glb.health.failing_open")
    down = make_snapshot(service, down=[A, B])
    log.on_snapshot(down)
    log.on_snapshot(replace(down, version=2))  # changed not known: every service looked at
    log.on_snapshot(replace(down, version=3, changed=frozenset({service.endpoints[0].target})))
    assert log.failing == {service.name}
    log.on_snapshot(make_snapshot(service, down=[A]))
    assert log.failing == frozenset()
    assert failing_open_lines(caplog) == [
        (logging.WARNING, STARTS, "failing_open"),
        (logging.INFO, STOPS, "failing_open_ended"),
    ]


def test_a_service_failing_open_at_start_is_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service([A, B])
    with caplog.at_level(logging.INFO, logger="glb.health.failing_open"):
        log = FailingOpenLog(lambda: topology(service), make_snapshot(service, unknown=[A, B]))
    assert log.failing == {service.name}
    assert failing_open_lines(caplog) == [(logging.WARNING, STARTS, "failing_open")]


def test_only_the_services_of_changed_targets_are_looked_at_unless_drains_changed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A snapshot that says which targets changed is looked at for their services only; one
    whose drains changed is looked at for every service (a drain changes no target)."""
    service = make_service([A, B])
    other = make_service([A], name=OTHER, when_all_down=WhenAllDown.SERVFAIL)
    both = topology(service, other)
    log = FailingOpenLog(lambda: both, make_snapshot(service, down=[A]))
    caplog.set_level(logging.INFO, logger="glb.health.failing_open")
    drained = make_snapshot(service, down=[A], drained_clusters=["c1"])
    log.on_snapshot(replace(drained, changed=frozenset()))  # only the drain changed
    assert log.failing == {service.name}
    everything = make_snapshot(service, down=[A], drained_clusters=["c0", "c1"])
    log.on_snapshot(replace(everything, changed=frozenset()))
    assert log.failing == frozenset()  # nothing left to hand out
    assert [line[0] for line in failing_open_lines(caplog)] == [logging.WARNING, logging.INFO]


def test_a_service_removed_by_a_reload_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    """A service failing open that a reload removes is dropped silently; added back and still
    failing open, it is logged again."""
    service = make_service([A, B])
    current = [topology(service)]
    down = make_snapshot(service, down=[A, B])
    log = FailingOpenLog(lambda: current[0], down)
    assert log.failing == {service.name}
    current[0] = topology()
    log.on_snapshot(replace(down, version=2))
    assert log.failing == frozenset()
    current[0] = topology(service)
    caplog.clear()  # the warning as it started
    log.on_snapshot(replace(down, version=3))
    assert failing_open_lines(caplog) == [(logging.WARNING, STARTS, "failing_open")]
