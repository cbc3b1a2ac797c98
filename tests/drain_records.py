"""Test helper: an operator drain record, as the admin API would make it."""

from __future__ import annotations

from glb.core.drains import Drain


def drain_of(cluster: str, service: str | None = None, *, since: float = 0.0) -> Drain:
    """A drain of `cluster` (in `service`, or every service) by `test`, with no expiry."""
    return Drain(cluster, service, "test", since)
