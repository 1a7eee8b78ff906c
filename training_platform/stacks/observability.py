"""Observability stack: the audit trail, the operators' dashboard, alarms and the cost budget."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from training_platform.config import ObservabilitySettings
from training_platform.constructs.handler import PlatformFunction
from training_platform.constructs.logs import LogsKey, encrypted_log_group
from training_platform.constructs.nag import acknowledge
from training_platform.constructs.secure_bucket import BucketLifecycle, SecureBucket
from training_platform.constructs.topics import email_topic
from training_platform.stacks.data_lake import AUDIT_TRAIL_LOGS_PREFIX, DataLakeStack
from training_platform.stacks.training import TrainingStack

METRICS_NAMESPACE = "AiTrainingPlatform"  # POWERTOOLS_METRICS_NAMESPACE of the handlers
PLATFORM_TAG = ("platform", "ai-training-platform")  # set on every resource by platform_app.py
FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True)
class PortalMetrics:
    """What the dashboard and alarms watch of the portal (the Portal stack's resources)."""

    load_balancer: elbv2.ApplicationLoadBalancer
    target_group: elbv2.ApplicationTargetGroup
    auto_scaling_group_name: str


class ObservabilityStack(Stack):
    """CloudTrail with S3 data events on tenant data, an SNS topic for operators, a dashboard,
    alarms on every place where work can pile up or fail, and a monthly AWS Budgets budget.

    Attributes: ``trail``, ``trail_bucket``, ``alarm_topic``, ``dashboard``, ``alarms`` (name to
    alarm) and ``budget``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data_lake: DataLakeStack,
        training: TrainingStack,
        portal: PortalMetrics,
        settings: ObservabilitySettings,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the audit trail, its bucket and the operators' topic",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=removal_policy,
        )
        self._trail(data_lake, log_retention_days, removal_policy)
        self._alarm_topic(settings)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self.stack_name}-operations",
            default_interval=Duration.hours(6),
        )
        self._portal(portal, settings)
        self._queues(training, settings)
        self._handlers(
            {
                "LaunchHandler": training.launch,
                "JobEventsHandler": training.job_events,
                "DeployHandler": training.deploy,
                "RetrainingHandler": training.retraining_handler,
            }
        )
        self._training_jobs(settings)
        self._endpoints(training)
        self._retraining(training)
        self._budget(settings)

    # -- audit trail -------------------------------------------------------------------------

    def _trail(
        self, data_lake: DataLakeStack, log_retention_days: int, removal_policy: RemovalPolicy
    ) -> None:
        # Server access logs go to the DataLake's log bucket under "Trail/", which its policy admits
        # (AUDIT_TRAIL_LOGS_PREFIX); importing the bucket keeps CDK from editing that policy from
        # here, which would make the DataLake stack depend on this one.
        access_logs = s3.Bucket.from_bucket_attributes(
            self,
            "AccessLogsBucket",
            bucket_arn=data_lake.access_logs_bucket.bucket_arn,
            bucket_name=data_lake.access_logs_bucket.bucket_name,
        )
        self.trail_bucket = SecureBucket(
            self,
            AUDIT_TRAIL_LOGS_PREFIX.rstrip("/"),  # SecureBucket logs under "<id>/"
            key=self.key,
            access_logs_bucket=access_logs,
            lifecycle=BucketLifecycle(
                noncurrent_version_expiration_days=30,
                intelligent_tiering_after_days=0,
                expiration_days=log_retention_days,
            ),
            removal_policy=removal_policy,
        ).bucket
        Annotations.of(self.trail_bucket).acknowledge_warning(
            "@aws-cdk/aws-s3:accessLogsPolicyNotAdded",
            "The DataLake's access-log bucket already admits S3 log delivery under Trail/ from "
            "this account (statement S3ServerAccessLogsOfTheAuditTrailBucket).",
        )
        logs_key = LogsKey(self, "LogsKey", removal_policy=removal_policy).key
        self.trail = cloudtrail.Trail(
            self,
            "AuditTrail",
            bucket=self.trail_bucket,
            encryption_key=self.key,
            enable_file_validation=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=encrypted_log_group(
                self,
                "TrailLogs",
                key=logs_key,
                retention_days=log_retention_days,
                removal_policy=removal_policy,
            ),
        )
        acknowledge(
            self.trail,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "CloudTrail's delivery role has one policy, written by CDK, that allows writing to "
            "the trail's own log group only; it is attached to nothing else.",
        )
        # Who read or wrote which tenant's objects: data events on the tenant data and artifacts.
        self.trail.add_s3_event_selector(
            [
                cloudtrail.S3EventSelector(bucket=data_lake.data_bucket),
                cloudtrail.S3EventSelector(bucket=data_lake.artifacts_bucket),
            ],
            read_write_type=cloudtrail.ReadWriteType.ALL,
            include_management_events=True,
        )

    # -- notifications -----------------------------------------------------------------------

    def _alarm_topic(self, settings: ObservabilitySettings) -> None:
        self.alarm_topic = email_topic(
            self,
            "AlarmTopic",
            display_name="AI training platform: operator alarms and budget alerts",
            key=self.key,
            emails=settings.alarm_emails,
        )
        # CloudWatch alarms and AWS Budgets publish to the encrypted topic.
        for service in (
            "cloudwatch.amazonaws.com",
            "budgets.amazonaws.com",
            "events.amazonaws.com",
        ):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Publish{service.split('.')[0].title()}",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": self.account}},
                )
            )
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsPublish",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        self._action = actions.SnsAction(self.alarm_topic)

    def _alarm(self, name: str, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[name] = alarm
        return alarm

    # -- portal ------------------------------------------------------------------------------

    def _portal(self, portal: PortalMetrics, settings: ObservabilitySettings) -> None:
        lb = portal.load_balancer.metrics
        requests = lb.request_count(period=FIVE_MINUTES)
        errors_5xx = cloudwatch.MathExpression(
            expression="100 * (elb5xx + target5xx) / MAX([requests, 1])",
            using_metrics={
                "elb5xx": lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES),
                "target5xx": lb.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES
                ),
                "requests": requests,
            },
            label="5xx responses (%)",
            period=FIVE_MINUTES,
        )
        # Built by hand: the target group's own metric helpers derive the load balancer's name by
        # splitting a listener ARN, which across stacks cfn-lint cannot type-check.
        hosts = {
            "LoadBalancer": portal.load_balancer.load_balancer_full_name,
            "TargetGroup": portal.target_group.target_group_full_name,
        }
        healthy, unhealthy = (
            cloudwatch.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=name,
                dimensions_map=hosts,
                statistic="Minimum" if name == "HealthyHostCount" else "Maximum",
                period=Duration.minutes(1),
            )
            for name in ("HealthyHostCount", "UnHealthyHostCount")
        )
        asg = {"AutoScalingGroupName": portal.auto_scaling_group_name}
        cpu = cloudwatch.Metric(
            namespace="AWS/EC2",
            metric_name="CPUUtilization",
            dimensions_map=asg,
            statistic="Average",
            period=FIVE_MINUTES,
        )
        instances = cloudwatch.Metric(
            namespace="AWS/AutoScaling",
            metric_name="GroupInServiceInstances",
            dimensions_map=asg,
            statistic="Average",
            period=Duration.minutes(1),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="## Portal", width=24, height=1),
            cloudwatch.GraphWidget(title="Requests", left=[requests], right=[errors_5xx], width=6),
            cloudwatch.GraphWidget(
                title="4xx / 5xx",
                left=[
                    lb.http_code_target(elbv2.HttpCodeTarget.TARGET_4XX_COUNT, period=FIVE_MINUTES),
                    lb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES),
                    lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES),
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Latency (p50, p99)",
                left=[
                    lb.target_response_time(statistic="p50", period=FIVE_MINUTES),
                    lb.target_response_time(statistic="p99", period=FIVE_MINUTES),
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Hosts", left=[healthy, unhealthy], right=[instances, cpu], width=6
            ),
        )
        self._alarm(
            "Portal5xxRate",
            cloudwatch.Alarm(
                self,
                "Portal5xxRate",
                alarm_description="More than the configured share of portal requests end in 5xx",
                metric=errors_5xx,
                threshold=settings.portal_5xx_percent,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        )
        self._alarm(
            "PortalUnhealthyHosts",
            cloudwatch.Alarm(
                self,
                "PortalUnhealthyHosts",
                alarm_description="A portal instance fails the load balancer's health check",
                metric=unhealthy,
                threshold=0,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        )

    # -- queues ------------------------------------------------------------------------------

    def _queues(self, training: TrainingStack, settings: ObservabilitySettings) -> None:
        pairs: list[tuple[str, sqs.IQueue, sqs.IQueue]] = [
            ("TrainingRequests", training.requests_queue, training.requests_dead_letter_queue),
            ("JobEvents", training.events_queue, training.events_dead_letter_queue),
            (
                "DeploymentRequests",
                training.deployment_requests_queue,
                training.deployment_requests_dead_letter_queue,
            ),
            (
                "RetrainingRequests",
                training.retraining_requests_queue,
                training.retraining_requests_dead_letter_queue,
            ),
        ]
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.TextWidget(markdown="## Queues", width=24, height=1)
        ]
        for name, queue, dead_letters in pairs:
            depth = queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES)
            age = queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES)
            dead = dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            )
            widgets += [
                cloudwatch.GraphWidget(title=f"{name}: depth", left=[depth], width=8),
                cloudwatch.GraphWidget(title=f"{name}: oldest message (s)", left=[age], width=8),
                cloudwatch.SingleValueWidget(
                    title=f"{name}: dead letters", metrics=[dead], width=8, height=6
                ),
            ]
            self._alarm(
                f"{name}DeadLetters",
                cloudwatch.Alarm(
                    self,
                    f"{name}DeadLetters",
                    alarm_description=(
                        f"A message reached the {name} dead-letter queue: see README, Operations"
                    ),
                    metric=dead,
                    threshold=0,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                ),
            )
            self._alarm(
                f"{name}Age",
                cloudwatch.Alarm(
                    self,
                    f"{name}Age",
                    alarm_description=(
                        f"The oldest {name} message has waited over "
                        f"{settings.queue_age_alarm_minutes} minutes"
                    ),
                    metric=age.with_(statistic="Maximum"),
                    threshold=settings.queue_age_alarm_minutes * 60,
                    evaluation_periods=2,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                ),
            )
        self.dashboard.add_widgets(*widgets)

    # -- handlers ----------------------------------------------------------------------------

    def _handlers(self, handlers: dict[str, PlatformFunction]) -> None:
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.TextWidget(markdown="## Handlers", width=24, height=1)
        ]
        for name, handler in handlers.items():
            function = handler.function
            errors = function.metric_errors(period=FIVE_MINUTES, statistic="Sum")
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{name}: errors, throttles, duration (p99)",
                    left=[errors, function.metric_throttles(period=FIVE_MINUTES)],
                    right=[function.metric_duration(period=FIVE_MINUTES, statistic="p99")],
                    width=12,
                )
            )
            self._alarm(
                f"{name}Errors",
                cloudwatch.Alarm(
                    self,
                    f"{name}Errors",
                    alarm_description=f"The {name} function raised errors",
                    metric=errors,
                    threshold=0,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                ),
            )
        self.dashboard.add_widgets(*widgets)

    # -- training and tuning jobs, model registry ----------------------------------------------

    def _training_jobs(self, settings: ObservabilitySettings) -> None:
        """Jobs and model versions from the handlers' own metrics (Powertools, dimension
        ``service``). ``JobsLaunched`` counts both kinds of job, ``TuningJobsLaunched`` the
        tuning jobs among them; the events of a tuning job's trials count as ``TrialsApplied``,
        never as training jobs. ``TrainingJobsFailing`` alarms on failed jobs of both kinds."""

        def job_metric(
            name: str, service: str = "job_events", period: Duration = FIVE_MINUTES
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": service},
                statistic="Sum",
                period=period,
            )

        tuning_launched = job_metric("TuningJobsLaunched", "launch")
        training_launched = cloudwatch.MathExpression(
            expression="launched - FILL(tuning, 0)",
            using_metrics={
                "launched": job_metric("JobsLaunched", "launch"),
                "tuning": tuning_launched,
            },
            label="TrainingJobsLaunched",
            period=FIVE_MINUTES,
        )
        outcomes = ("Completed", "Failed", "Stopped")
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown="## Training jobs, tuning jobs and model versions", width=24, height=1
            ),
            cloudwatch.GraphWidget(
                title="Training jobs launched, completed, failed, stopped",
                left=[training_launched, *(job_metric(f"TrainingJobs{o}") for o in outcomes)],
                right=[job_metric("MetricSeriesFailed")],
                right_y_axis=cloudwatch.YAxisProps(label="Metric series not read", min=0),
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Tuning jobs launched, completed, failed, stopped; trials",
                left=[tuning_launched, *(job_metric(f"TuningJobs{o}") for o in outcomes)],
                right=[job_metric("TrialsApplied")],
                right_y_axis=cloudwatch.YAxisProps(label="Trial events applied", min=0),
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Model versions registered, status changes; job events dead-lettered",
                left=[job_metric("ModelsRegistered"), job_metric("ModelStatusEventsApplied")],
                # A model that can't be registered parks its job event here ("cannot register
                # the model: ..."), next to the other dead-lettered events.
                right=[job_metric("EventsDeadLettered")],
                width=8,
            ),
        )
        hour = Duration.hours(1)
        self._alarm(
            "TrainingJobsFailing",
            cloudwatch.Alarm(
                self,
                "TrainingJobsFailing",
                alarm_description=(
                    f"{settings.failed_jobs_per_hour} or more jobs (training and tuning jobs "
                    "together) failed within an hour"
                ),
                # FILL: an hour in which only one kind failed still counts the other as 0.
                metric=cloudwatch.MathExpression(
                    expression="FILL(training, 0) + FILL(tuning, 0)",
                    using_metrics={
                        "training": job_metric("TrainingJobsFailed", period=hour),
                        "tuning": job_metric("TuningJobsFailed", period=hour),
                    },
                    label="Training and tuning jobs failed",
                    period=hour,
                ),
                threshold=settings.failed_jobs_per_hour,
                evaluation_periods=1,
                comparison_operator=(
                    cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                ),
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        )

    # -- tenant endpoints --------------------------------------------------------------------

    def _endpoints(self, training: TrainingStack) -> None:
        """Tenants' endpoints in aggregate: their alarms reach the operators' topic through an
        EventBridge rule (the deploy handler creates them at run time, with no alarm actions),
        and the dashboard sums SageMaker's and the inference API's metrics over every endpoint
        (SEARCH expressions: no endpoint is named in a template)."""
        prefix = training.serving.alarm_prefix
        self.endpoint_alarm_rule = events.Rule(
            self,
            "EndpointAlarms",
            description="Tenants' endpoint alarms (5xx, latency, API errors, drift) to operators",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": [{"prefix": f"{prefix}-"}]},
            ),
            targets=[targets.SnsTopic(self.alarm_topic)],
        )

        def total(label: str, namespace: str, dimensions: str, metric: str) -> cloudwatch.IMetric:
            search = f"SEARCH('{{{namespace},{dimensions}}} MetricName=\"{metric}\"', 'Sum', 300)"
            return cloudwatch.MathExpression(
                expression=f"SUM({search})", label=label, period=FIVE_MINUTES
            )

        sagemaker = ("AWS/SageMaker", "EndpointName,VariantName")
        api = ("TrainingPlatform/Inference", "endpoint,tenant")
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "## Tenant endpoints (all tenants)\n"
                    f"Alarms: CloudWatch alarms named `{prefix}-*` (each endpoint's 5xx, "
                    "latency, API errors and data-quality alarms)."
                ),
                width=24,
                height=2,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors (SageMaker)",
                left=[total("Invocations", *sagemaker, "Invocations")],
                right=[
                    total("4xx", *sagemaker, "Invocation4XXErrors"),
                    total("5xx", *sagemaker, "Invocation5XXErrors"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Inference API requests and errors",
                left=[total("Requests", *api, "Invocations")],
                right=[
                    total("Client errors", *api, "ClientErrors"),
                    total("Server errors", *api, "ServerErrors"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Model Monitor runs with violations",
                left=[
                    total(
                        "Violations", "TrainingPlatform/Monitoring", "endpoint,tenant", "Violations"
                    )
                ],
                width=8,
            ),
        )

    # -- continuous retraining ---------------------------------------------------------------

    def _retraining(self, training: TrainingStack) -> None:
        """Retraining in aggregate (all tenants): runs launched and skipped (launch handler),
        their decisions (job-events handler), schedules the retraining handler could not apply,
        and Scheduler's own view of the platform's schedule group: triggers sent, target errors
        and the triggers it gave up on, which land in the scheduler's dead-letter queue (an
        alarm; docs/operations.md says how to redrive them)."""
        group = training.retraining.schedule_group_name

        def handler_metric(name: str, service: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": service},
                statistic="Sum",
                period=FIVE_MINUTES,
            )

        def scheduler_metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/Scheduler",
                metric_name=name,
                dimensions_map={"ScheduleGroup": group},
                statistic="Sum",
                period=FIVE_MINUTES,
            )

        dead = training.scheduler_dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum"
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "## Continuous retraining (all tenants)\n"
                    f"Schedules of the group `{group}`; runs by policy are in the tenants' "
                    "RetrainingRuns table."
                ),
                width=24,
                height=2,
            ),
            cloudwatch.GraphWidget(
                title="Runs launched and skipped",
                left=[
                    handler_metric("RetrainingRunsLaunched", "launch"),
                    handler_metric("RetrainingRunsSkipped", "launch"),
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Decisions: promoted, rejected, waiting, failed",
                left=[
                    handler_metric(f"Retraining{decision}", "job_events")
                    for decision in ("Promoted", "Rejected", "Waiting", "Failed")
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Schedules: triggers sent, target errors, failed to apply",
                left=[
                    scheduler_metric("InvocationAttemptCount"),
                    scheduler_metric("TargetErrorCount"),
                    scheduler_metric("InvocationDroppedCount"),
                ],
                right=[handler_metric("SchedulesFailed", "retraining")],
                right_y_axis=cloudwatch.YAxisProps(label="Schedules failed", min=0),
                width=6,
            ),
            cloudwatch.SingleValueWidget(
                title="Scheduler: undelivered triggers (dead letters)",
                metrics=[dead, scheduler_metric("InvocationsSentToDeadLetterCount")],
                width=6,
                height=6,
            ),
        )
        self._alarm(
            "SchedulerDeadLetters",
            cloudwatch.Alarm(
                self,
                "SchedulerDeadLetters",
                alarm_description=(
                    "A retraining trigger reached the scheduler's dead-letter queue: see "
                    "docs/operations.md, Retraining"
                ),
                metric=dead,
                threshold=0,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        )

    # -- cost --------------------------------------------------------------------------------

    def _budget(self, settings: ObservabilitySettings) -> None:
        key, value = PLATFORM_TAG
        subscriber = budgets.CfnBudget.SubscriberProperty(
            address=self.alarm_topic.topic_arn, subscription_type="SNS"
        )
        self.budget = budgets.CfnBudget(
            self,
            "MonthlyBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(
                    amount=settings.monthly_budget_usd, unit="USD"
                ),
                cost_filters={"TagKeyValue": [f"user:{key}${value}"]},
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        comparison_operator="GREATER_THAN",
                        notification_type=kind,
                        threshold=threshold,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[subscriber],
                )
                for kind, threshold in (("ACTUAL", 80), ("FORECASTED", 100))
            ],
        )
