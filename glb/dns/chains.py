"""CNAME chains that end at a service whose answer is fixed per snapshot: packed with it.

A static CNAME chain ending at a service answers A and AAAA with the chain and the service's
decided addresses. For the policies whose decision depends on the snapshot alone
(`glb.core.policies.STABLE`: latency, failover) that reply is packed like any other, and re-packed
whenever the service's own replies are (`glb.dns.cache.DnsCache._pack_service`): its TTL is the
service's answer TTL, `ttl_unstable` included, because it is resolved exactly as the full path
resolves it. `stable_chains` maps each such service to the names whose chains end there. Chains
ending at a round robin, weighted or geo service (a draw per query), or leaving the names the zones
hold (through a wildcard), are not listed: the full path answers their A and AAAA.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from collections.abc import Mapping

from glb.core.policies import STABLE
from glb.dns.zone import MAX_CHAIN, Key, Node


def stable_chains(nodes: Mapping[Key, Node]) -> dict[Key, tuple[Key, ...]]:
    """The names of the CNAME chains ending at each service of a stable policy, by the
    service's name."""
    chains: dict[Key, list[Key]] = {}
    for key, node in nodes.items():
        if node.reaches_service:
            service = _chain_end(node, nodes)
            if service is not None:
                chains.setdefault(service, []).append(key)
    return {service: tuple(keys) for service, keys in chains.items()}


def _chain_end(node: Node, nodes: Mapping[Key, Node]) -> Key | None:
    """The name of the stable service the chain from `node` ends at, through existing names
    only; None for any other end."""
    for _ in range(MAX_CHAIN + 1):
        target = node.target
        if target is None:
            return None
        following = nodes.get(target)
        if following is None:
            return None
        if following.service is not None:
            return (
                target if following.service.policy in STABLE and following.target is None else None
            )
        node = following
    return None
