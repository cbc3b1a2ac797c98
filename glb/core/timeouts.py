"""Adaptive probe timeouts, as TCP sets its retransmission timeout (RFC 6298).

Each target keeps a smoothed round trip (`srtt`) and its variance (`rttvar`) over its successful
probes (`RttEstimate`, folded by `observe_rtt`). A probe then waits `srtt + 4 * rttvar`, never
less than the spec's `min_timeout` nor more than its `timeout`, doubled for every consecutive
timeout so far (TCP's back-off: a target whose latency steps up gets a longer wait before it is
confirmed down), still capped at `timeout`. Before any sample, and with `adaptive_timeout` off,
a probe waits `timeout`. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from glb.core.model import ProbeSpec

ALPHA: Final = 1 / 8  # weight of the newest sample in the smoothed round trip
BETA: Final = 1 / 4  # weight of the newest deviation in the round-trip variance
K: Final = 4  # variances added to the smoothed round trip


@dataclass(frozen=True, slots=True)
class RttEstimate:
    """A target's smoothed round trip and its variance, in seconds."""

    srtt: float
    rttvar: float

    @property
    def rto(self) -> float:
        """The wait that covers the round trips seen so far, before any bounds."""
        return self.srtt + K * self.rttvar


def observe_rtt(estimate: RttEstimate | None, sample: float) -> RttEstimate:
    """Fold one successful probe's round trip in (the first sets srtt=r, rttvar=r/2)."""
    if estimate is None:
        return RttEstimate(sample, sample / 2)
    rttvar = (1 - BETA) * estimate.rttvar + BETA * abs(estimate.srtt - sample)
    srtt = (1 - ALPHA) * estimate.srtt + ALPHA * sample
    return RttEstimate(srtt, rttvar)


def probe_timeout(spec: ProbeSpec, estimate: RttEstimate | None, timeouts: int) -> float:
    """How long the next probe may take: `timeouts` is the count of consecutive timeouts."""
    if not spec.adaptive_timeout or estimate is None:
        return spec.timeout
    base = min(spec.timeout, max(spec.min_timeout, estimate.rto))
    return min(spec.timeout, base * float(2 ** min(timeouts, 32)))
