"""Prometheus metrics: every metric glb exports is defined here, read at scrape time.

The hot paths count into `glb.core.stats.Stats` (plain integers; the DNS fast path's tallies are
settled at scrape time); health comes from the current snapshot, drains from the drains in force.
Custom collectors turn them into metric families when Prometheus scrapes, so a DNS query never
pays for a prometheus-client call. Each running glb has its own CollectorRegistry (never the
global one), with the client's process, platform and GC collectors added.

Metric names and labels are a contract (dashboards and alert rules use them): see README.md.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from glb import __version__
from glb.core.disagreements import Disagreements
from glb.core.drains import MAX_REASON
from glb.core.drills import DrillMode, DrillState
from glb.core.policies import fails_open
from glb.core.ports import LocalDrains, StateView, VerdictConsistency
from glb.core.snapshot import EndpointState, HealthSnapshot
from glb.core.stats import ECS_RESULTS, Histogram, Stats
from glb.core.vantage import Vantage

ENDPOINT = ["service", "cluster", "address"]
PROBE = ["cluster", "address", "port", "type"]


StatsSource = Callable[[], Stats]


class GlbCollector(Collector):
    """Reads Stats and the current snapshot at scrape time. `stats` is one Stats, or a callable
    returning the one to export (with workers: the sum of every process's, `Stats.merged`)."""

    def __init__(
        self, stats: Stats | StatsSource, state: StateView, *, workers_configured: int = 1
    ) -> None:
        self._source: StatsSource = stats if callable(stats) else lambda: stats
        self._state = state
        self._workers_configured = workers_configured
        self._stats = Stats()

    def collect(self) -> Iterator[Metric]:
        self._stats = self._source()  # one consistent read per scrape
        self._stats.settle()  # the DNS fast path's pending counts (glb.core.stats.DnsTally)
        snapshot = self._state.current()  # one snapshot per scrape too
        yield from self._endpoints(snapshot)
        yield self._failing_open(snapshot)
        yield from self._probes()
        yield from self._failovers()
        yield from self._dns()
        yield from self._proxy()
        yield from self._config()
        yield from self._hostnames()
        yield from self._workers()

    def _endpoints(self, snapshot: HealthSnapshot) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "glb_endpoint_up", "1 if the endpoint is up and in rotation, else 0", labels=ENDPOINT
        )
        state = GaugeMetricFamily(
            "glb_endpoint_state",
            "1 for the endpoint's current state (up, down, unknown, drained, ejected)",
            labels=[*ENDPOINT, "state"],
        )
        latency = GaugeMetricFamily(
            "glb_endpoint_latency_seconds",
            "EWMA of the endpoint's successful probe round trips",
            labels=ENDPOINT,
        )
        for service in self._state.topology.services:
            for endpoint in service.endpoints:
                labels = [service.name, endpoint.cluster, endpoint.address]
                current = snapshot.state(endpoint)
                up.add_metric(labels, 1.0 if current is EndpointState.UP else 0.0)
                for each in EndpointState:
                    state.add_metric([*labels, each.value], 1.0 if each is current else 0.0)
                if (seconds := snapshot.latency(endpoint)) is not None:
                    latency.add_metric(labels, seconds)
        transitions = CounterMetricFamily(
            "glb_endpoint_transitions",
            "Endpoint state changes, by the state changed to",
            labels=[*ENDPOINT, "to"],
        )
        for key, count in sorted(self._stats.transitions.items()):
            transitions.add_metric(list(key), count)
        yield from (up, state, latency, transitions)

    def _failing_open(self, snapshot: HealthSnapshot) -> Metric:
        failing = GaugeMetricFamily(
            "glb_service_failing_open",
            "1 while the service fails open: no endpoint is up and its answers hand out every"
            " undrained one (when_all_down: return_all), else 0",
            labels=["service"],
        )
        for service in self._state.topology.services:
            failing.add_metric([service.name], 1.0 if fails_open(service, snapshot) else 0.0)
        return failing

    def _probes(self) -> Iterator[Metric]:
        durations = HistogramMetricFamily(
            "glb_probe_duration_seconds", "Probe round trips, successful or not", labels=PROBE
        )
        for key, histogram in sorted(self._stats.probe_durations.items()):
            _add_histogram(durations, [str(part) for part in key], histogram)
        results = CounterMetricFamily(
            "glb_probe_results", "Probe results by outcome", labels=[*PROBE, "result"]
        )
        for result_key, count in sorted(self._stats.probe_results.items()):
            results.add_metric([str(part) for part in result_key], count)
        yield from (durations, results)

    def _failovers(self) -> Iterator[Metric]:
        """The failover SLI: how long clients could still be sent to a failed endpoint."""
        detection = HistogramMetricFamily(
            "glb_failover_detection_seconds",
            "From an endpoint's first failed probe or request to the first answer without it",
            labels=["service"],
        )
        exposure = HistogramMetricFamily(
            "glb_failover_exposure_seconds",
            "Detection plus the TTL of the last answer that still named the failed endpoint",
            labels=["service"],
        )
        for family, histograms in (
            (detection, self._stats.failover_detection),
            (exposure, self._stats.failover_exposure),
        ):
            for service, histogram in sorted(histograms.items()):
                _add_histogram(family, [service], histogram)
        yield from (detection, exposure)

    def _dns(self) -> Iterator[Metric]:
        stats = self._stats
        yield _counter(
            "glb_dns_queries",
            "DNS queries answered, by transport, query type and response code",
            ["transport", "qtype", "rcode"],
            stats.dns_queries.items(),
        )
        yield _counter(
            "glb_dns_answers",
            "Addresses handed out in DNS answers, by service and cluster",
            ["service", "cluster"],
            stats.dns_answers.items(),
        )
        yield CounterMetricFamily(
            "glb_dns_truncated", "UDP answers sent truncated (TC)", value=stats.dns_truncated
        )
        yield CounterMetricFamily(
            "glb_dns_malformed", "DNS messages that could not be parsed", value=stats.dns_malformed
        )
        yield _counter(
            "glb_dns_ecs_queries",
            "DNS queries with an EDNS Client Subnet option, by what became of it: used (its"
            " address is the client's), zero_prefix (source prefix 0: the resolver's own"
            " address is), malformed (FORMERR)",
            ["result"],
            (((result,), stats.dns_ecs_queries[result]) for result in ECS_RESULTS),
        )
        yield CounterMetricFamily(
            "glb_dns_rrl_dropped",
            "UDP responses not sent because of response rate limiting",
            value=stats.dns_rrl_dropped,
        )
        yield CounterMetricFamily(
            "glb_dns_rrl_slipped",
            "UDP responses sent as a truncated (TC) reply because of response rate limiting",
            value=stats.dns_rrl_slipped,
        )

    def _proxy(self) -> Iterator[Metric]:
        stats = self._stats
        yield _counter(
            "glb_proxy_requests",
            "Proxied requests by service, serving cluster and status code",
            ["service", "cluster", "code"],
            stats.proxy_requests.items(),
        )
        durations = HistogramMetricFamily(
            "glb_proxy_request_duration_seconds",
            "Proxied request durations, to the end of the response",
            labels=["service"],
        )
        for service, histogram in sorted(stats.proxy_durations.items()):
            _add_histogram(durations, [service], histogram)
        yield durations
        yield _counter(
            "glb_proxy_retries",
            "Attempts on a further endpoint after a failed one",
            ["service"],
            [((k,), v) for k, v in stats.proxy_retries.items()],
        )
        yield _counter(
            "glb_proxy_ejections",
            "Endpoints ejected by failed proxied requests",
            ["service", "cluster"],
            stats.proxy_ejections.items(),
        )
        yield _counter(
            "glb_http_rejected_requests",
            "HTTP requests refused before routing (malformed, over a limit, too slow), by status",
            ["code"],
            [((k,), v) for k, v in stats.http_rejected.items()],
        )
        yield CounterMetricFamily(
            "glb_http_connections_refused",
            "Client connections closed at once, unanswered: http.max_connections were open",
            value=stats.http_connections_refused,
        )
        active = GaugeMetricFamily(
            "glb_proxy_active_requests", "Requests being proxied now", labels=["service"]
        )
        for service, count in sorted(stats.proxy_active.items()):
            active.add_metric([service], count)
        yield active

    def _config(self) -> Iterator[Metric]:
        stats, topology = self._stats, self._state.topology
        yield _counter(
            "glb_config_reloads",
            "Configuration reloads by result",
            ["result"],
            (((result,), stats.reloads[result]) for result in ("success", "error")),
        )
        if stats.last_reload_success is not None:
            yield GaugeMetricFamily(
                "glb_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully (unix time)",
                value=stats.last_reload_success,
            )
        yield GaugeMetricFamily("glb_services", "Configured services", value=len(topology.services))
        yield GaugeMetricFamily("glb_clusters", "Configured clusters", value=len(topology.clusters))
        info = GaugeMetricFamily(
            "glb_build_info", "glb's version and Python's", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info

    def _hostnames(self) -> Iterator[Metric]:
        stats = self._stats
        yield _counter(
            "glb_hostname_resolutions",
            "Lookups of clusters' host names by name and result",
            ["hostname", "result"],
            stats.hostname_resolutions.items(),
        )
        known = GaugeMetricFamily(
            "glb_hostname_addresses",
            "The addresses known of each cluster host name",
            labels=["hostname"],
        )
        for name, count in sorted(stats.hostname_addresses.items()):
            known.add_metric([name], count)
        yield known
        up = GaugeMetricFamily(
            "glb_discovery_up",
            "1 while the cluster's Kubernetes API answers discovery's list and watch requests",
            labels=["cluster"],
        )
        for cluster, answers in sorted(stats.discovery_up.items()):
            up.add_metric([cluster], 1.0 if answers else 0.0)
        yield up

    def _workers(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "glb_workers",
            "Processes serving DNS and HTTP now, the main one included (glb serve --workers)",
            value=self._stats.workers,
        )
        yield GaugeMetricFamily(
            "glb_workers_configured",
            "Processes configured to serve DNS and HTTP, the main one included (glb serve"
            " --workers); glb_workers is lower while a dead worker waits to be restarted",
            value=self._workers_configured,
        )
        delay = GaugeMetricFamily(
            "glb_worker_propagation_seconds",
            "Time from a health snapshot's publication in the main process to its use in a "
            "worker's answers, for the newest snapshot each worker applied",
            labels=["worker"],
        )
        for worker, seconds in sorted(self._stats.worker_propagation.items()):
            delay.add_metric([worker], seconds)
        yield delay


def _counter(
    name: str,
    documentation: str,
    labels: list[str],
    items: Iterable[tuple[tuple[str, ...], int]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(items):
        family.add_metric(list(key), count)
    return family


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, histogram.cumulative(), histogram.sum)


class StoreCollector(Collector):
    """`glb_state_store_up`: whether the shared state store (`state.redis`) is reachable;
    `glb_vantage_peers{state}`: the other instances whose verdicts count (fresh) or not;
    `glb_vantage_disagreeing_targets{peer}` and `glb_vantage_disagreements_total{peer}`: how
    this instance's own verdicts compare with each peer's (peer names are bounded by the
    deployment, like configuration)."""

    def __init__(
        self,
        up: Callable[[], bool],
        vantage: Callable[[], Vantage] | None,
        consistency: VerdictConsistency | None = None,
    ) -> None:
        self._up = up
        self._vantage = vantage
        self._consistency = consistency

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "glb_state_store_up",
            "1 while the shared state store (state.redis) is reachable, else 0",
            value=1.0 if self._up() else 0.0,
        )
        if self._vantage is None:
            return
        vantage = self._vantage()
        peers = GaugeMetricFamily(
            "glb_vantage_peers",
            "Other instances sharing verdicts: fresh (counted in the quorum) or stale",
            labels=["state"],
        )
        fresh = vantage.fresh_count()
        peers.add_metric(["fresh"], fresh)
        peers.add_metric(["stale"], len(vantage.peers) - fresh)
        yield peers
        if self._consistency is not None:
            yield from _disagreements(self._consistency.disagreements)


def _disagreements(disagreements: Disagreements) -> Iterator[Metric]:
    now = GaugeMetricFamily(
        "glb_vantage_disagreeing_targets",
        "Targets on which this instance's own verdict (up or down) differs from a fresh peer's",
        labels=["peer"],
    )
    for peer, count in sorted(disagreements.current().items()):
        now.add_metric([peer], count)
    yield now
    yield _counter(
        "glb_vantage_disagreements",
        "Times a target went from agreeing to disagreeing with a peer's verdict",
        ["peer"],
        [((peer,), count) for peer, count in disagreements.started.items()],
    )


class DrainCollector(Collector):
    """The operator drains in force, as info metrics: `glb_drain_info{cluster, service, who,
    reason}` and the drain's start and end times. A reason is free text, so it is a label of
    this metric only (one series per drain, gone with the drain), never of a per-endpoint one.
    `service` is `*` for a drain of every service."""

    def __init__(self, drains: LocalDrains) -> None:
        self._drains = drains

    def collect(self) -> Iterator[Metric]:
        scope = ["cluster", "service"]
        info = GaugeMetricFamily(
            "glb_drain_info",
            "1 per operator drain in force (service * for every service), with who and why",
            labels=[*scope, "who", "reason"],
        )
        since = GaugeMetricFamily(
            "glb_drain_since_timestamp_seconds", "When the drain began (unix time)", labels=scope
        )
        until = GaugeMetricFamily(
            "glb_drain_until_timestamp_seconds",
            "When the drain ends by itself (unix time); absent for a drain until undrained",
            labels=scope,
        )
        for drain in sorted(self._drains.drains, key=lambda d: (d.cluster, d.service or "")):
            labels = [drain.cluster, "*" if drain.service is None else drain.service]
            reason = (drain.reason or "")[:MAX_REASON]
            info.add_metric([*labels, drain.who, reason], 1.0)
            since.add_metric(labels, drain.since)
            if drain.until is not None:
                until.add_metric(labels, drain.until)
        yield from (info, since, until)


class DrillFigures(Protocol):
    """The drills as metrics see them (`glb.admin.drill_runner.DrillRunner`)."""

    @property
    def ended_counts(self) -> Mapping[tuple[str, str], int]:
        """Drills ended, by (mode, result)."""
        ...

    @property
    def running_clusters(self) -> frozenset[str]: ...


class DrillCollector(Collector):
    """`glb_drills_total{mode, result}`: failover drills ended (finished, cancelled or
    interrupted); `glb_drill_running{cluster}`: 1 for each cluster being drilled now, else 0."""

    def __init__(self, drills: DrillFigures, state: StateView) -> None:
        self._drills = drills
        self._state = state

    def collect(self) -> Iterator[Metric]:
        counts = self._drills.ended_counts
        ended = [s for s in DrillState if s is not DrillState.RUNNING]
        yield _counter(
            "glb_drills",
            "Failover drills ended, by mode and result (finished, cancelled, interrupted)",
            ["mode", "result"],
            [
                ((m.value, s.value), counts.get((m.value, s.value), 0))
                for m in DrillMode
                for s in ended
            ],
        )
        running = GaugeMetricFamily(
            "glb_drill_running", "1 while a failover drill of the cluster runs", labels=["cluster"]
        )
        drilled = self._drills.running_clusters
        for cluster in self._state.topology.clusters:
            running.add_metric([cluster.name], 1.0 if cluster.name in drilled else 0.0)
        yield running


def metrics_registry(
    stats: Stats | StatsSource,
    state: StateView,
    drains: LocalDrains,
    store_up: Callable[[], bool] | None = None,
    vantage: Callable[[], Vantage] | None = None,
    consistency: VerdictConsistency | None = None,
    drills: DrillFigures | None = None,
    *,
    workers: int = 1,
) -> CollectorRegistry:
    """A registry of glb's own metrics plus the client's process, platform and GC metrics (the
    process metrics are the main process's only); `glb_state_store_up` only with `store_up`
    (a shared state store is configured), `glb_vantage_peers` also with `vantage`, the
    disagreements with each peer also with `consistency`; the drains in force from `drains`;
    the failover drills from `drills`; `workers`: the processes configured to serve."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GlbCollector(stats, state, workers_configured=workers))
    registry.register(DrainCollector(drains))
    if drills is not None:
        registry.register(DrillCollector(drills, state))
    if store_up is not None:
        registry.register(StoreCollector(store_up, vantage, consistency))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """The aiohttp handler serving `registry` in the Prometheus text format."""
    handler: Handler = make_aiohttp_handler(registry)
    return handler
