"""The few statistics the benchmarks share."""

from __future__ import annotations

import statistics


def quantile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the value itself for a single sample."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (memory per connection from RSS at several counts)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den
