"""The ports through which adapters reach glb's state without importing each other.

`glb.app` hands each adapter the object implementing these (the monitor); adapters type their
parameters with these Protocols only. Typing only (and the one error a port raises).
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from glb.core.disagreements import Disagreements
from glb.core.drains import Drain, Drains
from glb.core.model import Endpoint, Location, Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.vantage import Vantage, Verdict


class StateView(Protocol):
    """Read access to the current configuration and health."""

    @property
    def topology(self) -> Topology:
        """The topology in force (replaced whole on reload)."""
        ...

    @property
    def ready(self) -> bool:
        """True once the first probe round has been applied."""
        ...

    def current(self) -> HealthSnapshot:
        """The newest health snapshot; cheap, never blocks."""
        ...


class VantageView(Protocol):
    """The vantage points as this instance knows them (with `state.redis`): the peers' verdicts
    and the rule (`glb.core.vantage`), and this instance's own verdicts."""

    @property
    def vantage(self) -> Vantage:
        """The peers' verdicts and the quorum rule in force."""
        ...

    def own_verdicts(self) -> dict[str, Verdict]:
        """This instance's own verdict on every probed target, by `key_of(target)`."""
        ...


class VerdictConsistency(Protocol):
    """How this instance's own verdicts compare with each peer's (with `state.redis`)."""

    @property
    def disagreements(self) -> Disagreements:
        """Per peer, the targets on which its verdict differs from this instance's own."""
        ...


class PassiveHealth(Protocol):
    """Where the HTTP proxy reports how each proxied request to an endpoint went."""

    def report_request(self, endpoint: Endpoint, *, failed: bool, detail: str = "") -> None:
        """`failed`: a connection failure (or a 5xx, when the service counts those)."""
        ...


class DrainControls(Protocol):
    """Operator drains as adapters (the admin API) make them: each change is saved durably
    before it is applied (`glb.state.durable`); a save that fails raises `DrainNotSaved` and
    changes nothing."""

    @property
    def drains(self) -> Drains:
        """The drains in force, with who, since, reason and until."""
        ...

    async def drain(self, drain: Drain) -> bool:
        """Save, then apply; False (nothing saved) if that scope was already drained."""
        ...

    async def undrain(self, cluster: str, service: str | None = None) -> bool:
        """Save, then apply; False if that scope was not drained."""
        ...

    @property
    def shared(self) -> bool | None:
        """With a shared store (`state.redis`): whether it is reachable now, so that a change
        reaches the other instances; None without one."""
        ...


class LocalDrains(Protocol):
    """The drains held in memory (the monitor): applied at once, saved by no one."""

    @property
    def drains(self) -> Drains:
        """The drains in force."""
        ...

    def drain(self, drain: Drain) -> bool:
        """Apply a drain; False if that scope was already drained."""
        ...

    def undrain(self, cluster: str, service: str | None = None) -> bool:
        """End a drain; False if that scope was not drained."""
        ...

    def restore(self, drains: Drains) -> None:
        """Put `drains` in force in place of the current ones (those expired end at once)."""
        ...


class DrainNotSaved(Exception):
    """A drain change could not be saved, so it was not applied; the message says why."""


class LocationDatabase(Protocol):
    """A database of client locations by address (glb.geodb: a MaxMind DB file)."""

    @property
    def path(self) -> str:
        """Where it was read from, for messages."""
        ...

    def locate(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> tuple[Location | None, int]:
        """The location recorded for `address` (None: no record, or one without a location)
        and the prefix length, in `address`'s own family, of the network that answer holds for.
        Never raises for a well-formed address."""
        ...
