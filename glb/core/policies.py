"""Steering policies: from a health snapshot, a service and a query to an ordered list of endpoints.

Each policy ranks candidate endpoints best first and says how many from the front are "preferred"
(failover prefers only its top priority tier). `decide()` applies the common rules around the
policies: the address family filter, eligibility (up and not drained), `when_all_down` and
`max_answers`; and it sets the answer's TTL (`glb.core.stability.answer_ttl`). Randomness comes
from the `rng` passed in; time is not read at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from glb.core.geo import by_distance
from glb.core.model import Endpoint, Location, PolicyName, Service, WhenAllDown
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import answer_ttl


@dataclass(frozen=True, slots=True)
class Query:
    """What the caller knows about the question being answered."""

    family: int | None = None  # 4 (A), 6 (AAAA) or None (any, for the proxy)
    rotation: int = 0  # a counter the caller advances per query, for round robin
    client: Location | None = None  # where the client is, for geo (None: unknown)


@dataclass(frozen=True, slots=True)
class Ranking:
    ordered: tuple[Endpoint, ...]  # best first
    preferred: int  # how many from the front an answer may use


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of steering one query."""

    answer: tuple[Endpoint, ...]  # what to hand out, best first, at most max_answers
    ranked: tuple[Endpoint, ...]  # every candidate best first (fallback order for retries)
    ttl: int  # of the answer's records (glb.core.stability.answer_ttl)
    failed_open: bool = False  # no endpoint was eligible and `return_all` applied
    servfail: bool = False  # no endpoint was eligible and the service asks for SERVFAIL


@dataclass(frozen=True, slots=True)
class Steering:
    """What a policy ranks the candidates by, besides themselves: one per `decide` call."""

    service: Service
    snapshot: HealthSnapshot
    query: Query
    rng: random.Random


Policy = Callable[[Sequence[Endpoint], Steering], Ranking]


def _config_order(endpoint: Endpoint) -> tuple[int, int]:
    return endpoint.priority, endpoint.index


def failover(candidates: Sequence[Endpoint], steering: Steering) -> Ranking:
    """Lowest priority value first; the answer uses only the first tier, in config order."""
    ordered = tuple(sorted(candidates, key=_config_order))
    if not ordered:
        return Ranking((), 0)
    top = ordered[0].priority
    return Ranking(ordered, sum(1 for e in ordered if e.priority == top))


def latency(candidates: Sequence[Endpoint], steering: Steering) -> Ranking:
    """Fastest EWMA first. Endpoints within the band of the fastest count as equal and keep config
    order among themselves, so near-equal clusters do not swap places on every probe."""
    snapshot, band = steering.snapshot, steering.service.latency_band
    known = [e for e in candidates if snapshot.latency(e) is not None]
    unknown = sorted((e for e in candidates if snapshot.latency(e) is None), key=_config_order)
    if not known:
        return Ranking(tuple(unknown), len(unknown))
    best = min(_latency(snapshot, e) for e in known)
    limit = best + max(band.absolute, best * band.relative)
    near = sorted((e for e in known if _latency(snapshot, e) <= limit), key=_config_order)
    far = sorted(
        (e for e in known if _latency(snapshot, e) > limit),
        key=lambda e: (_latency(snapshot, e), e.index),
    )
    ordered = (*near, *far, *unknown)
    return Ranking(ordered, len(ordered))


def _latency(snapshot: HealthSnapshot, endpoint: Endpoint) -> float:
    value = snapshot.latency(endpoint)
    return float("inf") if value is None else value


def weighted(candidates: Sequence[Endpoint], steering: Steering) -> Ranking:
    """A weighted random draw without replacement (Efraimidis-Spirakis keys). Weight 0 endpoints
    come last, in config order: they get traffic only when nothing else is eligible."""
    positive = [e for e in candidates if e.weight > 0]
    rng = steering.rng
    keyed = sorted(positive, key=lambda e: rng.random() ** (1.0 / e.weight), reverse=True)
    zero = sorted((e for e in candidates if e.weight <= 0), key=_config_order)
    return Ranking((*keyed, *zero), len(keyed) or len(zero))


def round_robin(candidates: Sequence[Endpoint], steering: Steering) -> Ranking:
    """Config order, rotated by the query's counter."""
    ordered = sorted(candidates, key=lambda e: e.index)
    if not ordered:
        return Ranking((), 0)
    start = steering.query.rotation % len(ordered)
    rotated = (*ordered[start:], *ordered[:start])
    return Ranking(rotated, len(rotated))


def geo(candidates: Sequence[Endpoint], steering: Steering) -> Ranking:
    """Nearest cluster to the client first (ties: priority, then config order); an unknown
    client gets the failover ranking, the same for every such client."""
    client = steering.query.client
    if client is None:
        return failover(candidates, steering)
    ordered = by_distance(candidates, client)
    return Ranking(ordered, len(ordered))


# Policies whose decision depends only on the service and the snapshot, never on the query's
# rotation or the random generator: a caller may reuse a decision until the snapshot changes.
STABLE: frozenset[PolicyName] = frozenset({PolicyName.FAILOVER, PolicyName.LATENCY})

POLICIES: dict[PolicyName, Policy] = {
    PolicyName.FAILOVER: failover,
    PolicyName.LATENCY: latency,
    PolicyName.WEIGHTED: weighted,
    PolicyName.ROUND_ROBIN: round_robin,
    PolicyName.GEO: geo,
}


def decide(
    service: Service, snapshot: HealthSnapshot, query: Query, rng: random.Random
) -> Decision:
    """Steer one query for `service`: rank its eligible endpoints of the asked family and trim."""
    family = [e for e in service.endpoints if query.family in (None, e.family)]
    eligible = [e for e in family if snapshot.is_eligible(e)]
    policy = POLICIES[service.policy]
    ttl = answer_ttl(service, snapshot)
    if not family:  # the service has no address of this family at all: NODATA, not an outage
        return Decision((), (), ttl)
    if eligible:
        return _trim(policy(eligible, Steering(service, snapshot, query, rng)), service, ttl)
    if service.when_all_down is WhenAllDown.SERVFAIL:
        return Decision((), (), ttl, servfail=True)
    if service.when_all_down is WhenAllDown.NO_ANSWER:
        return Decision((), (), ttl)
    undrained = [e for e in family if not snapshot.is_drained(e)]
    decision = _trim(policy(undrained, Steering(service, snapshot, query, rng)), service, ttl)
    return Decision(decision.answer, decision.ranked, ttl, failed_open=bool(decision.answer))


def _trim(ranking: Ranking, service: Service, ttl: int) -> Decision:
    count = min(ranking.preferred, service.max_answers)
    return Decision(ranking.ordered[:count], ranking.ordered, ttl)


def fails_open(service: Service, snapshot: HealthSnapshot) -> bool:
    """Whether `service` fails open now: for A or AAAA queries no endpoint is eligible and
    `when_all_down: return_all` hands out the undrained ones instead (`Decision.failed_open`,
    as `decide` would answer; a service wholly drained answers nothing and does not fail open)."""
    if service.when_all_down is not WhenAllDown.RETURN_ALL:
        return False
    families = {endpoint.family for endpoint in service.endpoints}
    return any(
        decide(service, snapshot, Query(family), random.Random(0)).failed_open
        for family in families
        if not any(e.family == family and snapshot.is_eligible(e) for e in service.endpoints)
    )  # a family with an eligible endpoint is answered from it: no need to decide
