"""Disagreements between this instance's own verdicts and each peer's (`glb.core.vantage`).

A target is in disagreement with a peer when both have a verdict on it and one sees it up, the
other down. Only a fresh peer's verdicts are compared: while a peer is stale, its disagreements
as last seen fresh are kept (not reported as current), so a store outage or a late heartbeat
does not count every lasting disagreement again when the peer is fresh once more. A peer that
is no longer listed at all (its verdicts expired from the store) is forgotten, its count too.

`started` counts, per peer, how many times a target went from agreeing (or having no verdict to
compare) to disagreeing; it only grows while the peer stays listed.

Pure and immutable: the caller hands in the own verdicts and the peers' view, and gets the next
`Disagreements` (replaced whole, so a reader never sees one half updated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from glb.core.vantage import PeerVerdicts, Vantage, Verdict


@dataclass(frozen=True, slots=True)
class Disagreements:
    """Per peer: the target keys on which it disagrees with this instance (as last seen fresh)
    and how many disagreements have started; `fresh`: the peers whose verdicts count now."""

    targets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    started: Mapping[str, int] = field(default_factory=dict)
    fresh: frozenset[str] = frozenset()

    def seen(self, own: Mapping[str, Verdict], vantage: Vantage) -> Disagreements:
        """The disagreements once `own` (this instance's verdicts by key) and `vantage` are
        seen; each target newly disagreeing with a fresh peer counts once in `started`."""
        targets: dict[str, frozenset[str]] = {}
        started: dict[str, int] = {}
        for peer in vantage.peers:
            before = self.targets.get(peer.name, frozenset())
            now = before
            if peer.name in vantage.fresh_names:
                now = disagreeing(own, peer)
            targets[peer.name] = now
            started[peer.name] = self.started.get(peer.name, 0) + len(now - before)
        return Disagreements(targets, started, vantage.fresh_names)

    def target_seen(self, key: str, up: bool | None, vantage: Vantage) -> Disagreements:
        """The disagreements once this instance's own verdict on the target named `key` is `up`
        (None: no verdict), the peers' as in `vantage` (the one last `seen`): O(peers)."""
        targets, started = dict(self.targets), dict(self.started)
        for peer in vantage.peers:
            if peer.name not in vantage.fresh_names:
                continue
            before = targets.get(peer.name, frozenset())
            theirs = peer.verdicts.get(key)
            if up is not None and theirs is not None and theirs.up != up:
                targets[peer.name] = before | {key}
                started[peer.name] = started.get(peer.name, 0) + (key not in before)
            else:
                targets[peer.name] = before - {key}
        return Disagreements(targets, started, vantage.fresh_names)

    def current(self) -> dict[str, int]:
        """How many targets each fresh peer disagrees on now, by peer name."""
        return {peer: len(keys) for peer, keys in self.targets.items() if peer in self.fresh}


def disagreeing(own: Mapping[str, Verdict], peer: PeerVerdicts) -> frozenset[str]:
    """The keys of the targets on which `peer`'s verdict (up or down) differs from `own`."""
    return frozenset(
        key
        for key, verdict in peer.verdicts.items()
        if (mine := own.get(key)) is not None and mine.up != verdict.up
    )
