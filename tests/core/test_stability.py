"""glb.core.stability: when a target is unstable, and the TTL its services answer with."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.health import CHANGES_KEPT, Health, TargetHealth, observe, observe_passive
from glb.core.policies import Query, decide
from glb.core.stability import (
    FLAP_WINDOW,
    SETTLE,
    StabilityRule,
    answer_ttl,
    explain_ttl,
    unstable_after,
)
from tests.core.factories import fail, make_service, make_snapshot, ok, target

RULE = StabilityRule()
UP = TargetHealth(state=Health.UP, successes=5)
DOWN = TargetHealth(state=Health.DOWN, failures=5)


def run(results: list[bool], start: float = 0.0, step: float = 1.0) -> TargetHealth:
    """The health after probe results (True: success) taken `step` seconds apart."""
    health, probed = TargetHealth(), target()
    for i, success in enumerate(results):
        at = start + i * step
        health, _ = observe(probed, health, ok(at=at) if success else fail(at=at))
    return health


# ---------------------------------------------------------------------------------------------
# State changes are remembered


def test_the_first_verdict_is_no_change() -> None:
    """UNKNOWN -> UP (or DOWN) on the first result: nothing answered before it goes stale."""
    assert run([True]).changes == ()
    assert run([False]).changes == ()


def test_each_change_is_remembered_up_to_the_last_few() -> None:
    """Every later state change is remembered at its result's time, the last CHANGES_KEPT."""
    # rise 2, fall 2: down at 2, up at 4, down at 6, up at 8, down at 10
    health = run([True, False, False, True, True, False, False, True, True, False, False])
    assert health.changes == (4.0, 6.0, 8.0, 10.0)[-CHANGES_KEPT:]
    assert health.last_change == 10.0


def test_an_ejection_is_a_change() -> None:
    health, _ = observe_passive(
        target(), UP, failed=True, detail="refused", eject_after=1, now=42.0
    )
    assert (health.state, health.changes) == (Health.DOWN, (42.0,))


# ---------------------------------------------------------------------------------------------
# The rule


def test_a_target_that_never_changed_and_agrees_with_its_state_is_stable() -> None:
    assert RULE.until(UP, 1000.0) is None
    assert RULE.until(DOWN, 1000.0) is None
    assert RULE.why(UP, 1000.0) is None


def test_an_unconfirmed_target_is_unstable_until_a_new_result() -> None:
    """Mid fall (an UP target's first failure), mid rise, or no verdict yet."""
    for health in (replace(UP, failures=1), replace(DOWN, successes=1), TargetHealth()):
        assert RULE.until(health, 0.0) == math.inf
    assert RULE.why(replace(UP, failures=1), 0.0) == "unconfirmed: up with 1 failed probe(s)"
    assert RULE.why(TargetHealth(), 0.0) == "unconfirmed: no verdict yet"


def test_a_changed_target_settles_after_settle_seconds() -> None:
    health = replace(UP, changes=(100.0,))
    assert RULE.until(health, 100.0) == 100.0 + SETTLE
    assert RULE.until(health, 100.0 + SETTLE - 0.01) == 100.0 + SETTLE
    assert RULE.until(health, 100.0 + SETTLE) is None
    assert RULE.why(health, 110.0) == f"settling: changed 10s ago, for {SETTLE:g}s"


def test_three_changes_within_the_window_flap_until_the_oldest_leaves_it() -> None:
    health = replace(UP, changes=(0.0, 50.0, 100.0))
    assert RULE.until(health, 200.0) == FLAP_WINDOW
    assert RULE.why(health, 200.0) == f"flapping: 3 changes within {FLAP_WINDOW:g}s"
    assert RULE.until(health, FLAP_WINDOW) is None
    spread = replace(UP, changes=(0.0, 200.0, 400.0))  # never three within the window
    assert RULE.until(spread, 400.0 + SETTLE) is None


def test_a_shorter_rule_settles_sooner() -> None:
    short = StabilityRule(settle=2.0, flap_window=10.0, flap_changes=3)
    assert short.until(replace(UP, changes=(5.0,)), 6.0) == 7.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.booleans(), max_size=30),
    st.floats(min_value=0, max_value=1000, allow_nan=False),
)
def test_property_instability_ends_when_until_says(results: list[bool], later: float) -> None:
    """Without a new result, a target is unstable exactly until `until` (never ends before,
    and stays ended after); an unconfirmed one never ends by time alone."""
    health = run(results, step=3.0)
    now = 3.0 * len(results)
    until = RULE.until(health, now)
    if until is None:
        assert RULE.until(health, now + later) is None
    elif math.isinf(until):
        assert health.unconfirmed
        assert RULE.until(health, now + later) == math.inf
    else:
        assert (RULE.until(health, now + later) is None) is (now + later >= until)
    assert (RULE.why(health, now) is None) is (until is None)


# ---------------------------------------------------------------------------------------------
# The unstable set


def test_the_set_looks_at_the_updated_and_the_unstable_before() -> None:
    a, b, c = target("192.0.2.1"), target("192.0.2.2"), target("192.0.2.3")
    health = {
        a: replace(UP, changes=(0.0,)),  # settles at 30
        b: replace(UP, failures=1),  # unconfirmed
        c: replace(UP, changes=(10.0,)),  # settles at 40, but neither updated nor unstable before
    }
    found = unstable_after(frozenset({a}), health, {b}, 20.0, RULE)
    assert found.targets == {a, b}
    assert found.moved == {b}
    assert found.next_change == SETTLE
    everything = unstable_after(frozenset(), health, None, 20.0, RULE)
    assert everything.targets == {a, b, c}
    settled = unstable_after(everything.targets, health, set(), 35.0, RULE)
    assert settled.targets == {b, c}
    assert settled.moved == {a}
    assert settled.next_change == 40.0
    assert unstable_after(frozenset({b}), {b: UP}, {b}, 0.0, RULE).next_change is None


# ---------------------------------------------------------------------------------------------
# The TTL rule


def test_a_stable_service_answers_with_its_ttl() -> None:
    service = make_service(["192.0.2.1", "192.0.2.2"])
    snapshot = make_snapshot(service)
    assert answer_ttl(service, snapshot) == 10
    assert decide(service, snapshot, Query(4), random.Random(0)).ttl == 10
    assert explain_ttl(service, snapshot, 0.0).reason == "every endpoint stable"


def test_any_unstable_endpoint_shortens_the_ttl_of_every_answer() -> None:
    """Even an endpoint that is not answered (a backup tier, another family) counts: the next
    change of the answer may be its."""
    service = replace(make_service(["192.0.2.1", "2001:db8::2"]), ttl_unstable=2)
    backup = service.endpoints[1]
    snapshot = replace(make_snapshot(service), unstable=frozenset({backup.target}))
    assert answer_ttl(service, snapshot) == 2
    for family in (4, 6):
        assert decide(service, snapshot, Query(family), random.Random(0)).ttl == 2
    health = make_snapshot(service, down=["2001:db8::2"])
    changed = replace(
        health,
        targets={**health.targets, backup.target: replace(DOWN, changes=(95.0,))},
        unstable=frozenset({backup.target}),
    )
    explained = explain_ttl(service, changed, 100.0)
    assert explained.ttl == 2
    assert explained.reason == f"c1 2001:db8::2 settling: changed 5s ago, for {SETTLE:g}s"


def test_the_unstable_ttl_is_never_above_the_ttl() -> None:
    service = replace(make_service(["192.0.2.1"]), ttl=0, ttl_unstable=1)
    snapshot = replace(make_snapshot(service), unstable=frozenset({service.endpoints[0].target}))
    assert answer_ttl(service, snapshot) == 0


def test_a_rule_cannot_count_more_changes_than_are_remembered() -> None:
    with pytest.raises(ValueError, match="flap_changes must be 1 to 4"):
        StabilityRule(flap_changes=CHANGES_KEPT + 1)
