"""The failover-time model of `glb.core.explain`: each mode's detection and client exposure
against hand-computed values (default settings and edited ones), monotonic properties, and each
risk triggered and not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glb.core.explain import (
    ClusterPlace,
    Estimate,
    Mode,
    ProbeTiming,
    RiskKind,
    ServiceSetup,
    estimate,
    explain,
    recovery,
    timeouts,
)
from glb.core.model import Location, WhenAllDown
from glb.core.resolver_caching import typical_exposure, worst_exposure

DEFAULTS = ProbeTiming(interval=1.0, timeout=0.75, fall=2, rise=2, fast_interval=0.25)
DUBLIN, VIRGINIA = Location(53.35, -6.26), Location(38.95, -77.45)
TWO_PLACES = (ClusterPlace("eu-west", None, DUBLIN), ClusterPlace("us-east", None, VIRGINIA))
SETUP = ServiceSetup("app.example.test", DEFAULTS, ttl=10, ttl_unstable=1, clusters=TWO_PLACES)
RTT = 0.001


def of(mode: Mode, setup: ServiceSetup = SETUP, rtt: float = RTT) -> Estimate:
    return estimate(mode, setup, rtt)


def timed(setup: ServiceSetup = SETUP, **changes: Any) -> ServiceSetup:
    return replace(setup, timing=replace(setup.timing, **changes))


def figures(e: Estimate) -> tuple[float, float, float, float]:
    return e.detection_typical, e.detection_worst, e.exposure_typical, e.exposure_worst


# --- default settings, by hand -------------------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.REFUSED, Mode.RESET])
def test_a_closed_port_is_detected_in_fall_round_trips_through_the_held_connection(
    mode: Mode,
) -> None:
    # typical: 2 x 1 ms; worst: no held connection, a whole interval then 2 x 1 ms;
    # worst exposure: an answer served just before the first failure ended (1.001 s) + ttl 10;
    # typical: r uniform on 0..10: r + 10 below 1 ms, r + 1 (ttl_unstable) up to 2 ms, then r
    typical = (0.001**2 / 2 + 0.001 * 10 + 0.001 * (0.0015 + 1) + (100 - 0.002**2) / 2) / 10
    assert figures(of(mode)) == pytest.approx((0.002, 1.002, typical, 11.001))
    assert typical == pytest.approx(5.0011)


def test_a_frozen_cluster_waits_out_the_backed_off_timeouts() -> None:
    # typical: phase 0.5 + probe 1 waits rto 0.25 (next starts at once: 0.25 >= fast 0.25)
    # + probe 2 waits 0.5 = 1.25; worst: phase 1 + 0.75 + 0.75 = 2.5
    # exposure worst: first failure ended at 1 + 0.75, + ttl 10 = 11.75
    # typical: noticed 0.75, detected 1.25; (1/10)[(100 - 1.25^2)/2 + 0.5 * 2.0 + 0.75^2/2
    # + 0.75 * 10] = 5.8 (copies expiring between noticed and detected end at r + 1, mean 2.0)
    assert figures(of(Mode.FROZEN)) == pytest.approx((1.25, 2.5, 5.8, 11.75))


def test_a_bad_status_takes_fall_minus_one_fast_intervals() -> None:
    # phase (0.5 / 1) + 1 x 0.25 + one round trip
    e = of(Mode.BAD_STATUS)
    assert (e.detection_typical, e.detection_worst) == pytest.approx((0.751, 1.251))
    assert e.exposure_worst == pytest.approx(11.001)  # 1.001 (first 5xx seen) + 10


def test_recovery_takes_rise_minus_one_fast_intervals() -> None:
    back = recovery(DEFAULTS, RTT)
    assert (back.typical, back.worst) == pytest.approx((0.751, 1.251))


# --- edited settings -----------------------------------------------------------------------

EDITED = ProbeTiming(interval=2.0, timeout=1.0, fall=3, rise=4, fast_interval=0.5, min_timeout=0.1)


def test_edited_frozen_timeouts_double_from_min_timeout_and_pace_at_fast_interval() -> None:
    # waits 0.1, 0.2, 0.4; the first two shorter than fast 0.5: 1 + 0.5 + 0.5 + 0.4 = 2.4
    # worst: 2 + 1 + 1 + 1 = 5; first failure ended 2 + 1 = 3, + ttl 30
    e = of(Mode.FROZEN, replace(SETUP, timing=EDITED, ttl=30))
    assert timeouts(EDITED, 0.1) == pytest.approx((0.1, 0.2, 0.4))
    assert (e.detection_typical, e.detection_worst, e.exposure_worst) == pytest.approx(
        (2.4, 5.0, 33.0)
    )


def test_timeouts_longer_than_fast_interval_start_the_next_probe_at_once() -> None:
    timing = replace(EDITED, timeout=2.0, min_timeout=0.3)
    # 0.3, 0.6, 1.2: 1 + max(0.3, 0.5) + 0.6 + 1.2 = 3.3
    e = of(Mode.FROZEN, replace(SETUP, timing=timing))
    assert e.detection_typical == pytest.approx(3.3)


def test_without_adaptive_timeout_every_probe_waits_the_timeout() -> None:
    e = of(Mode.FROZEN, timed(adaptive_timeout=False))
    assert (e.detection_typical, e.detection_worst) == pytest.approx((2.0, 2.5))


def test_a_slow_target_raises_the_adaptive_timeout() -> None:
    # rto = max(0.25, 0.1 + 4 x 0.05) = 0.3: waits 0.3, 0.6 -> 0.5 + 0.3 + 0.6 = 1.4
    assert of(Mode.FROZEN, rtt=0.1).detection_typical == pytest.approx(1.4)


def test_without_a_held_connection_a_closed_port_waits_for_the_schedule() -> None:
    e = of(Mode.REFUSED, timed(hold_connection=False))
    assert (e.detection_typical, e.detection_worst) == pytest.approx((0.502, 1.002))


def test_edited_bad_status_and_recovery() -> None:
    e = of(Mode.BAD_STATUS, replace(SETUP, timing=EDITED), rtt=0.0)
    assert (e.detection_typical, e.detection_worst) == pytest.approx((2.0, 3.0))  # 1|2 + 2 x 0.5
    back = recovery(EDITED, 0.0)
    assert (back.typical, back.worst) == pytest.approx((2.5, 3.5))  # 1|2 + 3 x 0.5


def test_fall_1_detects_on_the_first_failure() -> None:
    e = of(Mode.FROZEN, timed(fall=1), rtt=0.0)
    assert (e.detection_typical, e.detection_worst) == pytest.approx((0.75, 1.75))


# --- what resolvers keep -------------------------------------------------------------------


def test_without_adaptive_ttl_the_typical_exposure_is_detection_plus_half_the_ttl() -> None:
    assert typical_exposure(0.75, 1.25, 10, 10) == pytest.approx(6.25)
    assert typical_exposure(0.75, 25.0, 10, 10) == pytest.approx(30.0)  # detection beyond ttl
    assert of(Mode.FROZEN, replace(SETUP, ttl_unstable=10)).exposure_typical == pytest.approx(6.25)


def test_the_worst_exposure_is_the_later_of_full_ttl_and_ttl_unstable_answers() -> None:
    assert worst_exposure(0.75, 1.25, 10, 1) == pytest.approx(10.75)
    assert worst_exposure(0.75, 20.0, 10, 1) == pytest.approx(21.0)  # detection beyond ttl


def test_a_ttl_of_0_leaves_at_detection() -> None:
    e = of(Mode.FROZEN, replace(SETUP, ttl=0, ttl_unstable=0))
    assert (e.exposure_typical, e.exposure_worst) == pytest.approx((1.25, 2.5))


def test_a_ttl_unstable_of_0_refetches_until_detection() -> None:
    # r < 0.75: r + 10; r in 0.75..1.25: 1.25; else r
    expected = (0.75**2 / 2 + 7.5 + 0.5 * 1.25 + (100 - 1.25**2) / 2) / 10
    assert typical_exposure(0.75, 1.25, 10, 0) == pytest.approx(expected)


def test_clamping_resolvers_are_noted_with_their_longer_exposure() -> None:
    step = of(Mode.FROZEN).steps[-1]
    assert "30 s: up to 32.5 s" in step  # detection 2.5 + a clamped 30 s
    assert "60 s: up to 62.5 s" in step


@given(
    noticed=st.floats(0, 50),
    extra=st.floats(0, 50),
    ttl=st.integers(0, 600),
    unstable=st.floats(0, 600),
)
def test_exposure_is_never_below_detection_and_typical_never_above_worst(
    noticed: float, extra: float, ttl: int, unstable: float
) -> None:
    detected = noticed + extra
    typical = typical_exposure(noticed, detected, ttl, unstable)
    worst = worst_exposure(noticed, detected, ttl, unstable)
    assert detected - 1e-9 <= typical <= worst + 1e-9


# --- monotonic: a larger setting never predicts less ---------------------------------------

timings = st.builds(
    ProbeTiming,
    interval=st.floats(0.1, 60),
    timeout=st.floats(0.05, 30),
    fall=st.integers(1, 10),
    rise=st.integers(1, 10),
    fast_interval=st.floats(0.01, 15),
    adaptive_timeout=st.booleans(),
    min_timeout=st.floats(0.01, 5),
    hold_connection=st.booleans(),
)


@given(
    timing=timings,
    setting=st.sampled_from(["interval", "timeout", "fall", "fast_interval", "min_timeout"]),
    more=st.floats(1, 10),
    ttl=st.integers(0, 300),
    rtt=st.floats(0, 1),
)
def test_a_larger_setting_never_predicts_less(
    timing: ProbeTiming, setting: str, more: float, ttl: int, rtt: float
) -> None:
    value = getattr(timing, setting)
    larger = round(value * more) if setting == "fall" else value * more
    setup = replace(SETUP, timing=timing, ttl=ttl)
    bigger = timed(setup, **{setting: larger})
    for mode in Mode:
        before, after = figures(of(mode, setup, rtt)), figures(of(mode, bigger, rtt))
        assert all(b <= a + 1e-9 for b, a in zip(before, after, strict=True)), (mode, before, after)


@given(timing=timings, ttl=st.integers(0, 300), more=st.integers(1, 300))
def test_a_longer_ttl_never_predicts_less(timing: ProbeTiming, ttl: int, more: int) -> None:
    setup = replace(SETUP, timing=timing, ttl=ttl)
    for mode in Mode:
        before, after = of(mode, setup), of(mode, replace(setup, ttl=ttl + more))
        assert before.exposure_typical <= after.exposure_typical + 1e-9
        assert before.exposure_worst <= after.exposure_worst + 1e-9


# --- risks ---------------------------------------------------------------------------------


def kinds(setup: ServiceSetup) -> set[RiskKind]:
    return {risk.kind for risk in explain(setup).risks}


def test_the_default_settings_on_two_places_carry_no_risk() -> None:
    assert kinds(SETUP) == set()


def test_fall_1_is_a_risk() -> None:
    assert RiskKind.FALL_1 in kinds(timed(fall=1))
    assert RiskKind.FALL_1 not in kinds(timed(fall=2))


def test_a_ttl_over_5_times_the_worst_detection_dominates() -> None:
    # worst detection: frozen, 2.5 s; 5 x 2.5 = 12.5
    assert RiskKind.TTL_DOMINATES not in kinds(replace(SETUP, ttl=12))
    (risk,) = explain(replace(SETUP, ttl=13)).risks
    assert risk.kind is RiskKind.TTL_DOMINATES
    assert "ttl 13 s" in risk.message
    assert "2.5 s" in risk.message


@pytest.mark.parametrize(
    ("clusters", "why"),
    [
        ((ClusterPlace("eu-west", "eu", DUBLIN),), "one cluster (eu-west)"),
        (
            (ClusterPlace("a", None, None), ClusterPlace("b", None, None)),
            "no distinct location or region",
        ),
        ((ClusterPlace("a", None, DUBLIN), ClusterPlace("b", None, DUBLIN)), "one location"),
        ((ClusterPlace("a", "eu", None), ClusterPlace("b", "eu", None)), "in region eu"),
    ],
)
def test_endpoints_all_in_one_place_are_a_risk(
    clusters: tuple[ClusterPlace, ...], why: str
) -> None:
    (risk,) = explain(replace(SETUP, clusters=clusters)).risks
    assert risk.kind is RiskKind.ONE_REGION
    assert why in risk.message


@pytest.mark.parametrize(
    "clusters",
    [
        TWO_PLACES,
        (ClusterPlace("a", "eu", None), ClusterPlace("b", "us", None)),
        (
            ClusterPlace("a", None, DUBLIN),
            ClusterPlace("b", None, None),
            ClusterPlace("c", None, VIRGINIA),
        ),
    ],
)
def test_clusters_known_to_be_apart_are_no_risk(clusters: tuple[ClusterPlace, ...]) -> None:
    assert RiskKind.ONE_REGION not in kinds(replace(SETUP, clusters=clusters))


def test_an_observed_latency_close_to_the_timeout_is_a_risk() -> None:
    slow = replace(SETUP, latencies=(("eu-west 192.0.2.1", 0.01), ("us-east 192.0.2.2", 0.5)))
    found = explain(slow)
    (risk,) = found.risks
    assert risk.kind is RiskKind.TIMEOUT_NEAR_LATENCY
    assert "us-east 192.0.2.2 answers probes in 500 ms" in risk.message
    assert found.unchecked == ()
    assert found.rtt == 0.5  # the slowest endpoint's


def test_observed_latencies_well_below_the_timeout_are_no_risk() -> None:
    fast = replace(SETUP, latencies=(("eu-west 192.0.2.1", 0.01),))
    assert explain(fast).risks == ()
    assert explain(fast).unchecked == ()


def test_without_observed_latencies_the_timeout_is_not_checked_and_it_says_so() -> None:
    assert explain(SETUP).unchecked == (
        "timeout against observed latency (pass --admin URL of a running glb)",
    )
    assert explain(SETUP).rtt == 0.001
    nothing_yet = explain(replace(SETUP, latencies=()))
    assert "the running glb reports none for this service" in nothing_yet.unchecked[0]


@pytest.mark.parametrize(
    ("when", "says"),
    [(WhenAllDown.NO_ANSWER, "negative_ttl (30 s)"), (WhenAllDown.SERVFAIL, "RFC 2308")],
)
def test_when_all_down_without_an_answer_is_a_risk(when: WhenAllDown, says: str) -> None:
    (risk,) = explain(replace(SETUP, when_all_down=when)).risks
    assert risk.kind is RiskKind.WHEN_ALL_DOWN
    assert says in risk.message


def test_when_all_down_return_all_is_no_risk() -> None:
    assert kinds(replace(SETUP, when_all_down=WhenAllDown.RETURN_ALL)) == set()


# --- steps ---------------------------------------------------------------------------------


def test_the_steps_spell_out_the_schedule() -> None:
    frozen = "\n".join(of(Mode.FROZEN).steps)
    assert "0-1 s after the freeze" in frozen
    assert "250 ms + 500 ms typical, 750 ms + 750 ms worst" in frozen
    assert "fast_interval 250 ms" in frozen
    assert "clients worst 11.75 s" in frozen
    refused = "\n".join(of(Mode.REFUSED).steps)
    assert "held idle connection" in refused
    assert "2 x 1 ms" in refused


def test_5xx_ejection_depends_on_eject_on_5xx() -> None:
    assert any("do not eject" in s for s in of(Mode.BAD_STATUS).steps)
    ejecting = of(Mode.BAD_STATUS, replace(SETUP, eject_on_5xx=True))
    assert any("eject_after 3 consecutive 5xx answers" in s for s in ejecting.steps)
