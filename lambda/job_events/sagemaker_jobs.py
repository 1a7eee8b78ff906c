"""What the handler asks SageMaker about jobs: a tuning job's best training job, and the
training job behind a model (image, artifact, metrics), plus the trial a tuning job's training
job event becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from training_common import (
    BestTrainingJob,
    FinalMetric,
    Job,
    ModelObjective,
    ObjectiveType,
    Trial,
    job_prefix,
    key_in_bucket,
    objective_key,
    utc_now,
)

from .events import FinalMetricData, TrainingJobStateDetail
from .registry import ModelSource, RegistrationError
from .telemetry import logger

_NOT_FOUND = frozenset({"ResourceNotFound", "ValidationException"})


def artifact_key_in_prefix(uri: str | None, bucket: str, tenant_id: str, job_id: str) -> str | None:
    """The key of a model artifact URI when it lies in ``bucket`` under the job's prefix."""
    if not uri:
        return None
    key = key_in_bucket(uri, bucket)
    if key is None or not key.startswith(job_prefix(tenant_id, job_id)) or ".." in key.split("/"):
        logger.warning("Model artifacts outside the job's prefix", uri=uri)
        return None
    return key


def _image(detail: TrainingJobStateDetail) -> str | None:
    spec = detail.algorithm_specification
    return None if spec is None else spec.training_image


def _metrics(items: list[FinalMetricData]) -> list[FinalMetric]:
    return [FinalMetric(name=item.metric_name, value=item.value) for item in items]


@dataclass
class SageMakerJobs:
    """Reads SageMaker's view of jobs with an injected SageMaker client."""

    sagemaker: Any
    artifacts_bucket: str

    def best_training_job(self, tuning_job_name: str) -> BestTrainingJob | None:
        """``BestTrainingJob`` of ``DescribeHyperParameterTuningJob``, or None (not yet, or no
        such tuning job). Throttling and other errors propagate."""
        try:
            described = self.sagemaker.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=tuning_job_name
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
                logger.warning("Tuning job not found", tuning_job_name=tuning_job_name)
                return None
            raise
        best = described.get("BestTrainingJob") or {}
        name = best.get("TrainingJobName")
        if not name:
            return None
        metric = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        value = metric.get("Value")
        return BestTrainingJob(
            training_job_name=str(name),
            objective_value=None if value is None else float(value),
            hyperparameters={
                str(k): str(v) for k, v in (best.get("TunedHyperParameters") or {}).items()
            },
        )

    def describe_training_job(self, training_job_name: str) -> TrainingJobStateDetail:
        """``DescribeTrainingJob``, read like a training job event's detail; RegistrationError
        when there is no such training job, other errors propagate."""
        try:
            described = self.sagemaker.describe_training_job(TrainingJobName=training_job_name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
                raise RegistrationError(f"no training job {training_job_name}") from error
            raise
        return TrainingJobStateDetail.model_validate(
            {k: v for k, v in described.items() if k != "ResponseMetadata"}
        )

    def training_job_source(self, job: Job, detail: TrainingJobStateDetail) -> ModelSource:
        """The model of a completed plain training job (the event, else DescribeTrainingJob)."""
        image = _image(detail) or _image(self.describe_training_job(detail.training_job_name))
        if not image:
            raise RegistrationError(f"training job {detail.training_job_name} has no image")
        if not job.model_artifact_key:
            raise RegistrationError(
                f"job {job.job_id} completed without a model artifact under its prefix"
            )
        return ModelSource(
            training_job_name=detail.training_job_name,
            training_job_arn=detail.training_job_arn or job.training_job_arn,
            image_uri=image,
            model_artifact_key=job.model_artifact_key,
            metrics=list(job.final_metrics) or _metrics(detail.final_metric_data_list),
            hyperparameters=dict(job.hyperparameters),
        )

    def best_job_source(self, job: Job) -> ModelSource:
        """The model of a tuning job's best training job (DescribeTrainingJob)."""
        best, tuning = job.best_training_job, job.tuning
        if best is None or tuning is None:
            raise RegistrationError(f"tuning job {job.job_id} has no best training job")
        detail = self.describe_training_job(best.training_job_name)
        image = _image(detail)
        artifacts = detail.model_artifacts.s3_model_artifacts if detail.model_artifacts else None
        key = artifact_key_in_prefix(artifacts, self.artifacts_bucket, job.tenant_id, job.job_id)
        if not image or key is None:
            raise RegistrationError(
                f"best training job {best.training_job_name} of job {job.job_id} has no "
                "image or no model artifact under the job's prefix"
            )
        return ModelSource(
            training_job_name=best.training_job_name,
            training_job_arn=detail.training_job_arn,
            image_uri=image,
            model_artifact_key=key,
            metrics=_metrics(detail.final_metric_data_list),
            hyperparameters={**job.hyperparameters, **best.hyperparameters},
            objective=ModelObjective(
                name=tuning.objective_metric,
                type=tuning.objective_type,
                value=best.objective_value,
            ),
        )

    def trial(self, parent: Job, detail: TrainingJobStateDetail, event_time: datetime) -> Trial:
        """The trial a training job event of ``parent``'s tuning job describes."""
        assert parent.tuning is not None
        tuning = parent.tuning
        finals = {item.metric_name: item.value for item in detail.final_metric_data_list}
        value = finals.get(tuning.objective_metric)
        tuned = {item.name for item in tuning.ranges}
        uri = detail.model_artifacts.s3_model_artifacts if detail.model_artifacts else None
        return Trial(
            tenant_id=parent.tenant_id,
            trial_id=Trial.make_id(parent.job_id, detail.training_job_name),
            job_id=parent.job_id,
            training_job_name=detail.training_job_name,
            status=detail.training_job_status,
            secondary_status=detail.secondary_status,
            objective_value=value,
            objective_key=objective_key(parent.job_id, value, ObjectiveType(tuning.objective_type)),
            hyperparameters={k: v for k, v in detail.hyperparameters.items() if k in tuned},
            final_metrics=finals,
            failure_reason=detail.failure_reason,
            model_artifact_key=artifact_key_in_prefix(
                uri, self.artifacts_bucket, parent.tenant_id, parent.job_id
            ),
            billable_seconds=detail.billable_time_in_seconds,
            last_event_time=event_time,
            updated_at=utc_now(),
        )
