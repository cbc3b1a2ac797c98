"""The adaptive probe timeout of `glb.core.timeouts` (RFC 6298's estimator, TCP's back-off) and
how `glb.core.health.observe` keeps its inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.health import Outcome, TargetHealth, observe, timeout_for
from glb.core.timeouts import RttEstimate, observe_rtt, probe_timeout
from tests.core.factories import fail, ok, spec, target

SPEC = spec(timeout=0.75, min_timeout=0.25)


def test_the_first_sample_sets_srtt_and_half_of_it_as_variance() -> None:
    """RFC 6298 2.2: SRTT <- R, RTTVAR <- R/2."""
    assert observe_rtt(None, 0.2) == RttEstimate(0.2, 0.1)


def test_later_samples_move_by_an_eighth_and_a_quarter() -> None:
    """RFC 6298 2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, then SRTT <- 7/8 SRTT + 1/8 R'."""
    estimate = observe_rtt(RttEstimate(0.2, 0.1), 0.4)
    assert estimate.rttvar == pytest.approx(0.75 * 0.1 + 0.25 * 0.2)
    assert estimate.srtt == pytest.approx(0.875 * 0.2 + 0.125 * 0.4)
    assert estimate.rto == pytest.approx(estimate.srtt + 4 * estimate.rttvar)


def test_before_any_sample_the_timeout_is_the_configured_one() -> None:
    assert probe_timeout(SPEC, None, 0) == 0.75
    assert timeout_for(TargetHealth(), SPEC) == 0.75


def test_a_fast_target_gets_the_minimum_and_a_slow_one_its_rto() -> None:
    """srtt + 4 rttvar, never below min_timeout nor above timeout."""
    assert probe_timeout(SPEC, RttEstimate(0.001, 0.0005), 0) == 0.25
    assert probe_timeout(SPEC, RttEstimate(0.2, 0.05), 0) == pytest.approx(0.4)
    assert probe_timeout(SPEC, RttEstimate(0.5, 0.2), 0) == 0.75


def test_each_consecutive_timeout_doubles_the_wait_up_to_the_timeout() -> None:
    """TCP's back-off: 0.25, 0.5, then capped at 0.75."""
    fast = RttEstimate(0.001, 0.0005)
    assert [probe_timeout(SPEC, fast, k) for k in range(4)] == [0.25, 0.5, 0.75, 0.75]
    assert probe_timeout(SPEC, fast, 10_000) == 0.75  # no overflow however long it lasts


def test_adaptive_timeout_off_keeps_the_configured_timeout() -> None:
    fixed = spec(timeout=0.75, adaptive_timeout=False)
    assert probe_timeout(fixed, RttEstimate(0.001, 0.0005), 0) == 0.75


def test_observe_keeps_the_estimate_of_successes_and_counts_consecutive_timeouts() -> None:
    """Successes feed the estimator and reset the count; a timeout adds one; another failure
    (a refusal, a bad status) resets the count: only consecutive timeouts back off."""
    t = target(probe=SPEC)
    health, _ = observe(t, TargetHealth(), ok(rtt=0.002))
    assert health.rtt == RttEstimate(0.002, 0.001)
    timed_out = fail(Outcome.TIMEOUT, "timed out")
    health, _ = observe(t, health, timed_out)
    assert (health.timeouts, health.rtt) == (1, RttEstimate(0.002, 0.001))
    assert timeout_for(health, SPEC) == 0.5
    health, _ = observe(t, health, timed_out)
    assert health.timeouts == 2
    assert timeout_for(health, SPEC) == 0.75
    health, _ = observe(t, health, fail(Outcome.BAD_STATUS, "status 503"))
    assert health.timeouts == 0
    health, _ = observe(t, health, timed_out)
    health, _ = observe(t, health, ok(rtt=0.002))
    assert health.timeouts == 0
    assert timeout_for(health, SPEC) == 0.25


@settings(max_examples=200, deadline=None)
@given(
    rtts=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=30),
    timeouts=st.integers(min_value=0, max_value=100),
)
def test_property_the_timeout_stays_within_its_bounds(rtts: list[float], timeouts: int) -> None:
    """Whatever the round trips and back-off, min_timeout <= timeout <= the configured one."""
    estimate = None
    for rtt in rtts:
        estimate = observe_rtt(estimate, rtt)
    assert estimate is not None
    assert estimate.srtt >= 0
    assert estimate.rttvar >= 0
    assert 0.25 <= probe_timeout(SPEC, estimate, timeouts) <= 0.75
