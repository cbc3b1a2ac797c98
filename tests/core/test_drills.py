"""Failover drills without a network: the model's JSON round trip and its validation of stored
data, bad stored drills in the state file (logged and ignored, the drains kept), saving drills
alongside the drains, `steers_to`, and the fault injector's simulated probe failures."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from glb.core.drains import BadStateDocument, Drain, Drains
from glb.core.drills import (
    DNS_FAMILIES,
    PROXY_FAMILIES,
    BadDrillRecord,
    Drill,
    DrillMode,
    DrillNotSaved,
    DrillReport,
    DrillState,
    Tally,
    Window,
    drill_from_json,
    steers_to,
)
from glb.core.health import Health, Outcome, ProbeResult
from glb.core.model import Target
from glb.health.faults import FaultInjector
from glb.state.file import StateFile
from tests.dns_helpers import make_topology, snapshot_of

T0 = 1_796_637_600.0
BEFORE_TALLY = Tally({"eu-west": 7}, {"eu-west": 3, "none": 1}, 1, 1, 0)
DURING_TALLY = Tally({"us-east": 12, "eu-west": 2}, {"us-east": 4}, 0, 0, 2)
REPORT = DrillReport(
    0.1, Window(9.5, BEFORE_TALLY), Window(60.0, DURING_TALLY), 0.2, 0.1, 0.0012, None
)
STORED = Drill(
    "20261206T224100Z-3fa2c1", "eu-west", DrillMode.DRAIN, "api from 127.0.0.1", T0, 60.0, REPORT
)


def test_a_drill_round_trips_through_json() -> None:
    for drill in (STORED, STORED.ended_as(DrillState.CANCELLED, T0 + 5, "ended early by x")):
        assert drill_from_json(json.loads(json.dumps(drill.to_json())), "d") == drill


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": "../../etc"}, r"d\.id: '\.\./\.\./etc' is not a drill id"),
        ({"cluster": ""}, r"d\.cluster: must be a non-empty string"),
        ({"mode": "explode"}, r"d\.mode: must be one of drain, fail"),
        ({"state": None}, r"d\.state: must be one of running, finished"),
        ({"started": "yesterday"}, r"d\.started: 'yesterday' is not an ISO 8601 time"),
        ({"started": 5}, r"d\.started: must be an ISO 8601 time"),
        ({"started": None}, r"d\.started: missing"),
        ({"ended": "2026-12-07T10:00:00"}, r"d\.ended: .* has no time zone"),
        ({"duration_seconds": -1}, r"d\.duration_seconds: must be a finite number"),
        ({"duration_seconds": True}, r"d\.duration_seconds: must be a number"),
        ({"surprise": 1}, r"d: unknown key\(s\): surprise"),
        ({"report": []}, r"d\.report: must be a JSON object"),
        ({"report": {"resolution_seconds": "fast"}}, r"d\.report\.resolution_seconds: must be"),
    ],
)
def test_bad_stored_drills_name_the_problem(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(BadStateDocument, match=problem):
        drill_from_json({**STORED.to_json(), **change}, "d")


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ({"answers": {"eu-west": -1}}, r"before\.answers\.eu-west: must be a whole number"),
        ({"answers": {"eu-west": 1.5}}, r"before\.answers\.eu-west: must be a whole number"),
        ({"answers": []}, r"before\.answers: must be a JSON object of counts"),
        ({"errors": {"proxy_5xx": 0}}, r"before\.errors\.proxy_502: must be a whole number"),
        ({"seconds": float("nan")}, r"before\.seconds: must be a finite number"),
    ],
)
def test_bad_stored_windows_name_the_problem(window: dict[str, Any], problem: str) -> None:
    stored = STORED.to_json()
    report = dict(stored["report"])  # type: ignore[call-overload]
    report["before"] = {**report["before"], **window}
    with pytest.raises(BadDrillRecord, match=problem):
        drill_from_json({**stored, "report": report}, "d")


def test_bad_drill_entries_are_logged_and_ignored(tmp_path: Path, caplog) -> None:
    """The drains and the good drills of the file are kept; each bad drill entry is one error
    line (no traceback) and the file is not set aside; the next save keeps both parts."""
    path = tmp_path / "state.json"
    drain = {"cluster": "us-east", "who": "api", "since": "2026-12-01T00:00:00Z"}
    bad = {**STORED.to_json(), "mode": "explode"}
    document = {"version": 1, "drains": [drain], "drills": [bad, STORED.to_json(), 5]}
    path.write_text(json.dumps(document))
    store = StateFile(path)
    with caplog.at_level(logging.ERROR, logger="glb.state.file"):
        drains = store.load()
    assert [d.cluster for d in drains] == ["us-east"]
    assert store.drills == (STORED,)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "a stored drill is ignored: drills[0].mode: must be one of drain, fail" in messages[0]
    assert "a stored drill is ignored: drills[2]: must be a JSON object" in messages[1]
    assert not any(r.exc_info for r in caplog.records)
    assert os.listdir(tmp_path) == ["state.json"]
    store.save(drains)
    assert json.loads(path.read_text())["drills"] == [STORED.to_json()]
    path.write_text(json.dumps({"version": 1, "drains": [drain], "drills": "many"}))
    assert [d.cluster for d in StateFile(path).load()] == ["us-east"]


async def test_saving_drills_keeps_the_drains(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateFile(path)
    drains = Drains.of([Drain("us-east", None, "api", T0)])
    store.save(drains)
    await store.save_drills((STORED,))
    assert set(StateFile(path).load()) == set(drains)
    (tmp_path / "state.json").unlink()
    (tmp_path / "state.json").mkdir()
    with pytest.raises(DrillNotSaved, match=r"cannot write .*state\.json"):
        await store.save_drills(())


STEERING = """
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 192.0.2.53}]}]
clusters:
  - {name: eu, addresses: [192.0.2.1]}
  - {name: us, addresses: [192.0.2.2]}
services:
  - name: first.glb.test
    policy: failover
    backends: [{cluster: eu, priority: 1}, {cluster: us, priority: 2}]
  - name: mixed.glb.test
    policy: weighted
    backends: [{cluster: eu, weight: 1000}, {cluster: us, weight: 1}]
"""


def test_steers_to_reads_what_an_answer_could_name() -> None:
    """A failover service's second tier is not steered to; a weighted service's every eligible
    endpoint is (one draw could name it); drained or down, it is not."""
    topology = make_topology(STEERING)
    up = snapshot_of(topology)
    assert steers_to(topology, up, "eu", DNS_FAMILIES)
    assert steers_to(topology, up, "us", DNS_FAMILIES)  # weighted: any draw may name it
    only_failover = replace(topology, services=topology.services[:1])
    assert not steers_to(only_failover, up, "us", PROXY_FAMILIES)
    drained = snapshot_of(topology, drained_clusters=frozenset({"eu"}))
    assert not steers_to(topology, drained, "eu", DNS_FAMILIES)
    down = snapshot_of(topology, states={"192.0.2.1": Health.DOWN})
    assert not steers_to(topology, down, "eu", PROXY_FAMILIES)


async def test_the_fault_injector_fails_only_the_chosen_clusters() -> None:
    topology = make_topology(STEERING)
    probed: list[str] = []

    async def real(target: Target, within: float) -> ProbeResult:
        assert within == 0.5
        probed.append(target.address)
        return ProbeResult(Outcome.SUCCESS, 0.001, 1.0)

    faults = FaultInjector(real, clock=lambda: 42.0)
    faults.follow(lambda: topology)
    eu, us = (endpoint.target for endpoint in topology.services[0].endpoints)
    faults.fail("eu")
    assert faults.failed == {"eu"}
    failed = await faults.probe(eu, 0.5)
    assert (failed.ok, failed.reason(), failed.at) == (False, "drill: simulated failure", 42.0)
    assert (await faults.probe(us, 0.5)).ok
    assert probed == ["192.0.2.2"]  # the failed target was never really probed
    faults.restore("eu")
    assert (await faults.probe(eu, 0.5)).ok
    assert probed == ["192.0.2.2", "192.0.2.1"]
