"""The failover SLI record: detection and exposure from a failure's first sign."""

from __future__ import annotations

import pytest

from glb.core.failovers import Failovers
from glb.core.model import ProbeSpec, ProbeType, Target

SPEC = ProbeSpec(ProbeType.TCP, 80, 1.0, 0.75, 2, 2, 0.25, 0.3)
A = Target("192.0.2.1", SPEC)
B = Target("192.0.2.2", SPEC)


def test_detection_runs_from_the_first_failed_probe_start_to_leaving():
    failovers = Failovers()
    failovers.failed(A, started=10.0, noticed=10.3, ttls={"app": 10})
    failovers.failed(A, started=10.3, noticed=10.6, ttls={"app": 1})  # the run's second failure
    (failover,) = failovers.left_answers(A, at=10.6, ttls={"app": 10})
    assert failover.service == "app"
    assert failover.detection == pytest.approx(0.6)
    assert failover.exposure == pytest.approx(10.6)  # the last answer still carried ttl 10


def test_a_lowered_ttl_does_not_hide_the_answers_handed_out_before_the_failure_was_noticed():
    failovers = Failovers()
    failovers.failed(A, started=0.0, noticed=0.25, ttls={"app": 10, "api": 30})
    got = failovers.left_answers(A, at=0.75, ttls={"app": 1, "api": 30})
    exposure = {f.service: f.exposure for f in got}
    assert exposure["app"] == pytest.approx(10.25)  # noticed at 0.25, full TTL until then
    assert exposure["api"] == pytest.approx(30.75)  # never lowered: detection + ttl
    assert all(f.detection == pytest.approx(0.75) for f in got)


def test_a_success_ends_the_run_so_a_later_failure_starts_a_new_onset():
    failovers = Failovers()
    failovers.failed(A, started=1.0, noticed=1.1, ttls={"app": 10})
    failovers.succeeded(A)
    failovers.failed(A, started=5.0, noticed=5.1, ttls={"app": 10})
    (failover,) = failovers.left_answers(A, at=5.5, ttls={"app": 10})
    assert failover.detection == pytest.approx(0.5)


def test_leaving_without_a_seen_failure_is_not_a_failover():
    failovers = Failovers()
    assert failovers.left_answers(A, at=3.0, ttls={"app": 10}) == []  # e.g. a drain
    failovers.failed(B, started=1.0, noticed=1.1, ttls={"app": 10})
    failovers.forget([B])
    assert failovers.left_answers(B, at=3.0, ttls={"app": 10}) == []


def test_each_failover_is_counted_once():
    failovers = Failovers()
    failovers.failed(A, started=1.0, noticed=1.1, ttls={"app": 10})
    assert len(failovers.left_answers(A, at=2.0, ttls={"app": 10})) == 1
    assert failovers.left_answers(A, at=3.0, ttls={"app": 10}) == []
