"""The state file: the drains in force as one JSON document, written so that a crash at any
point leaves either the old or the new file, never a torn one.

`StateFile.load()` reads it at start-up; a missing file is no drains, a corrupt or unreadable
one is logged (naming the file), renamed aside to `<name>.corrupt-<UTC timestamp>` (never
deleted) and read as no drains. `save()` writes a temporary file in the same directory, flushes
and fsyncs it, renames it over the file (`os.replace`) and fsyncs the directory. `save_async()`
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

logger = logging.getLogger(__name__)


class StateSaveError(Exception):
    """The state file could not be written; the message names the file and the reason."""


class StateFile:
    """One state file at `path` (its directory must exist or be creatable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def load(self) -> Drains:
        """The drains recorded; none when the file is missing, corrupt or unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Drains()
        except OSError as exc:
            return self._set_aside(f"cannot read it: {exc.strerror or exc}")
        try:
            return Drains.from_document(json.loads(raw))
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, BadStateDocument
            problem = str(exc) if isinstance(exc, BadStateDocument) else f"not valid JSON: {exc}"
            return self._set_aside(problem)

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
        return Drains()

    def save(self, drains: Drains) -> None:
        """Write `drains` atomically and durably; StateSaveError if it cannot."""
        data = json.dumps(drains.to_document(), indent=2).encode() + b"\n"
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
