"""The vantage points in the admin API (`glb.core.vantage`): with a shared store (`state.redis`),
each endpoint of the services view gains a `vantage` object (every instance's verdict on it,
its age, whether it counts, and the combined state answers use), and `GET /api/v1/peers` lists
the instances this one knows.

Without a shared store the services view has no `vantage` key (its output is unchanged) and
`/api/v1/peers` lists this instance alone, with `"store": null` and `"quorum": null`.

A peer is listed while its hash is in the store: a peer that stops writing is shown stale once
its newest heartbeat is older than `state.stale_after`, and drops out of the list when its hash
expires (`3 * stale_after` after that heartbeat). A verdict's `age_seconds` is the age of the
heartbeat it was last published with (0 for this instance's own, read live); `since` is when that
instance's state of the endpoint last changed. `fresh` says whether the verdict counts in the
combined state now (this instance's own always does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from glb.core.health import Health
from glb.core.model import Target
from glb.core.ports import VantageView
from glb.core.vantage import QuorumRule, Vantage, Verdict, key_of

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class VantagePoints:
    """This instance among the vantage points: its name (`instance.name`) and, with a shared
    store, the view of its peers and the rule configured (`state.quorum`, `state.stale_after`)."""

    instance: str
    view: VantageView | None = None  # None: no shared store, this instance decides alone
    quorum: QuorumRule = "majority"
    stale_after: float = 5.0


@dataclass(frozen=True, slots=True)
class VerdictsNow:
    """Every instance's verdicts, read once for the JSON of one request."""

    points: VantagePoints
    vantage: Vantage
    own: Mapping[str, Verdict]
    wall_now: float

    @classmethod
    def read(cls, points: VantagePoints, wall_now: float) -> VerdictsNow | None:
        """None without a shared store: the services view then has no `vantage` key."""
        if points.view is None:
            return None
        return cls(points, points.view.vantage, points.view.own_verdicts(), wall_now)

    def endpoint(self, target: Target, combined: Health) -> Json:
        """The `vantage` object of an endpoint probed as `target`, answered as `combined`."""
        key = key_of(target)
        verdicts = []
        if (own := self.own.get(key)) is not None:
            verdicts.append(_verdict(self.points.instance, own, 0.0, fresh=True, own=True))
        for peer in self.vantage.peers:
            if (verdict := peer.verdicts.get(key)) is not None:
                fresh = peer.name in self.vantage.fresh_names
                age = peer.age(self.wall_now)
                verdicts.append(_verdict(peer.name, verdict, age, fresh=fresh, own=False))
        return {"quorum": self.points.quorum, "combined": str(combined), "verdicts": verdicts}


def _verdict(name: str, verdict: Verdict, age: float, *, fresh: bool, own: bool) -> Json:
    latency = None if verdict.latency is None else round(verdict.latency * 1000, 3)
    return {
        "instance": name,
        "up": verdict.up,
        "latency_ms": latency,
        "since": iso_time(verdict.since),
        "age_seconds": round(age, 3),
        "fresh": fresh,
        "own": own,
    }


def peers_json(points: VantagePoints, wall_now: float) -> Json:
    """The body of `GET /api/v1/peers`: this instance first, then its peers by name."""
    if points.view is None:
        alone = _instance(points.instance, None, 0, wall_now, fresh=True, itself=True)
        return {"instance": points.instance, "quorum": None, "store": None, "instances": [alone]}
    vantage = points.view.vantage
    own = len(points.view.own_verdicts())
    listed = [
        _instance(points.instance, vantage.own_heartbeat, own, wall_now, fresh=True, itself=True)
    ]
    for peer in vantage.peers:
        fresh = peer.name in vantage.fresh_names
        count = len(peer.verdicts)
        listed.append(_instance(peer.name, peer.heartbeat, count, wall_now, fresh=fresh))
    return {
        "instance": points.instance,
        "quorum": points.quorum,
        "stale_after_seconds": points.stale_after,
        "store": {"reachable": vantage.store_up},
        "fresh_peers": vantage.fresh_count(),
        "instances": listed,
    }


def _instance(
    name: str,
    heartbeat: float | None,
    verdicts: int,
    wall_now: float,
    *,
    fresh: bool,
    itself: bool = False,
) -> Json:
    """One instance; `heartbeat`: when its verdicts were last written (None: not yet, or no
    store)."""
    age = None if heartbeat is None else round(max(0.0, wall_now - heartbeat), 3)
    return {
        "name": name,
        "self": itself,
        "fresh": fresh,
        "heartbeat": None if heartbeat is None else iso_time(heartbeat),
        "age_seconds": age,
        "verdicts": verdicts,
    }


def iso_time(wall: float) -> str | None:
    """Seconds since the epoch as an ISO-8601 UTC timestamp, to the millisecond; None for a
    time no timestamp can say (a peer's junk in the store)."""
    try:
        at = datetime.fromtimestamp(wall, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
