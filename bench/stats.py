"""Medians, spreads and ratios of repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """Return the median, minimum, maximum and count of the values that are not None."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "n": len(present),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return ``numerator / denominator``, or None when either is missing or the divisor is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of already sorted values (``fraction`` 0.99 = p99)."""
    if not sorted_values:
        return None
    # The small offset keeps float error (0.07 * 100 = 7.000000000000001) off the next rank.
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values) - 1e-9)))
    return sorted_values[rank - 1]
