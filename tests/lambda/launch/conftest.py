"""Fixtures of the launch handler's tuning tests: a tunable catalog entry and tuning requests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from training_common import (
    CatalogEntry,
    MetricDefinition,
    ObjectiveType,
    ParameterRange,
    ParameterType,
    ScalingType,
    TrainingRequest,
    TunableHyperparameter,
    TuningSpec,
    TuningStrategy,
)


def tunable_algorithm(make: SimpleNamespace, **overrides: Any) -> CatalogEntry:
    """``xgboost`` with two metrics (one a tuning objective) and three tunable hyperparameters,
    one of them (``max_depth``) also among the defaults."""
    values: dict[str, Any] = {
        "default_hyperparameters": {
            "num_round": "100",
            "objective": "reg:squarederror",
            "max_depth": "6",
        },
        "metric_definitions": [
            MetricDefinition(name="validation:rmse", regex="rmse=([0-9.]+)"),
            MetricDefinition(name="train:rmse", regex="train-rmse=([0-9.]+)"),
        ],
        "objective_metrics": ["validation:rmse"],
        "tunable_hyperparameters": [
            TunableHyperparameter(
                name="eta", type=ParameterType.CONTINUOUS, min_value=0.001, max_value=1.0
            ),
            TunableHyperparameter(
                name="max_depth", type=ParameterType.INTEGER, min_value=1, max_value=20
            ),
            TunableHyperparameter(
                name="booster",
                type=ParameterType.CATEGORICAL,
                values=("gbtree", "dart", "gblinear"),
            ),
            TunableHyperparameter(
                name="tree_method", type=ParameterType.CATEGORICAL, values=("auto", "exact", "hist")
            ),
        ],
    }
    values.update(overrides)
    entry: CatalogEntry = make.algorithm(**values)
    return entry


RANGES = (
    ParameterRange(
        name="eta",
        type=ParameterType.CONTINUOUS,
        min_value=0.01,
        max_value=0.3,
        scaling=ScalingType.LOGARITHMIC,
    ),
    ParameterRange(
        name="max_depth",
        type=ParameterType.INTEGER,
        min_value=3,
        max_value=9,
        scaling=ScalingType.LINEAR,
    ),
    ParameterRange(name="booster", type=ParameterType.CATEGORICAL, values=("gbtree", "dart")),
)
"""One range of each type, within the tunable entry's bounds."""


def spec(**overrides: Any) -> TuningSpec:
    """A Bayesian search of :data:`RANGES` minimising ``validation:rmse``: 6 jobs, 2 at once."""
    values: dict[str, Any] = {
        "objective_metric": "validation:rmse",
        "objective_type": ObjectiveType.MINIMIZE,
        "strategy": TuningStrategy.BAYESIAN,
        "ranges": RANGES,
        "max_training_jobs": 6,
        "max_parallel_training_jobs": 2,
        "early_stopping": False,
    }
    values.update(overrides)
    return TuningSpec.model_validate(values)


@pytest.fixture
def tune(make: SimpleNamespace) -> SimpleNamespace:
    """Factories for tuning tests: ``algorithm()``, ``spec()``, ``request()``."""

    def request(tenant_id: str = "acme", **overrides: Any) -> TrainingRequest:
        tuning = overrides.pop("tuning", None) or spec(**overrides.pop("spec", {}))
        req: TrainingRequest = make.request(tenant_id, tuning=tuning, **overrides)
        return req

    return SimpleNamespace(
        algorithm=lambda **overrides: tunable_algorithm(make, **overrides),
        spec=spec,
        request=request,
        ranges=RANGES,
    )
