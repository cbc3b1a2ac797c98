"""Shared by the configuration tests of this package."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_glb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep GLB_* variables of the developer's shell out of these tests."""
    for name in list(os.environ):
        if name.upper().startswith("GLB_"):
            monkeypatch.delenv(name)
