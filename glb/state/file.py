"""The state file: the drains in force and the recent failover drills as one JSON document,
written so that a crash at any point leaves either the old or the new file, never a torn one.

`StateFile.load()` reads it at start-up; a missing file is no drains, a corrupt or unreadable
one is logged (naming the file), renamed aside to `<name>.corrupt-<UTC timestamp>` (never
deleted) and read as no drains. Its `drills` entries (`glb.core.drills`: the drills kept, a
running one among them if glb stopped during it) are read one by one into `drills`: a bad
entry is logged and ignored, never a reason to set the file aside. Each save writes both parts:
`save(drains)` with the drills last saved, `save_drills(drills)` with the drains last saved.

`save()` writes a temporary file in the same directory, flushes and fsyncs it, renames it over
the file (`os.replace`) and fsyncs the directory. `save_async()`
does that in a thread, one save at a time, so an older state never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from glb.core.drains import BadStateDocument, Drains
from glb.core.drills import Drill, DrillNotSaved, drill_from_json

logger = logging.getLogger(__name__)


class StateSaveError(Exception):
    """The state file could not be written; the message names the file and the reason."""


class StateFile:
    """One state file at `path` (its directory must exist or be creatable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._drains = Drains()  # as last loaded or saved
        self.drills: tuple[Drill, ...] = ()  # as last loaded or saved, newest first

    def load(self) -> Drains:
        """The drains recorded; none when the file is missing, corrupt or unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Drains()
        except OSError as exc:
            return self._set_aside(f"cannot read it: {exc.strerror or exc}")
        try:
            document = json.loads(raw)
            if isinstance(document, dict):
                self.drills = self._drills_of(document.pop("drills", []))
            self._drains = Drains.from_document(document)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, BadStateDocument
            problem = str(exc) if isinstance(exc, BadStateDocument) else f"not valid JSON: {exc}"
            return self._set_aside(problem)
        return self._drains

    def _drills_of(self, items: object) -> tuple[Drill, ...]:
        """The stored drills that can be read; each bad one is logged and left out."""
        if not isinstance(items, list):
            self._ignored("drills: must be a list")
            return ()
        drills: dict[str, Drill] = {}
        for i, item in enumerate(items):
            try:
                drill = drill_from_json(item, f"drills[{i}]")
            except BadStateDocument as exc:  # BadDrillRecord, or a time that is not one
                self._ignored(str(exc))
                continue
            drills.setdefault(drill.id, drill)
        return tuple(drills.values())

    def _ignored(self, problem: str) -> None:
        logger.error(
            "state file %s: a stored drill is ignored: %s",
            self.path,
            problem,
            extra={"event": "state_drill_ignored", "path": str(self.path)},
        )

    def _set_aside(self, problem: str) -> Drains:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            kept = f"kept as {aside}"
        except OSError as exc:
            kept = f"could not rename it aside ({exc.strerror or exc}); left in place"
        logger.error(
            "state file %s is unusable (%s); %s; starting without drains",
            self.path,
            problem,
            kept,
            extra={"event": "state_corrupt", "path": str(self.path)},
        )
        self.drills = ()
        return Drains()

    def save(self, drains: Drains) -> None:
        """Write `drains` (and the drills last saved) atomically and durably; StateSaveError if
        it cannot."""
        self._write(drains, self.drills)
        self._drains = drains

    async def save_drills(self, drills: tuple[Drill, ...]) -> None:
        """Write `drills` (and the drains last saved), in a thread and in turn with the drain
        saves; DrillNotSaved if it cannot."""
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, self._drains, drills)
            except StateSaveError as exc:
                raise DrillNotSaved(str(exc)) from None
            self.drills = drills

    def _write(self, drains: Drains, drills: tuple[Drill, ...]) -> None:
        document = drains.to_document()
        if drills:
            document["drills"] = [drill.to_json() for drill in drills]
        data = json.dumps(document, indent=2).encode() + b"\n"
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(
                dir=directory, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise StateSaveError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise StateSaveError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        _fsync_directory(directory)

    async def save_async(self, drains: Drains) -> None:
        """`save()` in a thread, one at a time: the event loop never waits on fsync."""
        async with self._lock:
            await asyncio.to_thread(self.save, drains)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)
