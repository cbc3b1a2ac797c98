"""The failover SLI as a pure record: when each endpoint's failure was first seen, and, once it has
left the answers, how long detection took and how long clients could still be sent there.

The monitor reports every failed probe or request (`failed`), every success (`succeeded`), and
every target that leaves the answers (`left_answers`, with the answer TTLs of its services just
before). A failure's *first sign* is the start of the first failed probe of a run (or the first
failed proxied request); it is *noticed* when that probe ended.

- detection = the time the answers stopped naming it - the first sign;
- exposure = the longest a client could still be sent there, counted from the first sign: an
  answer handed out just before the failure was noticed carries the TTL in force then (the full
  `ttl` of a stable service), one handed out just before it left carries the TTL of that last
  answer (`ttl_unstable` once the adaptive TTL lowered it). Without a lowered TTL this is
  detection + ttl, the figure the issue names; with one it is never less honest than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from glb.core.model import Target


@dataclass(frozen=True, slots=True)
class Onset:
    """The first sign of a failure of one target and the answer TTLs in force when it was seen."""

    started: float  # when the first failed probe started (or the failed request ended)
    noticed: float  # when glb knew of it: the probe's end
    ttls: Mapping[str, int]  # service -> the TTL of its answers until then


@dataclass(frozen=True, slots=True)
class Failover:
    """One endpoint of one service leaving the answers after a failure."""

    service: str
    detection: float  # seconds, first sign -> first answer without it
    exposure: float  # seconds, first sign -> the last cached answer naming it expires


class Failovers:
    """Onsets of the failures in progress, by target; kept by the monitor, read by nobody else."""

    def __init__(self) -> None:
        self._onsets: dict[Target, Onset] = {}

    def failed(
        self, target: Target, started: float, noticed: float, ttls: Mapping[str, int]
    ) -> None:
        """A probe of `target` (or a request to it) failed; the first of a run is its onset."""
        if target not in self._onsets:
            self._onsets[target] = Onset(started, noticed, dict(ttls))

    def succeeded(self, target: Target) -> None:
        """A probe or request succeeded: a failure in progress, if any, did not last."""
        self._onsets.pop(target, None)

    def forget(self, targets: Iterable[Target]) -> None:
        """Targets no longer configured (a reload removed them)."""
        for target in targets:
            self._onsets.pop(target, None)

    def onset(self, target: Target) -> Onset | None:
        return self._onsets.get(target)

    def left_answers(self, target: Target, at: float, ttls: Mapping[str, int]) -> list[Failover]:
        """`target` stopped being answered at `at`; `ttls` are the TTLs (by service) of the last
        answers that still named it. One Failover per service, none without a known onset (a
        drain, or a target that was never seen failing)."""
        onset = self._onsets.pop(target, None)
        if onset is None:
            return []
        detection = max(0.0, at - onset.started)
        out = []
        for service, last_ttl in sorted(ttls.items()):
            before = onset.ttls.get(service, last_ttl)
            exposure = max(detection + last_ttl, onset.noticed - onset.started + before)
            out.append(Failover(service, detection, exposure))
        return out
