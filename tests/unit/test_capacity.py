"""docs/CAPACITY.md is what the measurements give, and every figure in it follows them."""

from __future__ import annotations

import dataclasses

from bench import capacity


def test_the_committed_capacity_model_is_what_the_measurements_give() -> None:
    assert capacity.OUTPUT.read_text() == capacity.render(capacity.measured_units())


def test_the_model_follows_the_measured_costs_not_constants() -> None:
    units = capacity.measured_units()
    base = capacity.model(units, 1_000_000)
    heavier = dataclasses.replace(units, cpu_connect_ms=units.cpu_connect_ms * 10)
    assert capacity.model(heavier, 1_000_000).worker_cores > base.worker_cores
    chattier = dataclasses.replace(units, redis_per_request=units.redis_per_request * 10)
    assert capacity.model(chattier, 1_000_000).redis_commands > base.redis_commands
    slower = dataclasses.replace(units, redis_core_commands=units.redis_core_commands / 10)
    assert capacity.model(slower, 1_000_000).redis_shards > base.redis_shards


def test_an_audience_lands_on_at_most_its_size_in_workers() -> None:
    assert capacity.distinct_workers(1, 30) == 1
    assert 29 < capacity.distinct_workers(10_000, 30) <= 30
    assert capacity.distinct_workers(4, 30) < 4
