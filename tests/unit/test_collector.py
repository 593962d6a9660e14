"""The worker's collector settings (presence.collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from presence import collector


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_young_collections_wait_for_thousands_of_allocations(restored: None) -> None:
    collector.tune()
    assert gc.get_threshold() == collector.THRESHOLDS


def test_what_startup_made_is_out_of_the_collectors_reach(restored: None) -> None:
    startup_objects = [{"kept": i} for i in range(1000)]
    before = gc.get_freeze_count()
    collector.freeze_startup_heap()
    assert gc.get_freeze_count() >= before + len(startup_objects)
    assert gc.get_count()[0] < 50  # the young generation starts empty
