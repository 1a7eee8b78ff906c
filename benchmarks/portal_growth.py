"""Growth benchmark of the portal (not a test): a tenant with 10,000 jobs and 1,000 models.

Seeds, in moto in process, one tenant (acme) with ``--jobs`` job records, one tuning job with
``--trials`` trials and ``--models`` model versions (DynamoDB batch writes), then measures pages
through the app (FastAPI's TestClient, signed in with an ALB-style identity): the first page of
the job list, a later page (its ``next`` token), a tuning job's page, the models page and a later
page of it. Prints p50/p99 per page, and for comparison the same listings' repository calls
alone: moto's DynamoDB reads the whole partition for every query (real DynamoDB reads only the
page), so the repository row is the floor moto sets, and the difference is the portal's own cost.

    PYTHONPATH=lambda:portal .venv/bin/python benchmarks/portal_growth.py --requests 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "portal"), str(ROOT / "lambda")]

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}.items():
    os.environ.setdefault(_name, _value)

from fastapi.testclient import TestClient  # noqa: E402
from local.common import REGION  # noqa: E402
from local.search import draw_hyperparameters, metric_values  # noqa: E402
from local.seed_tuning import SEED_SPEC  # noqa: E402
from local.signin import EcSigner  # noqa: E402
from local.stack import ALB_ARN, CATALOG, create_resources, seed  # noqa: E402
from moto import mock_aws  # noqa: E402
from portal_app.app import create_app  # noqa: E402
from portal_app.aws import AwsClients  # noqa: E402
from training_common import (  # noqa: E402
    FinalMetric,
    Job,
    JobKind,
    JobRepository,
    JobStatus,
    ModelApprovalStatus,
    ModelObjective,
    ModelRepository,
    ModelVersion,
    ObjectiveType,
    StatusChange,
    Trial,
    TrialRepository,
    TuningProgress,
    model_artifact_key,
    model_package_group_name,
    new_session,
    objective_key,
    to_item,
    tuning_job_name,
    utc_now,
)

TENANT = "acme"
CLAIMS = {
    "sub": "sub-alice",
    "username": "alice",
    "email": "alice@acme.example",
    "custom:tenant_id": TENANT,
    "cognito:groups": [],
}


def _job(index: int, now: Any, *, tuning: bool = False) -> Job:
    created = now - timedelta(minutes=index)
    job_id = f"{TENANT}-{created:%Y%m%d%H%M%S}-{index:06x}"
    status = JobStatus.FAILED if index % 10 == 7 else JobStatus.COMPLETED
    return Job(
        tenant_id=TENANT,
        job_id=job_id,
        algorithm_id="xgboost",
        dataset_key=f"tenants/{TENANT}/datasets/iris/",
        hyperparameters={"num_round": "100"},
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        created_at=created,
        updated_at=created,
        submitted_by="alice@acme.example",
        status=status,
        status_history=[
            StatusChange(status=JobStatus.QUEUED, at=created),
            StatusChange(status=status, at=created + timedelta(minutes=20)),
        ],
        final_metrics=[FinalMetric(name="validation:auc", value=0.9)],
        model_artifact_key=model_artifact_key(TENANT, job_id),
        kind=JobKind.TUNING if tuning else JobKind.TRAINING,
        tuning=SEED_SPEC if tuning else None,
        tuning_job_name=tuning_job_name(job_id) if tuning else None,
    )


def seed_volume(session: Any, settings: Any, jobs: int, trials: int, models: int) -> str:
    """Batch-write the volume; the tuning job's id."""
    dynamodb = session.resource("dynamodb", region_name=REGION)
    now = utc_now()
    records = [_job(i, now, tuning=i == 1) for i in range(1, jobs + 1)]
    tuning = records[0]
    tuning.tuning_progress = TuningProgress(completed=trials, objective_succeeded=trials)
    with dynamodb.Table(settings.jobs_table).batch_writer() as batch:
        for record in records:
            batch.put_item(Item=to_item(record))
    entry = CATALOG[0]
    with dynamodb.Table(settings.trials_table).batch_writer() as batch:
        for index in range(1, trials + 1):
            name = f"{tuning.tuning_job_name}-{index:03d}-{index:08x}"
            tuned = draw_hyperparameters(SEED_SPEC, tuning.job_id, index)
            finals = metric_values(entry, tuned)
            value = finals["validation:auc"]
            batch.put_item(
                Item=to_item(
                    Trial(
                        tenant_id=TENANT,
                        trial_id=Trial.make_id(tuning.job_id, name),
                        job_id=tuning.job_id,
                        training_job_name=name,
                        status="Completed",
                        objective_value=value,
                        objective_key=objective_key(tuning.job_id, value, ObjectiveType.MAXIMIZE),
                        hyperparameters=tuned,
                        final_metrics=finals,
                        last_event_time=now,
                        updated_at=now,
                    )
                )
            )
    with dynamodb.Table(settings.models_table).batch_writer() as batch:
        for record in records[:models]:
            batch.put_item(
                Item=to_item(
                    ModelVersion(
                        tenant_id=TENANT,
                        job_id=record.job_id,
                        training_job_name=record.job_id,
                        algorithm_id="xgboost",
                        dataset_key=record.dataset_key,
                        image_uri=entry.image_uri,
                        model_artifact_key=model_artifact_key(TENANT, record.job_id),
                        metrics=[
                            FinalMetric(name="validation:auc", value=0.9),
                            FinalMetric(name="train:auc", value=0.93),
                        ],
                        objective=ModelObjective(
                            name="validation:auc", type=ObjectiveType.MAXIMIZE, value=0.9
                        ),
                        model_package_group=model_package_group_name(TENANT),
                        model_package_arn=f"arn:aws:sagemaker:{REGION}:123456789012:"
                        f"model-package/{TENANT}-models/{record.job_id}",
                        approval_status=ModelApprovalStatus.PENDING,
                        created_at=record.created_at,
                        updated_at=record.created_at,
                    )
                )
            )
    return tuning.job_id


@dataclass
class DynamoReads:
    """DynamoDB reads made through the hooked sessions: calls per operation, items returned."""

    calls: Counter[str] = field(default_factory=Counter)
    items: int = 0

    def hook(self, session: Any) -> None:
        session.events.register("after-call.dynamodb", self._after)

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in {"Query", "Scan", "GetItem", "BatchGetItem"}:
            self.calls[model.name] += 1
            self.items += len(parsed.get("Items", [])) + (1 if "Item" in parsed else 0)

    def reset(self) -> None:
        self.calls.clear()
        self.items = 0


def measure(
    name: str,
    requests: int,
    call: Callable[[], Any],
    check: Callable[[Any], bool],
    reads: DynamoReads,
) -> None:
    """Run ``call`` ``requests`` times; print p50/p99 and the DynamoDB reads per request."""
    latencies: list[float] = []
    errors = 0
    reads.reset()
    started = time.perf_counter()
    for _ in range(requests):
        began = time.perf_counter()
        result = call()
        latencies.append(time.perf_counter() - began)
        errors += 0 if check(result) else 1
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    per_call = " ".join(
        f"{operation}={count / requests:g}" for operation, count in sorted(reads.calls.items())
    )
    print(
        f"{name:<28} requests={len(ordered):<4} errors={errors:<3} "
        f"p50={statistics.median(ordered) * 1000:7.1f} ms  p99={p99 * 1000:7.1f} ms  "
        f"({wall:.1f} s)  dynamodb/request: {per_call or 'none'} items={reads.items / requests:g}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=30, help="per page")
    args = parser.parse_args()
    with mock_aws():
        session = new_session(region_name=REGION)
        settings = create_resources(session)
        seed(settings, session)
        began = time.perf_counter()
        job_id = seed_volume(session, settings, args.jobs, args.trials, args.models)
        print(
            f"seeded {args.jobs} jobs, a tuning job with {args.trials} trials and "
            f"{args.models} model versions in {time.perf_counter() - began:.1f} s "
            "(moto in process)",
            flush=True,
        )
        signer = EcSigner(ALB_ARN, kid="alb-growth-key")
        reads = DynamoReads()
        reads.hook(session)
        aws = AwsClients(settings, session_hook=reads.hook)
        app = create_app(settings, key_fetcher=signer.key_fetcher, aws=aws)
        client = TestClient(app, base_url="https://testserver", follow_redirects=False)

        def get(path: str, **headers: str) -> Any:
            return client.get(path, headers={"x-amzn-oidc-data": signer.sign(CLAIMS), **headers})

        json_accept = {"accept": "application/json"}
        first = get("/jobs", **json_accept)
        jobs_next = first.json().get("next") if first.status_code == 200 else None
        models_first = get("/models", **json_accept)
        models_next = models_first.json().get("next") if models_first.status_code == 200 else None
        ok: Callable[[Any], bool] = lambda response: response.status_code == 200  # noqa: E731

        dynamodb = session.resource("dynamodb", region_name=REGION)
        jobs_repo = JobRepository(dynamodb.Table(settings.jobs_table))
        trials_repo = TrialRepository(dynamodb.Table(settings.trials_table))
        models_repo = ModelRepository(dynamodb.Table(settings.models_table))
        n = args.requests
        measure(
            "repo: jobs page (50)",
            n,
            lambda: jobs_repo.list_page(TENANT),
            lambda p: bool(p.items),
            reads,
        )
        measure(
            "repo: trials best-first (50)",
            n,
            lambda: trials_repo.best_first(TENANT, job_id),
            lambda p: bool(p.items),
            reads,
        )
        measure(
            "repo: models page (50)",
            n,
            lambda: models_repo.list_page(TENANT),
            lambda p: bool(p.items),
            reads,
        )
        measure("job list (HTML)", n, lambda: get("/jobs"), ok, reads)
        measure("job list (JSON)", n, lambda: get("/jobs", **json_accept), ok, reads)
        if jobs_next:
            measure(
                "job list, page 2 (JSON)",
                n,
                lambda: get(f"/jobs?next={jobs_next}", **json_accept),
                ok,
                reads,
            )
        measure("tuning job page (HTML)", n, lambda: get(f"/jobs/{job_id}"), ok, reads)
        measure(
            "tuning job page (JSON)", n, lambda: get(f"/jobs/{job_id}", **json_accept), ok, reads
        )
        measure("models page (HTML)", n, lambda: get("/models"), ok, reads)
        if models_next:
            measure(
                "models page 2 (JSON)",
                n,
                lambda: get(f"/models?next={models_next}", **json_accept),
                ok,
                reads,
            )


if __name__ == "__main__":
    main()
