"""How long clients take to leave a failed cluster (`glb explain`), computed from the settings.

For each failure mode (`Mode`: refused, reset, frozen, 5xx) an `Estimate` gives the typical
(mean) and worst time for glb to detect it and for clients to stop using the cluster, with the
steps that add up to it. The model, with I = interval, C = timeout, F = fall, f = fast_interval:

- detection starts with the phase of the probe schedule: the next probe comes 0..I after the
  failure (I/2 on average), unless a held idle connection is closed by the dying process's
  kernel, which starts a probe at once (refused and reset only);
- while an UP target has failures short of F, the next probe starts f after the previous one
  started, at once when that one took longer than f, and at once after a refused or reset;
- a probe of a frozen target waits its timeout: C, or with the adaptive timeout the k-th
  consecutive one waits min(C, rto * 2**(k-1)), rto = max(min_timeout, srtt + 4 * rttvar),
  taken here as max(min_timeout, 3 * rtt) (rttvar = rtt / 2, RFC 6298's first estimate);
- the new answer is published as soon as the change is confirmed; resolvers keep what they have
  cached: answers served once glb noticed the first failure carry `ttl_unstable`, earlier ones
  the full `ttl` (`glb.core.resolver_caching`).

Risky settings are returned as `Risk` values. Pure: every setting is a parameter, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from glb.core.model import Location, WhenAllDown
from glb.core.resolver_caching import typical_exposure, worst_exposure

DEFAULT_RTT = 0.001  # a round trip on a LAN, when no observed latency is known
RTTVAR_SHARE = 0.5  # rttvar as a share of srtt: RFC 6298's first estimate (R / 2)
TTL_DOMINATES = 5  # ttl above this many times the worst detection dominates it
LATENCY_SHARE = 0.5  # an observed latency above this share of the timeout is too close to it
CLAMPED_TTLS = (30, 60)  # minimum TTLs some resolvers impose, in seconds


class Mode(StrEnum):
    """How a cluster fails, as its probes see it."""

    REFUSED = "refused"  # the process died: the port is closed, connections are refused
    RESET = "reset"  # connections are reset (a crash mid-answer, a rejecting firewall)
    FROZEN = "frozen"  # silence: connections accepted or packets dropped, no answer
    BAD_STATUS = "5xx"  # answers quickly, but unhealthy


class RiskKind(StrEnum):
    TIMEOUT_NEAR_LATENCY = "timeout_near_latency"
    FALL_1 = "fall_1"
    TTL_DOMINATES = "ttl_dominates"
    ONE_REGION = "one_region"
    WHEN_ALL_DOWN = "when_all_down"


@dataclass(frozen=True, slots=True)
class ProbeTiming:
    """The probe settings that time detection (seconds and counts)."""

    interval: float
    timeout: float
    fall: int
    rise: int
    fast_interval: float
    adaptive_timeout: bool = True
    min_timeout: float = 0.25
    hold_connection: bool = True


@dataclass(frozen=True, slots=True)
class ClusterPlace:
    """Where one of a service's clusters is, as configured (None: not said)."""

    name: str
    region: str | None
    location: Location | None


@dataclass(frozen=True, slots=True)
class ServiceSetup:
    """Everything about one service that failover time and its risks depend on."""

    name: str
    timing: ProbeTiming
    ttl: float
    ttl_unstable: float
    clusters: tuple[ClusterPlace, ...]
    when_all_down: WhenAllDown = WhenAllDown.RETURN_ALL
    negative_ttl: float = 30.0  # the zone's: how long a NODATA answer is cached
    eject_after: int = 3
    eject_on_5xx: bool = False
    connect_timeout: float = 2.0
    first_byte_timeout: float = 30.0
    # each endpoint's observed probe latency ("cluster address", seconds); None: not read
    latencies: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds from a cluster's failure until glb detects it, and until clients have left it."""

    mode: Mode
    detection_typical: float
    detection_worst: float
    exposure_typical: float
    exposure_worst: float
    steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recovery:
    """Seconds from a cluster's return until glb answers with it again."""

    typical: float
    worst: float
    steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Risk:
    kind: RiskKind
    message: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """One service's estimates, recovery and risks; `unchecked` says what could not be judged."""

    setup: ServiceSetup
    rtt: float
    estimates: tuple[Estimate, ...]
    recovery: Recovery
    risks: tuple[Risk, ...]
    unchecked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Detection:
    """A mode's detection: typical and worst, when the first failed probe ended in each, why."""

    typical: float
    worst: float
    noticed_typical: float
    noticed_worst: float
    steps: tuple[str, ...]


_DetectorFn = Callable[[ProbeTiming, float], _Detection]


def explain(setup: ServiceSetup) -> Explanation:
    """The service's estimates for every mode, its recovery and its risks."""
    rtt = max((seconds for _, seconds in setup.latencies or ()), default=DEFAULT_RTT)
    estimates = tuple(estimate(mode, setup, rtt) for mode in Mode)
    unchecked = _unchecked(setup)
    return Explanation(
        setup, rtt, estimates, recovery(setup.timing, rtt), risks(setup, estimates), unchecked
    )


def _unchecked(setup: ServiceSetup) -> tuple[str, ...]:
    if setup.latencies is None:
        return ("timeout against observed latency (pass --admin URL of a running glb)",)
    if not setup.latencies:
        return ("timeout against observed latency (the running glb reports none for this service)",)
    return ()


def estimate(mode: Mode, setup: ServiceSetup, rtt: float = DEFAULT_RTT) -> Estimate:
    """Detection of `mode`, then how long resolvers keep the failed cluster in their answers."""
    found = _DETECTORS[mode](setup.timing, rtt)
    ttl, unstable = setup.ttl, min(setup.ttl_unstable, setup.ttl)
    typical = typical_exposure(found.noticed_typical, found.typical, ttl, unstable)
    worst = worst_exposure(found.noticed_worst, found.worst, ttl, unstable)
    steps = (
        *found.steps,
        *_passive_steps(mode, setup),
        _typical_exposure_step(typical, found, ttl, unstable),
        _worst_exposure_step(worst, found, ttl, unstable),
        _clamp_step(found, setup),
    )
    return Estimate(mode, found.typical, found.worst, typical, worst, steps)


# --- detection -----------------------------------------------------------------------------


def timeouts(timing: ProbeTiming, rto: float) -> tuple[float, ...]:
    """What each of `fall` consecutive timing-out probes waits, given the retransmission
    timeout `rto` (doubled per timeout, capped at `timeout`; the fixed timeout when the
    adaptive timeout is off)."""
    if not timing.adaptive_timeout:
        return (timing.timeout,) * timing.fall
    return tuple(min(timing.timeout, rto * 2**k) for k in range(timing.fall))


def typical_rto(timing: ProbeTiming, rtt: float) -> float:
    """rto = max(min_timeout, srtt + 4 * rttvar) of a target answering in `rtt`."""
    return max(timing.min_timeout, rtt + 4 * RTTVAR_SHARE * rtt)


def _frozen(timing: ProbeTiming, rtt: float) -> _Detection:
    typical_waits = timeouts(timing, typical_rto(timing, rtt))
    worst_waits = (timing.timeout,) * timing.fall
    phase = timing.interval
    held = "; the held connection stays open (a frozen process closes nothing)"
    steps = (
        f"the next scheduled probe starts 0-{_s(phase)} after the freeze "
        f"(interval; {_s(phase / 2)} on average){held if timing.hold_connection else ''}",
        f"fall {timing.fall}: {_count(timing.fall, 'probe')} time out, "
        f"waiting {_waits(typical_waits)} typical, {_waits(worst_waits)} worst"
        f"{_adaptive_note(timing, rtt)}",
        f"each next probe starts when the previous one times out, or fast_interval "
        f"{_s(timing.fast_interval)} after it started if that is later",
    )
    return _Detection(
        typical=phase / 2 + _schedule(typical_waits, timing.fast_interval),
        worst=phase + _schedule(worst_waits, timing.fast_interval),
        noticed_typical=phase / 2 + typical_waits[0],
        noticed_worst=phase + worst_waits[0],
        steps=steps,
    )


def _schedule(durations: Sequence[float], fast_interval: float) -> float:
    """From the first probe's start to the last one's end: each next probe starts when the
    previous ends or `fast_interval` after it started, whichever is later."""
    gaps = sum(max(d, fast_interval) for d in durations[:-1])
    return gaps + durations[-1]


def _adaptive_note(timing: ProbeTiming, rtt: float) -> str:
    if not timing.adaptive_timeout:
        return f" (timeout {_s(timing.timeout)}, adaptive_timeout off)"
    rto = typical_rto(timing, rtt)
    return (
        f" (adaptive: rto {_s(rto)} = max(min_timeout {_s(timing.min_timeout)}, "
        f"{1 + 4 * RTTVAR_SHARE:g} x rtt "
        f"{_s(rtt)}), doubled per timeout, capped at timeout {_s(timing.timeout)}; "
        "worst: a jittery target whose rto reached the timeout)"
    )


def _closed(mode: Mode) -> _DetectorFn:
    """Refused and reset: each probe fails in one round trip and the next starts at once."""
    what = "refused" if mode is Mode.REFUSED else "reset"

    def detect(timing: ProbeTiming, rtt: float) -> _Detection:
        failing = timing.fall * rtt
        rounds = (
            f"fall {timing.fall}: each probe is {what} in one round trip ({_s(rtt)}) and "
            f"the next starts at once: {timing.fall} x {_s(rtt)}"
        )
        scheduled = f"the next scheduled probe comes 0-{_s(timing.interval)} after (interval)"
        if timing.hold_connection:
            start, held = 0.0, "the held idle connection closes with the process: a probe starts"
            first = f"{held} at once; worst, without it (a middlebox swallowed the close, or it "
            first += f"was being reopened), {scheduled}"
        else:
            start, first = timing.interval / 2, f"{scheduled} (hold_connection off)"
        return _Detection(
            typical=start + failing,
            worst=timing.interval + failing,
            noticed_typical=start + rtt,
            noticed_worst=timing.interval + rtt,
            steps=(first, rounds),
        )

    return detect


def _bad_status(timing: ProbeTiming, rtt: float) -> _Detection:
    pace = max(timing.fast_interval, rtt)
    steps = (
        f"the next scheduled probe comes 0-{_s(timing.interval)} after the failure (interval)",
        f"fall {timing.fall}: each probe is answered in one round trip ({_s(rtt)}); the next "
        f"starts fast_interval {_s(timing.fast_interval)} after the previous: "
        f"{timing.fall - 1} x {_s(pace)} + {_s(rtt)}",
    )
    rounds = (timing.fall - 1) * pace + rtt
    return _Detection(
        typical=timing.interval / 2 + rounds,
        worst=timing.interval + rounds,
        noticed_typical=timing.interval / 2 + rtt,
        noticed_worst=timing.interval + rtt,
        steps=steps,
    )


_DETECTORS: dict[Mode, _DetectorFn] = {
    Mode.REFUSED: _closed(Mode.REFUSED),
    Mode.RESET: _closed(Mode.RESET),
    Mode.FROZEN: _frozen,
    Mode.BAD_STATUS: _bad_status,
}


def recovery(timing: ProbeTiming, rtt: float = DEFAULT_RTT) -> Recovery:
    """A DOWN target is probed every interval; after its first success, `rise` successes at the
    fast_interval pace bring it back."""
    rounds = (timing.rise - 1) * max(timing.fast_interval, rtt) + rtt
    steps = (
        f"the next scheduled probe comes 0-{_s(timing.interval)} after the cluster is back, "
        f"then rise {timing.rise}: {timing.rise - 1} x fast_interval "
        f"{_s(timing.fast_interval)} + {_s(rtt)}",
    )
    return Recovery(timing.interval / 2 + rounds, timing.interval + rounds, steps)


# --- what resolvers keep: steps ------------------------------------------------------------


def _typical_exposure_step(typical: float, found: _Detection, ttl: float, unstable: float) -> str:
    if ttl <= 0:
        return "clients: ttl 0, resolvers do not cache: they leave at detection"
    note = f"answers fetched once glb noticed ({_s(found.noticed_typical)}) carry ttl_unstable "
    note += f"{_s(unstable)}, earlier ones the full ttl"
    if unstable >= ttl:
        note = "every answer carries the full ttl"
    return (
        f"clients typical {_s(typical)}: a busy resolver's copy has on average ttl / 2 = "
        f"{_s(ttl / 2)} left when the cluster fails; {note}"
    )


def _worst_exposure_step(worst: float, found: _Detection, ttl: float, unstable: float) -> str:
    if ttl <= 0:
        return f"clients worst {_s(worst)}: detection"
    if found.noticed_worst + ttl >= found.worst + unstable:
        why = (
            f"an answer served just before the first failed probe ended ({_s(found.noticed_worst)})"
        )
        return f"clients worst {_s(worst)}: {why} carries the full ttl {_s(ttl)}"
    why = f"an answer served just before detection ({_s(found.worst)})"
    return f"clients worst {_s(worst)}: {why} carries ttl_unstable {_s(unstable)}"


def _clamp_step(found: _Detection, setup: ServiceSetup) -> str:
    """Resolvers that raise short TTLs to a minimum keep the cluster longer."""
    held = [
        f"{minimum} s: up to {_s(_clamped_worst(found, setup, minimum))}"
        for minimum in CLAMPED_TTLS
    ]
    return "resolvers that raise TTLs to a minimum keep it longer: " + ", ".join(held)


def _clamped_worst(found: _Detection, setup: ServiceSetup, minimum: float) -> float:
    ttl = max(setup.ttl, minimum)
    return worst_exposure(found.noticed_worst, found.worst, ttl, max(setup.ttl_unstable, minimum))


def _passive_steps(mode: Mode, setup: ServiceSetup) -> tuple[str, ...]:
    """Outlier ejection by the HTTP front end, for traffic proxied through glb."""
    eject = f"through glb's HTTP front end, eject_after {setup.eject_after} consecutive failed "
    eject += "requests take the endpoint out at once (DNS answers too)"
    if mode is Mode.BAD_STATUS:
        if not setup.eject_on_5xx:
            return ("proxied 5xx answers do not eject (eject_on_5xx off): only the probes count",)
        return (eject.replace("failed requests", "5xx answers"),)
    if mode is Mode.FROZEN:
        slow = f"; each request fails only after timeouts.connect {_s(setup.connect_timeout)} "
        slow += f"(packets dropped) or timeouts.first_byte {_s(setup.first_byte_timeout)} "
        slow += "(connections accepted)"
        return (eject + slow,)
    return (eject,)


# --- risks ---------------------------------------------------------------------------------


def risks(setup: ServiceSetup, estimates: Sequence[Estimate]) -> tuple[Risk, ...]:
    """Every risky setting of the service, given its estimates."""
    found = [
        *_latency_risks(setup),
        *_fall_risks(setup.timing),
        *_ttl_risks(setup, estimates),
        *_region_risks(setup.clusters),
        *_all_down_risks(setup),
    ]
    return tuple(found)


def _latency_risks(setup: ServiceSetup) -> list[Risk]:
    timeout = setup.timing.timeout
    return [
        Risk(
            RiskKind.TIMEOUT_NEAR_LATENCY,
            f"{endpoint} answers probes in {_s(latency)}, close to timeout {_s(timeout)}: a "
            "slow moment reads as a failure (raise timeout, or probe a lighter path)",
        )
        for endpoint, latency in setup.latencies or ()
        if latency > LATENCY_SHARE * timeout
    ]


def _fall_risks(timing: ProbeTiming) -> list[Risk]:
    if timing.fall > 1:
        return []
    message = "fall 1: one lost probe (a dropped packet, a pause) takes an endpoint out"
    return [Risk(RiskKind.FALL_1, message)]


def _ttl_risks(setup: ServiceSetup, estimates: Sequence[Estimate]) -> list[Risk]:
    slowest = max((e.detection_worst for e in estimates), default=0.0)
    if setup.ttl <= TTL_DOMINATES * slowest:
        return []
    return [
        Risk(
            RiskKind.TTL_DOMINATES,
            f"ttl {_s(setup.ttl)} is over {TTL_DOMINATES}x the worst detection "
            f"({_s(slowest)}): resolvers' caches, not probing, decide how long clients stay "
            "on a failed cluster",
        )
    ]


def _region_risks(clusters: Sequence[ClusterPlace]) -> list[Risk]:
    if len(clusters) == 1:
        message = f"every endpoint is in one cluster ({clusters[0].name}): nowhere to fail over"
        return [Risk(RiskKind.ONE_REGION, message)]
    located = {c.location for c in clusters if c.location is not None}
    regions = {c.region for c in clusters}
    if len(located) > 1 or len(regions) > 1:
        return []
    names = ", ".join(c.name for c in clusters)
    if located and all(c.location is not None for c in clusters):
        why = "are all at one location"
    elif regions != {None}:
        why = f"are all in region {next(iter(regions))}"
    else:
        why = "have no distinct location or region"
    message = f"clusters {names} {why}: one regional outage may take every endpoint"
    return [Risk(RiskKind.ONE_REGION, message)]


def _all_down_risks(setup: ServiceSetup) -> list[Risk]:
    if setup.when_all_down is WhenAllDown.NO_ANSWER:
        message = (
            "when_all_down no_answer: when every endpoint is down, resolvers cache the empty "
            f"answer for the zone's negative_ttl ({_s(setup.negative_ttl)}), so clients stay "
            "without an address that long after a cluster returns"
        )
        return [Risk(RiskKind.WHEN_ALL_DOWN, message)]
    if setup.when_all_down is WhenAllDown.SERVFAIL:
        message = (
            "when_all_down servfail: when every endpoint is down, clients get errors and "
            "resolvers may cache the failure (up to 5 min, RFC 2308) after a cluster returns"
        )
        return [Risk(RiskKind.WHEN_ALL_DOWN, message)]
    return []


# --- wording -------------------------------------------------------------------------------


def seconds_text(seconds: float) -> str:
    """Seconds as shown: 1.25 s, 750 ms, 1 ms."""
    if seconds != 0 and abs(seconds) < 1:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"


_s = seconds_text


def _waits(durations: Sequence[float]) -> str:
    return " + ".join(_s(d) for d in durations)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
