"""Every steering policy through `decide()`: ranking, eligibility, families, drains, all-down."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.health import Health, TargetHealth
from glb.core.model import Endpoint, LatencyBand, PolicyName, Service, Target, WhenAllDown
from glb.core.policies import POLICIES, STABLE, Decision, Query, decide
from glb.core.snapshot import HealthSnapshot
from tests.core.factories import SERVICE, addresses, answered, make_service, make_snapshot

A, B, C, D, E = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"
A6, B6 = "2001:db8::1", "2001:db8::2"


def steer(
    service: Service, snapshot: HealthSnapshot, query: Query | None = None, seed: int = 0
) -> Decision:
    return decide(service, snapshot, query or Query(), random.Random(seed))


def test_every_policy_name_has_a_policy() -> None:
    """The registry maps every PolicyName to a policy function."""
    assert set(POLICIES) == set(PolicyName)


# ---------------------------------------------------------------------------------------------
# failover


def test_failover_answers_the_first_tier_only_in_config_order() -> None:
    """Failover answers only the lowest priority value, in config order, ranking the rest after."""
    service = make_service([A, B, C, D], priorities=[2, 1, 3, 1], max_answers=4)
    decision = steer(service, make_snapshot(service))
    assert answered(decision) == [B, D]
    assert addresses(decision.ranked) == [B, D, A, C]
    assert (decision.failed_open, decision.servfail) == (False, False)


@pytest.mark.parametrize(
    ("down", "expected"),
    [
        ([], [A, B]),
        ([A], [B]),
        ([A, B], [C]),
        ([A, B, C], [D]),
        ([B, C], [A]),
    ],
    ids=["all-up", "one-of-tier-1-down", "tier-1-down", "tiers-1-2-down", "tier-2-down"],
)
def test_failover_falls_back_tier_by_tier(down: list[str], expected: list[str]) -> None:
    """When every endpoint of a tier is down, failover answers the next tier that has one up."""
    service = make_service([A, B, C, D], priorities=[1, 1, 2, 3], max_answers=4)
    assert answered(steer(service, make_snapshot(service, down=down))) == expected


def test_failover_treats_never_probed_as_not_eligible() -> None:
    """An endpoint that was never probed is skipped like a down one."""
    service = make_service([A, B], priorities=[1, 2])
    assert answered(steer(service, make_snapshot(service, unknown=[A]))) == [B]


# ---------------------------------------------------------------------------------------------
# latency


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        ({A: 0.050, B: 0.010, C: 0.030}, [B, C, A]),
        ({A: 0.0102, B: 0.0100, C: 0.030}, [A, B, C]),
        ({A: 0.0100, B: 0.0102, C: 0.030}, [A, B, C]),
        ({A: 0.115, B: 0.100, C: 0.300}, [A, B, C]),
        ({A: 0.125, B: 0.100, C: 0.300}, [B, A, C]),
        ({A: 0.200, B: 0.100, C: 0.150}, [B, C, A]),
        ({A: None, B: 0.200, C: 0.100}, [C, B, A]),
        ({A: None, B: None, C: None}, [A, B, C]),
        ({A: None, B: 0.100, C: None}, [B, A, C]),
    ],
    ids=[
        "fastest-first",
        "within-absolute-band-keeps-config-order",
        "within-band-already-in-order",
        "within-relative-band-keeps-config-order",
        "beyond-relative-band-sorts",
        "far-ones-sorted-by-latency",
        "unknown-last",
        "all-unknown-config-order",
        "unknowns-keep-config-order",
    ],
)
def test_latency_ranking(latency: dict[str, float | None], expected: list[str]) -> None:
    """Latency ranks fastest first, keeps config order within the band and puts unknown last."""
    service = make_service([A, B, C], policy=PolicyName.LATENCY, max_answers=3)
    decision = steer(service, make_snapshot(service, latency=latency))
    assert answered(decision) == expected
    assert addresses(decision.ranked) == expected


def test_latency_band_stops_a_tiny_change_from_swapping_endpoints() -> None:
    """A first endpoint that gets 1 ms slower than a second one stays first."""
    service = make_service([A, B], policy=PolicyName.LATENCY)
    before = steer(service, make_snapshot(service, latency={A: 0.020, B: 0.021}))
    after = steer(service, make_snapshot(service, latency={A: 0.022, B: 0.021}))
    assert answered(before) == answered(after) == [A]


def test_latency_band_of_zero_sorts_strictly() -> None:
    """With a zero band the strictly fastest endpoint comes first."""
    band = LatencyBand(relative=0.0, absolute=0.0)
    service = make_service([A, B], policy=PolicyName.LATENCY, band=band)
    assert answered(steer(service, make_snapshot(service, latency={A: 0.0101, B: 0.0100}))) == [B]


def test_latency_skips_down_endpoints_even_if_fastest() -> None:
    """A down endpoint with the best remembered latency is not answered."""
    service = make_service([A, B], policy=PolicyName.LATENCY)
    snapshot = make_snapshot(service, down=[A], latency={A: 0.001, B: 0.5})
    assert answered(steer(service, snapshot)) == [B]


# ---------------------------------------------------------------------------------------------
# weighted


def draw_firsts(service: Service, snapshot: HealthSnapshot, draws: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(decide(service, snapshot, Query(), rng).answer[0].address for _ in range(draws))


@pytest.mark.parametrize(
    "weights",
    [[1, 2, 7], [100, 100, 100], [1, 1, 98], [50, 30, 20]],
    ids=["1-2-7", "equal", "skewed", "50-30-20"],
)
def test_weighted_distribution_matches_weights(weights: list[int]) -> None:
    """Over many seeded draws each endpoint is answered first in proportion to its weight."""
    service = make_service([A, B, C], policy=PolicyName.WEIGHTED, weights=weights)
    draws = 20_000
    counts = draw_firsts(service, make_snapshot(service), draws, seed=1234)
    for address, weight in zip([A, B, C], weights, strict=True):
        assert counts[address] / draws == pytest.approx(weight / sum(weights), abs=0.015)


def test_weighted_distribution_ignores_down_endpoints() -> None:
    """Weights are shared among eligible endpoints only."""
    service = make_service([A, B, C], policy=PolicyName.WEIGHTED, weights=[1, 3, 6])
    counts = draw_firsts(service, make_snapshot(service, down=[C]), 10_000, seed=7)
    assert set(counts) == {A, B}
    assert counts[A] / 10_000 == pytest.approx(0.25, abs=0.02)


def test_weighted_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same answers."""
    service = make_service([A, B, C, D], policy=PolicyName.WEIGHTED, max_answers=2)
    snapshot = make_snapshot(service)
    first = [steer(service, snapshot, seed=s).answer for s in range(20)]
    again = [steer(service, snapshot, seed=s).answer for s in range(20)]
    assert first == again
    assert len(set(first)) > 1


def test_weighted_answers_have_no_duplicates() -> None:
    """A weighted answer of several endpoints never repeats one."""
    service = make_service([A, B, C, D], policy=PolicyName.WEIGHTED, max_answers=4)
    rng = random.Random(3)
    for _ in range(500):
        answer = decide(service, make_snapshot(service), Query(), rng).answer
        assert len(answer) == 4
        assert len(set(answer)) == 4


def test_weight_zero_is_answered_when_nothing_else_is_eligible() -> None:
    """Weight-0 endpoints are answered, in config order, when they are all that is up."""
    service = make_service([A, B, C], policy=PolicyName.WEIGHTED, weights=[5, 0, 0], max_answers=2)
    assert answered(steer(service, make_snapshot(service, down=[A]))) == [B, C]


def test_weight_zero_never_first_while_a_weighted_one_is_up() -> None:
    """With one answer, a weight-0 endpoint is never chosen while a weighted one is up."""
    service = make_service([A, B], policy=PolicyName.WEIGHTED, weights=[0, 1])
    counts = draw_firsts(service, make_snapshot(service), 1_000, seed=5)
    assert counts == Counter({B: 1_000})


def test_weight_zero_not_answered_beside_a_weighted_one() -> None:
    """A weight-0 endpoint gets no traffic while an endpoint with weight is eligible."""
    service = make_service([A, B], policy=PolicyName.WEIGHTED, weights=[0, 1], max_answers=2)
    decision = steer(service, make_snapshot(service))
    assert answered(decision) == [B]
    assert addresses(decision.ranked) == [B, A]


# ---------------------------------------------------------------------------------------------
# round_robin


def test_round_robin_rotates_with_the_query_counter() -> None:
    """Each increment of Query.rotation moves the first answer one endpoint along, in a cycle."""
    service = make_service([A, B, C], policy=PolicyName.ROUND_ROBIN, max_answers=2)
    snapshot = make_snapshot(service)
    answers = [answered(steer(service, snapshot, Query(rotation=r))) for r in range(5)]
    assert answers == [[A, B], [B, C], [C, A], [A, B], [B, C]]


def test_round_robin_covers_each_endpoint_equally() -> None:
    """Over a whole number of cycles every eligible endpoint is first equally often."""
    service = make_service([A, B, C, D, E], policy=PolicyName.ROUND_ROBIN)
    snapshot = make_snapshot(service, down=[C])
    counts = Counter(answered(steer(service, snapshot, Query(rotation=r)))[0] for r in range(400))
    assert counts == Counter({A: 100, B: 100, D: 100, E: 100})


def test_round_robin_ranked_is_the_full_rotation() -> None:
    """The ranked list is every eligible endpoint in config order, rotated."""
    service = make_service([A, B, C], policy=PolicyName.ROUND_ROBIN)
    decision = steer(service, make_snapshot(service), Query(rotation=7))
    assert addresses(decision.ranked) == [B, C, A]


# ---------------------------------------------------------------------------------------------
# Rules around every policy

ALL_POLICIES = pytest.mark.parametrize("policy", list(PolicyName), ids=str)


@ALL_POLICIES
@pytest.mark.parametrize(
    ("family", "expected"),
    [(4, {A, B}), (6, {A6, B6}), (None, {A, B, A6, B6})],
    ids=["A", "AAAA", "any"],
)
def test_family_filter(policy: PolicyName, family: int | None, expected: set[str]) -> None:
    """A query for one address family is answered from that family only; None takes both."""
    service = make_service([A, A6, B, B6], policy=policy, max_answers=4)
    decision = steer(service, make_snapshot(service), Query(family=family))
    assert set(addresses(decision.ranked)) == expected
    assert set(answered(decision)) <= expected
    assert answered(decision)


@ALL_POLICIES
def test_family_filter_does_not_fall_back_to_the_other_family(policy: PolicyName) -> None:
    """With every IPv6 endpoint down an AAAA query fails open over IPv6, never answering IPv4."""
    service = make_service([A, A6], policy=policy)
    decision = steer(service, make_snapshot(service, down=[A6]), Query(family=6))
    assert answered(decision) == [A6]
    assert decision.failed_open is True


@ALL_POLICIES
@pytest.mark.parametrize("max_answers", [1, 2, 5, 8])
def test_max_answers_trims_the_answer(policy: PolicyName, max_answers: int) -> None:
    """The answer holds at most max_answers endpoints while ranked keeps all of them."""
    service = make_service([A, B, C, D, E], policy=policy, max_answers=max_answers)
    decision = steer(service, make_snapshot(service))
    assert len(decision.answer) == min(max_answers, 5)
    assert len(decision.ranked) == 5


@ALL_POLICIES
@pytest.mark.parametrize(
    ("clusters", "pairs"),
    [
        (["c0", "c2"], []),
        ([], [(SERVICE, "c0"), (SERVICE, "c2")]),
        (["c0"], [(SERVICE, "c2")]),
    ],
    ids=["clusters", "service-clusters", "both"],
)
def test_drained_endpoints_are_never_answered(
    policy: PolicyName, clusters: list[str], pairs: list[tuple[str, str]]
) -> None:
    """Drained endpoints are left out of the answer and the ranking, even when failing open."""
    service = make_service([A, B, C, D], policy=policy, max_answers=4)
    up = steer(service, make_snapshot(service, drained_clusters=clusters, drained_endpoints=pairs))
    assert set(addresses(up.ranked)) == {B, D}
    assert set(answered(up)) <= {B, D}
    snapshot = make_snapshot(
        service, down=[A, B, C, D], drained_clusters=clusters, drained_endpoints=pairs
    )
    down = steer(service, snapshot)
    assert set(addresses(down.ranked)) == {B, D}
    assert down.failed_open is True


def test_draining_another_service_leaves_this_one_alone() -> None:
    """A (service, cluster) drain affects only that service."""
    service = make_service([A, B])
    snapshot = make_snapshot(service, drained_endpoints=[("other.example.test", "c0")])
    assert answered(steer(service, snapshot)) == [A]


@ALL_POLICIES
def test_return_all_fails_open_over_undrained_endpoints(policy: PolicyName) -> None:
    """With nothing eligible, return_all answers every non-drained endpoint, flagged failed_open."""
    service = make_service([A, B, C], policy=policy, max_answers=3)
    snapshot = make_snapshot(service, down=[A], unknown=[C], drained_clusters=["c1"])
    decision = steer(service, snapshot)
    assert set(answered(decision)) == {A, C}
    assert decision.failed_open is True
    assert decision.servfail is False


def test_return_all_failover_fails_open_over_the_first_tier() -> None:
    """Failing open with failover answers the best tier of the non-drained endpoints."""
    service = make_service([A, B, C], priorities=[1, 2, 2], max_answers=3)
    snapshot = make_snapshot(service, down=[A, B, C], drained_clusters=["c0"])
    assert answered(steer(service, snapshot)) == [B, C]


@ALL_POLICIES
def test_servfail_when_all_down(policy: PolicyName) -> None:
    """With nothing eligible, servfail gives an empty decision flagged servfail."""
    service = make_service([A, B], policy=policy, when_all_down=WhenAllDown.SERVFAIL)
    decision = steer(service, make_snapshot(service, down=[A, B]))
    assert decision == Decision((), (), 10, failed_open=False, servfail=True)


@ALL_POLICIES
def test_no_answer_when_all_down(policy: PolicyName) -> None:
    """With nothing eligible, no_answer gives an empty decision that is neither failed open nor
    servfail."""
    service = make_service([A, B], policy=policy, when_all_down=WhenAllDown.NO_ANSWER)
    decision = steer(service, make_snapshot(service, down=[A], unknown=[B]))
    assert decision == Decision((), (), 10, failed_open=False, servfail=False)


@ALL_POLICIES
def test_all_drained_is_empty_even_with_return_all(policy: PolicyName) -> None:
    """When every endpoint is drained, return_all has nothing to fail open over."""
    service = make_service([A, B], policy=policy)
    decision = steer(service, make_snapshot(service, drained_clusters=["c0", "c1"]))
    assert decision == Decision((), (), 10, failed_open=False, servfail=False)


def test_servfail_service_without_endpoints_of_the_family_is_empty() -> None:
    """An AAAA query for an IPv4-only service is an empty answer (NODATA), never SERVFAIL."""
    service = make_service([A, B], when_all_down=WhenAllDown.SERVFAIL)
    decision = steer(service, make_snapshot(service), Query(family=6))
    assert decision == Decision((), (), 10, failed_open=False, servfail=False)


@pytest.mark.parametrize("when_all_down", [WhenAllDown.RETURN_ALL, WhenAllDown.NO_ANSWER], ids=str)
def test_service_without_endpoints_of_the_family_is_empty(when_all_down: WhenAllDown) -> None:
    """An AAAA query for an IPv4-only service gives an empty decision under return_all and
    no_answer."""
    service = make_service([A, B], when_all_down=when_all_down)
    decision = steer(service, make_snapshot(service), Query(family=6))
    assert decision == Decision((), (), 10, failed_open=False, servfail=False)


# ---------------------------------------------------------------------------------------------
# Invariants over every policy


@st.composite
def situations(draw: st.DrawFn) -> tuple[Service, HealthSnapshot, Query, int]:
    """A random service (2 families, weights, tiers), health, drains and query."""
    count = draw(st.integers(min_value=1, max_value=7))
    families = draw(st.lists(st.sampled_from([4, 6]), min_size=count, max_size=count))
    addrs = [f"192.0.2.{i + 1}" if f == 4 else f"2001:db8::{i + 1}" for i, f in enumerate(families)]
    service = make_service(
        addrs,
        policy=draw(st.sampled_from(list(PolicyName))),
        max_answers=draw(st.integers(min_value=1, max_value=4)),
        when_all_down=draw(st.sampled_from(list(WhenAllDown))),
        weights=draw(st.lists(st.integers(0, 5), min_size=count, max_size=count)),
        priorities=draw(st.lists(st.integers(0, 3), min_size=count, max_size=count)),
    )
    healths = st.sampled_from([Health.UP, Health.DOWN, Health.UNKNOWN])
    latencies = st.none() | st.floats(min_value=0.0, max_value=1.0)
    targets: dict[Target, TargetHealth] = {}
    for e in service.endpoints:
        targets[e.target] = TargetHealth(state=draw(healths), latency=draw(latencies))
    clusters = [e.cluster for e in service.endpoints]
    drained = draw(st.sets(st.sampled_from(clusters)))
    pairs = {(SERVICE, c) for c in draw(st.sets(st.sampled_from(clusters)))}
    snapshot = HealthSnapshot.of(
        targets, drained_clusters=frozenset(drained), drained_endpoints=frozenset(pairs)
    )
    query = Query(draw(st.sampled_from([None, 4, 6])), draw(st.integers(0, 1000)))
    return service, snapshot, query, draw(st.integers(0, 2**32))


def of_family(service: Service, query: Query) -> list[Endpoint]:
    return [e for e in service.endpoints if query.family in (None, e.family)]


@settings(max_examples=500, deadline=None)
@given(situations())
def test_property_decision_invariants(
    situation: tuple[Service, HealthSnapshot, Query, int],
) -> None:
    """Every decision is a duplicate-free prefix of the ranking, within max_answers, never drained,
    of the asked family, and uses only eligible endpoints whenever one exists."""
    service, snapshot, query, seed = situation
    decision = decide(service, snapshot, query, random.Random(seed))
    family = of_family(service, query)
    eligible = [e for e in family if snapshot.is_eligible(e)]
    assert len(decision.answer) <= service.max_answers
    assert len(set(decision.answer)) == len(decision.answer)
    assert len(set(decision.ranked)) == len(decision.ranked)
    assert decision.answer == decision.ranked[: len(decision.answer)]
    assert not any(snapshot.is_drained(e) for e in decision.ranked)
    assert all(e in family for e in decision.ranked)
    if eligible:
        assert Counter(decision.ranked) == Counter(eligible)
        assert decision.answer
        assert (decision.failed_open, decision.servfail) == (False, False)
        return
    undrained = [e for e in family if not snapshot.is_drained(e)]
    if service.when_all_down is WhenAllDown.RETURN_ALL:
        assert Counter(decision.ranked) == Counter(undrained)
        assert decision.failed_open is bool(undrained)
        assert bool(decision.answer) is bool(undrained)
    elif not family:  # no address of this family at all: NODATA, whatever when_all_down says
        assert decision == Decision((), (), service.ttl)
    else:
        assert decision == Decision(
            (), (), service.ttl, servfail=service.when_all_down is WhenAllDown.SERVFAIL
        )


@settings(max_examples=200, deadline=None)
@given(situations())
def test_property_failover_answers_one_tier(
    situation: tuple[Service, HealthSnapshot, Query, int],
) -> None:
    """Failover answers come from the single best priority tier among the ranked endpoints."""
    service, snapshot, query, seed = situation
    service = make_service(
        [e.address for e in service.endpoints],
        policy=PolicyName.FAILOVER,
        max_answers=service.max_answers,
        priorities=[e.priority for e in service.endpoints],
    )
    decision = decide(service, snapshot, query, random.Random(seed))
    if decision.answer:
        best = min(e.priority for e in decision.ranked)
        assert {e.priority for e in decision.answer} == {best}
        tier = [e for e in decision.ranked if e.priority == best]
        assert list(decision.answer) == tier[: service.max_answers]


@given(situations(), st.integers(0, 1000), st.integers(0, 1000))
def test_property_stable_policies_ignore_rotation_and_randomness(
    situation: tuple[Service, HealthSnapshot, Query, int], rotation: int, seed: int
) -> None:
    """A STABLE policy decides the same for any rotation and random generator (the proxy reuses
    its decisions until the snapshot changes); the others are left out of STABLE for a reason:
    each varies with one of the two."""
    service, snapshot, query, first_seed = situation
    for policy in STABLE:
        stable = dataclasses.replace(service, policy=policy)
        one = decide(stable, snapshot, query, random.Random(first_seed))
        other = decide(stable, snapshot, Query(query.family, rotation), random.Random(seed))
        assert one == other


def test_unstable_policies_vary_with_the_rotation_or_the_generator() -> None:
    """Round robin varies with the rotation and weighted with the generator: neither is STABLE."""
    assert PolicyName.ROUND_ROBIN not in STABLE
    assert PolicyName.WEIGHTED not in STABLE
    robin = make_service([A, B, C], policy=PolicyName.ROUND_ROBIN)
    snapshot = make_snapshot(robin)
    assert steer(robin, snapshot, Query(rotation=0)) != steer(robin, snapshot, Query(rotation=1))
    weighted = make_service([A, B, C], policy=PolicyName.WEIGHTED, weights=[1, 1, 1])
    snapshot = make_snapshot(weighted)
    assert len({steer(weighted, snapshot, seed=seed).ranked for seed in range(20)}) > 1
