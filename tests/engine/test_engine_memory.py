"""The allocator setting that keeps peak memory flat in the raster's width."""
from __future__ import annotations

import sys

import pytest

from sam_cd_plugin.engine import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_mmap_threshold_is_pinned_once(monkeypatch):
    monkeypatch.setattr(memory, "_pinned", False)
    assert memory.pin_mmap_threshold() is True  # glibc accepts the parameter
    assert memory.pin_mmap_threshold() is True  # and later calls are no-ops


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory, "_pinned", False)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.pin_mmap_threshold() is False
