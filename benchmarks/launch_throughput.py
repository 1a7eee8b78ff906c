#!/usr/bin/env python3
"""Push N training requests through the launch handler in process, against moto.

Not a test: prints requests per second and the process's peak resident memory (``resource``,
which unlike tracemalloc adds no overhead) so a change to the
handler's per-message work shows up as a number. moto's own overhead dominates; the figure is a
floor for the handler's logic, not a prediction of AWS latency.

    .venv/bin/python benchmarks/launch_throughput.py --requests 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from contextlib import redirect_stdout
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambda"))
for name, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "TrainingPlatformBenchmark",
    "POWERTOOLS_SERVICE_NAME": "launch-benchmark",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}.items():
    os.environ[name] = value

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from training_common import (  # noqa: E402
    CatalogEntry,
    CatalogRepository,
    Job,
    JobRepository,
    Tenant,
    TenantRepository,
    TrainingRequest,
    create_tables,
    new_job_id,
)

BATCH = 10


def setup(session: boto3.Session, tenants: int) -> dict[str, str]:
    dynamodb = session.client("dynamodb")
    create_tables(dynamodb, tenants="tenants", jobs="jobs", notifications="notifications")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="catalog")
    sqs = session.client("sqs")
    queue = sqs.create_queue(QueueName="training-requests")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="training-requests-dlq")["QueueUrl"]
    CatalogRepository(s3, "catalog").put(
        CatalogEntry(id="xgboost", name="XGBoost", image_uri="example/xgboost:1")
    )
    repo = TenantRepository.from_table_name("tenants", session)
    for index in range(tenants):
        repo.put(
            Tenant(
                tenant_id=f"tenant-{index:03d}",
                display_name=f"Tenant {index}",
                status="ACTIVE",
                max_running_jobs=10_000,
                max_instance_count=4,
                allowed_instance_types=["ml.m5.large"],
                max_runtime_seconds=86_400,
            )
        )
    return {
        "TENANTS_TABLE": "tenants",
        "JOBS_TABLE": "jobs",
        "CATALOG_BUCKET": "catalog",
        "DATA_BUCKET": "data",
        "ARTIFACTS_BUCKET": "artifacts",
        "TRAINING_REQUESTS_QUEUE_URL": queue,
        "TRAINING_REQUESTS_DLQ_URL": dlq,
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/training",
        "TRAINING_SUBNET_IDS": "subnet-a,subnet-b",
        "TRAINING_SECURITY_GROUP_IDS": "sg-1",
        "TRAINING_KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/k",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=50)
    args = parser.parse_args()

    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        os.environ.update(setup(session, args.tenants))
        import launch.app as app

        jobs = JobRepository.from_table_name("jobs", session)
        records = []
        for index in range(args.requests):
            tenant_id = f"tenant-{index % args.tenants:03d}"
            request = TrainingRequest(
                tenant_id=tenant_id,
                job_id=new_job_id(tenant_id),
                algorithm_id="xgboost",
                dataset_key=f"tenants/{tenant_id}/datasets/d{index}/",
                instance_type="ml.m5.large",
                instance_count=1,
                max_runtime_seconds=3600,
                submitted_by="bench",
                submitted_at=datetime.now(UTC),
            )
            jobs.create(Job.from_request(request))
            records.append(
                {
                    "messageId": f"m-{index}",
                    "receiptHandle": f"rh-{index}",
                    "body": request.to_message_body(),
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:training-requests",
                }
            )

        class Context:
            function_name = "launch"
            memory_limit_in_mb = 512
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:launch"
            aws_request_id = "bench"

        failures = 0
        emitted = StringIO()  # the EMF metric lines Powertools prints, one per batch
        started = time.perf_counter()
        with redirect_stdout(emitted), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for offset in range(0, len(records), BATCH):
                response = app.handler({"Records": records[offset : offset + BATCH]}, Context())
                failures += len(response["batchItemFailures"])
        elapsed = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        launched = len(
            session.client("sagemaker").list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
        )

    print(
        json.dumps(
            {
                "requests": args.requests,
                "batch_size": BATCH,
                "failed_items": failures,
                "seconds": round(elapsed, 2),
                "requests_per_second": round(args.requests / elapsed, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "sample_training_jobs_listed": launched,
            }
        )
    )


if __name__ == "__main__":
    main()
