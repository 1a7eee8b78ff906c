"""The Training stack: queues with DLQs, tables, the event rule, handlers and roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Synthesized


def of_type(full: Synthesized, type_: str) -> dict[str, dict[str, Any]]:
    resources = full.raw("Training")["Resources"]
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def one(full: Synthesized, type_: str, prefix: str) -> tuple[str, dict[str, Any]]:
    matches = [(k, v) for k, v in of_type(full, type_).items() if k.startswith(prefix)]
    assert len(matches) == 1, f"{type_} {prefix}: {[k for k, _ in matches]}"
    return matches[0]


def statements(full: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    role_id, _ = one(full, "AWS::IAM::Role", role_prefix)
    found = []
    for policy in of_type(full, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_stateful_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming these replaces a table (and its data) or the key: change them on purpose."""
    assert sorted(of_type(full, "AWS::DynamoDB::Table")) == [
        "JobsDF1CC2D4",
        "ModelsC55D3500",
        "Notifications87298708",
        "RetrainingPolicies25EAB86D",
        "RetrainingRuns6A49962D",
        "ServingApiClients3D240373",
        "ServingDeploymentsEFC1ECDC",
        "TenantsA9C48FD3",
        "Trials31C8D880",
    ]
    assert "Key961B73FD" in of_type(full, "AWS::KMS::Key")
    assert sorted(of_type(full, "AWS::SQS::Queue")) == [
        "JobEventsCA70BF1D",
        "JobEventsDeadLettersF634CC1A",
        "RetrainingRequests799BD652",
        "RetrainingRequestsDeadLettersA893BEDD",
        "RetrainingSchedulerDeadLetters0D06681B",
        "ServingDeploymentRequests9B475FEC",
        "ServingDeploymentRequestsDeadLetters61A778C3",
        "TrainingRequests0A76EDE1",
        "TrainingRequestsDeadLettersB241102B",
    ]


@pytest.mark.parametrize(("queue", "timeout"), [("TrainingRequests", 360), ("JobEvents", 180)])
def test_queues_are_encrypted_with_a_dead_letter_queue(
    full: Synthesized, queue: str, timeout: int
) -> None:
    queues = of_type(full, "AWS::SQS::Queue")
    source_id = next(k for k in queues if k.startswith(queue) and "DeadLetters" not in k)
    dlq_id = next(k for k in queues if k.startswith(f"{queue}DeadLetters"))
    source = queues[source_id]["Properties"]
    assert source["KmsMasterKeyId"] == {"Fn::GetAtt": ["Key961B73FD", "Arn"]}
    assert source["VisibilityTimeout"] == timeout, "6 x the consumer's timeout"
    assert source["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queues[dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "KmsMasterKeyId" in queues[dlq_id]["Properties"]


def test_every_queue_denies_plain_http(full: Synthesized) -> None:
    policies = of_type(full, "AWS::SQS::QueuePolicy").values()
    secured = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                secured.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert secured == set(of_type(full, "AWS::SQS::Queue"))


def test_tables_have_pitr_kms_and_the_newest_first_index(full: Synthesized) -> None:
    for table in of_type(full, "AWS::DynamoDB::Table").values():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["SSEType"] == "KMS"
        assert props["DeletionProtectionEnabled"] is True  # retain (production) fixture
        assert props["KeySchema"][0] == {"AttributeName": "tenant_id", "KeyType": "HASH"}
    jobs = of_type(full, "AWS::DynamoDB::Table")["JobsDF1CC2D4"]["Properties"]
    assert jobs["GlobalSecondaryIndexes"][0]["IndexName"] == "ByCreatedAt"
    assert jobs["GlobalSecondaryIndexes"][0]["KeySchema"] == [
        {"AttributeName": "tenant_id", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]


def test_running_jobs_have_a_sparse_index_for_the_quota_check(full: Synthesized) -> None:
    """training_common's count_running reads it (create_tables builds the same for moto)."""
    from training_common import JOBS_RUNNING_INDEX

    jobs = of_type(full, "AWS::DynamoDB::Table")["JobsDF1CC2D4"]["Properties"]
    [running] = [i for i in jobs["GlobalSecondaryIndexes"] if i["IndexName"] == JOBS_RUNNING_INDEX]
    assert running["KeySchema"] == [
        {"AttributeName": "tenant_id", "KeyType": "HASH"},
        {"AttributeName": "running_since", "KeyType": "RANGE"},
    ]
    assert running["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["status", "tuning"],
    }
    by_sid = {s.get("Sid"): s for s in statements(full, "LaunchHandlerRole")}
    count = by_sid["CountRunningJobs"]
    assert count["Action"] == "dynamodb:Query"
    assert count["Resource"]["Fn::Join"][1][-1] == "/index/Running"


def test_trials_and_models_tables_have_the_contract_keys(full: Synthesized) -> None:
    """The keys of training_common's TrialRepository and ModelRepository (create_tables builds
    the same for moto and the local portal), encrypted with the training key like the others."""
    from training_common import TRIALS_BY_OBJECTIVE_INDEX

    tables = of_type(full, "AWS::DynamoDB::Table")
    trials = tables["Trials31C8D880"]["Properties"]
    assert trials["KeySchema"] == [
        {"AttributeName": "tenant_id", "KeyType": "HASH"},
        {"AttributeName": "trial_id", "KeyType": "RANGE"},
    ]
    [by_objective] = trials["LocalSecondaryIndexes"]
    assert by_objective == {
        "IndexName": TRIALS_BY_OBJECTIVE_INDEX,
        "KeySchema": [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "objective_key", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    assert "GlobalSecondaryIndexes" not in trials
    models = tables["ModelsC55D3500"]["Properties"]
    assert models["KeySchema"] == [
        {"AttributeName": "tenant_id", "KeyType": "HASH"},
        {"AttributeName": "job_id", "KeyType": "RANGE"},
    ]
    assert "LocalSecondaryIndexes" not in models and "GlobalSecondaryIndexes" not in models
    for props in (trials, models):
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["Key961B73FD", "Arn"]}
        assert props["BillingMode"] == "PAY_PER_REQUEST"
    for table_id in ("Trials31C8D880", "ModelsC55D3500"):
        table = tables[table_id]
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_tables_are_in_the_backup_plan(full: Synthesized) -> None:
    _, selection = one(full, "AWS::Backup::BackupSelection", "TablesBackup")
    resources = selection["Properties"]["BackupSelection"]["Resources"]
    assert [r["Fn::GetAtt"] for r in resources] == [
        [table, "Arn"] for table in of_type(full, "AWS::DynamoDB::Table")
    ]


def test_state_changes_of_jobs_and_model_packages_reach_the_events_queue(
    full: Synthesized,
) -> None:
    _, rule = one(full, "AWS::Events::Rule", "SageMakerStateChanges")
    props = rule["Properties"]
    assert props["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": [
            "SageMaker Training Job State Change",
            "SageMaker HyperParameter Tuning Job State Change",
            "SageMaker Model Package State Change",
            "SageMaker Endpoint State Change",
            "SageMaker Processing Job State Change",
        ],
    }
    # The second rule: the platform's endpoint alarms (test_serving.py).
    assert len(of_type(full, "AWS::Events::Rule")) == 2
    [target] = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["JobEventsCA70BF1D", "Arn"]}
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["JobEventsDeadLettersF634CC1A", "Arn"]}
    }


def test_notifications_topic_is_encrypted(full: Synthesized) -> None:
    _, topic = one(full, "AWS::SNS::Topic", "NotificationsTopic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["Key961B73FD", "Arn"]}


def test_algorithm_repository_scans_and_keeps_tags_immutable(full: Synthesized) -> None:
    _, repo = one(full, "AWS::ECR::Repository", "Algorithms")
    props = repo["Properties"]
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    assert "LifecyclePolicy" in props


@pytest.mark.parametrize(
    ("prefix", "handler", "concurrency"),
    [("LaunchHandler", "launch.app.handler", 5), ("JobEventsHandler", "job_events.app.handler", 5)],
)
def test_handlers_are_arm64_traced_in_the_vpc(
    full: Synthesized, prefix: str, handler: str, concurrency: int
) -> None:
    _, function = one(full, "AWS::Lambda::Function", prefix)
    props = function["Properties"]
    assert props["Architectures"] == ["arm64"]
    assert props["Runtime"] == "python3.14"
    assert props["Handler"] == handler
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["ReservedConcurrentExecutions"] == concurrency
    assert len(props["VpcConfig"]["SubnetIds"]) == 3
    assert len(props["Layers"]) == 1
    log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = full.raw("Training")["Resources"][log_group_id]["Properties"]
    assert log_group["RetentionInDays"] == 365 and "KmsKeyId" in log_group


@pytest.mark.parametrize(("prefix", "batch"), [("LaunchHandler", 10), ("JobEventsHandler", 10)])
def test_event_sources_report_partial_batch_failures(
    full: Synthesized, prefix: str, batch: int
) -> None:
    mappings = of_type(full, "AWS::Lambda::EventSourceMapping").values()
    function_id, _ = one(full, "AWS::Lambda::Function", prefix)
    [mapping] = [m for m in mappings if m["Properties"]["FunctionName"] == {"Ref": function_id}]
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["BatchSize"] == batch


def test_each_handler_has_its_own_role(full: Synthesized) -> None:
    roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in of_type(full, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").endswith(".app.handler")
    }
    assert len(roles) == 4  # launch, job-events, deploy, retraining


def test_launch_role_can_create_only_isolated_encrypted_jobs(full: Synthesized) -> None:
    create = [
        s
        for s in statements(full, "LaunchHandlerRole")
        if s.get("Sid") == "CreateIsolatedTrainingJobsOnly"
    ]
    assert len(create) == 1
    condition = create[0]["Condition"]
    assert create[0]["Action"] == "sagemaker:CreateTrainingJob"
    assert condition["Bool"] == {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
    }
    assert set(condition["ArnEquals"]) == {"sagemaker:VolumeKmsKeyArn", "sagemaker:OutputKmsKeyArn"}
    assert set(condition["ForAllValues:StringEquals"]) == {
        "sagemaker:VpcSecurityGroupIds",
        "sagemaker:VpcSubnets",
    }
    assert condition["Null"] == {"sagemaker:VpcSubnets": "false", "aws:RequestTag/tenant": "false"}
    other_sagemaker = [
        s
        for s in statements(full, "LaunchHandlerRole")
        if "sagemaker:CreateTrainingJob" in str(s["Action"]) and s is not create[0]
    ]
    assert other_sagemaker == []


def test_launch_role_creates_tuning_jobs_with_the_guardrails_of_training_jobs(
    full: Synthesized,
) -> None:
    by_sid = {s.get("Sid"): s for s in statements(full, "LaunchHandlerRole")}
    training = by_sid["CreateIsolatedTrainingJobsOnly"]
    tuning = by_sid["CreateIsolatedTuningJobsOnly"]
    assert tuning["Action"] == "sagemaker:CreateHyperParameterTuningJob"
    assert tuning["Resource"]["Fn::Join"][1][-1] == ":hyper-parameter-tuning-job/*"
    assert tuning["Condition"] == training["Condition"]
    assert tuning["Condition"]["Bool"] == {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
    }
    assert sorted(by_sid["DescribeJobs"]["Action"]) == [
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:DescribeTrainingJob",
    ]
    tagging = by_sid["TagJobsWithTenantAndJob"]
    assert tagging["Action"] == "sagemaker:AddTags"
    assert tuning["Resource"] in tagging["Resource"]
    # Only the tags given at creation: the role can't retag a job into another tenant's view.
    assert tagging["Condition"] == {
        "Null": {"aws:RequestTag/tenant": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant", "job"]},
    }
    creating = [
        s for s in by_sid.values() if "sagemaker:Create" in str(s["Action"]) and "Condition" in s
    ]
    assert creating == [training, tuning]


def job_events_statements(full: Synthesized) -> dict[str, dict[str, Any]]:
    """The role's statements by Sid (CDK's X-Ray statement has none: by its position)."""
    return {
        s.get("Sid", f"#{i}"): s for i, s in enumerate(statements(full, "JobEventsHandlerRole"))
    }


def test_job_events_role_registers_versions_pending_approval_only(full: Synthesized) -> None:
    by_sid = job_events_statements(full)
    register = by_sid["RegisterVersionsPendingApprovalOnly"]
    assert register["Action"] == "sagemaker:CreateModelPackage"
    assert register["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    }
    assert register["Resource"]["Fn::Join"][1][-1] == ":model-package/*-models/*"
    groups = by_sid["CreateTenantModelPackageGroups"]
    assert groups["Action"] == "sagemaker:CreateModelPackageGroup"
    assert groups["Condition"] == {
        "Null": {"aws:RequestTag/tenant": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant"]},
    }
    assert groups["Resource"]["Fn::Join"][1][-1] == ":model-package-group/*-models"
    assert by_sid["TagTenantModelPackages"]["Condition"] == groups["Condition"]
    sagemaker_actions = sorted(
        a
        for s in by_sid.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a.startswith("sagemaker:")
    )
    # Nothing that deletes, stops or starts anything; the one decision it makes is a retraining
    # run's promotion rule (UpdateModelPackage, conditioned: test_retraining.py).
    assert sagemaker_actions == [
        "sagemaker:AddTags",
        "sagemaker:CreateModelPackage",
        "sagemaker:CreateModelPackageGroup",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:DescribeMonitoringSchedule",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:ListTags",
        "sagemaker:UpdateModelPackage",
    ]
    [update] = [s for s in by_sid.values() if s["Action"] == "sagemaker:UpdateModelPackage"]
    assert update["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": ["Approved", "Rejected"]}
    }


def test_job_events_role_reads_metrics_and_writes_trials_models_and_metrics_documents(
    full: Synthesized,
) -> None:
    by_sid = job_events_statements(full)
    on_everything = sorted(
        a
        for s in by_sid.values()
        if s["Resource"] == "*"
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert on_everything == [
        "cloudwatch:GetMetricData",
        "cloudwatch:PutMetricData",  # TrainingPlatform/Monitoring only (test_serving.py)
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ]
    trials, models = by_sid["WriteTrials"], by_sid["WriteModelVersions"]
    assert trials["Resource"]["Fn::GetAtt"][0] == "Trials31C8D880"
    assert trials["Action"] == "dynamodb:PutItem"
    assert models["Resource"]["Fn::GetAtt"][0] == "ModelsC55D3500"
    assert models["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    _, role = one(full, "AWS::IAM::Role", "JobEventsHandlerRole")
    attached = [str(a) for a in role["Properties"]["ManagedPolicyArns"]]
    assert len(attached) == 2
    assert any("ModelMetricsWrite" in a for a in attached)
    assert any("CatalogRead" in a for a in attached)
    [policy] = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in full.raw("DataLake")["Resources"].items()
        if k.startswith("AccessModelMetricsWrite")
    ]
    write, key = policy
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"]["Fn::Join"][1][-1] == "/tenants/*/jobs/*/registry/model-metrics.json"
    assert "ArtifactsBucket" in str(write["Resource"])
    assert key["Action"] == "kms:GenerateDataKey"
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_job_events_handler_knows_the_trials_and_models_tables(full: Synthesized) -> None:
    _, function = one(full, "AWS::Lambda::Function", "JobEventsHandler")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["TRIALS_TABLE"] == {"Ref": "Trials31C8D880"}
    assert variables["MODELS_TABLE"] == {"Ref": "ModelsC55D3500"}
    _, launch = one(full, "AWS::Lambda::Function", "LaunchHandler")
    assert "TRIALS_TABLE" not in launch["Properties"]["Environment"]["Variables"]


def test_launch_role_passes_the_execution_role_to_sagemaker_only(full: Synthesized) -> None:
    [passing] = [s for s in statements(full, "LaunchHandlerRole") if "iam:PassRole" in str(s)]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_sagemaker_role_is_for_sagemaker_and_reads_data_through_the_data_lake(
    full: Synthesized,
) -> None:
    _, role = one(full, "AWS::IAM::Role", "SageMakerExecutionRole")
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
        }
    ]
    managed = role["Properties"]["ManagedPolicyArns"]
    assert len(managed) == 1 and "TrainingJobs" in str(managed)
    assert not any("s3:" in str(s["Action"]) for s in statements(full, "SageMakerExecutionRole"))


def test_handler_roles_hold_no_broad_data_grants(full: Synthesized) -> None:
    for prefix in ("LaunchHandlerRole", "JobEventsHandlerRole"):
        for statement in statements(full, prefix):
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert not any(
                a.endswith("*") and not a.startswith(("xray:", "ec2:")) for a in actions
            ), (
                prefix,
                statement,
            )


def test_function_assets_hold_only_their_code_and_the_shared_package(full: Synthesized) -> None:
    for prefix, name in (("LaunchHandler", "launch"), ("JobEventsHandler", "job_events")):
        _, function = one(full, "AWS::Lambda::Function", prefix)
        asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        asset = Path(full.outdir) / f"asset.{asset_hash}"
        entries = sorted(p.name for p in asset.iterdir())
        assert entries == sorted([name, "training_common"]), entries
        assert not list(asset.rglob("__pycache__"))
        assert not list(asset.rglob("*.pyc"))


def test_redrive_script_finds_the_dead_letter_queue_outputs(full: Synthesized) -> None:
    outputs = full.raw("Training")["Outputs"]
    assert {"TrainingRequestsDlqArn", "JobEventsDlqArn"} <= set(outputs)


def test_the_dependencies_layer_is_reproducible_across_checkouts() -> None:
    """pip's console scripts carry this checkout's venv path in their shebang; the layer leaves
    them out so that every checkout builds the same zip (and the same asset hash)."""
    import zipfile

    from training_platform.constructs.handler import LAYER_ZIP

    with zipfile.ZipFile(LAYER_ZIP) as zf:
        names = zf.namelist()
        assert not [n for n in names if n.startswith("python/bin/")]
        assert "python/aws_lambda_powertools/__init__.py" in names
        checkout = str(ROOT).encode()
        assert not [n for n in names if checkout in zf.open(n).read(200)]
