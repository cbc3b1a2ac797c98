"""The quorum rule (`glb.core.vantage`) against a plain reference, and the view of the peers."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from glb.core.health import Health
from glb.core.vantage import PeerVerdicts, QuorumRule, Vantage, Verdict, combined_down

RULES = st.one_of(st.sampled_from(["majority", "any", "all"]), st.integers(1, 9))


def reference_down(own_down: bool, peers_down: list[bool], quorum: QuorumRule) -> bool:
    """Written plainly from the README's rule."""
    voters = 1 + len(peers_down)
    down = [own_down, *peers_down].count(True)
    if quorum == "majority":
        return down > voters / 2
    if quorum == "any":
        return down >= 1
    if quorum == "all":
        return down == voters
    assert isinstance(quorum, int)
    return down >= quorum or down == voters  # fewer fresh than n: every fresh one


@given(st.booleans(), st.lists(st.booleans(), max_size=8), RULES)
def test_combined_down_matches_the_reference(
    own_down: bool, peers_down: list[bool], quorum: QuorumRule
) -> None:
    assert combined_down(own_down, peers_down, quorum) == reference_down(
        own_down, peers_down, quorum
    )


@given(st.booleans(), RULES)
def test_alone_the_own_verdict_decides(own_down: bool, quorum: QuorumRule) -> None:
    assert combined_down(own_down, [], quorum) is own_down


def test_examples_of_three_vantage_points() -> None:
    assert combined_down(True, [False, False], "majority") is False  # one path broken
    assert combined_down(False, [True, True], "majority") is True  # two of three
    assert combined_down(False, [True, False], "any") is True
    assert combined_down(True, [True, False], "all") is False
    assert combined_down(True, [True, False], 2) is True
    assert combined_down(True, [False], 3) is False  # 3 needed, 2 fresh: both must see it down


KEY = "http 10.0.0.1:80/healthz"


def peer(name: str, heartbeat: float, up: bool) -> PeerVerdicts:
    return PeerVerdicts(name, heartbeat, {KEY: Verdict(up, 0.01, heartbeat - 5)})


def view(now: float, *peers: PeerVerdicts, store_up: bool = True) -> Vantage:
    return Vantage.at(now, peers, quorum="majority", stale_after=5.0, store_up=store_up)


def test_stale_peers_and_an_unreachable_store_do_not_count() -> None:
    peers = (peer("b", 100.0, up=False), peer("c", 94.0, up=False))
    fresh = view(100.0, *peers)
    assert fresh.fresh_names == {"b"}
    assert fresh.combined(Health.UP, KEY) is Health.UP  # 1 of 2 voters (c is stale)
    assert fresh.combined(Health.DOWN, KEY) is Health.DOWN  # 2 of 2
    assert view(106.0, *peers).alone
    assert view(106.0, *peers).combined(Health.UP, KEY) is Health.UP
    unreachable = view(100.0, *peers, store_up=False)
    assert unreachable.alone
    assert len(unreachable.peers) == 2


def test_an_unknown_target_stays_unknown_and_a_peer_without_a_verdict_does_not_vote() -> None:
    vantage = view(100.0, peer("b", 100.0, up=False), PeerVerdicts("c", 100.0, {}))
    assert vantage.combined(Health.UNKNOWN, KEY) is Health.UNKNOWN
    assert vantage.peer_verdicts(KEY) == [("b", Verdict(False, 0.01, 95.0))]
    assert vantage.combined(Health.UP, "tcp 10.0.0.9:80") is Health.UP


@given(st.floats(allow_nan=False), st.floats(min_value=0, max_value=1e6))
def test_a_peer_is_fresh_up_to_stale_after(heartbeat: float, age: float) -> None:
    now = heartbeat + age
    if math.isfinite(now):
        assert PeerVerdicts("b", heartbeat).fresh(now, 5.0) is (now - heartbeat <= 5.0)
