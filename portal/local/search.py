"""What SageMaker's search and the algorithm would produce, played deterministically.

:func:`draw_hyperparameters` picks a trial's tuned values from the tuning job's ranges (seeded by
the job id and the trial's index, so a job replays the same way), respecting each range's type
and scaling; Grid walks the combinations in order; Bayesian, after its first wave, samples half
its trials near the best so far. :func:`metric_values` is the "model": a smooth function of the
hyperparameters with one optimum per algorithm (placed from a hash of the algorithm and
parameter names, inside the catalog's bounds), so better hyperparameters give better metrics and
the tuning job's best trial is meaningful. :func:`metric_series` draws a training curve that ends
at those values.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Mapping
from datetime import datetime

from training_common import (
    CatalogEntry,
    MetricPoint,
    MetricSeries,
    ParameterRange,
    ParameterType,
    ScalingType,
    TuningSpec,
    TuningStrategy,
)

_LOWER_IS_BETTER = ("mse", "rmse", "mae", "mape", "loss", "error")
_AUTO_LOG_RATIO = 100.0
"""Auto scaling searches a positive range logarithmically when it spans two decades or more."""


def _unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def lower_is_better(metric_name: str) -> bool:
    """True for error-like metrics (mse, loss, ...), whose values fall as the model improves."""
    name = metric_name.lower()
    return any(word in name for word in _LOWER_IS_BETTER)


def _log_scaled(low: float, high: float, scaling: ScalingType) -> bool:
    if scaling == ScalingType.LOGARITHMIC:
        return True
    return scaling == ScalingType.AUTO and low > 0 and high / low >= _AUTO_LOG_RATIO


def to_unit(value: float, low: float, high: float, scaling: ScalingType) -> float:
    """``value``'s position in [low, high] as SageMaker's search sees it (0..1, clamped)."""
    value = min(max(value, low), high)
    if scaling == ScalingType.REVERSE_LOGARITHMIC and high < 1:
        position = (math.log(1 - low) - math.log(1 - value)) / (
            math.log(1 - low) - math.log(1 - high)
        )
    elif _log_scaled(low, high, scaling):
        position = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    else:
        position = (value - low) / (high - low)
    return min(max(position, 0.0), 1.0)


def from_unit(position: float, low: float, high: float, scaling: ScalingType) -> float:
    """The inverse of :func:`to_unit`."""
    position = min(max(position, 0.0), 1.0)
    if scaling == ScalingType.REVERSE_LOGARITHMIC and high < 1:
        span = math.log(1 - low) - math.log(1 - high)
        value = 1 - math.exp(math.log(1 - low) - position * span)
    elif _log_scaled(low, high, scaling):
        value = math.exp(math.log(low) + position * (math.log(high) - math.log(low)))
    else:
        value = low + position * (high - low)
    return min(max(value, low), high)


def _format(item: ParameterRange, position: float) -> str:
    assert item.min_value is not None and item.max_value is not None
    value = from_unit(position, item.min_value, item.max_value, item.scaling)
    if item.type == ParameterType.INTEGER:
        whole = min(max(round(value), int(item.min_value)), int(item.max_value))
        return str(whole)
    return f"{value:.6g}"


def _position_of(item: ParameterRange, raw: str) -> float:
    assert item.min_value is not None and item.max_value is not None
    return to_unit(float(raw), item.min_value, item.max_value, item.scaling)


def draw_hyperparameters(
    spec: TuningSpec,
    job_id: str,
    index: int,
    best_so_far: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The tuned hyperparameters of the ``index``-th (1-based) trial of tuning job ``job_id``."""
    if spec.strategy == TuningStrategy.GRID:
        grid = list(itertools.product(*(item.values for item in spec.ranges)))
        combination = grid[(index - 1) % len(grid)]
        return {item.name: value for item, value in zip(spec.ranges, combination, strict=True)}
    rng = random.Random(f"{job_id}#{index}")  # noqa: S311 - a simulation, not cryptography
    exploit = (
        spec.strategy == TuningStrategy.BAYESIAN
        and best_so_far is not None
        and index > spec.max_parallel_training_jobs
        and index % 2 == 0
    )
    chosen: dict[str, str] = {}
    for item in spec.ranges:
        if item.type == ParameterType.CATEGORICAL:
            incumbent = best_so_far.get(item.name) if exploit and best_so_far else None
            keep = incumbent in item.values and rng.random() < 0.7
            chosen[item.name] = incumbent if keep and incumbent else rng.choice(item.values)
            continue
        if exploit and best_so_far and item.name in best_so_far:
            centre = _position_of(item, best_so_far[item.name])
            position = centre + rng.gauss(0.0, 0.08)
        else:
            position = rng.random()
        chosen[item.name] = _format(item, position)
    return chosen


def quality(entry: CatalogEntry, hyperparameters: Mapping[str, str]) -> float:
    """How good a model these hyperparameters make, in (0, 1]: 1 at the algorithm's optimum.

    Numeric parameters cost a weighted squared distance from their optimum (positions in the
    catalog's bounds, so the optimum doesn't move with the tenant's range); a categorical value
    costs a fixed amount of its own. Parameters not given sit mid-range; unparseable ones are
    ignored.
    """
    penalty = 0.0
    for tunable in entry.tunable_hyperparameters:
        raw = hyperparameters.get(tunable.name)
        weight = 1.0 + 2.0 * _unit_hash(entry.id, tunable.name, "weight")
        if tunable.type == ParameterType.CATEGORICAL:
            if raw is not None:
                penalty += 0.25 * _unit_hash(entry.id, tunable.name, raw)
            continue
        assert tunable.min_value is not None and tunable.max_value is not None
        position = 0.5
        if raw is not None:
            try:
                position = to_unit(
                    float(raw), tunable.min_value, tunable.max_value, ScalingType.AUTO
                )
            except (ValueError, OverflowError):
                continue
        optimum = 0.2 + 0.6 * _unit_hash(entry.id, tunable.name, "optimum")
        penalty += weight * (position - optimum) ** 2
    return math.exp(-penalty)


def metric_values(entry: CatalogEntry, hyperparameters: Mapping[str, str]) -> dict[str, float]:
    """The final value of each of the algorithm's metrics for a model trained with these
    hyperparameters: scores in (0.55, 0.999), error-like metrics in (0.05, 1.3)."""
    score = quality(entry, hyperparameters)
    values: dict[str, float] = {}
    for definition in entry.metric_definitions:
        name = definition.name
        offset = (_unit_hash(entry.id, name, "offset") - 0.5) * 0.02
        if name.lower().startswith("train"):
            offset += 0.015  # training metrics look a little better than validation ones
        if lower_is_better(name):
            value = max(0.0001, 0.05 + 1.2 * (1 - score) - offset)
        else:
            value = min(0.999, 0.55 + 0.43 * score + offset)
        values[name] = round(value, 6)
    return values


def metric_series(
    finals: Mapping[str, float], start: datetime, end: datetime, *, points: int = 6
) -> list[MetricSeries]:
    """A training curve per metric from ``start`` to ``end`` that ends at its final value."""
    count = max(points, 2)
    fractions = [step / (count - 1) for step in range(count)]
    return [
        MetricSeries(
            name=name,
            points=[
                MetricPoint(
                    at=start + (end - start) * fraction, value=partial_value(final, name, fraction)
                )
                for fraction in fractions
            ],
        )
        for name, final in finals.items()
    ]


def partial_value(final: float, name: str, fraction: float) -> float:
    """A metric's value ``fraction`` (0..1) of the way through training: a quadratic approach
    from a poor start (70 % of a score, twice an error plus 0.2) to ``final``."""
    first = final * 2 + 0.2 if lower_is_better(name) else final * 0.7
    return round(final + (first - final) * (1 - fraction) ** 2, 6)
