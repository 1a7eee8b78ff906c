"""Hyperparameter tuning jobs as SageMaker runs them, and as the job-events handler records them.

A :class:`TuningRun` is one tuning job: STARTING (the launch handler's write, with
``tuning_job_arn``), then IN_PROGRESS with at most ``max_parallel_training_jobs`` trials at a
time. Each trial is a training job named ``<tuning job name>-<nnn>-<8 hex>`` that starts, trains
for one step and completes after another, with hyperparameters from
:func:`local.search.draw_hyperparameters` and metrics from :func:`local.search.metric_values`.
With early stopping (or Hyperband) a trial heading below the median of the completed ones is
stopped after its first step, as SageMaker's early stopping does. Every change is written as the
handler would: the trial with ``TrialRepository.apply``, the record's ``tuning_progress`` and
``best_training_job`` with ``JobRepository.apply_state_update``. On completion the best trial's
``model.tar.gz`` is already where SageMaker writes it, and its model is registered.

Retraining runs (a request with ``retraining`` set) follow a script instead of the model, so
``make portal`` shows both outcomes of the promotion rule: ``script(request)``
(:func:`local.retraining.scripted_objective`) gives the best objective the run ends with: a
policy's first launched run (and every odd one) ends 0.01 worse than the deployed model's
objective, so it is REJECTED with the comparison as its reason; the second (every even one)
better by the policy's margin plus 0.01, so it is PROMOTED and the deployment is updated. The
trials climb to that value (each 0.002 better than the one before; the last is the best), so
early stopping stops none of them. A run that ends (completed, failed or stopped) is handed to
``on_ended(job)`` (the job-events handler's ``PromotionService``: a failed or stopped run
becomes FAILED; a completed one is decided when its model is registered).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from training_common import (
    BestTrainingJob,
    CatalogEntry,
    FinalMetric,
    Job,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    ModelObjective,
    NotificationRepository,
    ObjectiveType,
    TrainingRequest,
    Trial,
    TrialRepository,
    TuningProgress,
    TuningSpec,
    TuningStrategy,
    objective_key,
    tuning_job_name,
)

from .common import (
    EventClock,
    job_notification,
    model_archive,
    sagemaker_arn,
    trial_artifact_key,
    trial_name,
)
from .registry import LocalRegistry
from .search import draw_hyperparameters, metric_values, partial_value

log = logging.getLogger("local.tuning")

COMPLETED, IN_PROGRESS, STOPPED = "Completed", "InProgress", "Stopped"
"""SageMaker's ``TrainingJobStatus`` values a trial goes through here."""


@dataclass
class TrialRun:
    """One training job of a tuning job, while the simulator plays it."""

    index: int
    name: str
    hyperparameters: dict[str, str]
    """The tuned values (``TunedHyperParameters``)."""
    projected: dict[str, float]
    """The metrics the trial reaches if it runs to the end."""
    started: float
    started_at: datetime
    stage: int = 0
    status: str = IN_PROGRESS
    objective_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_key: str | None = None
    billable_seconds: int | None = None


@dataclass
class TuningRun:
    """One tuning job, while the simulator plays it."""

    request: TrainingRequest
    entry: CatalogEntry
    name: str
    arn: str
    started: float
    stage: int = 0
    launched: int = 0
    running: list[TrialRun] = field(default_factory=list)
    finished: list[TrialRun] = field(default_factory=list)
    stop_requested: bool = False
    peak_parallel: int = 0
    """The most trials that ran at once (the tests check it against the limit)."""
    scripted_best: float | None = None
    """A retraining run's scripted best objective (see the module docstring)."""

    @property
    def spec(self) -> TuningSpec:
        """The request's tuning part."""
        assert self.request.tuning is not None
        return self.request.tuning

    @property
    def tenant_id(self) -> str:
        return self.request.tenant_id

    @property
    def job_id(self) -> str:
        return self.request.job_id

    @property
    def total(self) -> int:
        """How many trials the job runs: ``max_training_jobs`` (Grid: at most its grid)."""
        if self.spec.strategy == TuningStrategy.GRID:
            return min(self.spec.max_training_jobs, self.spec.grid_size())
        return self.spec.max_training_jobs

    def best(self) -> TrialRun | None:
        """The completed trial with the best objective value so far."""
        best: TrialRun | None = None
        best_value = 0.0
        for trial in self.finished:
            value = trial.objective_value
            if trial.status != COMPLETED or value is None:
                continue
            if best is None or self.spec.is_better(value, best_value):
                best, best_value = trial, value
        return best


class TuningSimulator:
    """Moves :class:`TuningRun` objects forward one tick at a time (see the module docstring)."""

    def __init__(
        self,
        *,
        jobs: JobRepository,
        trials: TrialRepository,
        notifications: NotificationRepository,
        registry: LocalRegistry,
        s3: Any,
        artifacts_bucket: str,
        events: EventClock,
        step_seconds: float,
        script: Callable[[TrainingRequest], float | None] | None = None,
        on_ended: Callable[[Job], object] | None = None,
    ) -> None:
        self.script = script
        self.on_ended = on_ended
        self.jobs = jobs
        self.trials = trials
        self.notifications = notifications
        self.registry = registry
        self.s3 = s3
        self.artifacts_bucket = artifacts_bucket
        self.events = events
        self.step = step_seconds

    def begin(self, request: TrainingRequest, entry: CatalogEntry) -> TuningRun:
        """A run for a validated tuning request (the caller records STARTING with ``run.arn``)."""
        name = tuning_job_name(request.job_id)
        scripted = None
        if request.retraining is not None and self.script is not None:
            try:
                scripted = self.script(request)
            except Exception:
                log.exception("retraining script failed", extra={"job_id": request.job_id})
        return TuningRun(
            request=request,
            entry=entry,
            name=name,
            arn=sagemaker_arn("hyper-parameter-tuning-job", name),
            started=self.events.clock(),
            scripted_best=scripted,
        )

    def advance(self, run: TuningRun) -> bool:
        """One tick of ``run``; True when the tuning job has ended."""
        now = self.events.clock()
        if run.stage == 0:
            if now - run.started < self.step:
                return False
            run.stage = 1
            self._launch(run, now)
            self._record(run, JobStatus.IN_PROGRESS)
            return False
        if run.stop_requested:
            self._stop(run)
            return True
        changed = False
        for trial in list(run.running):
            elapsed = now - trial.started
            if trial.stage == 0 and elapsed >= self.step:
                trial.stage = 1
                if self._stops_early(run, trial):
                    self._end_trial(run, trial, STOPPED, fraction=0.5)
                else:
                    self._write_trial(run, trial, "Training")
                changed = True
            elif trial.stage == 1 and elapsed >= 2 * self.step:
                self._end_trial(run, trial, COMPLETED, fraction=1.0)
                changed = True
        changed = self._launch(run, now) or changed
        if not run.running and run.launched >= run.total:
            self._complete(run)
            return True
        if changed:
            self._record(run, JobStatus.IN_PROGRESS)
        return False

    def _launch(self, run: TuningRun, now: float) -> bool:
        launched = False
        while len(run.running) < run.spec.max_parallel_training_jobs and run.launched < run.total:
            run.launched += 1
            best = run.best()
            tuned = draw_hyperparameters(
                run.spec, run.job_id, run.launched, None if best is None else best.hyperparameters
            )
            projected = metric_values(run.entry, {**run.request.hyperparameters, **tuned})
            if run.scripted_best is not None:
                behind = 0.002 * (run.total - run.launched)
                worse = -behind if run.spec.objective_type == ObjectiveType.MAXIMIZE else behind
                projected[run.spec.objective_metric] = round(run.scripted_best + worse, 6)
            trial = TrialRun(
                index=run.launched,
                name=trial_name(run.name, run.launched),
                hyperparameters=tuned,
                projected=projected,
                started=now,
                started_at=self.events.now(),
            )
            run.running.append(trial)
            run.peak_parallel = max(run.peak_parallel, len(run.running))
            self._write_trial(run, trial, "Starting")
            launched = True
        return launched

    def _stops_early(self, run: TuningRun, trial: TrialRun) -> bool:
        """Early stopping: the trial is heading below the median of the completed trials."""
        if not (run.spec.early_stopping or run.spec.strategy == TuningStrategy.HYPERBAND):
            return False
        done = [
            t.objective_value
            for t in run.finished
            if t.status == COMPLETED and t.objective_value is not None
        ]
        heading = trial.projected.get(run.spec.objective_metric)
        if len(done) < 2 or heading is None:
            return False
        return run.spec.is_better(statistics.median(done), heading)

    def _end_trial(self, run: TuningRun, trial: TrialRun, status: str, *, fraction: float) -> None:
        at = self.events.now()
        if fraction > 0:
            trial.metrics = {
                name: partial_value(value, name, fraction)
                for name, value in trial.projected.items()
            }
        trial.objective_value = trial.metrics.get(run.spec.objective_metric)
        trial.status = status
        trial.billable_seconds = max(1, int((at - trial.started_at).total_seconds()))
        if status == COMPLETED:
            trial.artifact_key = trial_artifact_key(run.tenant_id, run.job_id, trial.name)
            self.s3.put_object(
                Bucket=self.artifacts_bucket,
                Key=trial.artifact_key,
                Body=model_archive(run.job_id, trial.name),
            )
        run.running.remove(trial)
        run.finished.append(trial)
        self._write_trial(run, trial, status, at=at)

    def _write_trial(
        self, run: TuningRun, trial: TrialRun, secondary: str, *, at: datetime | None = None
    ) -> None:
        at = at or self.events.now()
        self.trials.apply(
            Trial(
                tenant_id=run.tenant_id,
                trial_id=Trial.make_id(run.job_id, trial.name),
                job_id=run.job_id,
                training_job_name=trial.name,
                status=trial.status,
                secondary_status=secondary,
                objective_value=trial.objective_value,
                objective_key=objective_key(
                    run.job_id, trial.objective_value, run.spec.objective_type
                ),
                hyperparameters=trial.hyperparameters,
                final_metrics=trial.metrics,
                model_artifact_key=trial.artifact_key,
                billable_seconds=trial.billable_seconds,
                last_event_time=at,
                updated_at=at,
            )
        )

    def _progress(self, run: TuningRun) -> TuningProgress:
        ended = run.finished
        return TuningProgress(
            completed=sum(1 for t in ended if t.status == COMPLETED),
            in_progress=len(run.running),
            stopped=sum(1 for t in ended if t.status == STOPPED),
            objective_succeeded=sum(1 for t in ended if t.objective_value is not None),
            objective_pending=len(run.running),
        )

    def _record(self, run: TuningRun, status: JobStatus, **extra: Any) -> Job | None:
        """The "Hyperparameter Tuning Job State Change" event, applied as the handler would."""
        best = run.best()
        return self.jobs.apply_state_update(
            run.tenant_id,
            run.job_id,
            JobStateUpdate(
                status=status,
                event_time=self.events.now(),
                tuning_job_arn=run.arn,
                tuning_progress=self._progress(run),
                best_training_job=None
                if best is None
                else BestTrainingJob(
                    training_job_name=best.name,
                    objective_value=best.objective_value,
                    hyperparameters=best.hyperparameters,
                ),
                **extra,
            ),
        )

    def _stop(self, run: TuningRun) -> None:
        self._record(run, JobStatus.STOPPING, secondary_status="Stopping")
        for trial in list(run.running):
            self._end_trial(run, trial, STOPPED, fraction=0.0)
        job = self._record(run, JobStatus.STOPPED, secondary_status="Stopped")
        self._notify(run, JobStatus.STOPPED, f"Tuning job {run.job_id} was stopped.")
        self._ended(job)
        log.info("tuning job stopped", extra={"job_id": run.job_id})

    def _complete(self, run: TuningRun) -> None:
        best = run.best()
        billable = sum(t.billable_seconds or 0 for t in run.finished)
        if best is None or best.artifact_key is None or best.objective_value is None:
            failed = self._record(
                run,
                JobStatus.FAILED,
                secondary_status="Failed",
                failure_reason="No training job reported the objective metric.",
                billable_seconds=billable,
            )
            self._notify(run, JobStatus.FAILED, f"Tuning job {run.job_id} failed.")
            self._ended(failed)
            return
        metrics = [FinalMetric(name=name, value=value) for name, value in best.metrics.items()]
        job = self._record(
            run,
            JobStatus.COMPLETED,
            secondary_status="Completed",
            final_metrics=metrics,
            model_artifact_key=best.artifact_key,
            billable_seconds=billable,
        )
        self._notify(
            run,
            JobStatus.COMPLETED,
            f"Tuning job {run.job_id} completed {len(run.finished)} training jobs. Best: "
            f"{best.name} with {run.spec.objective_metric} = {best.objective_value}.",
        )
        if job is None:
            log.warning("tuning job record not updated", extra={"job_id": run.job_id})
            return
        self.registry.register(
            job,
            training_job_name=best.name,
            artifact_key=best.artifact_key,
            image_uri=run.entry.image_uri,
            content_type=run.entry.input_content_type,
            metrics=metrics,
            hyperparameters={**run.request.hyperparameters, **best.hyperparameters},
            objective=ModelObjective(
                name=run.spec.objective_metric,
                type=run.spec.objective_type,
                value=best.objective_value,
            ),
        )
        log.info("tuning job completed", extra={"job_id": run.job_id, "best": best.name})

    def _ended(self, job: Job | None) -> None:
        """A retraining run's tuning job ended without a model: ``on_ended`` records it."""
        if job is None or job.retraining is None or self.on_ended is None:
            return
        try:
            self.on_ended(job)
        except Exception:
            log.exception("retraining run end not recorded", extra={"job_id": job.job_id})

    def _notify(self, run: TuningRun, status: JobStatus, message: str) -> None:
        self.notifications.put_if_absent(
            job_notification(
                run.tenant_id,
                run.job_id,
                status,
                f"Tuning job {status.value.lower()}: {run.job_id}",
                message,
                self.events.now(),
            )
        )
