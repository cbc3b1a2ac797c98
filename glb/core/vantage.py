"""A quorum of vantage points: how several instances' verdicts on a target combine.

Every instance probes every target itself and publishes its own verdict (up or down, the latency,
when it was reached) under the target's key (`key_of`: type, address, port and path, the same on
every instance given the same configuration). An instance's answers use the combined state:

- The voters on a target are this instance (its own verdict is always fresh) and every peer whose
  verdicts are fresh (its newest heartbeat is at most `stale_after` seconds old) and that has a
  verdict on that target.
- The target counts as down when at least `needed(quorum, voters)` voters see it down:
  `majority` is more than half of the voters, `any` is 1, `all` is every voter, and an integer n
  is n, or every voter when fewer than n are fresh (an instance alone, or with too few fresh
  peers, never needs more votes than there are: it falls back to "every fresh voter").
- A target this instance has not probed yet (its own state is unknown) stays unknown: peers do
  not put in the answers a target this instance has never probed. A target ejected by this
  instance's own proxy (passive health) stays ejected: that is local evidence.

Pure: the caller says what time it is; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from glb.core.health import Health
from glb.core.model import Target

QuorumRule = Literal["majority", "any", "all"] | int
QUORUM_RULES: Final = ("majority", "any", "all")


def key_of(target: Target) -> str:
    """The target's name shared by every instance: `http 10.0.0.1:8080/healthz`."""
    return target.describe()


def needed(quorum: QuorumRule, voters: int) -> int:
    """How many of `voters` (>= 1) must see a target down for it to count as down."""
    if quorum == "majority":
        return voters // 2 + 1
    if quorum == "any":
        return 1
    if quorum == "all":
        return voters
    return min(quorum, voters)


def combined_down(own_down: bool, peers_down: Iterable[bool], quorum: QuorumRule) -> bool:
    """Whether a target is down for answering, given this instance's verdict and the fresh
    peers' verdicts on it (True: that peer sees it down)."""
    votes = [own_down, *peers_down]
    return sum(votes) >= needed(quorum, len(votes))


@dataclass(frozen=True, slots=True)
class Verdict:
    """One instance's verdict on one target."""

    up: bool
    latency: float | None  # seconds (EWMA of successful probes), None if never reached
    since: float  # wall clock seconds: when this instance's state last changed

    def to_json(self) -> dict[str, object]:
        return {"up": self.up, "latency": self.latency, "since": self.since}


@dataclass(frozen=True, slots=True)
class PeerVerdicts:
    """What one peer published: its heartbeat (wall clock) and its verdicts by target key."""

    name: str
    heartbeat: float
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)

    def age(self, now: float) -> float:
        return max(0.0, now - self.heartbeat)

    def fresh(self, now: float, stale_after: float) -> bool:
        return self.age(now) <= stale_after


@dataclass(frozen=True, slots=True)
class Vantage:
    """The peers as this instance knows them, and the rule; immutable, replaced on change.

    `fresh_names` are the peers whose verdicts count now (decided by the caller's clock when the
    view was made: `Vantage.at`). `own_heartbeat`: when this instance's own verdicts were last
    written to the store (wall clock; None before the first write), for display only."""

    quorum: QuorumRule = "majority"
    stale_after: float = 5.0
    peers: tuple[PeerVerdicts, ...] = ()
    fresh_names: frozenset[str] = frozenset()
    store_up: bool = False
    own_heartbeat: float | None = None

    @classmethod
    def at(
        cls,
        now: float,
        peers: Iterable[PeerVerdicts],
        *,
        quorum: QuorumRule,
        stale_after: float,
        store_up: bool,
        own_heartbeat: float | None = None,
    ) -> Vantage:
        """The view at wall clock `now`: no peer is fresh while the store is unreachable."""
        listed = tuple(sorted(peers, key=lambda p: p.name))
        fresh = frozenset(p.name for p in listed if store_up and p.fresh(now, stale_after))
        return cls(quorum, stale_after, listed, fresh, store_up, own_heartbeat)

    @property
    def alone(self) -> bool:
        """True when no peer's verdict counts: this instance decides from its own."""
        return not self.fresh_names

    def peer_verdicts(self, key: str) -> list[tuple[str, Verdict]]:
        """The fresh peers' verdicts on the target named `key`, by peer name."""
        return [
            (peer.name, verdict)
            for peer in self.peers
            if peer.name in self.fresh_names and (verdict := peer.verdicts.get(key)) is not None
        ]

    def combined(self, own: Health, key: str) -> Health:
        """The state to answer with for a target whose own state is `own`."""
        if own is Health.UNKNOWN or self.alone:
            return own
        peers = (not verdict.up for _, verdict in self.peer_verdicts(key))
        return Health.DOWN if combined_down(own is Health.DOWN, peers, self.quorum) else Health.UP

    def fresh_count(self) -> int:
        return len(self.fresh_names)
