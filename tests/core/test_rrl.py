"""The response rate limiter: token buckets per client network, with a fake clock."""

from __future__ import annotations

import pytest

from glb.core.rrl import ResponseRateLimiter, RrlConfig, Verdict

A, D, S = Verdict.ALLOW, Verdict.DROP, Verdict.SLIP


def verdicts(
    limiter: ResponseRateLimiter, address: str, count: int, now: float = 0.0
) -> list[Verdict]:
    return [limiter.check(address, now) for _ in range(count)]


def test_burst_then_every_slip_th_limited_response_slips():
    """A network gets rate * window responses at once, then drops with every slip-th slipped."""
    limiter = ResponseRateLimiter(RrlConfig(rate=3, window=1, slip=2))
    assert verdicts(limiter, "192.0.2.1", 8) == [A, A, A, D, S, D, S, D]


@pytest.mark.parametrize(
    ("slip", "expected"), [(0, [D, D, D, D]), (1, [S, S, S, S]), (3, [D, D, S, D])]
)
def test_slip_setting(slip: int, expected: list[Verdict]):
    """slip 0 never slips, 1 slips every limited response, n every n-th."""
    limiter = ResponseRateLimiter(RrlConfig(rate=1, window=1, slip=slip))
    assert verdicts(limiter, "192.0.2.1", 5)[1:] == expected


def test_tokens_refill_at_the_rate_up_to_the_burst():
    """Tokens come back at `rate` per second, never beyond rate * window."""
    limiter = ResponseRateLimiter(RrlConfig(rate=2, window=1, slip=0))
    assert verdicts(limiter, "192.0.2.1", 3, now=0.0) == [A, A, D]
    assert verdicts(limiter, "192.0.2.1", 2, now=0.5) == [A, D]
    assert verdicts(limiter, "192.0.2.1", 3, now=100.0) == [A, A, D]


@pytest.mark.parametrize(
    ("same", "other"),
    [
        (("192.0.2.1", "192.0.2.254"), "192.0.3.1"),
        (("2001:db8:0:1::1", "2001:db8:0:ff::2"), "2001:db8:0:100::1"),
        (("192.0.2.7", "::ffff:192.0.2.9"), "::ffff:192.0.3.9"),
    ],
    ids=["ipv4-24", "ipv6-56", "ipv4-mapped"],
)
def test_buckets_are_per_network(same: tuple[str, str], other: str):
    """Addresses of one /24 (/56 for IPv6, IPv4-mapped as IPv4) share a bucket; others do not."""
    limiter = ResponseRateLimiter(RrlConfig(rate=1, window=1, slip=0))
    assert [limiter.check(a, 0.0) for a in same] == [A, D]
    assert limiter.check(other, 0.0) == A


def test_non_addresses_are_allowed():
    """A source that is not an IP address is never limited."""
    limiter = ResponseRateLimiter(RrlConfig(rate=1, window=1))
    assert verdicts(limiter, "/run/glb.sock", 3) == [A, A, A]
    assert len(limiter) == 0


def test_memory_is_bounded():
    """The table never holds more than max_networks buckets, least recently used out first."""
    limiter = ResponseRateLimiter(RrlConfig(rate=1, window=1, slip=0, max_networks=100))
    for n in range(1000):
        limiter.check(f"10.{n // 256}.{n % 256}.1", 0.0)
    assert len(limiter) == 100
    assert limiter.check("10.3.231.1", 0.0) == D  # the last one in is still limited


def test_idle_buckets_are_forgotten_as_new_networks_arrive():
    """Buckets that have refilled completely are dropped, two per new network."""
    limiter = ResponseRateLimiter(RrlConfig(rate=1, window=1))
    for n in range(10):
        limiter.check(f"10.0.{n}.1", 0.0)
    for n in range(5):
        limiter.check(f"10.1.{n}.1", 5.0)
    assert len(limiter) == 5


@pytest.mark.parametrize(
    "options",
    [
        {"rate": 0},
        {"window": 0},
        {"slip": -1},
        {"ipv4_prefix": 33},
        {"ipv6_prefix": 129},
        {"max_networks": 0},
    ],
)
def test_bad_configs_are_refused(options: dict[str, float]):
    """Non-positive rates, windows or table sizes, negative slip and bad prefixes are refused."""
    with pytest.raises(ValueError, match=r"must be|prefix"):
        RrlConfig(**options)  # type: ignore[arg-type]
