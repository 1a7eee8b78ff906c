"""The Observability stack: audit trail, alarms and their actions, budget, dashboard, retention."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Synthesized


def of_type(full: Synthesized, type_: str, stack: str = "Observability") -> dict[str, Any]:
    resources = full.raw(stack)["Resources"]
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == type_}


def test_trail_is_multi_region_validated_encrypted_and_logged(full: Synthesized) -> None:
    [trail] = of_type(full, "AWS::CloudTrail::Trail").values()
    assert trail["IsMultiRegionTrail"] is True
    assert trail["EnableLogFileValidation"] is True
    assert trail["IncludeGlobalServiceEvents"] is True
    assert "KMSKeyId" in trail
    assert "CloudWatchLogsLogGroupArn" in trail
    bucket_id = trail["S3BucketName"]["Ref"]
    bucket = full.raw("Observability")["Resources"][bucket_id]["Properties"]
    assert "LoggingConfiguration" in bucket
    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_trail_records_data_events_on_tenant_data_and_artifacts(full: Synthesized) -> None:
    [trail] = of_type(full, "AWS::CloudTrail::Trail").values()
    [selector] = trail["EventSelectors"]
    assert selector["ReadWriteType"] == "All"
    [resources] = selector["DataResources"]
    assert resources["Type"] == "AWS::S3::Object"
    rendered = json.dumps(resources["Values"])
    assert "TenantDataBucket" in rendered and "ArtifactsBucket" in rendered
    assert len(resources["Values"]) == 2


def test_operator_topic_is_encrypted_and_mails_the_configured_address(full: Synthesized) -> None:
    [topic] = of_type(full, "AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic
    [subscription] = of_type(full, "AWS::SNS::Subscription").values()
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == "platform-oncall@example.com"


EXPECTED_ALARMS = {
    "TrainingRequestsDeadLetters",
    "TrainingRequestsAge",
    "JobEventsDeadLetters",
    "JobEventsAge",
    "LaunchHandlerErrors",
    "JobEventsHandlerErrors",
    "TrainingJobsFailing",
    "Portal5xxRate",
    "PortalUnhealthyHosts",
}


def test_every_alarm_notifies_the_operators(full: Synthesized) -> None:
    alarms = of_type(full, "AWS::CloudWatch::Alarm")
    assert set(full.platform.observability.alarms) >= EXPECTED_ALARMS
    assert len(alarms) == len(full.platform.observability.alarms)
    topic_id = next(iter(of_type(full, "AWS::SNS::Topic")))
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["OKActions"] == [{"Ref": topic_id}]


def test_dead_letter_alarms_fire_on_a_single_message(full: Synthesized) -> None:
    for name in ("TrainingRequestsDeadLetters", "JobEventsDeadLetters"):
        props = _alarm_props(full, name)
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert props["Threshold"] == 0
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["EvaluationPeriods"] == 1


def test_queue_age_alarms_use_the_configured_minutes(full: Synthesized) -> None:
    for name in ("TrainingRequestsAge", "JobEventsAge"):
        props = _alarm_props(full, name)
        assert props["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert props["Threshold"] == 20 * 60


def test_failed_training_jobs_burst_alarm(full: Synthesized) -> None:
    props = _alarm_props(full, "TrainingJobsFailing")
    assert props["Namespace"] == "AiTrainingPlatform"
    assert props["MetricName"] == "TrainingJobsFailed"
    assert props["Dimensions"] == [{"Name": "service", "Value": "job_events"}]
    assert props["Period"] == 3600 and props["Threshold"] == 3


def test_budget_is_monthly_from_config_and_alerts_the_topic(full: Synthesized) -> None:
    [budget] = of_type(full, "AWS::Budgets::Budget").values()
    data = budget["Budget"]
    assert data["BudgetLimit"] == {"Amount": 2500, "Unit": "USD"}
    assert data["TimeUnit"] == "MONTHLY"
    assert data["CostFilters"] == {"TagKeyValue": ["user:platform$ai-training-platform"]}
    kinds = {n["Notification"]["NotificationType"] for n in budget["NotificationsWithSubscribers"]}
    assert kinds == {"ACTUAL", "FORECASTED"}
    for notification in budget["NotificationsWithSubscribers"]:
        assert notification["Subscribers"][0]["SubscriptionType"] == "SNS"


def test_dashboard_shows_queues_handlers_and_training(full: Synthesized) -> None:
    [dashboard] = of_type(full, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["DashboardBody"])
    for needle in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Errors",
        "Throttles",
        "Duration",
        "JobsLaunched",
        "TrainingJobsCompleted",
        "TrainingJobsFailed",
        "RequestCount",
        "HTTPCode_Target_4XX_Count",
        "HTTPCode_Target_5XX_Count",
        "TargetResponseTime",
        "HealthyHostCount",
        "CPUUtilization",
        "GroupInServiceInstances",
    ):
        assert needle in body, needle


def test_portal_alarms_watch_the_share_of_5xx_and_unhealthy_hosts(full: Synthesized) -> None:
    rate = _alarm_props(full, "Portal5xxRate")
    expressions = [m.get("Expression") for m in rate["Metrics"] if "Expression" in m]
    assert expressions == ["100 * (elb5xx + target5xx) / MAX([requests, 1])"]
    assert rate["Threshold"] == 5.0
    unhealthy = _alarm_props(full, "PortalUnhealthyHosts")
    assert unhealthy["MetricName"] == "UnHealthyHostCount"
    assert {d["Name"] for d in unhealthy["Dimensions"]} == {"LoadBalancer", "TargetGroup"}


@pytest.mark.parametrize("environment", ["full", "example"])
def test_every_log_group_in_every_stack_has_a_retention(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(environment)
    groups = 0
    for name, template in synthesized.templates.items():
        resources = template["Resources"]
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::Logs::LogGroup":
                groups += 1
                assert "RetentionInDays" in resource["Properties"], f"{name}/{logical_id}"
            if resource["Type"] == "AWS::Lambda::Function":
                # Without its own group, Lambda would create /aws/lambda/<name>, kept forever.
                assert "LogGroup" in resource["Properties"].get("LoggingConfig", {}), (
                    f"{name}/{logical_id} logs to a group without retention"
                )
    assert groups >= 5


def _alarm_props(full: Synthesized, name: str) -> dict[str, Any]:
    alarm = full.platform.observability.alarms[name]
    logical_id = full.platform.observability.resolve(alarm.node.default_child.logical_id)  # type: ignore[union-attr]
    return full.raw("Observability")["Resources"][logical_id]["Properties"]  # type: ignore[no-any-return]


def test_stateful_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming these replaces the audit trail's bucket (and its history) or its keys."""
    assert sorted(of_type(full, "AWS::KMS::Key")) == ["Key961B73FD", "LogsKeyFE4C4A83"]
    assert list(of_type(full, "AWS::S3::Bucket")) == ["TrailBucket6C1E344E"]
    assert list(of_type(full, "AWS::Logs::LogGroup")) == ["TrailLogs3B05809D"]
