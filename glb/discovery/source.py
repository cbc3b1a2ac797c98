"""The interface between a discovery source and the rest of glb: what the app runs and hears.

A source runs until cancelled; it calls `on_change(cluster, discovered)` with every glb service
it found in that cluster each time that mapping changes, and tells whether each cluster's source
is up (answering). A source that cannot reach a cluster keeps that cluster's last known mapping:
it never reports a service gone because its source is down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Discovered:
    """A glb service's addresses in one cluster, as the cluster tells them."""

    addresses: tuple[str, ...]
    hostnames: tuple[str, ...]
    source: str
    """The objects they come from, like `Ingress shop/app`."""
    ready: bool | None
    """Whether there are ready endpoints behind them; None when not asked or unknown."""


OnChange = Callable[[str, Mapping[str, Discovered]], None]
"""Called with a cluster and every service discovered there, whenever that mapping changes."""

OnUp = Callable[[str, bool], None]
"""Called with a cluster and whether its source answers, whenever that changes."""


class DiscoverySource(Protocol):
    async def run(self) -> None:
        """Discover until cancelled, calling the source's on_change on every change."""
        ...

    @property
    def up(self) -> Mapping[str, bool]:
        """Per cluster, whether the source answers (False before its first answer)."""
        ...

    @property
    def discovered(self) -> Mapping[str, Mapping[str, Discovered]]:
        """Per cluster, the last known services (what on_change last told)."""
        ...
