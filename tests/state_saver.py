"""Test helper run as a process: save numbered states to a state file in a loop, forever.

    python -m tests.state_saver PATH

State n holds n drains (clusters c0..c{n-1}, cycling 1..50); each line printed on stdout is
the number of the state just saved (the test kills this process with SIGKILL at random moments).
"""

from __future__ import annotations

import sys
from pathlib import Path

from glb.core.drains import Drain, Drains
from glb.state.file import StateFile

SIZES = 50


def state(number: int) -> Drains:
    """The state numbered `number`: its reason carries the number, so a load names it."""
    count = number % SIZES + 1
    return Drains.of(
        [Drain(f"c{i}", None, "api", float(number), f"state {number}") for i in range(count)]
    )


def main() -> None:
    store = StateFile(Path(sys.argv[1]))
    number = 0
    while True:
        number += 1
        store.save(state(number))
        sys.stdout.write(f"{number}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
