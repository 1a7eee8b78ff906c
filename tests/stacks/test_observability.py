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
    "RetrainingRequestsDeadLetters",
    "RetrainingRequestsAge",
    "SchedulerDeadLetters",
    "RetrainingHandlerErrors",
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


def test_failed_jobs_alarm_sums_failed_training_and_tuning_jobs(full: Synthesized) -> None:
    props = _alarm_props(full, "TrainingJobsFailing")
    assert "MetricName" not in props and props["Threshold"] == 3
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    by_id = {m["Id"]: m for m in props["Metrics"]}
    assert by_id["expr_1"]["Expression"] == "FILL(training, 0) + FILL(tuning, 0)"
    assert by_id["expr_1"]["ReturnData"] is True
    counted = {}
    for id_ in ("training", "tuning"):
        stat = by_id[id_]["MetricStat"]
        assert by_id[id_]["ReturnData"] is False
        assert stat["Metric"]["Namespace"] == "AiTrainingPlatform"
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "job_events"}]
        assert stat["Period"] == 3600 and stat["Stat"] == "Sum"
        counted[id_] = stat["Metric"]["MetricName"]
    assert counted == {"training": "TrainingJobsFailed", "tuning": "TuningJobsFailed"}


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
    body = _dashboard_body(full)
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


def test_dashboard_puts_tuning_jobs_and_model_versions_next_to_training_jobs(
    full: Synthesized,
) -> None:
    widgets = _dashboard_widgets(full)
    titles = [w["properties"].get("title") or w["properties"].get("markdown") for w in widgets]
    header = titles.index("## Training jobs, tuning jobs and model versions")
    training, tuning, models = widgets[header + 1 : header + 4]
    # One row of three: the header spans it, each graph is a third of the width.
    assert [w["width"] for w in (training, tuning, models)] == [8, 8, 8]
    assert len({w["y"] for w in (training, tuning, models)}) == 1

    def names(widget: dict[str, Any]) -> list[str]:
        # A metric is [namespace, name, dimension, value, ..., options]; an expression [options].
        return [m[1] for m in widget["properties"]["metrics"] if isinstance(m[0], str)]

    def expressions(widget: dict[str, Any]) -> list[str]:
        return [m[0]["expression"] for m in widget["properties"]["metrics"] if "expression" in m[0]]

    assert {
        "TrainingJobsCompleted",
        "TrainingJobsFailed",
        "TrainingJobsStopped",
        "MetricSeriesFailed",
    } <= set(names(training))
    # JobsLaunched counts tuning jobs too: the training graph subtracts them.
    assert expressions(training) == ["launched - FILL(tuning, 0)"]
    assert {
        "TuningJobsLaunched",
        "TuningJobsCompleted",
        "TuningJobsFailed",
        "TuningJobsStopped",
        "TrialsApplied",
    } <= set(names(tuning))
    assert {"ModelsRegistered", "ModelStatusEventsApplied", "EventsDeadLettered"} <= set(
        names(models)
    )


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


def _dashboard_body(full: Synthesized) -> str:
    """The dashboard body as CloudFormation renders it (an Fn::Join of strings and tokens)."""
    [dashboard] = of_type(full, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["DashboardBody"]
    if isinstance(body, str):
        return body
    return "".join(part if isinstance(part, str) else "TOKEN" for part in body["Fn::Join"][1])


def _dashboard_widgets(full: Synthesized) -> list[dict[str, Any]]:
    widgets: list[dict[str, Any]] = json.loads(_dashboard_body(full))["widgets"]
    return widgets


def _alarm_props(full: Synthesized, name: str) -> dict[str, Any]:
    alarm = full.platform.observability.alarms[name]
    logical_id = full.platform.observability.resolve(alarm.node.default_child.logical_id)  # type: ignore[union-attr]
    return full.raw("Observability")["Resources"][logical_id]["Properties"]  # type: ignore[no-any-return]


def test_stateful_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming these replaces the audit trail's bucket (and its history) or its keys."""
    assert sorted(of_type(full, "AWS::KMS::Key")) == ["Key961B73FD", "LogsKeyFE4C4A83"]
    assert list(of_type(full, "AWS::S3::Bucket")) == ["TrailBucket6C1E344E"]
    assert list(of_type(full, "AWS::Logs::LogGroup")) == ["TrailLogs3B05809D"]
