"""Probes asked for from outside the probing: an event at an address and port (the proxy's idle
upstream connection to it was lost) becomes `probe_now` for every target whose endpoints serve
there. The index from (address, port) to targets is built once per topology.
"""

from __future__ import annotations

from collections.abc import Callable

from glb.core.model import Target, Topology


class AddressTriggers:
    """`lost(address, port)` asks `probe_now` for each target of the endpoints at that address
    whose service listens on that port, in the topology `topology()` returns at the time."""

    def __init__(
        self, topology: Callable[[], Topology], probe_now: Callable[[Target], None]
    ) -> None:
        self._topology = topology
        self._probe_now = probe_now
        self._indexed: Topology | None = None
        self._targets: dict[tuple[str, int], frozenset[Target]] = {}

    def lost(self, address: str, port: int) -> None:
        for target in self.targets_at(address, port):
            self._probe_now(target)

    def targets_at(self, address: str, port: int) -> frozenset[Target]:
        topology = self._topology()
        if topology is not self._indexed:
            self._targets = _index(topology)
            self._indexed = topology
        return self._targets.get((address, port), frozenset())


def _index(topology: Topology) -> dict[tuple[str, int], frozenset[Target]]:
    found: dict[tuple[str, int], set[Target]] = {}
    for service in topology.services:
        for endpoint in service.endpoints:
            found.setdefault((endpoint.address, service.port), set()).add(endpoint.target)
    return {key: frozenset(targets) for key, targets in found.items()}
