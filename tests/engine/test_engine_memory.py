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


def test_only_a_process_that_allows_it_pins_and_only_for_a_wide_raster(monkeypatch):
    monkeypatch.setattr(memory, "_pinned", False)
    monkeypatch.setattr(memory, "_allowed", False)
    calls = []
    monkeypatch.setattr(memory, "pin_mmap_threshold", lambda: calls.append(1) or True)
    assert memory.pin_for_raster(50_000) is False  # QGIS's process never allowed it
    memory.allow_pinning()  # the engine worker
    assert memory.pin_for_raster(memory.WIDE_RASTER_PX - 1) is False  # small rasters: fast path
    assert calls == []
    assert memory.pin_for_raster(memory.WIDE_RASTER_PX) is True
    assert calls == [1]
