"""Passive health (outlier ejection) as a pure step, and how it meets the probes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from glb.core.health import Health, TargetHealth, observe, observe_passive
from glb.core.snapshot import EndpointState, HealthSnapshot
from tests.core.factories import fail, make_service, ok, target

T = target()
UP = TargetHealth(state=Health.UP, successes=5, latency=0.01)


def passive(health: TargetHealth, failed: bool, eject_after: int = 3, now: float = 10.0):
    return observe_passive(
        T, health, failed=failed, detail="connection refused", eject_after=eject_after, now=now
    )


@pytest.mark.parametrize("eject_after", [1, 2, 3, 5])
def test_ejects_after_exactly_eject_after_consecutive_failures(eject_after: int) -> None:
    """An up target is ejected by the eject_after-th consecutive failed request, not before."""
    health = UP
    for _ in range(eject_after - 1):
        health, transition = passive(health, True, eject_after)
        assert transition is None
        assert health.state is Health.UP
    health, transition = passive(health, True, eject_after)
    assert health.state is Health.DOWN
    assert health.ejected
    assert transition is not None
    assert (transition.before, transition.after, transition.at) == (Health.UP, Health.DOWN, 10.0)
    noun = "failed request" if eject_after == 1 else "failed requests"
    assert transition.reason == f"ejected after {eject_after} {noun}: connection refused"
    assert health.reason == transition.reason
    assert health.last_change == 10.0


def test_a_successful_request_resets_the_count() -> None:
    """A completed request between failures starts the count again."""
    health, _ = passive(UP, True)
    health, _ = passive(health, True)
    health, _ = passive(health, False)
    assert health.passive_failures == 0
    health, transition = passive(health, True)
    assert transition is None
    assert health.state is Health.UP


def test_success_on_a_clean_record_changes_nothing() -> None:
    """A success with no failures counted returns the very same health value."""
    health, transition = passive(UP, False)
    assert health is UP
    assert transition is None


@pytest.mark.parametrize("state", [Health.DOWN, Health.UNKNOWN])
def test_a_target_that_is_not_up_is_never_ejected(state: Health) -> None:
    """Failures against a target that is not up only count; they change no state."""
    health = replace(UP, state=state)
    for _ in range(10):
        health, transition = passive(health, True)
        assert transition is None
    assert health.state is state
    assert not health.ejected


def test_probes_bring_an_ejected_target_back_after_rise_successes() -> None:
    """After ejection, rise consecutive probe successes bring the target up and clear the mark."""
    health, _ = passive(UP, True, eject_after=1)
    health, transition = observe(T, health, ok(at=11.0))
    assert transition is None
    assert health.ejected
    health, transition = observe(T, health, ok(at=11.25))
    assert transition is not None
    assert transition.after is Health.UP
    assert not health.ejected
    assert health.reason == "after 2 successes"


def test_a_failed_probe_turns_ejected_into_plain_down() -> None:
    """Once a probe fails too, the target is reported down rather than ejected."""
    health, _ = passive(UP, True, eject_after=1)
    health, transition = observe(T, health, fail(at=11.0))
    assert transition is None
    assert health.state is Health.DOWN
    assert not health.ejected


def test_snapshot_reports_ejected_and_drained_states() -> None:
    """An ejected endpoint reads as ejected, is not eligible, and a drain takes precedence."""
    service = make_service(["192.0.2.1", "192.0.2.2"])
    first, second = service.endpoints
    ejected, _ = passive(UP, True, eject_after=1)
    snapshot = HealthSnapshot.of({first.target: ejected, second.target: UP})
    assert snapshot.state(first) is EndpointState.EJECTED
    assert not snapshot.is_eligible(first)
    assert snapshot.state(second) is EndpointState.UP
    drained = HealthSnapshot.of(snapshot.targets, drained_clusters=frozenset({first.cluster}))
    assert drained.state(first) is EndpointState.DRAINED
