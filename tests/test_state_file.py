"""The state file: round trip, the corrupt or unreadable file set aside (never deleted), no
temporary file left behind, and crash safety under SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glb.core.drains import Drain, Drains
from glb.state.file import StateFile, StateSaveError
from tests.clusters import ROOT
from tests.state_saver import state

T0 = 1_796_637_600.0
DRAINS = Drains.of(
    [
        Drain("eu-west", None, "api", T0, "maintenance", T0 + 3600),
        Drain("us-east", "app.example.com", "api", T0 + 0.5),
    ]
)


def test_round_trip_and_no_temporary_file_left(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "state.json")
    assert store.load() == Drains()  # no file yet: no drains
    store.save(DRAINS)
    assert set(StateFile(tmp_path / "state.json").load()) == set(DRAINS)
    store.save(Drains())
    assert len(store.load()) == 0
    assert os.listdir(tmp_path) == ["state.json"]


def test_save_creates_the_directory(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "lib" / "glb" / "state.json")
    store.save(DRAINS)
    assert set(store.load()) == set(DRAINS)


def test_a_save_that_fails_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()  # a directory where the file should be: rename fails
    store = StateFile(tmp_path / "state.json")
    with pytest.raises(StateSaveError, match=r"cannot write .*state\.json"):
        store.save(DRAINS)
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe junk", "not valid JSON"),
        (b'{"version": 1, "drains": [{"cluster": 5}]}', r"drains\[0\]\.cluster: must be"),
        (b'["a list"]', r"\(top level\): must be a JSON object"),
    ],
)
def test_a_corrupt_file_is_set_aside_and_no_drains_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="glb.state.file"):
        assert StateFile(path).load() == Drains()
    (aside,) = tmp_path.iterdir()
    assert aside.name.startswith("state.json.corrupt-")
    assert aside.read_bytes() == content  # kept, not deleted
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert str(aside) in record.getMessage()
    assert record.exc_info is None  # a clear line, no traceback
    assert re.search(problem, record.getMessage())


def test_an_unreadable_file_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Unreadable (here a directory where the file should be, which even root cannot read)."""
    path = tmp_path / "state.json"
    path.mkdir()
    with caplog.at_level(logging.ERROR, logger="glb.state.file"):
        assert StateFile(path).load() == Drains()
    assert not path.exists()
    (aside,) = tmp_path.iterdir()
    assert aside.is_dir()
    assert aside.name.startswith("state.json.corrupt-")
    assert "cannot read it" in caplog.records[0].getMessage()


async def test_async_saves_keep_their_order(tmp_path: Path) -> None:
    """Saves started one after another land in that order: the newest state wins."""
    store = StateFile(tmp_path / "state.json")
    await asyncio.gather(*(store.save_async(state(n)) for n in range(1, 21)))
    assert set(store.load()) == set(state(20))


def test_sigkill_at_any_moment_leaves_a_whole_state(tmp_path: Path) -> None:
    """A saver killed with SIGKILL at random moments (30 times) always leaves a file that loads
    as exactly one of the states written: the last one completed or the one in flight."""
    rng = random.Random(12)
    path = tmp_path / "state.json"
    for _ in range(30):
        saver = subprocess.Popen(
            [sys.executable, "-m", "tests.state_saver", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert saver.stdout is not None
        first = int(saver.stdout.readline())  # it is saving: kill it soon after
        time.sleep(rng.uniform(0, 0.05))  # the random moment of the kill
        saver.kill()
        printed = saver.stdout.read().split()
        saver.stdout.close()
        saver.wait()
        last_completed = int(printed[-1]) if printed else first
        loaded = StateFile(path).load()
        numbers = {d.reason for d in loaded}
        assert len(numbers) == 1, numbers
        (reason,) = numbers
        number = int(str(reason).removeprefix("state "))
        assert number in (last_completed, last_completed + 1)
        assert set(loaded) == set(state(number))
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.json"]
        for name in leftovers:  # a temporary file of the save in flight may remain, never more
            assert name.startswith(".state.json.")
            assert name.endswith(".tmp")
            (tmp_path / name).unlink()
