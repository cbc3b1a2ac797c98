"""When a host name is resolved again, and what a lookup teaches (glb.core.name_refresh)."""

from __future__ import annotations

import pytest

from glb.core.name_refresh import Change, NameRecord, RefreshTiming


def test_the_ttl_is_clamped_to_the_interval_bounds():
    timing = RefreshTiming(min_interval=5, max_interval=300)
    assert timing.after_answer(0) == 5
    assert timing.after_answer(60) == 60
    assert timing.after_answer(86400) == 300


def test_failures_back_off_from_a_short_first_retry_to_the_longest_interval():
    timing = RefreshTiming(min_interval=5, max_interval=20)
    assert [timing.after_failures(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]
    assert RefreshTiming(0.2, 1).after_failures(1) == 0.2  # never above min_interval at first
    assert RefreshTiming(5, 300).after_failures(10_000) == 300  # no overflow


def test_the_bounds_must_be_ordered():
    with pytest.raises(ValueError, match="at most max_interval"):
        RefreshTiming(min_interval=10, max_interval=5)


def test_a_first_answer_is_a_change_and_a_repeat_is_not():
    record, change = NameRecord("a.example.net").answered(("192.0.2.2", "192.0.2.1"))
    assert record.addresses == ("192.0.2.1", "192.0.2.2")
    assert change == Change("a.example.net", ("192.0.2.1", "192.0.2.2"), ())
    again, none = record.answered(("192.0.2.1", "192.0.2.2"))
    assert (again, none) == (record, None)
    moved, change = record.answered(("192.0.2.2", "192.0.2.3"))
    assert change == Change("a.example.net", ("192.0.2.3",), ("192.0.2.1",))
    assert moved.addresses == ("192.0.2.2", "192.0.2.3")


def test_a_failure_keeps_the_addresses_and_counts():
    record, _ = NameRecord("a.example.net").answered(("192.0.2.1",))
    failed = record.failed().failed()
    assert (failed.addresses, failed.failures) == (("192.0.2.1",), 2)
    recovered, change = failed.answered(("192.0.2.1",))
    assert (recovered.failures, change) == (0, None)


def test_a_family_whose_lookup_failed_keeps_its_addresses():
    record, _ = NameRecord("a.example.net").answered(("192.0.2.1", "2001:db8::1"))
    outcome = record.looked_up(("192.0.2.9",), None)  # AAAA timed out
    assert outcome is not None
    assert outcome[0].addresses == ("192.0.2.9", "2001:db8::1")
    outcome = record.looked_up(("192.0.2.1",), ())  # AAAA answered: none any more
    assert outcome is not None
    assert outcome[1] == Change("a.example.net", (), ("2001:db8::1",))


@pytest.mark.parametrize(
    ("ipv4", "ipv6"), [(None, None), ((), ()), (None, ()), ((), None)], ids=str
)
def test_no_address_of_either_family_teaches_nothing(ipv4, ipv6):
    """NXDOMAIN, NODATA, SERVFAIL or timeouts on both: a failure, the addresses kept."""
    record, _ = NameRecord("a.example.net").answered(("192.0.2.1",))
    assert record.looked_up(ipv4, ipv6) is None
