"""``validate_request`` on retraining requests: the validation channel, the manifest and the
warm-start parents; and the request builders' new fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from launch.retraining import manifest_problem
from launch.settings import LaunchSettings
from launch.training_job import build_create_training_job_request
from launch.tuning_job import build_create_tuning_job_request
from training_common import (
    DatasetType,
    Job,
    JobStatus,
    ProblemCode,
    WarmStart,
    WarmStartType,
    new_job_id,
    validate_request,
)
from training_common.validation import is_retraining_manifest_key

MANIFEST = "tenants/acme/retraining/weekly/20261207030000/manifest.json"


def parent_job(make: Any, tune: Any, **overrides: Any) -> Job:
    tenant_id = overrides.pop("tenant_id", "acme")
    request = make.request(tenant_id, tuning=tune.spec(), **overrides.pop("request", {}))
    status = overrides.pop("status", JobStatus.COMPLETED)
    return Job.from_request(request).model_copy(update={"status": status, **overrides})


def warm(parent_id: str) -> WarmStart:
    return WarmStart(type=WarmStartType.TRANSFER_LEARNING, parent_job_ids=(parent_id,))


def check(make: Any, tune: Any, request: Any, parents: dict[str, Job | None] | None = None) -> Any:
    return validate_request(
        request,
        tenant=make.tenant(max_running_jobs=4),
        algorithm=tune.algorithm(),
        running_jobs=0,
        warm_start_parents=parents,
    )


def test_retraining_request_with_a_finished_parent_is_valid(make: Any, tune: Any) -> None:
    parent = parent_job(make, tune)
    request = tune.request(
        tuning=tune.spec().model_copy(update={"warm_start": warm(parent.job_id)}),
        dataset_key=MANIFEST,
        dataset_type=DatasetType.MANIFEST_FILE,
        validation_key="tenants/acme/datasets/holdout/",
    )

    assert check(make, tune, request, {parent.job_id: parent}).ok


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"status": JobStatus.IN_PROGRESS}, "has not finished (IN_PROGRESS)"),
        ({"status": JobStatus.FAILED}, "has not finished (FAILED)"),
        ({"algorithm_id": "linear-learner"}, "ran algorithm 'linear-learner'"),
        ({"kind": "training", "tuning": None}, "is a training job"),
        ({"tenant_id": "globex"}, "is not one of your jobs"),
        ({"objective": "train:rmse"}, "optimised 'train:rmse', not 'validation:rmse'"),
        (None, "is not one of your jobs"),
    ],
)
def test_warm_start_parent_must_be_a_finished_tuning_job_of_the_tenant(
    make: Any, tune: Any, change: dict[str, Any] | None, words: str
) -> None:
    if change is not None and change.get("tenant_id") == "globex":
        parent: Job | None = parent_job(make, tune, tenant_id="globex")
    elif change is not None and "objective" in change:
        parent = parent_job(make, tune, tuning=tune.spec(objective_metric=change["objective"]))
    elif change is not None:
        parent = parent_job(make, tune, **change)
    else:
        parent = None
    parent_id = parent.job_id if parent is not None else new_job_id("acme")
    request = tune.request(tuning=tune.spec().model_copy(update={"warm_start": warm(parent_id)}))

    result = check(make, tune, request, {parent_id: parent})

    assert result.codes == {ProblemCode.WARM_START_PARENT_INVALID}
    assert words in result.reason


def test_stopped_parent_is_fine_and_missing_parents_are_refused(make: Any, tune: Any) -> None:
    parent = parent_job(make, tune, status=JobStatus.STOPPED)
    request = tune.request(
        tuning=tune.spec().model_copy(update={"warm_start": warm(parent.job_id)})
    )

    assert check(make, tune, request, {parent.job_id: parent}).ok
    assert check(make, tune, request).codes == {ProblemCode.WARM_START_PARENT_INVALID}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"validation_key": "tenants/globex/datasets/holdout/"}, "validation data"),
        ({"validation_key": "tenants/acme/models/"}, "validation data"),
        (
            {"dataset_key": "tenants/acme/datasets/houses/", "dataset_type": "ManifestFile"},
            "retraining runs' manifests",
        ),
        (
            {
                "dataset_key": "tenants/globex/retraining/w/1/manifest.json",
                "dataset_type": "ManifestFile",
            },
            "retraining runs' manifests",
        ),
        ({"dataset_key": MANIFEST}, "is not one of your datasets"),
    ],
)
def test_data_outside_the_tenant_is_refused(
    make: Any, tune: Any, fields: dict[str, Any], words: str
) -> None:
    result = check(make, tune, tune.request(**fields))

    assert result.codes == {ProblemCode.DATASET_OUTSIDE_TENANT}
    assert words in result.reason


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        (MANIFEST, True),
        ("tenants/acme/retraining/manifest.json", False),
        ("tenants/acme/retraining/weekly/../x/manifest.json", False),
        ("tenants/acme/retraining/weekly//manifest.json", False),
        ("tenants/acme/retraining/weekly/1/data.csv", False),
        ("tenants/acme/datasets/weekly/1/manifest.json", False),
    ],
)
def test_manifest_keys(key: str, ok: bool) -> None:
    assert is_retraining_manifest_key("acme", key) is ok


def test_builders_add_validation_channel_manifest_and_warm_start(
    platform: Any, make: Any, tune: Any
) -> None:
    settings = LaunchSettings.from_env(platform.env)
    parent_id = new_job_id("acme")
    request = tune.request(
        tuning=tune.spec().model_copy(update={"warm_start": warm(parent_id)}),
        dataset_key=MANIFEST,
        dataset_type=DatasetType.MANIFEST_FILE,
        validation_key="tenants/acme/datasets/holdout/",
    )

    tuning = build_create_tuning_job_request(request, tune.algorithm(), settings)
    channels = tuning["TrainingJobDefinition"]["InputDataConfig"]

    assert [c["ChannelName"] for c in channels] == ["train", "validation"]
    assert channels[0]["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"
    assert channels[1]["ContentType"] == channels[0]["ContentType"]
    assert tuning["WarmStartConfig"]["WarmStartType"] == "TransferLearning"
    plain = build_create_training_job_request(make.request(), make.algorithm(), settings)
    assert [c["ChannelName"] for c in plain["InputDataConfig"]] == ["train"]
    assert plain["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert "WarmStartConfig" not in build_create_tuning_job_request(
        tune.request(), tune.algorithm(), settings
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        (b"not json", "is not JSON"),
        (b'[{"prefix": "s3://data-bucket/tenants/globex/"}, "datasets/a.csv"]', "your prefix"),
        (b'[{"prefix": "s3://data-bucket/tenants/acme/"}]', "at least one object"),
        (b'[{"prefix": "s3://data-bucket/tenants/acme/"}, "jobs/x/model.tar.gz"]', "lists"),
        (b'[{"prefix": "s3://data-bucket/tenants/acme/"}, "datasets/../../globex/x"]', "lists"),
        (
            b'[{"prefix": "s3://data-bucket/tenants/acme/"}, "datasets/a.csv", "feedback/d/l.csv"]',
            None,
        ),
    ],
)
def test_manifest_content_must_stay_in_the_tenants_data(
    platform: Any, make: Any, content: bytes | None, words: str | None
) -> None:
    s3 = platform.session.client("s3")
    if content is not None:
        s3.put_object(Bucket="data-bucket", Key=MANIFEST, Body=content)
    request = make.request(
        dataset_key=MANIFEST,
        dataset_type=DatasetType.MANIFEST_FILE,
        submitted_at=datetime.now(UTC),
    )

    problem = manifest_problem(s3, "data-bucket", request)

    assert (problem is None) if words is None else (words in (problem or ""))
