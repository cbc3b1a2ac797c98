"""Disagreements between this instance's own verdicts and its peers' (`glb.core.disagreements`),
from a monitor whose peers' verdicts are set in code (no Redis), as exported on /metrics:
`glb_vantage_disagreeing_targets{peer}` and `glb_vantage_disagreements_total{peer}`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from glb.admin.metrics import metrics_registry
from glb.core.disagreements import Disagreements
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.core.vantage import PeerVerdicts, Vantage, Verdict
from glb.health.monitor import Monitor
from tests.stack import Upstreams, monitored, upstreams
from tests.test_admin_api import backend, config
from tests.test_admin_peers import NOW, STALE_AFTER, eu_key, peers_seeing, set_peers

NOW_TARGETS = "glb_vantage_disagreeing_targets"
STARTED = "glb_vantage_disagreements_total"


@pytest.fixture
async def where() -> AsyncIterator[Upstreams]:
    async with upstreams({"eu": backend(), "us": backend()}) as where:
        yield where


@pytest.fixture
async def monitor(where: Upstreams) -> AsyncIterator[Monitor]:
    async with monitored(config(where)) as monitor:
        yield monitor


def registry_of(monitor: Monitor) -> CollectorRegistry:
    """/metrics as `glb serve` builds it with `state.redis`."""
    return metrics_registry(
        Stats(), monitor, monitor, lambda: True, lambda: monitor.vantage, monitor
    )


def by_peer(registry: CollectorRegistry, name: str) -> dict[str, float]:
    """The samples of `name`, by their `peer` label (read through the OpenMetrics format,
    which Prometheus prefers: a family named twice would not parse)."""
    text = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    families = list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]
    return {
        sample.labels["peer"]: sample.value
        for family in families
        for sample in family.samples
        if sample.name == name
    }


async def test_peers_that_agree_are_exported_with_zero(monitor: Monitor) -> None:
    set_peers(monitor, peers_seeing(eu_key(monitor), **{"glb-b": True, "glb-c": True}))
    registry = registry_of(monitor)
    assert by_peer(registry, NOW_TARGETS) == {"glb-b": 0.0, "glb-c": 0.0}
    assert by_peer(registry, STARTED) == {"glb-b": 0.0, "glb-c": 0.0}


async def test_one_target_differing_with_one_peer_counts_for_that_peer_only(
    monitor: Monitor,
) -> None:
    set_peers(monitor, peers_seeing(eu_key(monitor), **{"glb-b": False, "glb-c": True}))
    registry = registry_of(monitor)
    assert by_peer(registry, NOW_TARGETS) == {"glb-b": 1.0, "glb-c": 0.0}
    assert by_peer(registry, STARTED) == {"glb-b": 1.0, "glb-c": 0.0}
    assert monitor.disagreements.targets["glb-b"] == {eu_key(monitor)}


async def test_a_stale_peer_does_not_count(monitor: Monitor) -> None:
    set_peers(monitor, peers_seeing(eu_key(monitor), **{"glb-b": True, "glb-d": False}))
    registry = registry_of(monitor)
    assert by_peer(registry, NOW_TARGETS) == {"glb-b": 0.0}  # glb-d: stale, no series
    assert by_peer(registry, STARTED) == {"glb-b": 0.0, "glb-d": 0.0}


async def test_an_unreachable_store_counts_no_disagreement(monitor: Monitor) -> None:
    set_peers(monitor, peers_seeing(eu_key(monitor), **{"glb-b": False}), store_up=False)
    assert by_peer(registry_of(monitor), NOW_TARGETS) == {}
    assert by_peer(registry_of(monitor), STARTED) == {"glb-b": 0.0}


async def test_a_peer_going_back_and_forth_counts_twice(monitor: Monitor) -> None:
    key = eu_key(monitor)
    for seen in (False, True, False, False):  # the last: the same disagreement, seen again
        set_peers(monitor, peers_seeing(key, **{"glb-b": seen}))
    registry = registry_of(monitor)
    assert by_peer(registry, NOW_TARGETS) == {"glb-b": 1.0}
    assert by_peer(registry, STARTED) == {"glb-b": 2.0}


async def test_a_lasting_disagreement_is_not_counted_again_after_the_peer_was_stale(
    monitor: Monitor,
) -> None:
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": False}))
    set_peers(monitor, peers_seeing(key, **{"glb-b": False}), store_up=False)
    set_peers(monitor, peers_seeing(key, **{"glb-b": False}))
    assert by_peer(registry_of(monitor), STARTED) == {"glb-b": 1.0}


async def test_an_own_state_change_starts_a_disagreement(
    monitor: Monitor, where: Upstreams
) -> None:
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": True}))
    assert by_peer(registry_of(monitor), STARTED) == {"glb-b": 0.0}

    await where.stop("eu")

    def own_down(_: HealthSnapshot) -> bool:
        return not monitor.own_verdicts()[key].up

    await monitor.wait_for(own_down)
    registry = registry_of(monitor)
    assert by_peer(registry, NOW_TARGETS) == {"glb-b": 1.0}
    assert by_peer(registry, STARTED) == {"glb-b": 1.0}


async def test_without_a_shared_store_no_disagreement_metric_is_exported(
    monitor: Monitor,
) -> None:
    registry = metrics_registry(Stats(), monitor, monitor)
    assert by_peer(registry, NOW_TARGETS) == {}
    assert registry.get_sample_value(STARTED, {"peer": "glb-b"}) is None


def test_a_peer_no_longer_listed_is_forgotten() -> None:
    peer = PeerVerdicts("glb-b", NOW, {"k": Verdict(False, None, 0.0)})
    own = {"k": Verdict(True, None, 0.0)}

    def view(*peers: PeerVerdicts) -> Vantage:
        return Vantage.at(NOW, peers, quorum="majority", stale_after=STALE_AFTER, store_up=True)

    seen = Disagreements().seen(own, view(peer))
    assert (seen.current(), dict(seen.started)) == ({"glb-b": 1}, {"glb-b": 1})
    gone = seen.seen(own, view())
    assert (gone.current(), dict(gone.started)) == ({}, {})


def test_one_own_verdict_changing_updates_only_that_target() -> None:
    peer = PeerVerdicts("glb-b", NOW, {"k": Verdict(False, None, 0.0), "j": Verdict(True, None, 0)})
    vantage = Vantage.at(NOW, [peer], quorum="majority", stale_after=STALE_AFTER, store_up=True)
    agreeing = Disagreements().seen({"k": Verdict(False, None, 0.0)}, vantage)
    assert agreeing.current() == {"glb-b": 0}
    flips = [("k", True), ("j", False), ("k", False), ("k", True), ("j", None)]
    after = agreeing
    for key, up in flips:
        after = after.target_seen(key, up, vantage)
    assert after.targets["glb-b"] == {"k"}
    assert dict(after.started) == {"glb-b": 3}
