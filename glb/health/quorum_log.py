"""The log line of an endpoint whose answered state changed with the peers' verdicts (the
quorum of vantage points, `glb.core.vantage`), not with this instance's own probes."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from glb.core.health import Health
from glb.core.model import Endpoint
from glb.core.snapshot import HealthSnapshot
from glb.core.vantage import Vantage, key_of

logger = logging.getLogger("glb.health.monitor")  # beside the monitor's own state changes


def log_quorum_change(
    endpoints: Iterable[Endpoint],
    before: HealthSnapshot,
    after: HealthSnapshot,
    own: Health,
    vantage: Vantage,
) -> None:
    """`eu-west app.example.com 10.0.0.1: up -> down by quorum majority (2 of 3 vantage points
    see it down; own: up)`, one line per endpoint of the target."""
    for endpoint in endpoints:
        target = endpoint.target
        votes = vantage.peer_verdicts(key_of(target))
        down = sum(not verdict.up for _, verdict in votes) + (own is Health.DOWN)
        to = after.health(target).state
        logger.info(
            "%s %s %s: %s -> %s by quorum %s (%d of %d vantage points see it down; own: %s)",
            endpoint.cluster,
            endpoint.service,
            endpoint.address,
            before.health(target).state,
            to,
            vantage.quorum,
            down,
            len(votes) + 1,
            own,
            extra={
                "event": "quorum_change",
                "service": endpoint.service,
                "cluster": endpoint.cluster,
                "address": endpoint.address,
                "to": to.value,
            },
        )
