"""The local simulator driven directly against moto in process (no portal, no browser).

A :class:`~local.common.FakeClock` moves time, :meth:`JobSimulator.step` is one tick, so each test
sees every intermediate state the portal would. Requests go on the queue exactly as the portal
sends them; approvals go through a session carrying the simulator's hook, as the portal's do.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from local.common import REGION, FakeClock, trial_artifact_key
from local.search import draw_hyperparameters, metric_values, to_unit
from local.simulator import JobSimulator
from local.stack import CATALOG, Seeded
from portal_app.settings import PortalSettings
from portal_helpers import BuiltStack
from training_common import (
    MAX_PAGE_SIZE,
    Job,
    JobRepository,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    NotificationRepository,
    ObjectiveType,
    ParameterRange,
    ParameterType,
    ScalingType,
    TrainingRequest,
    TrialRepository,
    TuningSpec,
    TuningStrategy,
    new_job_id,
    new_session,
    utc_now,
)

STEP = 1.0


@dataclass
class Sim:
    settings: PortalSettings
    seeded: Seeded
    session: object
    clock: FakeClock
    simulator: JobSimulator
    jobs: JobRepository
    trials: TrialRepository
    models: ModelRepository
    notifications: NotificationRepository
    observed_parallel: list[int] = field(default_factory=list)
    """Trials InProgress after each tick of the last :meth:`run_until`."""

    def client(self, service: str) -> object:
        return self.session.client(service, region_name=REGION)  # type: ignore[attr-defined]

    def submit(self, request: TrainingRequest) -> None:
        """What the portal does: the QUEUED record, then the queue message."""
        self.jobs.create(Job.from_request(request))
        self.client("sqs").send_message(  # type: ignore[attr-defined]
            QueueUrl=self.settings.training_requests_queue_url,
            MessageBody=request.to_message_body(),
        )

    def tick(self) -> None:
        self.clock.advance(STEP / 2)
        self.simulator.step()

    def run_until(self, job_id: str, statuses: set[JobStatus], ticks: int = 200) -> Job:
        self.observed_parallel = []
        for _ in range(ticks):
            self.tick()
            job = self.jobs.get("acme", job_id)
            assert job is not None
            running = [
                t
                for t in self.trials.in_launch_order("acme", job_id, limit=MAX_PAGE_SIZE).items
                if t.status == "InProgress"
            ]
            self.observed_parallel.append(len(running))
            if job.tuning_progress is not None:
                assert job.tuning_progress.in_progress == len(running)
            if job.status in statuses:
                return job
        raise AssertionError(f"{job_id} did not reach {statuses}")


@pytest.fixture(scope="module")
def built() -> BuiltStack:
    """The local stack, created and seeded once for the module's tests."""
    return BuiltStack.build()


@pytest.fixture
def sim(built: BuiltStack) -> Iterator[Sim]:
    with built.restored() as (settings, seeded, session):
        clock = FakeClock()
        simulator = JobSimulator(settings, session, None, step_seconds=STEP, clock=clock)
        dynamodb = session.resource("dynamodb", region_name=REGION)
        yield Sim(
            settings,
            seeded,
            session,
            clock,
            simulator,
            JobRepository(dynamodb.Table(settings.jobs_table)),
            TrialRepository(dynamodb.Table(settings.trials_table)),
            ModelRepository(dynamodb.Table(settings.models_table)),
            NotificationRepository(dynamodb.Table(settings.notifications_table)),
        )


def tuning_request(
    *,
    max_jobs: int = 6,
    parallel: int = 2,
    early_stopping: bool = False,
    job_id: str | None = None,
) -> TrainingRequest:
    return TrainingRequest(
        tenant_id="acme",
        job_id=job_id or new_job_id("acme"),
        algorithm_id="xgboost",
        dataset_key="tenants/acme/datasets/iris/",
        hyperparameters={"objective": "binary:logistic"},
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        submitted_by="alice@acme.example",
        submitted_at=utc_now(),
        tuning=TuningSpec(
            objective_metric="validation:auc",
            objective_type=ObjectiveType.MAXIMIZE,
            strategy=TuningStrategy.BAYESIAN,
            ranges=(
                ParameterRange(
                    name="eta",
                    type=ParameterType.CONTINUOUS,
                    min_value=0.01,
                    max_value=1.0,
                    scaling=ScalingType.LOGARITHMIC,
                ),
                ParameterRange(
                    name="max_depth", type=ParameterType.INTEGER, min_value=2, max_value=12
                ),
                ParameterRange(
                    name="tree_method", type=ParameterType.CATEGORICAL, values=("exact", "hist")
                ),
            ),
            max_training_jobs=max_jobs,
            max_parallel_training_jobs=parallel,
            early_stopping=early_stopping,
        ),
    )


def test_tuning_job_runs_two_at_a_time_and_registers_the_best_model(sim: Sim) -> None:
    request = tuning_request()
    sim.submit(request)
    sim.tick()
    started = sim.jobs.get("acme", request.job_id)
    assert started is not None and started.status == JobStatus.STARTING
    assert started.tuning_job_arn and started.tuning_job_arn.endswith(
        f":hyper-parameter-tuning-job/{started.tuning_job_name}"
    )

    job = sim.run_until(request.job_id, {JobStatus.COMPLETED, JobStatus.FAILED})
    assert job.status == JobStatus.COMPLETED
    assert max(sim.observed_parallel) == 2  # never more than max_parallel_training_jobs
    assert sim.simulator.finished_tuning[request.job_id].peak_parallel == 2
    assert [h.status for h in job.status_history][:3] == [
        JobStatus.QUEUED,
        JobStatus.STARTING,
        JobStatus.IN_PROGRESS,
    ]
    assert job.tuning_progress is not None
    assert (job.tuning_progress.completed, job.tuning_progress.in_progress) == (6, 0)

    trials = sim.trials.in_launch_order("acme", request.job_id).items
    assert len(trials) == 6 and all(t.status == "Completed" for t in trials)
    assert [t.training_job_name for t in trials] == sorted(t.training_job_name for t in trials)
    for number, trial in enumerate(trials, start=1):
        assert trial.training_job_name.startswith(f"{job.tuning_job_name}-{number:03d}-")
        assert len(trial.training_job_name.rsplit("-", 1)[1]) == 8
        assert 0.01 <= float(trial.hyperparameters["eta"]) <= 1.0
        assert 2 <= int(trial.hyperparameters["max_depth"]) <= 12
        assert trial.hyperparameters["tree_method"] in {"exact", "hist"}
        assert trial.objective_value == trial.final_metrics["validation:auc"]
    # the objective is the model's, a function of the hyperparameters
    expected = metric_values(CATALOG[0], {**request.hyperparameters, **trials[0].hyperparameters})
    assert trials[0].objective_value == expected["validation:auc"]

    best_first = sim.trials.best_first("acme", request.job_id).items
    values = [t.objective_value for t in best_first]
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
    best = best_first[0]
    assert job.best_training_job is not None
    assert job.best_training_job.training_job_name == best.training_job_name
    assert job.best_training_job.objective_value == max(values)  # type: ignore[type-var]
    assert job.best_training_job.hyperparameters == best.hyperparameters

    artifact = trial_artifact_key("acme", request.job_id, best.training_job_name)
    assert job.model_artifact_key == artifact == best.model_artifact_key
    body = (
        sim.client("s3")
        .get_object(  # type: ignore[attr-defined]
            Bucket=sim.settings.artifacts_bucket, Key=artifact
        )["Body"]
        .read()
    )
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        member = archive.extractfile("model.json")
        assert member is not None
        assert json.loads(member.read())["training_job_name"] == best.training_job_name

    model = sim.models.get("acme", request.job_id)
    assert model is not None
    assert model.approval_status == ModelApprovalStatus.PENDING
    assert model.training_job_name == best.training_job_name
    assert model.model_artifact_key == artifact
    assert model.objective is not None and model.objective.value == best.objective_value
    assert model.hyperparameters["eta"] == best.hyperparameters["eta"]
    assert model.model_package_group == "acme-models"
    assert model.model_package_arn and model.model_version is not None
    package = sim.client("sagemaker").describe_model_package(  # type: ignore[attr-defined]
        ModelPackageName=model.model_package_arn
    )
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageGroupName"] == "acme-models"
    containers = package["InferenceSpecification"]["Containers"]
    assert containers[0]["ModelDataUrl"].endswith(artifact)


def test_approval_plays_the_state_change_event_and_notifies(sim: Sim) -> None:
    job_id = sim.seeded.tuning_jobs["acme"]
    model = sim.models.get("acme", job_id)
    assert model is not None and model.approval_status == ModelApprovalStatus.PENDING
    portal_session = new_session(region_name=REGION)
    sim.simulator.session_hook(portal_session)
    portal_session.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=model.model_package_arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription="best AUC so far",
    )
    assert sim.models.get("acme", job_id).approval_status == (  # type: ignore[union-attr]
        ModelApprovalStatus.PENDING
    )  # the record changes when the event arrives, not with the call
    sim.tick()
    approved = sim.models.get("acme", job_id)
    assert approved is not None and approved.approval_status == ModelApprovalStatus.APPROVED
    assert approved.last_event_time is not None
    assert model.last_event_time is not None and approved.last_event_time > model.last_event_time
    latest = sim.notifications.list_page("acme", limit=1).items[0]
    assert latest.job_id == job_id and latest.model_status == "Approved"
    assert "approved" in latest.subject.lower()
    sim.tick()  # nothing more to deliver: no second notification
    assert sim.notifications.list_page("acme", limit=1).items[0] == latest


def test_stopping_a_tuning_job_stops_its_running_trials(sim: Sim) -> None:
    request = tuning_request(max_jobs=6, parallel=2)
    sim.submit(request)
    job = sim.run_until(request.job_id, {JobStatus.IN_PROGRESS})
    name = job.tuning_job_name
    portal_session = new_session(region_name=REGION)
    sim.simulator.session_hook(portal_session)
    sagemaker = portal_session.client("sagemaker", region_name=REGION)
    sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    stopped = sim.run_until(request.job_id, {JobStatus.STOPPED, JobStatus.COMPLETED})
    assert stopped.status == JobStatus.STOPPED
    assert JobStatus.STOPPING in [h.status for h in stopped.status_history]
    trials = sim.trials.in_launch_order("acme", request.job_id).items
    assert len(trials) == 2 and {t.status for t in trials} == {"Stopped"}
    assert stopped.tuning_progress is not None and stopped.tuning_progress.stopped == 2
    assert sim.models.get("acme", request.job_id) is None  # nothing registered
    with pytest.raises(sagemaker.exceptions.ClientError, match="not running"):
        sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def test_early_stopping_stops_trials_below_the_median(sim: Sim) -> None:
    # The draws follow the job id: a fixed one makes the run, and so the stopped trials, the same
    # on every run (with a random id, a run whose later trials all beat the median stops none).
    request = tuning_request(
        max_jobs=10, parallel=2, early_stopping=True, job_id="acme-20261203000000-a1b2c3"
    )
    sim.submit(request)
    job = sim.run_until(request.job_id, {JobStatus.COMPLETED})
    trials = sim.trials.in_launch_order("acme", request.job_id).items
    stopped = [t for t in trials if t.status == "Stopped"]
    assert stopped, "no trial was stopped early"
    assert job.tuning_progress is not None
    assert job.tuning_progress.stopped == len(stopped)
    assert job.tuning_progress.completed == 10 - len(stopped)
    assert job.best_training_job is not None
    assert job.best_training_job.training_job_name not in {t.training_job_name for t in stopped}


def test_training_job_gets_metric_series_and_a_registered_model(sim: Sim) -> None:
    request = tuning_request().model_copy(update={"tuning": None})
    request = TrainingRequest.model_validate(
        {**request.model_dump(), "hyperparameters": {"eta": "0.2", "max_depth": "6"}}
    )
    sim.submit(request)
    job = sim.run_until(request.job_id, {JobStatus.COMPLETED})
    names = {series.name for series in job.metric_series}
    assert names == {"validation:auc", "train:auc"}
    for series in job.metric_series:
        assert len(series.points) >= 5
        final = next(m.value for m in job.final_metrics if m.name == series.name)
        assert series.points[-1].value == final and series.points[0].value < final
    model = sim.models.get("acme", request.job_id)
    assert model is not None and model.training_job_name == request.job_id
    assert model.approval_status == ModelApprovalStatus.PENDING


def test_seeded_tuning_job_is_finished_with_a_pending_model(sim: Sim) -> None:
    job_id = sim.seeded.tuning_jobs["acme"]
    job = sim.jobs.get("acme", job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    assert job.created_at < utc_now() - timedelta(minutes=30)
    assert job.last_event_time is not None and job.last_event_time < utc_now()
    trials = sim.trials.best_first("acme", job_id).items
    assert len(trials) >= 6
    assert job.best_training_job is not None
    assert job.best_training_job.training_job_name == trials[0].training_job_name
    model = sim.models.get("acme", job_id)
    assert model is not None and model.approval_status == ModelApprovalStatus.PENDING
    assert "globex" not in sim.seeded.tuning_jobs


def test_globex_sees_none_of_acmes_trials_or_models(sim: Sim) -> None:
    job_id = sim.seeded.tuning_jobs["acme"]
    assert sim.trials.best_first("acme", job_id).items
    assert sim.trials.best_first("globex", job_id).items == []
    assert sim.trials.in_launch_order("globex", job_id).items == []
    assert sim.models.get("globex", job_id) is None
    assert all(m.tenant_id == "globex" for m in sim.models.list_page("globex").items)
    assert job_id not in {m.job_id for m in sim.models.list_page("globex").items}
    assert sim.models.list_page("acme").items[0].job_id == job_id


@pytest.mark.parametrize(
    ("scaling", "low", "high"),
    [
        (ScalingType.LINEAR, 0.0, 10.0),
        (ScalingType.LOGARITHMIC, 1e-4, 1.0),
        (ScalingType.REVERSE_LOGARITHMIC, 0.5, 0.999),
        (ScalingType.AUTO, 1e-5, 1.0),
    ],
)
def test_draws_respect_type_bounds_and_scaling(
    scaling: ScalingType, low: float, high: float
) -> None:
    spec = TuningSpec(
        objective_metric="validation:auc",
        objective_type=ObjectiveType.MAXIMIZE,
        strategy=TuningStrategy.RANDOM,
        ranges=(
            ParameterRange(
                name="x",
                type=ParameterType.CONTINUOUS,
                min_value=low,
                max_value=high,
                scaling=scaling,
            ),
            ParameterRange(name="n", type=ParameterType.INTEGER, min_value=3, max_value=9),
        ),
        max_training_jobs=400,
        max_parallel_training_jobs=1,
    )
    draws = [draw_hyperparameters(spec, "acme-20240101000000-abcdef", i) for i in range(1, 401)]
    assert draws == [
        draw_hyperparameters(spec, "acme-20240101000000-abcdef", i) for i in range(1, 401)
    ]  # deterministic
    values = [float(d["x"]) for d in draws]
    assert all(low <= v <= high for v in values)
    assert {int(d["n"]) for d in draws} == set(range(3, 10))
    positions = sorted(to_unit(v, low, high, scaling) for v in values)
    # uniform in the scaled space: the median position is near the middle
    assert 0.4 < positions[len(positions) // 2] < 0.6


def test_grid_walks_every_combination_once() -> None:
    spec = TuningSpec(
        objective_metric="validation:auc",
        objective_type=ObjectiveType.MAXIMIZE,
        strategy=TuningStrategy.GRID,
        ranges=(
            ParameterRange(name="a", type=ParameterType.CATEGORICAL, values=("1", "2", "3")),
            ParameterRange(name="b", type=ParameterType.CATEGORICAL, values=("x", "y")),
        ),
        max_training_jobs=6,
        max_parallel_training_jobs=2,
    )
    combos = {tuple(draw_hyperparameters(spec, "j", i).values()) for i in range(1, 7)}
    assert len(combos) == 6
