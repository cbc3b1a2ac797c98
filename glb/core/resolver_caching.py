"""How long resolvers keep a failed cluster in their answers, after glb noticed the failure
(`noticed`: the first failed probe ended) and detected it (`detected`: the answer changed).

Answers served before `noticed` carry the service's full `ttl`; answers served from then until
`detected` carry `unstable` (the service's ttl_unstable, at most `ttl`); from `detected` on
the answer is clean. A busy resolver asks again whenever its copy expires.
"""

from __future__ import annotations

import itertools
import math

_MAX_CUTS = 10_000
_NEGLIGIBLE = 1e-6  # seconds: a shorter ttl_unstable counts as none (every query asks again)


def worst_exposure(noticed: float, detected: float, ttl: float, unstable: float) -> float:
    """The latest a resolver stops answering with the failed cluster: an answer served just
    before glb noticed (`noticed`) carries the full `ttl`; one served just before `detected`
    carries `unstable` (at most `ttl`)."""
    if ttl <= 0:
        return detected
    return max(noticed + ttl, detected + min(unstable, ttl))


def typical_exposure(noticed: float, detected: float, ttl: float, unstable: float) -> float:
    """The mean time a busy resolver (one that asks again whenever its copy expires) keeps the
    failed cluster: its copy expires at r, uniform over 0..ttl after the failure; asked again
    before `noticed` it gets the full `ttl`, before `detected` `unstable`, from then on a clean
    answer. Without adaptive TTL (`unstable` = `ttl`) this is detected + ttl / 2."""
    if ttl <= 0:
        return detected
    unstable = min(unstable, ttl) if unstable >= _NEGLIGIBLE else 0.0
    cuts = sorted({0.0, ttl, *_breakpoints(noticed, detected, ttl, unstable)})
    area = sum(
        (b - a) * _clean_at((a + b) / 2, noticed, detected, ttl, unstable)
        for a, b in itertools.pairwise(cuts)
    )
    return area / ttl


def _clean_at(expiry: float, noticed: float, detected: float, ttl: float, unstable: float) -> float:
    """When a resolver whose copy expires at `expiry` first fetches a clean answer: it asks
    again every `ttl` until glb noticed, every `unstable` until detection."""
    moment = expiry
    full_until = min(noticed, detected)
    if moment < full_until:
        moment += math.ceil((full_until - moment) / ttl) * ttl
    if moment < detected:
        if unstable <= 0:  # not cached: the first query after detection gets a clean answer
            return detected
        moment += math.ceil((detected - moment) / unstable) * unstable
    return moment


def _breakpoints(noticed: float, detected: float, ttl: float, unstable: float) -> list[float]:
    """The expiry times (0..ttl) where `_clean_at` jumps: its chain of fetches crosses
    `noticed` or `detected`. Between them it grows linearly, so midpoints integrate exactly."""
    points = [noticed % ttl, detected % ttl]
    if unstable > 0:
        count = min(math.ceil(max(detected - noticed, 0) / unstable) + 1, _MAX_CUTS)
        points += [(detected - k * unstable) % ttl for k in range(count)]
    return [p for p in points if 0 < p < ttl]
