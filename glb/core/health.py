"""Health of probe targets as a pure step: rise/fall hysteresis and an EWMA latency score.

`observe(target, health, result)` folds one probe result into a target's health and reports the
transition, if any; it also keeps the round-trip estimate and the count of consecutive timeouts
that set the next probe's timeout (`glb.core.timeouts`). `next_delay` paces the probes. Nothing
here reads a clock: the result carries the time it was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from glb.core.model import ProbeSpec, Target
from glb.core.timeouts import RttEstimate, observe_rtt, probe_timeout

CHANGES_KEPT: Final = 4  # state changes remembered per target (glb.core.stability reads them)


class Health(StrEnum):
    UNKNOWN = "unknown"  # never probed
    UP = "up"
    DOWN = "down"


class Outcome(StrEnum):
    """Why a probe succeeded or failed; a fixed set, fit for a metric label."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    RESET = "reset"
    BAD_STATUS = "bad_status"
    BODY_MISMATCH = "body_mismatch"
    TLS_ERROR = "tls_error"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    outcome: Outcome
    rtt: float  # seconds from the probe's start to its end
    at: float  # when the probe ended (monotonic clock seconds)
    detail: str = ""  # human-readable reason: "connection refused", "status 503"...

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def reason(self) -> str:
        return self.detail or self.outcome.replace("_", " ")


# Failures a live server does not cause: an UP target showing one is re-probed at once.
ABRUPT: Final = frozenset({Outcome.REFUSED, Outcome.RESET})


@dataclass(frozen=True, slots=True)
class TargetHealth:
    state: Health = Health.UNKNOWN
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    latency: float | None = None  # EWMA of successful round trips, seconds
    last_result: ProbeResult | None = None
    last_change: float | None = None  # when the state last changed
    changes: tuple[float, ...] = ()  # when it last changed, oldest first (CHANGES_KEPT at most)
    last_failure: ProbeResult | None = None
    reason: str = ""  # why the state last changed
    ejected: bool = False  # taken down by failed proxied requests, not (yet) by probes
    passive_failures: int = 0  # consecutive failed proxied requests
    rtt: RttEstimate | None = None  # of the successful probes, for the adaptive timeout
    timeouts: int = 0  # consecutive probes that timed out (the timeout's back-off)
    # the failures in progress began: (the first failed probe's start, its end), or the first
    # failed proxied request's end twice; None while the newest results succeed
    onset: tuple[float, float] | None = None

    @property
    def unconfirmed(self) -> bool:
        """True while the newest results disagree with the state (or there is no state yet)."""
        if self.state is Health.UP:
            return self.failures > 0
        if self.state is Health.DOWN:
            return self.successes > 0
        return True


@dataclass(frozen=True, slots=True)
class Transition:
    target: Target
    before: Health
    after: Health
    at: float
    reason: str  # "after 2 failures: connection refused"


def ewma(previous: float | None, sample: float, alpha: float) -> float:
    if previous is None:
        return sample
    return alpha * sample + (1.0 - alpha) * previous


def observe(
    target: Target, health: TargetHealth, result: ProbeResult
) -> tuple[TargetHealth, Transition | None]:
    """Fold one probe result into a target's health."""
    spec = target.probe
    if result.ok:
        new = replace(
            health,
            successes=health.successes + 1,
            failures=0,
            latency=ewma(health.latency, result.rtt, spec.latency_alpha),
            last_result=result,
            rtt=observe_rtt(health.rtt, result.rtt),
            timeouts=0,
            onset=health.onset if health.passive_failures else None,
        )
    else:
        new = replace(
            health,
            successes=0,
            failures=health.failures + 1,
            last_result=result,
            last_failure=result,
            timeouts=health.timeouts + 1 if result.outcome is Outcome.TIMEOUT else 0,
            onset=health.onset or (result.at - result.rtt, result.at),
        )
    if not result.ok:
        new = replace(new, ejected=False)  # the probes now agree: plainly down
    after = _next_state(new, spec)
    if after is health.state:
        return new, None
    reason = _reason(new, health.state)
    changes = _changes(health, result.at)
    new = replace(
        new, state=after, last_change=result.at, changes=changes, reason=reason, ejected=False
    )
    return new, Transition(target, health.state, after, result.at, reason)


def observe_passive(
    target: Target,
    health: TargetHealth,
    *,
    failed: bool,
    detail: str,
    eject_after: int,
    now: float,
) -> tuple[TargetHealth, Transition | None]:
    """Fold one proxied request's outcome into a target's health (outlier ejection).

    `eject_after` consecutive failures take an UP target down at once, marked ejected; the probes
    bring it back after `rise` successes, as for any down target."""
    if not failed:
        return (replace(health, passive_failures=0) if health.passive_failures else health), None
    failures = health.passive_failures + 1
    onset = health.onset or (now, now)
    if health.state is not Health.UP or failures < eject_after:
        return replace(health, passive_failures=failures, onset=onset), None
    reason = f"ejected after {_count(failures, 'failed request', 'failed requests')}: {detail}"
    ejected = replace(
        health,
        state=Health.DOWN,
        ejected=True,
        successes=0,
        passive_failures=0,
        onset=onset,
        last_change=now,
        changes=_changes(health, now),
        reason=reason,
    )
    return ejected, Transition(target, Health.UP, Health.DOWN, now, reason)


def changed_at(health: TargetHealth, at: float) -> TargetHealth:
    """`health` with a change of its answered state at `at` that its own results did not make
    (the peers' verdicts moved it): it counts for stability (`glb.core.stability`) as any."""
    return replace(health, changes=_changes(health, at))


def _changes(health: TargetHealth, at: float) -> tuple[float, ...]:
    """`health.changes` with a change at `at`; the first verdict (from UNKNOWN) is no change:
    nothing was answered before it, so no answer goes stale."""
    if health.state is Health.UNKNOWN:
        return health.changes
    return (*health.changes, at)[-CHANGES_KEPT:]


def _next_state(health: TargetHealth, spec: ProbeSpec) -> Health:
    if health.state is Health.UNKNOWN:  # the first result counts at once
        return Health.UP if health.successes else Health.DOWN
    if health.state is Health.UP and health.failures >= spec.fall:
        return Health.DOWN
    if health.state is Health.DOWN and health.successes >= spec.rise:
        return Health.UP
    return health.state


def _reason(health: TargetHealth, before: Health) -> str:
    result = health.last_result
    assert result is not None  # noqa: S101 (a transition always follows a result)
    if before is Health.UNKNOWN:
        first = "first probe succeeded" if result.ok else "first probe failed"
        return first if result.ok else f"{first}: {result.reason()}"
    if result.ok:
        return f"after {_count(health.successes, 'success', 'successes')}"
    return f"after {_count(health.failures, 'failure', 'failures')}: {result.reason()}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def next_delay(health: TargetHealth, spec: ProbeSpec) -> float:
    """Seconds from one probe's start to the next: faster while a change is unconfirmed, and
    none at all when an UP target's connection was just refused or reset (a crashed or
    restarting server, confirmed at once; timeouts and bad answers keep the fast pace)."""
    if not health.unconfirmed:
        return spec.interval
    last = health.last_result
    if health.state is Health.UP and last is not None and last.outcome in ABRUPT:
        return 0.0
    return spec.fast_interval


def timeout_for(health: TargetHealth, spec: ProbeSpec) -> float:
    """How long the target's next probe may take (`glb.core.timeouts`)."""
    return probe_timeout(spec, health.rtt, health.timeouts)
