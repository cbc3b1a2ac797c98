"""Rise/fall hysteresis, EWMA latency, transitions and probe pacing of `glb.core.health`."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.health import (
    Health,
    Outcome,
    ProbeResult,
    TargetHealth,
    Transition,
    ewma,
    next_delay,
    observe,
    observe_passive,
)
from glb.core.model import Target
from tests.core.factories import fail, ok, spec, target

TARGET = target()
UP = TargetHealth(state=Health.UP, successes=2, latency=0.01, last_change=0.0)
DOWN = TargetHealth(state=Health.DOWN, failures=2, last_change=0.0)


def run(
    results: Sequence[ProbeResult], t: Target = TARGET, start: TargetHealth | None = None
) -> tuple[TargetHealth, list[Transition]]:
    """Fold `results` from `start` (default: never probed); return the end state and transitions."""
    health = start or TargetHealth()
    transitions = []
    for result in results:
        health, transition = observe(t, health, result)
        if transition is not None:
            transitions.append(transition)
    return health, transitions


def from_code(code: str, t0: float = 1.0) -> list[ProbeResult]:
    """'S' is a success, 'F' a refused connection and 'T' a timeout; result i ends at t0 + i."""
    return [_result(c, t0 + i) for i, c in enumerate(code)]


def _result(code: str, at: float) -> ProbeResult:
    if code == "S":
        return ok(at=at)
    if code == "T":
        return fail(Outcome.TIMEOUT, "timed out after 0.5s", at=at)
    return fail(at=at)


def states(code: str, rise: int = 2, fall: int = 2) -> str:
    """The state after each result of `code`, as U/D letters."""
    t = target(probe=spec(rise=rise, fall=fall))
    health, letters = TargetHealth(), []
    for result in from_code(code):
        health, _ = observe(t, health, result)
        letters.append("U" if health.state is Health.UP else "D")
    return "".join(letters)


# ---------------------------------------------------------------------------------------------
# The first result


def test_never_probed_is_unknown_and_unconfirmed() -> None:
    """A target that was never probed is UNKNOWN, unconfirmed, with no latency or history."""
    health = TargetHealth()
    assert health.state is Health.UNKNOWN
    assert health.unconfirmed is True
    assert (health.latency, health.last_result, health.last_change, health.last_failure) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("result", "state", "reason"),
    [
        (ok(at=5.0), Health.UP, "first probe succeeded"),
        (fail(at=5.0), Health.DOWN, "first probe failed: connection refused"),
        (fail(Outcome.TIMEOUT, "", at=5.0), Health.DOWN, "first probe failed: timeout"),
        (fail(Outcome.BAD_STATUS, "", at=5.0), Health.DOWN, "first probe failed: bad status"),
        (
            fail(Outcome.BAD_STATUS, "status 503", at=5.0),
            Health.DOWN,
            "first probe failed: status 503",
        ),
    ],
    ids=["success", "refused", "timeout-no-detail", "bad-status-no-detail", "bad-status-detail"],
)
def test_first_result_decides_at_once(result: ProbeResult, state: Health, reason: str) -> None:
    """The first result moves UNKNOWN straight to UP or DOWN, whatever rise and fall are."""
    t = target(probe=spec(rise=5, fall=5))
    health, transition = observe(t, TargetHealth(), result)
    assert health.state is state
    assert health.last_change == 5.0
    assert transition == Transition(t, Health.UNKNOWN, state, 5.0, reason)


# ---------------------------------------------------------------------------------------------
# Hysteresis


@pytest.mark.parametrize("fall", [1, 2, 3, 5], ids=lambda n: f"fall={n}")
def test_up_goes_down_after_exactly_fall_failures(fall: int) -> None:
    """An UP target stays UP for fall-1 consecutive failures and goes DOWN on the fall-th."""
    t = target(probe=spec(fall=fall, rise=3))
    health, _ = run(from_code("F" * (fall - 1)), t, UP)
    assert health.state is Health.UP
    assert health.failures == fall - 1
    health, transition = observe(t, health, fail(at=99.0))
    noun = "failure" if fall == 1 else "failures"
    assert health.state is Health.DOWN
    assert transition == Transition(
        t, Health.UP, Health.DOWN, 99.0, f"after {fall} {noun}: connection refused"
    )


@pytest.mark.parametrize("rise", [1, 2, 3, 5], ids=lambda n: f"rise={n}")
def test_down_goes_up_after_exactly_rise_successes(rise: int) -> None:
    """A DOWN target stays DOWN for rise-1 consecutive successes and goes UP on the rise-th."""
    t = target(probe=spec(rise=rise, fall=3))
    health, _ = run(from_code("S" * (rise - 1)), t, DOWN)
    assert health.state is Health.DOWN
    assert health.successes == rise - 1
    health, transition = observe(t, health, ok(at=42.0))
    noun = "success" if rise == 1 else "successes"
    assert health.state is Health.UP
    assert transition == Transition(t, Health.DOWN, Health.UP, 42.0, f"after {rise} {noun}")


@pytest.mark.parametrize(
    ("code", "rise", "fall", "expected"),
    [
        ("S", 2, 2, "U"),
        ("F", 2, 2, "D"),
        ("SFF", 2, 2, "UUD"),
        ("SFSF", 2, 2, "UUUU"),
        ("SFSFF", 2, 2, "UUUUD"),
        ("FSS", 2, 2, "DDU"),
        ("FSFS", 2, 2, "DDDD"),
        ("FSFSS", 2, 2, "DDDDU"),
        ("SFFFSSS", 3, 3, "UUUDDDU"),
        ("SFSFSF", 1, 1, "UDUDUD"),
        ("FFFFSFFF", 2, 2, "DDDDDDDD"),
        ("SSSSFSSS", 2, 2, "UUUUUUUU"),
        ("SFFSSFF", 2, 2, "UUDDUUD"),
    ],
    ids=[
        "first-success",
        "first-failure",
        "fall-2",
        "alternating-up",
        "success-resets-failures",
        "rise-2",
        "alternating-down",
        "failure-resets-successes",
        "rise-3-fall-3",
        "rise-1-fall-1-flaps",
        "failures-while-down",
        "successes-while-up",
        "down-and-back-and-down",
    ],
)
def test_state_sequence(code: str, rise: int, fall: int, expected: str) -> None:
    """The state after each result follows the rise/fall hysteresis."""
    assert states(code, rise, fall) == expected


def test_counters_are_consecutive_and_reset_by_the_other_outcome() -> None:
    """Successes and failures count consecutive results; each resets the other to zero."""
    health, _ = run(from_code("SSS"))
    assert (health.successes, health.failures) == (3, 0)
    health, _ = run(from_code("SSSF"))
    assert (health.successes, health.failures) == (0, 1)
    health, _ = run(from_code("SSSFFS"))
    assert (health.successes, health.failures) == (1, 0)


def test_no_transition_while_the_state_holds() -> None:
    """Results that do not change the state return no transition."""
    health, transitions = run(from_code("SSSSFSS"))
    assert health.state is Health.UP
    assert [(t.before, t.after) for t in transitions] == [(Health.UNKNOWN, Health.UP)]


def test_transitions_report_the_whole_history() -> None:
    """A flapping target reports each transition with its time and reason, in order."""
    _, transitions = run(from_code("SFFSSF", t0=10.0))
    assert [(t.before, t.after, t.at, t.reason) for t in transitions] == [
        (Health.UNKNOWN, Health.UP, 10.0, "first probe succeeded"),
        (Health.UP, Health.DOWN, 12.0, "after 2 failures: connection refused"),
        (Health.DOWN, Health.UP, 14.0, "after 2 successes"),
    ]


def test_reason_names_the_last_failure() -> None:
    """The reason for going DOWN names the failure that tipped it, not the first one."""
    results = [ok(), fail(Outcome.TIMEOUT, "timed out after 0.5s"), fail(Outcome.BAD_STATUS, "")]
    _, transitions = run(results)
    assert transitions[-1].reason == "after 2 failures: bad status"


def test_observe_leaves_the_input_health_unchanged() -> None:
    """observe() returns a new health value and leaves the one passed in as it was."""
    before = TargetHealth()
    after, _ = observe(TARGET, before, ok())
    assert before == TargetHealth()
    assert after is not before


# ---------------------------------------------------------------------------------------------
# Latency


def test_first_latency_sample_is_taken_as_is() -> None:
    """The first successful round trip becomes the latency unchanged."""
    health, _ = observe(TARGET, TargetHealth(), ok(rtt=0.123))
    assert health.latency == 0.123


@pytest.mark.parametrize(
    ("alpha", "rtts", "expected"),
    [
        (0.3, [0.1, 0.2], 0.3 * 0.2 + 0.7 * 0.1),
        (0.3, [0.1, 0.2, 0.05], 0.3 * 0.05 + 0.7 * (0.3 * 0.2 + 0.7 * 0.1)),
        (1.0, [0.1, 0.2, 0.05], 0.05),
        (0.5, [0.4, 0.0], 0.2),
    ],
    ids=["alpha-0.3-two", "alpha-0.3-three", "alpha-1-latest", "alpha-0.5-zero-rtt"],
)
def test_latency_is_an_alpha_weighted_average(
    alpha: float, rtts: list[float], expected: float
) -> None:
    """Each later success moves the latency by alpha towards the new round trip."""
    t = target(probe=spec(latency_alpha=alpha))
    health, _ = run([ok(rtt=r) for r in rtts], t)
    assert health.latency == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rtt", [0.0001, 0.5, 30.0], ids=["fast-refusal", "slow", "very-slow"])
def test_failures_never_change_the_latency(rtt: float) -> None:
    """A failed probe leaves the latency as it was, however fast or slow it failed."""
    health, _ = run([ok(rtt=0.1), ok(rtt=0.2), fail(rtt=rtt), fail(rtt=rtt)])
    assert health.latency == pytest.approx(0.3 * 0.2 + 0.7 * 0.1)


def test_failures_alone_leave_latency_unknown() -> None:
    """A target that has only failed has no latency."""
    health, _ = run(from_code("FFF"))
    assert health.latency is None


def test_ewma_function() -> None:
    """ewma() returns the sample when there is no previous value, else the weighted mean."""
    assert ewma(None, 0.5, 0.3) == 0.5
    assert ewma(1.0, 0.0, 0.25) == 0.75


# ---------------------------------------------------------------------------------------------
# Bookkeeping


def test_last_result_is_always_the_newest() -> None:
    """last_result is the result just observed, success or failure."""
    results = from_code("SFS")
    health = TargetHealth()
    for result in results:
        health, _ = observe(TARGET, health, result)
        assert health.last_result is result


def test_last_failure_is_kept_across_successes() -> None:
    """last_failure is the newest failure and survives later successes."""
    first, second = fail(detail="one", at=2.0), fail(detail="two", at=3.0)
    health, _ = run([ok(at=1.0), first, second, ok(at=4.0), ok(at=5.0)])
    assert health.last_failure is second
    assert health.state is Health.UP


def test_last_change_moves_only_on_transitions() -> None:
    """last_change is the time of the newest transition, not of the newest result."""
    health, _ = run(from_code("SSFSFF", t0=10.0))
    assert health.last_change == 15.0  # the second failure in a row, result 5
    health, _ = run(from_code("SSSSS", t0=10.0))
    assert health.last_change == 10.0


# ---------------------------------------------------------------------------------------------
# Confirmation and pacing


@pytest.mark.parametrize(
    ("health", "unconfirmed"),
    [
        (TargetHealth(), True),
        (TargetHealth(state=Health.UP, successes=3), False),
        (TargetHealth(state=Health.UP, failures=1), True),
        (TargetHealth(state=Health.DOWN, failures=4), False),
        (TargetHealth(state=Health.DOWN, successes=1), True),
    ],
    ids=["unknown", "up-confirmed", "up-failing", "down-confirmed", "down-recovering"],
)
def test_unconfirmed(health: TargetHealth, unconfirmed: bool) -> None:
    """A state is unconfirmed while the newest results disagree with it, or before the first."""
    assert health.unconfirmed is unconfirmed


@pytest.mark.parametrize(
    ("code", "delay"),
    [
        ("", 0.25),
        ("S", 1.0),
        ("ST", 0.25),
        ("STT", 1.0),
        ("SFS", 1.0),
        ("F", 1.0),
        ("FS", 0.25),
        ("FSS", 1.0),
        ("FSF", 1.0),
    ],
    ids=[
        "never-probed",
        "up",
        "up-one-failure",
        "down",
        "up-again",
        "first-down",
        "down-one-success",
        "up-after-rise",
        "down-again",
    ],
)
def test_next_delay_is_fast_while_unconfirmed(code: str, delay: float) -> None:
    """Probes come every fast_interval while a change is unconfirmed and every interval else."""
    health, _ = run(from_code(code))
    assert next_delay(health, TARGET.probe) == delay


@pytest.mark.parametrize(
    ("code", "delay"),
    [("SF", 0.0), ("SR", 0.0), ("ST", 0.25), ("SB", 0.25), ("SFF", 1.0), ("F", 1.0), ("", 0.25)],
    ids=["refused", "reset", "timeout", "bad-status", "down", "first-down", "never-probed"],
)
def test_an_up_target_refused_or_reset_is_confirmed_at_once(code: str, delay: float) -> None:
    """An UP target whose newest probe was refused or reset is probed again at once (no
    fast_interval); timeouts and bad answers keep the fast pace; DOWN and UNKNOWN targets
    never get a delay of zero (no tight loop)."""
    outcomes = {"R": Outcome.RESET, "B": Outcome.BAD_STATUS}
    results = [
        fail(outcomes[c], at=1.0 + i) if c in outcomes else _result(c, 1.0 + i)
        for i, c in enumerate(code)
    ]
    health, _ = run(results)
    assert next_delay(health, TARGET.probe) == delay


def test_probe_result_reason() -> None:
    """A result's reason is its detail, or its outcome in words when there is no detail."""
    assert fail(Outcome.TLS_ERROR, "").reason() == "tls error"
    assert fail(Outcome.TLS_ERROR, "certificate expired").reason() == "certificate expired"
    assert ok().ok is True
    assert fail().ok is False


# ---------------------------------------------------------------------------------------------
# Properties

outcomes = st.lists(st.booleans(), min_size=1, max_size=40)
thresholds = st.integers(min_value=1, max_value=5)
rtts = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(oks=outcomes, rise=thresholds, fall=thresholds)
def test_property_state_changes_only_after_the_right_run_length(
    oks: list[bool], rise: int, fall: int
) -> None:
    """The state changes on the first result, after exactly `fall` failures in a row while UP,
    after exactly `rise` successes in a row while DOWN, and never otherwise."""
    t = target(probe=spec(rise=rise, fall=fall))
    health, run_length, previous = TargetHealth(), 0, None
    for i, good in enumerate(oks):
        run_length = run_length + 1 if good == previous else 1
        previous = good
        before = health.state
        result = ok(at=float(i)) if good else fail(at=float(i))
        health, transition = observe(t, health, result)
        if before is Health.UNKNOWN:
            expected = Health.UP if good else Health.DOWN
        elif before is Health.UP and not good and run_length == fall:
            expected = Health.DOWN
        elif before is Health.DOWN and good and run_length == rise:
            expected = Health.UP
        else:
            expected = before
        assert health.state is expected
        assert (transition is None) == (expected is before)
        if transition is not None:
            assert (transition.before, transition.after, transition.at) == (before, expected, i)
            assert health.last_change == i
        assert (health.successes, health.failures) == ((run_length, 0) if good else (0, run_length))


@settings(max_examples=300, deadline=None)
@given(
    results=st.lists(st.tuples(st.booleans(), rtts), min_size=1, max_size=40),
    alpha=st.floats(min_value=0.01, max_value=1.0),
)
def test_property_latency_stays_within_the_successful_rtts(
    results: list[tuple[bool, float]], alpha: float
) -> None:
    """The latency is None until a success and then always within [min, max] of successful rtts."""
    t = target(probe=spec(latency_alpha=alpha))
    health, seen = TargetHealth(), []
    for good, rtt in results:
        health, _ = observe(t, health, ok(rtt=rtt) if good else fail(rtt=rtt))
        if good:
            seen.append(rtt)
        if not seen:
            assert health.latency is None
            continue
        assert health.latency is not None
        slack = 1e-9 * max(seen)  # float rounding of alpha*x + (1-alpha)*x
        assert min(seen) - slack <= health.latency <= max(seen) + slack


@settings(max_examples=200, deadline=None)
@given(oks=outcomes, rise=thresholds, fall=thresholds)
def test_property_unconfirmed_and_delay_agree_with_the_counters(
    oks: list[bool], rise: int, fall: int
) -> None:
    """After any history, unconfirmed means results disagree with the state, and sets the delay."""
    probe = spec(rise=rise, fall=fall, interval=2.0, fast_interval=0.5)
    timeout = fail(Outcome.TIMEOUT, "timed out")  # a refusal is re-probed at once: see above
    health, _ = run([ok() if good else timeout for good in oks], target(probe=probe))
    disagrees = health.failures > 0 if health.state is Health.UP else health.successes > 0
    assert health.state is not Health.UNKNOWN
    assert health.unconfirmed is disagrees
    assert next_delay(health, probe) == (0.5 if disagrees else 2.0)


# ---------------------------------------------------------------------------------------------
# The onset of the failures in progress (the failover SLI's starting point)


def test_the_onset_is_the_first_failed_probe_of_the_run_until_a_success() -> None:
    first = ProbeResult(Outcome.TIMEOUT, 0.25, 10.25, "timed out")
    second = ProbeResult(Outcome.TIMEOUT, 0.5, 10.75, "timed out")
    health, _ = run([first], start=UP)
    assert health.onset == (10.0, 10.25)  # the probe's start and end
    health, transitions = run([second], start=health)
    assert health.onset == (10.0, 10.25)
    assert transitions
    health, _ = run([ok(at=12.0)], start=health)
    assert health.onset is None
    assert run([ok(at=1.0)], start=UP)[0].onset is None


def test_a_failed_request_starts_the_onset_and_probes_keep_it() -> None:
    health, _ = observe_passive(
        TARGET, UP, failed=True, detail="connection reset", eject_after=3, now=5.0
    )
    assert health.onset == (5.0, 5.0)
    health, _ = run([fail(at=5.5)], start=health)
    assert health.onset == (5.0, 5.0)  # the same run of failures
    health, _ = run([ok(at=6.0)], start=health)
    assert health.onset == (5.0, 5.0)  # the requests still fail: a probe success is not the end
    health, _ = observe_passive(TARGET, health, failed=False, detail="", eject_after=3, now=6.5)
    health, _ = run([ok(at=7.0)], start=health)
    assert health.onset is None
