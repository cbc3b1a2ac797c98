"""The discovery tests' Kubernetes API stand-in (`glb.kubernetes_emulator`, which the demo runs
too) and the recorded objects they feed it: `recorded(name)` loads one of the objects of
tests/data/kubernetes/ (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glb.kubernetes_emulator import KubernetesEmulator

__all__ = ["KubernetesEmulator", "recorded"]

DATA = Path(__file__).parent / "data" / "kubernetes"


def recorded(name: str) -> dict[str, Any]:
    """An object of tests/data/kubernetes/, fresh for each call."""
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded
