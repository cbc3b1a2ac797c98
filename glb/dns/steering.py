"""The variants the cache packs at a service name, and what they depend on in a snapshot.

`variants` draws a service's policy for one address family into the decisions the cache
rotates over and the counter that picks among them: round robin, one decision per rotation,
driven by the full path's own per-service counter (so both paths rotate alike); weighted,
`WEIGHTED_VARIANTS` draws whose first answers follow the weights to within 1/WEIGHTED_VARIANTS
(largest-remainder shares, see `_weighted`), walked by a counter of their own; any other policy,
one decision. `signature` is everything a service's A, AAAA and ANY replies depend on in a
snapshot (their TTL too: it follows the endpoints' stability): equal signatures, equal replies.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from glb.core.model import Endpoint, PolicyName, Service, WhenAllDown
from glb.core.policies import Decision, Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import answer_ttl

WEIGHTED_VARIANTS: Final = 64
NO_ROTATION: Final[Iterator[int]] = itertools.repeat(0)
_LATENCY_RNG: Final = random.Random(0)  # the latency policy draws nothing; decide() wants one
_FAMILIES: Final = (4, 6)


def variants(
    service: Service,
    family: int,
    snapshot: HealthSnapshot,
    rng: random.Random,
    rotation: Iterator[int],
) -> tuple[list[Decision], Iterator[int]]:
    """The decisions to rotate over for `family`, and the counter that picks among them;
    `rotation` is the service's round-robin counter."""
    candidates = _candidates(service, snapshot, family)
    if not any(e.family == family for e in service.endpoints):
        return [decide(service, snapshot, Query(family), rng)], NO_ROTATION
    if service.policy is PolicyName.ROUND_ROBIN:
        rotations = range(max(1, len(candidates)))
        return [decide(service, snapshot, Query(family, r), rng) for r in rotations], rotation
    if service.policy is PolicyName.WEIGHTED and sum(e.weight > 0 for e in candidates) > 1:
        return _weighted(service, family, snapshot, candidates, rng), itertools.count()
    return [decide(service, snapshot, Query(family), rng)], NO_ROTATION


def signature(service: Service, snapshot: HealthSnapshot) -> object:
    """Everything the service's A/AAAA/ANY replies depend on in `snapshot`: the candidates, the
    answers' TTL, and for the latency policy its decision."""
    candidates = tuple(_candidates(service, snapshot, family) for family in _FAMILIES)
    ttl = answer_ttl(service, snapshot)
    if service.policy is not PolicyName.LATENCY:
        return candidates, ttl
    ranked = tuple(decide(service, snapshot, Query(f), _LATENCY_RNG).answer for f in _FAMILIES)
    return candidates, ttl, ranked


def _weighted(
    service: Service,
    family: int,
    snapshot: HealthSnapshot,
    candidates: Sequence[Endpoint],
    rng: random.Random,
) -> list[Decision]:
    """`WEIGHTED_VARIANTS` draws of the policy, each endpoint first in its weight's share.

    A draw's order of the other endpoints is a weighted draw over them whatever the place of the
    one moved to the front (Efraimidis-Spirakis keys are independent), so moving the wanted
    endpoint first keeps the rest distributed as the policy distributes it."""
    quota = _apportion({e: e.weight for e in candidates if e.weight > 0}, WEIGHTED_VARIANTS)
    drawn = decide(service, snapshot, Query(family), rng)
    chosen: list[Decision] = []
    for first, count in quota.items():
        if len(drawn.answer) <= 1:  # only the first matters: one decision, repeated
            chosen += [Decision((first,), (first,), drawn.ttl)] * count
            continue
        for _ in range(count):
            drawn = decide(service, snapshot, Query(family), rng)
            ranked = (first, *(e for e in drawn.ranked if e != first))
            chosen.append(Decision(ranked[: len(drawn.answer)], ranked, drawn.ttl))
    rng.shuffle(chosen)
    return chosen


def _candidates(service: Service, snapshot: HealthSnapshot, family: int) -> tuple[Endpoint, ...]:
    """What `decide` ranks for `family`: the eligible endpoints, else (return_all) the undrained."""
    of_family = [e for e in service.endpoints if e.family == family]
    eligible = tuple(e for e in of_family if snapshot.is_eligible(e))
    if eligible or service.when_all_down is not WhenAllDown.RETURN_ALL:
        return eligible
    return tuple(e for e in of_family if not snapshot.is_drained(e))


def _apportion(weights: Mapping[Endpoint, int], total: int) -> dict[Endpoint, int]:
    """Largest-remainder shares of `total` slots in proportion to `weights`."""
    whole = sum(weights.values())
    exact = {e: total * w / whole for e, w in weights.items()}
    shares = {e: int(x) for e, x in exact.items()}
    spare = total - sum(shares.values())
    for e in sorted(exact, key=lambda e: (shares[e] - exact[e], e.index))[:spare]:
        shares[e] += 1
    return shares
