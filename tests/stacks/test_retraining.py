"""Continuous retraining (constructs/retraining.py): the tables, queues, schedule group, the
scheduler role and the retraining handler in the Training stack, what the launch and job-events
handlers and tenant sessions gain, and the operators' view, read from the synthesized templates.
The IAM simulator's rows for the same roles are in test_iam_simulation.py."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Synthesized
from tests.stacks.test_serving import as_list, of_type, one, statements
from tests.stacks.test_tenant_isolation import flat, unbound_grants

POLICIES = "RetrainingPolicies25EAB86D"
RUNS = "RetrainingRuns6A49962D"
REQUESTS = "RetrainingRequests799BD652"
REQUESTS_DLQ = "RetrainingRequestsDeadLettersA893BEDD"
SCHEDULER_DLQ = "RetrainingSchedulerDeadLetters0D06681B"
TRAINING_REQUESTS = "TrainingRequests0A76EDE1"
GROUP = "RetrainingScheduleGroupAFC44C24"
SCHEDULER_ROLE = "RetrainingSchedulerRoleC790412B"
KEY = "Key961B73FD"


def arn_of(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def resources(full: Synthesized, stack: str = "Training") -> dict[str, Any]:
    return full.raw(stack)["Resources"]  # type: ignore[no-any-return]


# --- tables and queues ---------------------------------------------------------------------------


def test_tables_have_the_contract_keys_kms_pitr_and_deletion_protection(
    full: Synthesized,
) -> None:
    tables = resources(full)
    for logical_id, sort_key in ((POLICIES, "policy_id"), (RUNS, "run_id")):
        props = tables[logical_id]["Properties"]
        assert props["KeySchema"] == [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["KMSMasterKeyId"] == arn_of(KEY)
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True  # retain (production) fixture
        assert tables[logical_id]["DeletionPolicy"] == "Retain"
    [selection] = of_type(full, "Training", "AWS::Backup::BackupSelection").values()
    backed_up = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    assert POLICIES in backed_up and RUNS in backed_up


def test_example_tables_are_removable(example: Synthesized) -> None:
    tables = example.raw("Training")["Resources"]
    for logical_id in (POLICIES, RUNS):
        assert tables[logical_id]["Properties"]["DeletionProtectionEnabled"] is False
        assert tables[logical_id]["DeletionPolicy"] == "Delete"


def test_queues_are_encrypted_tls_only_and_the_requests_have_a_dlq(full: Synthesized) -> None:
    queues = resources(full)
    requests = queues[REQUESTS]["Properties"]
    assert requests["VisibilityTimeout"] == 180, "6 x the retraining handler's timeout"
    assert requests["RedrivePolicy"] == {
        "deadLetterTargetArn": arn_of(REQUESTS_DLQ),
        "maxReceiveCount": 5,
    }
    for logical_id in (REQUESTS, REQUESTS_DLQ, SCHEDULER_DLQ):
        assert queues[logical_id]["Properties"]["KmsMasterKeyId"] == arn_of(KEY)
    for logical_id in (REQUESTS_DLQ, SCHEDULER_DLQ):
        assert queues[logical_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    denied = set()
    for policy in of_type(full, "Training", "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement["Condition"] == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                denied.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert {REQUESTS, REQUESTS_DLQ, SCHEDULER_DLQ} <= denied


# --- the schedule group and the scheduler role ---------------------------------------------------


def test_one_schedule_group_named_from_the_config(full: Synthesized, example: Synthesized) -> None:
    [group] = of_type(full, "Training", "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == "test-retraining"  # tests/fixtures/full.toml
    [default] = of_type(example, "Training", "AWS::Scheduler::ScheduleGroup").values()
    assert default["Properties"]["Name"] == "example-retraining"  # <name>-retraining
    assert not of_type(full, "Training", "AWS::Scheduler::Schedule"), "schedules are data"


def test_only_scheduler_assumes_the_role_for_this_accounts_group(full: Synthesized) -> None:
    trust = resources(full)[SCHEDULER_ROLE]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Condition": {
                "StringEquals": {"aws:SourceAccount": "111111111111"},
                # Scheduler's source is the schedule group (its confused-deputy guidance).
                "ArnEquals": {"aws:SourceArn": arn_of(GROUP)},
            },
        }
    ]


def test_the_scheduler_role_may_only_send_to_the_two_queues(full: Synthesized) -> None:
    by_sid = statements(full, "Training", "RetrainingSchedulerRole")
    assert set(by_sid) == {"SendTriggersAndUndeliveredTriggers", "TrainingKeyThroughSqsOnly"}
    send = by_sid["SendTriggersAndUndeliveredTriggers"]
    assert send["Action"] == "sqs:SendMessage"
    assert sorted(map(json.dumps, send["Resource"])) == sorted(
        json.dumps(arn_of(queue)) for queue in (TRAINING_REQUESTS, SCHEDULER_DLQ)
    )
    key = by_sid["TrainingKeyThroughSqsOnly"]
    assert sorted(as_list(key["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert key["Resource"] == arn_of(KEY)
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}
    role = resources(full)[SCHEDULER_ROLE]["Properties"]
    assert "Policies" not in role and "ManagedPolicyArns" not in role  # its one managed policy


# --- the retraining handler ----------------------------------------------------------------------


def test_the_handler_has_the_environment_the_code_reads(full: Synthesized) -> None:
    function = one(full, "Training", "AWS::Lambda::Function", "RetrainingHandler")
    assert function["Handler"] == "retraining.app.handler"
    assert "VpcConfig" in function
    variables = function["Environment"]["Variables"]
    assert variables == {
        "POWERTOOLS_SERVICE_NAME": "retraining",
        "POWERTOOLS_METRICS_NAMESPACE": "AiTrainingPlatform",
        "RETRAINING_POLICIES_TABLE": {"Ref": POLICIES},
        "RETRAINING_REQUESTS_QUEUE_URL": {"Ref": REQUESTS},
        "DEAD_LETTER_QUEUE_URL": {"Ref": REQUESTS_DLQ},
        "SCHEDULE_GROUP": "test-retraining",
        "SCHEDULER_ROLE_ARN": arn_of(SCHEDULER_ROLE),
        "TRAINING_REQUESTS_QUEUE_ARN": arn_of(TRAINING_REQUESTS),
        "SCHEDULER_DLQ_ARN": arn_of(SCHEDULER_DLQ),
        "MAX_RECEIVE_COUNT": "5",
        "RETRY_BACKOFF_BASE_SECONDS": "30",
        "RETRY_BACKOFF_MAX_SECONDS": "900",
    }
    [mapping] = [
        m["Properties"]
        for m in of_type(full, "Training", "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == arn_of(REQUESTS)
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_handler_reaches_only_the_groups_schedules_and_passes_only_its_role(
    full: Synthesized,
) -> None:
    by_sid = statements(full, "Training", "RetrainingHandlerRole")
    schedules = by_sid["TenantSchedulesOfTheGroupOnly"]
    assert sorted(as_list(schedules["Action"])) == [
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
        "scheduler:UpdateSchedule",
    ]
    assert flat(schedules["Resource"]) == (
        '{"Ref": "AWS::Partition"}'.join(["arn:", ""])
        + ':scheduler:{"Ref": "AWS::Region"}:{"Ref": "AWS::AccountId"}:schedule/test-retraining/*'
    )
    on_scheduler = [
        sid
        for sid, s in by_sid.items()
        if any(a.startswith("scheduler:") for a in as_list(s["Action"]))
    ]
    assert on_scheduler == ["TenantSchedulesOfTheGroupOnly"]
    passing = by_sid["PassTheSchedulerRoleToSchedulerOnly"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == arn_of(SCHEDULER_ROLE)
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    tables = by_sid["ApplyPolicyRecords"]
    assert sorted(as_list(tables["Action"])) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert tables["Resource"] == arn_of(POLICIES)
    assert RUNS not in json.dumps(by_sid), "the retraining handler never touches runs"
    queues = by_sid["DeferAndDeadLetterRequests"]
    assert sorted(map(json.dumps, queues["Resource"])) == sorted(
        json.dumps(arn_of(q)) for q in (REQUESTS, REQUESTS_DLQ)
    )


# --- the launch and job-events handlers ----------------------------------------------------------


def test_the_launch_handler_plans_runs(full: Synthesized) -> None:
    function = one(full, "Training", "AWS::Lambda::Function", "LaunchHandler")
    variables = function["Environment"]["Variables"]
    assert variables["RETRAINING_POLICIES_TABLE"] == {"Ref": POLICIES}
    assert variables["RETRAINING_RUNS_TABLE"] == {"Ref": RUNS}
    assert variables["MODELS_TABLE"] == {"Ref": "ModelsC55D3500"}
    assert variables["DEPLOYMENTS_TABLE"] == {"Ref": "ServingDeploymentsEFC1ECDC"}
    by_sid = statements(full, "Training", "LaunchHandlerRole")
    plan = by_sid["PlanRetrainingRuns"]
    assert sorted(as_list(plan["Action"])) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert sorted(map(json.dumps, plan["Resource"])) == sorted(
        json.dumps(arn_of(t)) for t in (POLICIES, RUNS)
    )
    assert "dynamodb:PutItem" in by_sid["ReadAndAdvanceJobs"]["Action"]
    assert by_sid["ReadDeployedModels"]["Action"] == "dynamodb:GetItem"
    # The manifests: the DataLake's policy, attached to the role.
    role = one(full, "Training", "AWS::IAM::Role", "LaunchHandlerRole")
    assert "AccessRetrainingManifests" in json.dumps(role["ManagedPolicyArns"])
    [manifests] = [
        v["Properties"]
        for k, v in resources(full, "DataLake").items()
        if k.startswith("AccessRetrainingManifests")
    ]
    listing, write, key = manifests["PolicyDocument"]["Statement"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tenants/*"]}}
    # Written, then read back before the launch (every entry must be the tenant's own data).
    assert sorted(as_list(write["Action"])) == ["s3:GetObject", "s3:PutObject"]
    assert flat(write["Resource"]).endswith("/tenants/*/retraining/*")
    assert sorted(as_list(key["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_the_job_events_handler_decides_and_sets_only_a_decision(full: Synthesized) -> None:
    function = one(full, "Training", "AWS::Lambda::Function", "JobEventsHandler")
    variables = function["Environment"]["Variables"]
    assert variables["RETRAINING_POLICIES_TABLE"] == {"Ref": POLICIES}
    assert variables["RETRAINING_RUNS_TABLE"] == {"Ref": RUNS}
    assert {"DEPLOYMENTS_TABLE", "DEPLOYMENT_REQUESTS_QUEUE_URL"} <= set(variables)
    assert variables["JOB_EVENTS_QUEUE_URL"] == {"Ref": "JobEventsCA70BF1D"}  # busy back-off
    by_sid = statements(full, "Training", "JobEventsHandlerRole")
    decide = by_sid["DecideOnRetrainingRuns"]
    assert sorted(as_list(decide["Action"])) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    update = by_sid["ApproveOrRejectRetrainedVersions"]
    assert update["Action"] == "sagemaker:UpdateModelPackage"
    assert flat(update["Resource"]).endswith(":model-package/*-models/*")
    assert update["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": ["Approved", "Rejected"]}
    }
    # The promotion's deployment request: the deployments table and queue it already had.
    assert "dynamodb:PutItem" in by_sid["ApplyEndpointStateChanges"]["Action"]
    assert by_sid["RequestMonitoringAfterBaselines"]["Action"] == "sqs:SendMessage"


# --- tenant sessions and the portal --------------------------------------------------------------


def test_a_tenant_session_writes_its_policies_and_only_reads_its_runs(full: Synthesized) -> None:
    [policy] = [
        r["Properties"]
        for k, r in resources(full).items()
        if k.startswith("TenantTablesPolicy") and r["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    policies = by_sid["OwnRetrainingPolicies"]
    assert sorted(as_list(policies["Action"])) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
    ]
    assert policies["Resource"] == arn_of(POLICIES)
    runs = by_sid["ReadOwnRetrainingRuns"]
    assert sorted(as_list(runs["Action"])) == ["dynamodb:GetItem", "dynamodb:Query"]
    assert runs["Resource"] == arn_of(RUNS)
    on_runs = [sid for sid, s in by_sid.items() if RUNS in json.dumps(s["Resource"])]
    assert on_runs == ["ReadOwnRetrainingRuns"], "a tenant session never writes runs"
    for statement in (policies, runs):
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:PrincipalTag/tenant}"]}
        }
        assert unbound_grants(statement) == []


def test_tenant_sessions_queue_policy_requests_and_the_portal_knows_the_defaults(
    full: Synthesized,
) -> None:
    portal = resources(full, "Portal")
    [policy] = [
        v["Properties"]
        for k, v in portal.items()
        if k.startswith("TenantRequestsPolicy") and v["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    queue = by_sid["QueueRetrainingPolicyRequests"]
    assert queue["Action"] == "sqs:SendMessage"
    assert "RetrainingRequests" in flat(queue["Resource"])
    assert "DeadLetters" not in flat(queue["Resource"])
    user_data = json.dumps(
        next(
            v["Properties"]["LaunchTemplateData"]["UserData"]
            for v in portal.values()
            if v["Type"] == "AWS::EC2::LaunchTemplate"
        )
    )
    for line in (
        "DEFAULT_SCHEDULE='cron(0 3 ? * MON *)'",
        "DEFAULT_TIMEZONE=Europe/Berlin",  # tests/fixtures/full.toml
        "FLEXIBLE_WINDOW_MINUTES=30",
        "RETRAINING_POLICIES_TABLE=",
        "RETRAINING_RUNS_TABLE=",
        "RETRAINING_REQUESTS_QUEUE_URL=",
    ):
        assert line in user_data, line


# --- operations ----------------------------------------------------------------------------------


def test_the_dead_letter_queues_alarm_to_the_operators(full: Synthesized) -> None:
    alarms = {
        k: v["Properties"]
        for k, v in resources(full, "Observability").items()
        if v["Type"] == "AWS::CloudWatch::Alarm"
    }
    topic = next(
        k for k, v in resources(full, "Observability").items() if v["Type"] == "AWS::SNS::Topic"
    )
    for name, queue in (
        ("SchedulerDeadLetters", "SchedulerDeadLetters"),
        ("RetrainingRequestsDeadLetters", "RetrainingRequestsDeadLetters"),
    ):
        [props] = [p for k, p in alarms.items() if k.startswith(name)]
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert props["Threshold"] == 0 and props["EvaluationPeriods"] == 1
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["AlarmActions"] == [{"Ref": topic}]
        assert queue in json.dumps(props["Dimensions"])
    assert "RetrainingHandlerErrors" in full.platform.observability.alarms


def test_the_dashboard_has_a_retraining_row(full: Synthesized) -> None:
    [dashboard] = [
        v["Properties"]
        for v in resources(full, "Observability").values()
        if v["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    body = json.dumps(dashboard["DashboardBody"])
    assert "## Continuous retraining (all tenants)" in body
    for metric in (
        "RetrainingRunsLaunched",
        "RetrainingRunsSkipped",
        "RetrainingPromoted",
        "RetrainingRejected",
        "RetrainingWaiting",
        "RetrainingFailed",
        "SchedulesFailed",
        "InvocationAttemptCount",
        "TargetErrorCount",
        "InvocationsSentToDeadLetterCount",
    ):
        assert f'\\"{metric}\\"' in body, metric
    assert (
        '\\"AWS/Scheduler\\",\\"InvocationAttemptCount\\",\\"ScheduleGroup\\",\\"test-retraining\\"'
        in body
    )
    assert '\\"service\\",\\"retraining\\"' in body
