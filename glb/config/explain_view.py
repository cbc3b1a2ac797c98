"""What `glb explain` shows: each service's settings as the failover model's `ServiceSetup`
(`service_setups`), and its `Explanation` as text (`explanation_lines`) or JSON
(`explanation_json`). A text report reads, for the default settings:

    app.glb.example.test: ttl 10 s (ttl_unstable 1 s), clusters eu-west, us-east
      probes: every 1 s (fast_interval 250 ms), timeout 750 ms (adaptive from min_timeout 250 ms)
      fall 2, rise 2, held connection on; rtt 1 ms (assumed)
      failure      detection typical / worst      clients gone typical / worst
      refused              0.002 s / 1.002 s                5.001 s / 11.001 s
      ...

then each mode's steps, the recovery, the warnings and what could not be checked. Pure text from
`Settings`: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from glb.config.checks import zone_of
from glb.config.models import ClusterSettings, ProbesSettings, ServiceSettings, Settings
from glb.config.topology import probe_spec, ttl_unstable
from glb.core.explain import ClusterPlace, Explanation, ProbeTiming, ServiceSetup, seconds_text
from glb.core.model import Location

Latencies = tuple[tuple[str, float], ...]  # ("cluster address", seconds) per endpoint


def find_service(settings: Settings, name: str) -> ServiceSettings | None:
    """The service called `name` (any case, with or without the trailing dot)."""
    wanted = name.strip().lower().removesuffix(".")
    return next((s for s in settings.services if s.name == wanted), None)


def service_setups(
    settings: Settings,
    services: Sequence[ServiceSettings],
    latencies: Mapping[str, Latencies] | None = None,
) -> list[ServiceSetup]:
    """The model's view of each service; `latencies` (by service name) as a running glb
    observed them, None when not read (a service it does not have gets none: `()`)."""
    clusters = {c.name: c for c in settings.clusters}
    negative_ttls = {z.name: z.negative_ttl for z in settings.zones}
    return [
        _setup(
            service,
            [clusters[name] for name in dict.fromkeys(b.cluster for b in service.backends)],
            negative_ttls,
            settings.probes,
            None if latencies is None else latencies.get(service.name, ()),
        )
        for service in services
    ]


def _setup(
    service: ServiceSettings,
    clusters: Sequence[ClusterSettings],
    negative_ttls: Mapping[str, int],
    probes: ProbesSettings,
    latencies: Latencies | None,
) -> ServiceSetup:
    spec = probe_spec(service.probe, service, probes)
    zone = zone_of(service.name, list(negative_ttls)) or ""
    return ServiceSetup(
        name=service.name,
        timing=ProbeTiming(
            interval=spec.interval,
            timeout=spec.timeout,
            fall=spec.fall,
            rise=spec.rise,
            fast_interval=spec.fast_interval,
            adaptive_timeout=spec.adaptive_timeout,
            min_timeout=spec.min_timeout,
            hold_connection=spec.hold_connection,
        ),
        ttl=service.ttl,
        ttl_unstable=ttl_unstable(service),
        clusters=tuple(_place(c) for c in clusters),
        when_all_down=service.when_all_down,
        negative_ttl=negative_ttls.get(zone, 0),
        eject_after=service.eject_after,
        eject_on_5xx=service.eject_on_5xx,
        connect_timeout=service.timeouts.connect,
        first_byte_timeout=service.timeouts.first_byte,
        latencies=latencies,
    )


def _place(cluster: ClusterSettings) -> ClusterPlace:
    where = cluster.location
    location = None if where is None else Location(where.lat, where.lon)
    return ClusterPlace(cluster.name, cluster.region, location)


# --- text ----------------------------------------------------------------------------------


def explanation_lines(explanations: Sequence[Explanation]) -> list[str]:
    """Every service's report, a blank line between services."""
    lines: list[str] = []
    for explanation in explanations:
        if lines:
            lines.append("")
        lines += _report(explanation)
    return lines


def _report(explanation: Explanation) -> list[str]:
    setup = explanation.setup
    clusters = ", ".join(c.name for c in setup.clusters)
    lines = [
        f"{setup.name}: ttl {_s(setup.ttl)} (ttl_unstable {_s(setup.ttl_unstable)}), "
        f"clusters {clusters}",
        *_probes(explanation),
        f"  {'failure':<10}{'detection typical / worst':>28}{'clients gone typical / worst':>34}",
    ]
    for e in explanation.estimates:
        detection = f"{e.detection_typical:.3f} s / {e.detection_worst:.3f} s"
        exposure = f"{e.exposure_typical:.3f} s / {e.exposure_worst:.3f} s"
        lines.append(f"  {e.mode:<10}{detection:>28}{exposure:>34}")
    recovery = explanation.recovery
    lines.append(f"  {'recovery':<10}{f'{recovery.typical:.3f} s / {recovery.worst:.3f} s':>28}")
    for e in explanation.estimates:
        lines.append(f"  {e.mode}:")
        lines += [f"    - {step}" for step in e.steps]
    lines.append("  recovery:")
    lines += [f"    - {step}" for step in recovery.steps]
    lines += [f"  warning: {risk.message}" for risk in explanation.risks]
    lines += [f"  not checked: {what}" for what in explanation.unchecked]
    return lines


def _probes(explanation: Explanation) -> list[str]:
    timing = explanation.setup.timing
    adaptive = f"adaptive from min_timeout {_s(timing.min_timeout)}"
    rtt = "observed, the slowest endpoint's" if explanation.setup.latencies else "assumed"
    return [
        f"  probes: every {_s(timing.interval)} (fast_interval {_s(timing.fast_interval)}), "
        f"timeout {_s(timing.timeout)} ({adaptive if timing.adaptive_timeout else 'fixed'})",
        f"  fall {timing.fall}, rise {timing.rise}, held connection "
        f"{'on' if timing.hold_connection else 'off'}; rtt {_s(explanation.rtt)} ({rtt})",
    ]


_s = seconds_text


# --- JSON ----------------------------------------------------------------------------------

Json = dict[str, object]


def explanation_json(explanations: Sequence[Explanation]) -> Json:
    """`glb explain --json`: every service's settings, estimates (seconds), warnings."""
    return {"services": [_service_json(e) for e in explanations]}


def _service_json(explanation: Explanation) -> Json:
    setup, timing = explanation.setup, explanation.setup.timing
    return {
        "name": setup.name,
        "ttl": setup.ttl,
        "ttl_unstable": setup.ttl_unstable,
        "probe": {
            "interval": timing.interval,
            "timeout": timing.timeout,
            "fall": timing.fall,
            "rise": timing.rise,
            "fast_interval": timing.fast_interval,
            "adaptive_timeout": timing.adaptive_timeout,
            "min_timeout": timing.min_timeout,
            "hold_connection": timing.hold_connection,
        },
        "rtt": _round(explanation.rtt),
        "rtt_observed": bool(setup.latencies),
        "failures": [
            {
                "mode": str(e.mode),
                "detection": _span(e.detection_typical, e.detection_worst),
                "clients_gone": _span(e.exposure_typical, e.exposure_worst),
                "steps": list(e.steps),
            }
            for e in explanation.estimates
        ],
        "recovery": {
            **_span(explanation.recovery.typical, explanation.recovery.worst),
            "steps": list(explanation.recovery.steps),
        },
        "warnings": [{"kind": str(r.kind), "message": r.message} for r in explanation.risks],
        "not_checked": list(explanation.unchecked),
    }


def _span(typical: float, worst: float) -> Json:
    return {"typical": _round(typical), "worst": _round(worst)}


def _round(seconds: float) -> float:
    return round(seconds, 6)
