"""Hyperparameter tuning: what the catalog says may be tuned, what a tenant asks for, and what
SageMaker reports back (progress, the best training job, each training job as a trial).

A tuning request is a :class:`~training_common.models.TrainingRequest` with a ``tuning`` part:
the static hyperparameters stay in ``hyperparameters``, the tuned ones are ``tuning.ranges``.
The catalog's :class:`TunableHyperparameter` entries bound what a range may ask for; the launch
handler turns the request into ``CreateHyperParameterTuningJob`` (``launch.tuning_job``).
"""

from __future__ import annotations

import hashlib
import math
import struct
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ids import UtcDatetime

MAX_TUNING_TRAINING_JOBS = 500
"""SageMaker's default ceiling on ``MaxNumberOfTrainingJobs`` per tuning job."""

MAX_TUNING_PARALLEL_JOBS = 100
"""SageMaker's ceiling on ``MaxParallelTrainingJobs``."""

MAX_TUNED_HYPERPARAMETERS = 30
"""SageMaker accepts at most 30 parameter ranges in one tuning job."""

MAX_CATEGORICAL_VALUES = 30
"""SageMaker accepts at most 30 values in one categorical range."""

TUNING_JOB_NAME_LENGTH = 32
"""SageMaker's limit on ``HyperParameterTuningJobName`` (job ids can be 46 characters)."""


class ParameterType(StrEnum):
    """The three kinds of SageMaker parameter ranges."""

    CONTINUOUS = "Continuous"
    INTEGER = "Integer"
    CATEGORICAL = "Categorical"


class ScalingType(StrEnum):
    """How SageMaker searches a numeric range (``ScalingType``)."""

    AUTO = "Auto"
    LINEAR = "Linear"
    LOGARITHMIC = "Logarithmic"
    REVERSE_LOGARITHMIC = "ReverseLogarithmic"


class ObjectiveType(StrEnum):
    """Whether the objective metric is better when larger or smaller."""

    MAXIMIZE = "Maximize"
    MINIMIZE = "Minimize"


class TuningStrategy(StrEnum):
    """SageMaker's search strategies (Grid takes categorical ranges only)."""

    BAYESIAN = "Bayesian"
    RANDOM = "Random"
    HYPERBAND = "Hyperband"
    GRID = "Grid"


class WarmStartType(StrEnum):
    """SageMaker's ``WarmStartType`` values (the API spells them so)."""

    TRANSFER_LEARNING = "TransferLearning"
    """New data or changed ranges: what retraining on new data needs."""
    IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
    """Same data and image as the parents; only with the whole prefix and no feedback."""


MAX_WARM_START_PARENTS = 5
"""SageMaker's ceiling on ``ParentHyperParameterTuningJobs``."""


class WarmStart(BaseModel):
    """``WarmStartConfig`` of a tuning request: the parents are the tenant's own tuning jobs,
    named by their platform job ids (the launch handler turns them into tuning job names and
    ``check_request`` verifies each is the tenant's, a tuning job, and finished)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: WarmStartType
    parent_job_ids: tuple[str, ...] = Field(min_length=1, max_length=MAX_WARM_START_PARENTS)


class TunableHyperparameter(BaseModel):
    """One hyperparameter the catalog lets tenants tune, with the bounds a range must keep to.

    Numeric bounds are inclusive; ``values`` lists a categorical parameter's allowed values.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    type: ParameterType
    min_value: float | None = None
    max_value: float | None = None
    values: tuple[str, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.type == ParameterType.CATEGORICAL:
            if not self.values:
                raise ValueError(f"categorical hyperparameter {self.name!r} needs values")
        elif self.min_value is None or self.max_value is None or self.min_value > self.max_value:
            raise ValueError(f"numeric hyperparameter {self.name!r} needs min_value <= max_value")
        return self


class ParameterRange(BaseModel):
    """One range a tenant asks SageMaker to search.

    Numeric ranges use ``min_value`` and ``max_value`` (an integer range's bounds are whole
    numbers) and ``scaling``; categorical ranges list ``values``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    type: ParameterType
    min_value: float | None = None
    max_value: float | None = None
    values: tuple[str, ...] = Field(default=(), max_length=MAX_CATEGORICAL_VALUES)
    scaling: ScalingType = ScalingType.AUTO

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == ParameterType.CATEGORICAL:
            if not self.values or len(set(self.values)) != len(self.values):
                raise ValueError(f"range {self.name!r}: give distinct categorical values")
            if self.min_value is not None or self.max_value is not None:
                raise ValueError(f"range {self.name!r}: a categorical range has no bounds")
            return self
        if self.values:
            raise ValueError(f"range {self.name!r}: a numeric range has no values")
        self._check_numeric()
        return self

    def _check_numeric(self) -> None:
        if self.min_value is None or self.max_value is None:
            raise ValueError(f"range {self.name!r}: give a minimum and a maximum")
        if not (math.isfinite(self.min_value) and math.isfinite(self.max_value)):
            raise ValueError(f"range {self.name!r}: bounds must be finite numbers")
        if self.min_value >= self.max_value:
            raise ValueError(f"range {self.name!r}: the minimum must be below the maximum")
        if self.type == ParameterType.INTEGER and not (
            self.min_value.is_integer() and self.max_value.is_integer()
        ):
            raise ValueError(f"range {self.name!r}: an integer range needs whole-number bounds")
        if self.scaling in {ScalingType.LOGARITHMIC, ScalingType.REVERSE_LOGARITHMIC} and (
            self.min_value <= 0
        ):
            raise ValueError(f"range {self.name!r}: logarithmic scaling needs a minimum above 0")
        if (
            self.scaling == ScalingType.REVERSE_LOGARITHMIC
            and self.type == ParameterType.CONTINUOUS
            and self.max_value >= 1
        ):
            raise ValueError(
                f"range {self.name!r}: reverse logarithmic scaling needs a maximum below 1"
            )
        if self.scaling == ScalingType.REVERSE_LOGARITHMIC and self.type == ParameterType.INTEGER:
            raise ValueError(
                f"range {self.name!r}: reverse logarithmic scaling is for continuous ranges"
            )

    def to_sagemaker(self) -> dict[str, object]:
        """The ``ParameterRanges`` list item (SageMaker takes the bounds as strings)."""
        if self.type == ParameterType.CATEGORICAL:
            return {"Name": self.name, "Values": list(self.values)}
        assert self.min_value is not None and self.max_value is not None
        if self.type == ParameterType.INTEGER:
            low, high = str(int(self.min_value)), str(int(self.max_value))
        else:
            low, high = repr(self.min_value), repr(self.max_value)
        return {
            "Name": self.name,
            "MinValue": low,
            "MaxValue": high,
            "ScalingType": self.scaling.value,
        }

    def combinations(self) -> int:
        """How many distinct values a grid search tries for this range."""
        return len(self.values) if self.type == ParameterType.CATEGORICAL else 0


class TuningSpec(BaseModel):
    """The tuning part of a training request (schema rules only; the catalog and the tenant's
    quota are :func:`training_common.validate_request`'s job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective_metric: str = Field(min_length=1, max_length=255)
    objective_type: ObjectiveType
    strategy: TuningStrategy = TuningStrategy.BAYESIAN
    ranges: tuple[ParameterRange, ...] = Field(min_length=1, max_length=MAX_TUNED_HYPERPARAMETERS)
    max_training_jobs: int = Field(ge=1, le=MAX_TUNING_TRAINING_JOBS)
    max_parallel_training_jobs: int = Field(ge=1, le=MAX_TUNING_PARALLEL_JOBS)
    early_stopping: bool = False
    warm_start: WarmStart | None = None
    """Set by the launch handler for a retraining run (the previous run's tuning job)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.warm_start is not None and self.strategy in {
            TuningStrategy.GRID,
            TuningStrategy.HYPERBAND,
        }:
            raise ValueError(
                f"the platform warm-starts Bayesian or Random search, not {self.strategy.value}"
            )
        names = [item.name for item in self.ranges]
        if len(set(names)) != len(names):
            raise ValueError("each hyperparameter may have one range only")
        if self.max_parallel_training_jobs > self.max_training_jobs:
            raise ValueError("max_parallel_training_jobs can't exceed max_training_jobs")
        if self.strategy == TuningStrategy.GRID:
            if any(item.type != ParameterType.CATEGORICAL for item in self.ranges):
                raise ValueError("grid search takes categorical ranges only")
            if self.grid_size() > MAX_TUNING_TRAINING_JOBS:
                raise ValueError(
                    f"the grid has {self.grid_size()} combinations; at most "
                    f"{MAX_TUNING_TRAINING_JOBS} are allowed"
                )
            if self.max_training_jobs != self.grid_size():
                raise ValueError(
                    f"the grid has {self.grid_size()} combinations and grid search runs them "
                    f"all: set max_training_jobs to {self.grid_size()}"
                )
        if self.strategy == TuningStrategy.HYPERBAND and self.early_stopping:
            raise ValueError("Hyperband stops jobs early by itself: turn early stopping off")
        return self

    def grid_size(self) -> int:
        """The number of combinations a grid search runs (1 for other strategies' ranges)."""
        return math.prod(item.combinations() or 1 for item in self.ranges)

    @property
    def slots(self) -> int:
        """How many of the tenant's running-jobs slots this tuning job can occupy at once."""
        return self.max_parallel_training_jobs

    def is_better(self, candidate: float, incumbent: float) -> bool:
        """True when ``candidate`` beats ``incumbent`` in the objective's direction."""
        if self.objective_type == ObjectiveType.MAXIMIZE:
            return candidate > incumbent
        return candidate < incumbent


class TuningProgress(BaseModel):
    """``TrainingJobStatusCounters`` and ``ObjectiveStatusCounters`` of a tuning job."""

    model_config = ConfigDict(extra="ignore")

    completed: int = 0
    in_progress: int = 0
    retryable_error: int = 0
    non_retryable_error: int = 0
    stopped: int = 0
    objective_succeeded: int = 0
    objective_pending: int = 0
    objective_failed: int = 0

    @property
    def failed(self) -> int:
        """Training jobs that ended in an error (retryable or not)."""
        return self.retryable_error + self.non_retryable_error


class BestTrainingJob(BaseModel):
    """The tuning job's best training job so far (``BestTrainingJob``)."""

    model_config = ConfigDict(extra="ignore")

    training_job_name: str
    objective_value: float | None = None
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    """``TunedHyperParameters``: the values the search chose for this job."""


class Trial(BaseModel):
    """One training job a tuning job started, in ``TRIALS_TABLE``.

    Key: ``tenant_id`` + ``trial_id`` (``<job id>#<training job name>``, so a tuning job's
    trials are one ``begins_with`` query in the order SageMaker started them). The
    ``ByObjective`` local index sorts on ``objective_key`` (``<job id>#<code>``), whose code makes
    ascending order best-first for the job's objective direction; trials without an objective
    value sort last.
    """

    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    trial_id: str
    job_id: str
    training_job_name: str
    status: str
    """SageMaker's ``TrainingJobStatus`` (InProgress, Completed, Failed, Stopping, Stopped)."""
    secondary_status: str | None = None
    objective_value: float | None = None
    objective_key: str
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    final_metrics: dict[str, float] = Field(default_factory=dict)
    failure_reason: str | None = None
    model_artifact_key: str | None = None
    billable_seconds: int | None = None
    last_event_time: UtcDatetime
    updated_at: UtcDatetime

    @staticmethod
    def make_id(job_id: str, training_job_name: str) -> str:
        """``<job id>#<training job name>``."""
        return f"{job_id}#{training_job_name}"


_MISSING_OBJECTIVE_CODE = "~"  # after every hex digit: trials without a value sort last


def objective_sort_code(value: float | None, objective_type: ObjectiveType) -> str:
    """A fixed-width string whose ascending order is best-first for ``objective_type``.

    IEEE 754 doubles, sign bit flipped for positives and every bit flipped for negatives, order
    like their values when read as unsigned big-endian integers; Maximize negates first.
    """
    if value is None or not math.isfinite(value):
        return _MISSING_OBJECTIVE_CODE
    number = -value if objective_type == ObjectiveType.MAXIMIZE else value
    (bits,) = struct.unpack(">Q", struct.pack(">d", number + 0.0))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def objective_key(job_id: str, value: float | None, objective_type: ObjectiveType) -> str:
    """The ``ByObjective`` index's sort key of a trial."""
    return f"{job_id}#{objective_sort_code(value, objective_type)}"


def tuning_job_name(job_id: str) -> str:
    """The SageMaker tuning job's name for a job id: ``tune-`` and 27 hex digits of its SHA-256.

    Deterministic, so a redelivered request finds the tuning job its first delivery created, and
    at most 32 characters (SageMaker's limit, which job ids can exceed). SageMaker names the
    training jobs it starts ``<tuning job name>-<nnn>-<8 hex>``.
    """
    return "tune-" + hashlib.sha256(job_id.encode()).hexdigest()[: TUNING_JOB_NAME_LENGTH - 5]


__all__ = [
    "MAX_CATEGORICAL_VALUES",
    "MAX_TUNED_HYPERPARAMETERS",
    "MAX_TUNING_PARALLEL_JOBS",
    "MAX_TUNING_TRAINING_JOBS",
    "MAX_WARM_START_PARENTS",
    "TUNING_JOB_NAME_LENGTH",
    "BestTrainingJob",
    "ObjectiveType",
    "ParameterRange",
    "ParameterType",
    "ScalingType",
    "Trial",
    "TunableHyperparameter",
    "TuningProgress",
    "TuningSpec",
    "TuningStrategy",
    "WarmStart",
    "WarmStartType",
    "objective_key",
    "objective_sort_code",
    "tuning_job_name",
]
