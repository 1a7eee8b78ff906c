"""Tuning jobs through the portal against moto: the form, submission, every 4xx, the job page
with its trials and chart, stop; the training job's metrics chart; paginated job lists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from portal_app.services import tuning
from portal_helpers import (
    JOB_FORM,
    TUNE_FORM,
    Platform,
    put_tuning_job,
)
from training_common import (
    CatalogRepository,
    Job,
    JobRepository,
    JobStatus,
    MetricPoint,
    MetricSeries,
    TrainingRequest,
    encode_page_token,
    new_job_id,
    utc_now,
)

JSON = {"accept": "application/json"}


def _queued(platform: Platform) -> list[dict[str, Any]]:
    sqs = platform.session.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=platform.settings.training_requests_queue_url, MaxNumberOfMessages=10
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def _job_count(platform: Platform, tenant_id: str = "acme") -> int:
    return int(
        platform.table("Jobs").query(
            KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": tenant_id}
        )["Count"]
    )


def test_jobs_page_links_the_tune_form(platform: Platform) -> None:
    page = platform.client("alice").get("/jobs")
    assert re.search(r'<a[^>]*id="tune-job"[^>]*href="/jobs/tune"', page.text)
    assert 'href="/models"' in page.text  # navigation


def test_tune_form_lists_the_catalog_tunables_objectives_and_quota(platform: Platform) -> None:
    page = platform.client("alice").get("/jobs/tune")
    assert page.status_code == 200
    text = page.text
    # Only algorithms that can be tuned; anomaly-detector lists no tunable hyperparameters.
    assert 'id="tune-xgboost"' in text and 'id="tune-linear-learner"' in text
    assert "anomaly-detector" not in text
    for name in (
        "tune__xgboost__eta",
        "min__xgboost__eta",
        "max__xgboost__eta",
        "scaling__xgboost__eta",
        "values__xgboost__tree_method",
    ):
        assert f'name="{name}"' in text
    assert "0.001 to 1" in text and "1 to 20" in text and "auto, exact, approx, hist" in text
    assert 'value="validation:auc"' in text and 'value="test:mse"' in text
    assert re.search(r'value="test:mse"[^>]*data-direction="Minimize"', text)
    quota = re.search(r'id="tuning-quota">(.*?)</p>', text, re.S)
    assert quota is not None
    assert "up to 3 training jobs running at once" in quota.group(1)
    assert "50 training jobs per" in " ".join(quota.group(1).split())
    for strategy in ("Bayesian", "Random", "Hyperband", "Grid"):
        assert f"<option >{strategy}</option>" in text or f"<option selected>{strategy}" in text
    assert 'name="early_stopping"' in text and 'name="use_spot"' in text
    assert 'name="csrf_token"' in text


def test_tuning_submission_queues_a_tuning_request_with_tenant_credentials(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form("/jobs/tune", TUNE_FORM)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.endswith("?notice=submitted")
    job_id = location.split("/")[2].split("?")[0]
    item = platform.table("Jobs").get_item(Key={"tenant_id": "acme", "job_id": job_id})["Item"]
    job = Job.model_validate(item)
    assert job.status == JobStatus.QUEUED and job.kind.value == "tuning"
    assert job.tuning_job_name and len(job.tuning_job_name) <= 32
    assert job.tuning is not None
    assert job.tuning.objective_metric == "validation:auc"
    assert job.tuning.max_training_jobs == 6 and job.tuning.max_parallel_training_jobs == 2
    ranges = {r.name: r for r in job.tuning.ranges}
    assert set(ranges) == {"eta", "max_depth", "tree_method"}  # linear-learner's are ignored
    assert (ranges["eta"].min_value, ranges["eta"].max_value) == (0.01, 0.5)
    assert ranges["eta"].scaling.value == "Logarithmic"
    assert ranges["tree_method"].values == ("hist", "approx")
    assert job.hyperparameters == {"num_round": "50", "objective": "binary:logistic"}
    (body,) = _queued(platform)
    request = TrainingRequest.model_validate(body)
    assert request.job_id == job_id and request.tuning == job.tuning
    writes = [c for c in platform.calls.since(mark) if c[1] in {"PutItem", "SendMessage"}]
    assert {c[1] for c in writes} == {"PutItem", "SendMessage"}
    assert all(platform.calls.tenant_of_key(key) == "acme" for _, _, key, _ in writes)
    page = client.get(location)
    assert "The job was queued." in page.text and "Tuning job" in page.text


def test_algorithms_sharing_a_hyperparameter_name_keep_their_own_ranges(
    platform: Platform,
) -> None:
    """Without JavaScript the form posts every algorithm's fields: a second algorithm with the
    same hyperparameter names must not lend its bounds to the chosen one."""
    catalog = CatalogRepository(platform.session.client("s3"), platform.settings.catalog_bucket, 0)
    xgboost = catalog.get("xgboost")
    assert xgboost is not None
    catalog.put(xgboost.model_copy(update={"id": "xgboost-gpu", "name": "XGBoost on GPUs"}))
    form = {
        **TUNE_FORM,
        "tune__xgboost-gpu__eta": "on",
        "min__xgboost-gpu__eta": "0.2",
        "max__xgboost-gpu__eta": "0.9",
    }
    page = platform.client("alice").get("/jobs/tune")
    assert 'name="min__xgboost-gpu__eta"' in page.text and 'name="min__xgboost__eta"' in page.text

    response = platform.client("alice").post_form("/jobs/tune", form, headers=JSON)

    assert response.status_code == 201, response.text
    ranges = {r["name"]: r for r in response.json()["job"]["tuning"]["ranges"]}
    assert (ranges["eta"]["min_value"], ranges["eta"]["max_value"]) == (0.01, 0.5)


def test_tuning_submission_answers_json(platform: Platform) -> None:
    response = platform.client("alice").post_form("/jobs/tune", TUNE_FORM, headers=JSON)
    assert response.status_code == 201
    body = response.json()
    assert body["note"] is None
    assert body["job"]["kind"] == "tuning" and body["job"]["tenant_id"] == "acme"
    assert body["job"]["tuning"]["strategy"] == "Bayesian"


def test_a_tuned_hyperparameter_replaces_its_static_value(platform: Platform) -> None:
    form = {
        **TUNE_FORM,
        "tune__xgboost__num_round": "on",
        "min__xgboost__num_round": "10",
        "max__xgboost__num_round": "200",
    }
    response = platform.client("alice").post_form("/jobs/tune", form, headers=JSON)
    assert response.status_code == 201
    job = response.json()["job"]
    assert job["hyperparameters"] == {"objective": "binary:logistic"}
    assert "num_round" in {r["name"] for r in job["tuning"]["ranges"]}


MALFORMED = {
    "min__xgboost__eta": (
        {"min__xgboost__eta": "abc"},
        "Minimum of eta must be a number, not 'abc'",
    ),
    "max__xgboost__eta": ({"max__xgboost__eta": "inf"}, "Maximum of eta must be a finite number"),
    "scaling__xgboost__eta": (
        {"scaling__xgboost__eta": "Cubic"},
        "Scaling of eta must be one of Auto, Linear",
    ),
    "objective_type": ({"objective_type": "Sideways"}, "Objective direction must be one of"),
    "objective_metric": ({"objective_metric": ""}, "Objective metric is required"),
    "strategy": ({"strategy": "Genetic"}, "Strategy must be one of Bayesian, Random"),
    "max_training_jobs": ({"max_training_jobs": "0"}, "Maximum training jobs must be between"),
    "max_parallel_training_jobs": (
        {"max_parallel_training_jobs": "two"},
        "Maximum parallel training jobs must be a whole number",
    ),
    "parallel above total": (
        {"max_training_jobs": "2", "max_parallel_training_jobs": "3"},
        "max_parallel_training_jobs can't exceed max_training_jobs",
    ),
    "integer bounds": ({"min__xgboost__max_depth": "2.5"}, "max_depth is an integer"),
    "empty categorical": ({"values__xgboost__tree_method": " , "}, "Values of tree_method"),
    "min above max": (
        {"min__xgboost__eta": "0.4", "max__xgboost__eta": "0.1"},
        "minimum must be below",
    ),
    "log scale from 0": (
        {
            "tune__xgboost__min_child_weight": "on",
            "min__xgboost__min_child_weight": "0",
            "max__xgboost__min_child_weight": "10",
            "scaling__xgboost__min_child_weight": "Logarithmic",
        },
        "logarithmic scaling needs a minimum above 0",
    ),
    "grid of numbers": ({"strategy": "Grid"}, "grid search takes categorical ranges only"),
    "hyperband and early stopping": (
        {"strategy": "Hyperband", "early_stopping": "on"},
        "Hyperband stops jobs early by itself",
    ),
    "nothing tuned": (
        {
            "tune__xgboost__eta": "",
            "tune__xgboost__max_depth": "",
            "tune__xgboost__tree_method": "",
        },
        "Choose at least one hyperparameter of xgboost",
    ),
    "instance_count": ({"instance_count": "many"}, "Instance count must be a whole number"),
    "static hyperparameters": ({"hyperparameters": "no equals"}, "line 1 is not of the form"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_tune_form_fields_are_400_naming_the_field(platform: Platform, case: str) -> None:
    changes, message = MALFORMED[case]
    before = _job_count(platform)
    response = platform.client("alice").post_form(
        "/jobs/tune", {**TUNE_FORM, **changes}, headers=JSON
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "The tuning job request is invalid."
    assert any(message in detail for detail in body["details"]), body["details"]
    assert _job_count(platform) == before and _queued(platform) == []


def test_every_malformed_field_is_listed_at_once_and_the_form_comes_back(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    form = {
        **TUNE_FORM,
        "min__xgboost__eta": "abc",
        "max_training_jobs": "x",
        "objective_type": "Up",
    }
    response = client.post_form("/jobs/tune", form, headers=JSON)
    assert response.status_code == 400
    details = " ".join(response.json()["details"])
    for fragment in ("Minimum of eta", "Maximum training jobs", "Objective direction"):
        assert fragment in details
    page = client.post_form("/jobs/tune", form)
    assert page.status_code == 400
    assert 'data-testid="form-errors"' in page.text and "Minimum of eta" in page.text
    # The tenant's input is kept to fix.
    assert re.search(
        r'name="min__xgboost__eta"[^>]*aria-label="Minimum of eta" value="abc"', page.text
    )
    assert re.search(r'name="tune__xgboost__max_depth"[^>]*checked', page.text)
    assert 'name="csrf_token"' in page.text


CATALOG_AND_QUOTA = {
    "unknown objective": (
        {"objective_metric": "validation:rmse"},
        "'validation:rmse' is not a metric algorithm 'xgboost' reports",
    ),
    "objective of another algorithm": (
        {"objective_metric": "test:mse"},
        "'test:mse' is not a metric algorithm 'xgboost' reports",
    ),
    "bounds out of range": ({"max__xgboost__eta": "5"}, "leaves the allowed 0.001 to 1"),
    "categorical value unknown": (
        {"values__xgboost__tree_method": "hist, gpu_hist"},
        "can't take gpu_hist",
    ),
    "more parallel jobs than the quota": (
        {"max_parallel_training_jobs": "4"},
        "4 parallel training jobs requested; your quota allows at most 3",
    ),
    "dataset of another tenant": (
        {"dataset_key": "tenants/globex/datasets/churn/"},
        "is not one of your datasets",
    ),
}


@pytest.mark.parametrize("case", sorted(CATALOG_AND_QUOTA))
def test_catalog_and_quota_problems_are_400_with_the_reason(platform: Platform, case: str) -> None:
    changes, message = CATALOG_AND_QUOTA[case]
    before = _job_count(platform)
    response = platform.client("alice").post_form(
        "/jobs/tune", {**TUNE_FORM, **changes}, headers=JSON
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "The job can't run as requested."
    assert any(message in detail for detail in response.json()["details"]), response.json()
    assert _job_count(platform) == before and _queued(platform) == []


def test_tuning_quota_and_untunable_algorithms_are_refused(platform: Platform) -> None:
    platform.table("Tenants").update_item(
        Key={"tenant_id": "acme"},
        UpdateExpression="SET max_tuning_training_jobs = :n",
        ExpressionAttributeValues={":n": 5},
    )
    client = platform.client("alice")
    response = client.post_form("/jobs/tune", TUNE_FORM, headers=JSON)
    assert response.status_code == 400
    assert "6 training jobs requested for the tuning job; your quota allows at most 5" in " ".join(
        response.json()["details"]
    )
    untunable = client.post_form(
        "/jobs/tune", {**TUNE_FORM, "algorithm_id": "anomaly-detector"}, headers=JSON
    )
    assert untunable.status_code == 400
    assert "can't be tuned" in " ".join(untunable.json()["details"])
    unknown = client.post_form("/jobs/tune", {**TUNE_FORM, "algorithm_id": "nope"}, headers=JSON)
    assert unknown.status_code == 400
    assert "Algorithm 'nope' is not in the catalog." in unknown.json()["details"]


def test_a_tenant_without_tuning_quota_is_told_on_the_form(platform: Platform) -> None:
    platform.table("Tenants").update_item(
        Key={"tenant_id": "acme"},
        UpdateExpression="SET max_tuning_training_jobs = :n",
        ExpressionAttributeValues={":n": 0},
    )
    page = platform.client("alice").get("/jobs/tune")
    assert page.status_code == 200
    assert 'id="tuning-off"' in page.text and "Tuning is off for your tenant" in page.text
    assert 'id="tune-form"' not in page.text


def test_tuning_job_page_shows_progress_best_job_trials_and_chart(platform: Platform) -> None:
    job_id = put_tuning_job(platform, "acme", trials=7)
    client = platform.client("alice")
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    text = page.text
    counters = dict(re.findall(r'data-counter="(\w+)">(\d+)<', text))
    assert counters["completed"] == "7" and counters["objective_succeeded"] == "6"
    best = re.search(r'id="best-training-job" data-training-job="([^"]+)"', text)
    assert best is not None and best.group(1).endswith("-007-00000007")
    assert '<dd id="best-objective">0.57</dd>' in text
    rows = re.findall(r'<tr data-trial="([^"]+)"', text)
    assert len(rows) == 7 and rows[0] == best.group(1)  # best first
    assert rows[-1].endswith("-004-00000004")  # the trial without an objective value sorts last
    chart = re.search(r'<svg id="objective-chart"[^>]*data-points="(\d+)"', text)
    assert chart is not None and chart.group(1) == "12"  # 6 values and 6 best-so-far points
    assert 'data-series="best so far"' in text and "chart-cut" not in text
    assert 'id="stop-job"' in text and "Stop this tuning job" in text
    assert 'id="metrics-chart"' not in text


def test_tuning_job_json_adds_the_trials_best_first(platform: Platform) -> None:
    job_id = put_tuning_job(platform, "acme", trials=5)
    body = platform.client("alice").get(f"/jobs/{job_id}", headers=JSON).json()
    assert body["kind"] == "tuning" and body["next"] is None
    values = [trial["objective_value"] for trial in body["trials"]]
    assert values == [0.55, 0.53, 0.52, 0.51, None]
    assert body["best_training_job"]["objective_value"] == 0.55
    assert body["tuning_progress"]["completed"] == 5


def test_trials_are_paginated_and_a_bad_token_is_400(platform: Platform) -> None:
    job_id = put_tuning_job(platform, "acme", trials=tuning.TRIALS_PAGE_SIZE + 3)
    client = platform.client("alice")
    first = client.get(f"/jobs/{job_id}", headers=JSON).json()
    assert len(first["trials"]) == tuning.TRIALS_PAGE_SIZE and first["next"]
    second = client.get(f"/jobs/{job_id}", params={"next": first["next"]}, headers=JSON).json()
    assert len(second["trials"]) == 3 and second["next"] is None
    names = {t["training_job_name"] for t in first["trials"] + second["trials"]}
    assert len(names) == tuning.TRIALS_PAGE_SIZE + 3
    page = client.get(f"/jobs/{job_id}")
    link = re.search(r'<a id="next-page" href="([^"]+)"', page.text)
    assert link is not None and link.group(1).startswith(f"/jobs/{job_id}?next=")
    assert len(re.findall(r"<tr data-trial=", client.get(link.group(1)).text)) == 3
    for bad in ("garbage!", first["next"][:-3] + "xyz", "A" * 3000):
        response = client.get(f"/jobs/{job_id}", params={"next": bad}, headers=JSON)
        assert response.status_code == 400, bad
        assert "page token" in response.json()["error"]
    html = client.get(f"/jobs/{job_id}", params={"next": "garbage!"})
    assert html.status_code == 400 and "page token" in html.text


def test_objective_chart_is_bounded_and_says_so(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning, "MAX_CHART_TRIALS", 5)
    monkeypatch.setattr(tuning, "CHART_PAGE_SIZE", 2)
    job_id = put_tuning_job(platform, "acme", trials=9)
    mark = platform.calls.mark()
    page = platform.client("alice").get(f"/jobs/{job_id}")
    chart = re.search(r'<svg id="objective-chart"[^>]*data-points="(\d+)"', page.text)
    assert chart is not None and chart.group(1) == "8"  # trials 1-5 minus trial 4, twice
    assert "The chart shows the first 5 training jobs only." in page.text
    queries = [c for c in platform.calls.since(mark) if c[1] == "Query" and "Trials" in str(c[3])]
    assert len(queries) == 1 + 3  # the trials page, then 2 + 2 + 1 for the chart


def test_stopping_a_tuning_job_calls_stop_hyper_parameter_tuning_job(platform: Platform) -> None:
    job_id = put_tuning_job(platform, "acme", trials=2)
    job = JobRepository(platform.table("Jobs")).get("acme", job_id)
    assert job is not None
    client = platform.client("alice")
    response = client.post_form(f"/jobs/{job_id}/stop", {})
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job_id}?notice=stop-requested"
    name, key = platform.calls.tuning_stops[-1]
    assert name == job.tuning_job_name and platform.calls.tenant_of_key(key) == "acme"
    assert platform.calls.stops == []  # no StopTrainingJob for a tuning job
    done = put_tuning_job(platform, "acme", trials=1, status=JobStatus.COMPLETED, hours_ago=2)
    conflict = client.post_form(f"/jobs/{done}/stop", {}, headers=JSON)
    assert conflict.status_code == 409 and "only a running job" in conflict.json()["error"]
    assert len(platform.calls.tuning_stops) == 1


def test_training_job_page_charts_its_metric_series(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    start = utc_now()
    series = [
        MetricSeries(
            name="validation:auc",
            points=[
                MetricPoint(at=start.replace(minute=m), value=0.6 + m / 200) for m in (1, 2, 3)
            ],
        ),
        MetricSeries(
            name="train:<loss>",
            points=[MetricPoint(at=start.replace(minute=m), value=1 - m / 10) for m in (1, 3)],
        ),
    ]
    assert JobRepository(platform.table("Jobs")).set_metric_series("acme", job_id, series)
    client = platform.client("alice")
    page = client.get(f"/jobs/{job_id}")
    chart = re.search(r'<svg id="metrics-chart".*?</svg>', page.text, re.S)
    assert chart is not None
    assert 'data-points="5"' in chart.group(0)
    assert 'data-series="validation:auc"' in chart.group(0)
    assert 'data-series="train:&lt;loss&gt;"' in chart.group(0)
    assert "minutes since the first value" in chart.group(0)
    assert 'id="objective-chart"' not in page.text
    body = client.get(f"/jobs/{job_id}", headers=JSON).json()
    assert [s["name"] for s in body["metric_series"]] == ["validation:auc", "train:<loss>"]
    stopped = platform.seeded.jobs["acme"][2]
    assert JobRepository(platform.table("Jobs")).set_metric_series("acme", stopped, [])
    empty = client.get(f"/jobs/{stopped}").text
    assert re.search(r'<svg id="metrics-chart"[^>]*data-points="0"', empty)
    assert "SageMaker has reported no metric values for this job yet." in empty


def _add_jobs(platform: Platform, count: int) -> None:
    jobs = JobRepository(platform.table("Jobs"))
    for _ in range(count):
        request = TrainingRequest(
            tenant_id="acme",
            job_id=new_job_id("acme"),
            algorithm_id="xgboost",
            dataset_key="tenants/acme/datasets/iris/",
            instance_type="ml.m5.large",
            instance_count=1,
            max_runtime_seconds=3600,
            submitted_by="seed@acme.example",
            submitted_at=utc_now(),
        )
        jobs.create(Job.from_request(request))


def test_jobs_list_is_paginated_newest_first(platform: Platform) -> None:
    existing = _job_count(platform)
    _add_jobs(platform, 50)
    tuning_job = put_tuning_job(platform, "acme", trials=0, hours_ago=0)
    client = platform.client("alice")
    first = client.get("/jobs", headers=JSON).json()
    assert set(first) == {"items", "next"}
    assert len(first["items"]) == 50 and first["next"]
    created = [job["created_at"] for job in first["items"]]
    assert created == sorted(created, reverse=True)
    second = client.get("/jobs", params={"next": first["next"]}, headers=JSON).json()
    assert second["next"] is None
    ids = [job["job_id"] for job in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 50 + 1 + existing
    for seeded in platform.seeded.jobs["acme"]:
        assert seeded in ids
    page = client.get("/jobs")
    link = re.search(r'<a id="next-page" href="(/jobs\?next=[^"]+)"', page.text)
    assert link is not None
    assert f'data-job="{tuning_job}" data-kind="tuning"' in client.get("/jobs").text
    last = client.get(link.group(1))
    assert last.status_code == 200 and 'id="next-page"' not in last.text
    assert 'id="first-page"' in last.text


def test_a_bad_or_foreign_page_token_is_400_on_every_list(platform: Platform) -> None:
    client = platform.client("alice")
    globex_job = platform.seeded.jobs["globex"][0]
    foreign = encode_page_token({"tenant_id": "globex", "job_id": globex_job, "created_at": "x"})
    for path in ("/jobs", "/models", "/notifications"):
        for token in ("%%%", "bm90IGpzb24", foreign):
            response = client.get(path, params={"next": token}, headers=JSON)
            assert response.status_code == 400, (path, token)
            assert response.json()["error"].startswith("The page token")
        page = client.get(path, params={"next": "%%%"})
        assert page.status_code == 400 and "open the list again from its first page" in page.text


def test_the_job_form_still_submits_training_jobs(platform: Platform) -> None:
    response = platform.client("alice").post_form("/jobs", JOB_FORM, headers=JSON)
    assert response.status_code == 201
    assert response.json()["job"]["kind"] == "training"
    assert response.json()["job"]["tuning"] is None
