"""Which targets are unstable, and the TTL a service's answers carry because of it.

A target is unstable while its newest results disagree with its state (`TargetHealth.unconfirmed`:
mid rise or fall, or no verdict yet), while it settles (`settle` seconds after a state change),
and while it flaps (`flap_changes` changes within `flap_window` seconds). A service's A, AAAA and
ANY answers carry its `ttl` while every endpoint's target is stable, else its `ttl_unstable`: an
answer handed out while a change is under way, or likely, is cached for a short time only.

The defaults: `SETTLE` 30 s is three default TTLs and covers the usual relapse of a target that
just came back (a restart that crashes again, a backend still warming up, a rise on two lucky
probes). It must outlast the TTL: a resolver that cached the answer from before a change asks
again up to `ttl` seconds after it, and should then get the short TTL. `FLAP_WINDOW` 300 s with
`FLAP_CHANGES` 3 marks a target that went down, up and down again within five minutes as one
whose next change is likely, for as long as that holds.

Instability only ends by time alone (a new result is needed to start it), so `unstable_after`
looks only at the targets updated since it last ran and at those unstable then.

Pure: no clock is read, `now` is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from glb.core.health import CHANGES_KEPT, Health, TargetHealth
from glb.core.model import Service, Target
from glb.core.snapshot import HealthSnapshot

SETTLE: Final = 30.0  # seconds a target stays unstable after a state change
FLAP_WINDOW: Final = 300.0  # seconds within which FLAP_CHANGES changes make a target flap
FLAP_CHANGES: Final = 3
TTL_UNSTABLE: Final = 1  # seconds: a service's `ttl_unstable` unless configured (at most `ttl`)


@dataclass(frozen=True, slots=True)
class StabilityRule:
    """When a target counts as unstable (see the module docstring)."""

    settle: float = SETTLE
    flap_window: float = FLAP_WINDOW
    flap_changes: int = FLAP_CHANGES

    def __post_init__(self) -> None:
        if not 1 <= self.flap_changes <= CHANGES_KEPT:
            raise ValueError(f"flap_changes must be 1 to {CHANGES_KEPT} (changes remembered)")

    def until(self, health: TargetHealth, now: float) -> float | None:
        """None if `health` is stable at `now`; else when it turns stable if no new result
        comes (`math.inf`: only a new result can end it, it is unconfirmed)."""
        if health.unconfirmed:
            return math.inf
        changes = health.changes
        if not changes:
            return None
        end = changes[-1] + self.settle
        if len(changes) >= self.flap_changes:
            end = max(end, changes[-self.flap_changes] + self.flap_window)
        return end if end > now else None

    def is_unstable(self, health: TargetHealth, now: float) -> bool:
        return self.until(health, now) is not None

    def why(self, health: TargetHealth, now: float) -> str | None:
        """Why `health` is unstable at `now` (None: it is stable)."""
        if health.unconfirmed:
            return _unconfirmed(health)
        recent = [at for at in health.changes if now - at < self.flap_window]
        if len(recent) >= self.flap_changes:
            return f"flapping: {len(recent)} changes within {self.flap_window:g}s"
        if recent and now < recent[-1] + self.settle:
            return f"settling: changed {now - recent[-1]:.0f}s ago, for {self.settle:g}s"
        return None


def _unconfirmed(health: TargetHealth) -> str:
    if health.state is Health.UP:
        return f"unconfirmed: up with {health.failures} failed probe(s)"
    if health.state is Health.DOWN:
        return f"unconfirmed: down with {health.successes} successful probe(s)"
    return "unconfirmed: no verdict yet"


DEFAULT_RULE: Final = StabilityRule()


@dataclass(frozen=True, slots=True)
class Instability:
    """The unstable targets at one time, those that joined or left the set since the time
    before (`moved`), and when the first of them turns stable by time alone (None: none will;
    a new result is needed)."""

    targets: frozenset[Target]
    moved: frozenset[Target]
    next_change: float | None


def unstable_after(
    before: frozenset[Target],
    health: Mapping[Target, TargetHealth],
    updated: Iterable[Target] | None,
    now: float,
    rule: StabilityRule,
) -> Instability:
    """The unstable targets of `health` at `now`, given those unstable `before` and the ones
    `updated` since (None: unknown, every target is looked at): instability ends by time
    alone, only an update can start it, so no other target can have joined."""
    candidates = health.keys() if updated is None else {*updated, *before}
    unstable: list[Target] = []
    next_change = math.inf
    for target in candidates:
        each = health.get(target)
        if each is None or (until := rule.until(each, now)) is None:
            continue
        unstable.append(target)
        next_change = min(next_change, until)
    targets = frozenset(unstable)
    finite = None if math.isinf(next_change) else next_change
    return Instability(targets, before ^ targets, finite)


def answer_ttl(service: Service, snapshot: HealthSnapshot) -> int:
    """The TTL of the service's answers: `ttl_unstable` while any endpoint's target is unstable
    in `snapshot`, else `ttl`."""
    unstable = snapshot.unstable
    if unstable and any(e.target in unstable for e in service.endpoints):
        return min(service.ttl_unstable, service.ttl)
    return service.ttl


@dataclass(frozen=True, slots=True)
class AnsweredTtl:
    """The TTL a service is answered with, and why."""

    ttl: int
    reason: str


def explain_ttl(
    service: Service, snapshot: HealthSnapshot, now: float, rule: StabilityRule = DEFAULT_RULE
) -> AnsweredTtl:
    """`answer_ttl` with the reason: the first unstable endpoint and why it is at `now`, by
    `rule` (the snapshot says which targets are unstable, not why)."""
    ttl = answer_ttl(service, snapshot)
    for endpoint in service.endpoints:
        if endpoint.target in snapshot.unstable:
            why = rule.why(snapshot.health(endpoint.target), now) or "settled just now"
            return AnsweredTtl(ttl, f"{endpoint.cluster} {endpoint.address} {why}")
    return AnsweredTtl(ttl, "every endpoint stable")
