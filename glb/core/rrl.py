"""Response rate limiting (RRL) for DNS over UDP: a token bucket per client network.

A UDP source address is trivially spoofed, so an authoritative server can be made to send its
answers to a victim (reflection, amplification). `ResponseRateLimiter.check(address, now)` is
asked before each UDP response goes out and says what to do with it:

- `ALLOW`: send it. Each client network (the /24 of an IPv4 address, the /56 of an IPv6 one, by
  default) has a bucket of `rate * window` tokens refilled at `rate` per second; a response
  takes one.
- `SLIP`: the bucket is empty, but every `slip`-th limited response goes out as a tiny truncated
  (TC=1) reply, so a real client behind the network retries over TCP, which proves its address
  and is never limited. `slip` 0 never slips, 1 slips every limited response.
- `DROP`: the bucket is empty: send nothing.

Memory is bounded: at most `max_networks` buckets are kept, least recently used first out, and
buckets idle for a whole window (full again, so the same as a new one) are forgotten as new
ones arrive. Time is passed in (`now`, seconds on any monotonic clock).

Pure: imports the standard library only.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Final

DEFAULT_MAX_NETWORKS: Final = 100_000
_SWEEP: Final = 2  # idle buckets looked at (and forgotten) per check: amortised O(1)


class Verdict(Enum):
    ALLOW = "allow"
    DROP = "drop"
    SLIP = "slip"


@dataclass(frozen=True, slots=True)
class RrlConfig:
    rate: float = 20.0  # responses per second per client network
    window: float = 1.0  # seconds of `rate` a network may use at once (burst = rate * window)
    slip: int = 2  # every slip-th limited response is sent truncated; 0: never
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    max_networks: int = DEFAULT_MAX_NETWORKS

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.window <= 0 or self.slip < 0 or self.max_networks < 1:
            raise ValueError("rate, window and max_networks must be positive, slip at least 0")
        if not (0 <= self.ipv4_prefix <= 32 and 0 <= self.ipv6_prefix <= 128):
            raise ValueError("prefix lengths: 0-32 for IPv4, 0-128 for IPv6")

    @property
    def burst(self) -> float:
        return max(1.0, self.rate * self.window)


class _Bucket:
    __slots__ = ("limited", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.limited = 0  # limited responses so far, for the slip count


class ResponseRateLimiter:
    """Token buckets keyed by client network; not thread-safe (one event loop calls it)."""

    def __init__(self, config: RrlConfig) -> None:
        self.config = config
        self._buckets: OrderedDict[tuple[int, int], _Bucket] = OrderedDict()
        self._v4_shift = 32 - config.ipv4_prefix
        self._v6_shift = 128 - config.ipv6_prefix

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, address: str, now: float) -> Verdict:
        """What to do with one response to `address` (an IPv4 or IPv6 address) at `now`."""
        key = self.network(address)
        if key is None:
            return Verdict.ALLOW  # not an IP address (a Unix socket?): nothing to key on
        bucket = self._bucket(key, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.ALLOW
        bucket.limited += 1
        slip = self.config.slip
        return Verdict.SLIP if slip and bucket.limited % slip == 0 else Verdict.DROP

    def network(self, address: str) -> tuple[int, int] | None:
        """(4 or 6, network number) of the client's network; IPv4-mapped IPv6 counts as IPv4."""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                return 6, int(ip) >> self._v6_shift
            ip = ip.ipv4_mapped
        return 4, int(ip) >> self._v4_shift

    def _bucket(self, key: tuple[int, int], now: float) -> _Bucket:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._forget_idle(now)
            if len(buckets) >= self.config.max_networks:
                buckets.popitem(last=False)
            bucket = buckets[key] = _Bucket(self.config.burst, now)
            return bucket
        buckets.move_to_end(key)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.config.burst, bucket.tokens + elapsed * self.config.rate)
        bucket.updated = now
        if bucket.tokens >= self.config.burst:
            bucket.limited = 0  # back to full: a fresh start
        return bucket

    def _forget_idle(self, now: float) -> None:
        """Drop up to `_SWEEP` least recently used buckets that have refilled completely."""
        buckets = self._buckets
        full_after = self.config.burst / self.config.rate  # seconds from empty to full
        for _ in range(_SWEEP):
            if not buckets:
                return
            key, oldest = next(iter(buckets.items()))
            if now - oldest.updated < full_after:
                return
            del buckets[key]
