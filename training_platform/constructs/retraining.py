"""Continuous retraining: tenants' policies, the schedules that trigger them, and their runs.

A policy is data, like a tenant: the portal (a tenant session) writes the record to
``policies_table`` and queues a request on ``requests_queue``; the retraining handler
(``lambda/retraining``) creates, updates, disables or deletes the policy's EventBridge Scheduler
schedule in the platform's ``schedule_group`` (one per environment); no schedule is a template
resource. Each schedule sends its trigger to the training-requests queue as ``scheduler_role``;
the launch handler turns it into a warm-started tuning job and a run in ``runs_table``, and the
job-events handler decides whether the run's model replaces the deployed one.

The guardrails:

- ``scheduler_role`` is assumable only by EventBridge Scheduler for this account's schedules of
  this group (``aws:SourceAccount``, ``aws:SourceArn`` = the group's ARN: Scheduler reports the
  schedule group as the source, and its documentation warns against scoping to schedules); it
  may only send to the training-requests queue and its own dead-letter queue
  (``scheduler_dead_letter_queue``, where Scheduler puts a trigger it could not deliver), using
  the training key only through SQS.
- The retraining handler reaches only schedules of the group (``schedule/<group>/*``) and may
  pass only the scheduler role, only to Scheduler; a schedule it creates can therefore do no
  more than the scheduler role: queue a trigger, which the launch handler checks against the
  policy's token.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from training_platform.constructs.handler import PlatformFunction
from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.nag import acknowledge, acknowledge_findings
from training_platform.constructs.serving import arn, queue_pair, tenant_table
from training_platform.constructs.statements import allow

RETRAINING_TIMEOUT = Duration.seconds(30)
RETRAINING_CONCURRENCY = 2
POLICIES_SORT_KEY = "policy_id"  # training_common.RetrainingPolicyRepository
RUNS_SORT_KEY = "run_id"  # training_common.RetrainingRunRepository
# The handler's back-off of throttled Scheduler calls (ChangeMessageVisibility), like lambda/deploy.
RETRY_BACKOFF_BASE_SECONDS = 30
RETRY_BACKOFF_MAX_SECONDS = 900
SCHEDULER_SERVICE = "scheduler.amazonaws.com"
SCHEDULE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
)
# What reading and writing the training key's tables and queues takes of the key.
_KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
# Registered versions of the tenants' model package groups (training.MODEL_PACKAGE_VERSIONS).
MODEL_PACKAGE_VERSIONS = "model-package/*-models/*"
# What the platform may set a retrained version to (training_common.registry.DECISIONS).
PROMOTION_DECISIONS = ("Approved", "Rejected")
_ARN_FINDING = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"


class Retraining(Construct):
    """The retraining tables, queues, schedule group, scheduler role and handler (see the module
    docstring).

    Attributes: ``policies_table`` and ``runs_table``; ``requests_queue`` and
    ``requests_dead_letter_queue`` (policy requests from the portal);
    ``scheduler_dead_letter_queue``; ``schedule_group`` (CfnScheduleGroup), ``schedule_group_name``
    and ``schedules_arn`` (``schedule/<group>/*``); ``scheduler_role``; after
    :meth:`add_handler`, ``handler`` (PlatformFunction).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        key: kms.IKey,
        training_requests_queue: sqs.IQueue,
        schedule_group_name: str,
        max_receive_count: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self._key = key
        self._training_requests_queue = training_requests_queue
        self.max_receive_count = max_receive_count
        self.policies_table = tenant_table(
            self, "Policies", key=key, sort_key=POLICIES_SORT_KEY, removal_policy=removal_policy
        )
        self.runs_table = tenant_table(
            self, "Runs", key=key, sort_key=RUNS_SORT_KEY, removal_policy=removal_policy
        )
        self.requests_queue, self.requests_dead_letter_queue = queue_pair(
            self,
            "Requests",
            key=key,
            consumer_timeout=RETRAINING_TIMEOUT,
            max_receive_count=max_receive_count,
        )
        # Triggers Scheduler could not deliver (after its retries, or refused by SQS): the
        # runbook's redrive moves them to the training-requests queue (docs/operations.md).
        self.scheduler_dead_letter_queue = sqs.Queue(
            self,
            "SchedulerDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.scheduler_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter queue: the DeadLetterConfig of every retraining "
            "schedule, which the retraining handler creates at run time, so no queue of the "
            "template names it in a redrive policy; an alarm watches its depth.",
        )

        self.schedule_group_name = schedule_group_name
        self.schedule_group = scheduler.CfnScheduleGroup(
            self, "ScheduleGroup", name=schedule_group_name
        )
        self.schedule_group_arn = self.schedule_group.attr_arn
        self.schedules_arn = arn("scheduler", f"schedule/{schedule_group_name}/*")
        self.scheduler_role = self._scheduler_role()

    # -- the scheduler role ------------------------------------------------------------------

    def _scheduler_role(self) -> iam.Role:
        """What every retraining schedule runs as: send the trigger, nothing else."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                SCHEDULER_SERVICE,
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnEquals": {"aws:SourceArn": self.schedule_group_arn},
                },
            ),
            description=(
                "Retraining schedules: send their trigger to the training-requests queue "
                "(or Scheduler's dead-letter queue), nothing else"
            ),
        )
        iam.ManagedPolicy(
            self,
            "SchedulerPolicy",
            description="Retraining schedules: the training-requests queue and their DLQ only",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="SendTriggersAndUndeliveredTriggers",
                    actions=["sqs:SendMessage"],
                    resources=[
                        self._training_requests_queue.queue_arn,
                        self.scheduler_dead_letter_queue.queue_arn,
                    ],
                ),
                key_through_services(
                    self,
                    self._key,
                    services=["sqs"],
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    sid="TrainingKeyThroughSqsOnly",
                ),
            ],
        )
        return role

    # -- the retraining handler --------------------------------------------------------------

    def add_handler(
        self,
        *,
        layer: lambda_.ILayerVersion,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> PlatformFunction:
        """``lambda/retraining``: applies policy requests to their schedules."""
        self.handler = PlatformFunction(
            self,
            "Handler",
            name="retraining",
            description=(
                "Creates, updates, disables and deletes tenants' retraining schedules in "
                "EventBridge Scheduler"
            ),
            layer=layer,
            vpc=vpc,
            subnets=subnets,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            timeout=RETRAINING_TIMEOUT,
            reserved_concurrency=RETRAINING_CONCURRENCY,
            environment={
                "RETRAINING_POLICIES_TABLE": self.policies_table.table_name,
                "RETRAINING_REQUESTS_QUEUE_URL": self.requests_queue.queue_url,
                "DEAD_LETTER_QUEUE_URL": self.requests_dead_letter_queue.queue_url,
                "SCHEDULE_GROUP": self.schedule_group_name,
                "SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
                "TRAINING_REQUESTS_QUEUE_ARN": self._training_requests_queue.queue_arn,
                "SCHEDULER_DLQ_ARN": self.scheduler_dead_letter_queue.queue_arn,
                "MAX_RECEIVE_COUNT": str(self.max_receive_count),
                "RETRY_BACKOFF_BASE_SECONDS": str(RETRY_BACKOFF_BASE_SECONDS),
                "RETRY_BACKOFF_MAX_SECONDS": str(RETRY_BACKOFF_MAX_SECONDS),
            },
        )
        # Created with the group: a schedule put in a group that does not exist yet fails.
        self.handler.function.node.add_dependency(self.schedule_group)
        self.handler.function.add_event_source(
            sources.SqsEventSource(
                self.requests_queue,
                batch_size=5,
                max_batching_window=Duration.seconds(2),
                report_batch_item_failures=True,
            )
        )
        self._grant_handler()
        return self.handler

    def _grant_handler(self) -> None:
        """Exactly the calls of ``lambda/retraining``."""
        role = self.handler.role
        allow(
            role,
            "ApplyPolicyRecords",
            ["dynamodb:GetItem", "dynamodb:PutItem"],
            [self.policies_table.table_arn],
        )
        # Back-off of throttled requests (ChangeMessageVisibility), unreadable ones to the DLQ.
        allow(
            role,
            "DeferAndDeadLetterRequests",
            ["sqs:SendMessage", "sqs:ChangeMessageVisibility"],
            [self.requests_queue.queue_arn, self.requests_dead_letter_queue.queue_arn],
        )
        role.add_to_principal_policy(
            key_through_services(
                self,
                self._key,
                services=["dynamodb", "sqs"],
                actions=_KEY_ACTIONS,
                sid="TrainingKeyThroughItsServicesOnly",
            )
        )
        allow(role, "TenantSchedulesOfTheGroupOnly", list(SCHEDULE_ACTIONS), [self.schedules_arn])
        allow(
            role,
            "PassTheSchedulerRoleToSchedulerOnly",
            ["iam:PassRole"],
            [self.scheduler_role.role_arn],
            {"StringEquals": {"iam:PassedToService": SCHEDULER_SERVICE}},
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                "Resource::*",
                f"Resource::{_ARN_FINDING.format(service='scheduler')}"
                f"schedule/{self.schedule_group_name}/*",
            ],
            "Tenants' policies are data: each schedule is created at run time and named "
            "<tenant>-<policy> (training_common.schedule_name), so the statement names every "
            f"schedule of the platform's group {self.schedule_group_name} and no other group; "
            "a schedule can only run as the scheduler role, which may only queue a trigger. "
            "'*' is X-Ray's PutTraceSegments and PutTelemetryRecords (active tracing), which "
            "have no resource-level form.",
        )

    # -- what the launch and job-events handlers add -----------------------------------------

    def grant_launch(self, function: PlatformFunction) -> None:
        """The launch handler plans runs: it reads the policy (and advances its last slot) and
        writes the run; the data-bucket access (listing, manifests) is the DataLake's
        ``retraining_manifests`` policy, attached by the stack."""
        self._read_and_write_runs(function, "PlanRetrainingRuns")

    def grant_job_events(self, function: PlatformFunction) -> None:
        """The job-events handler decides on runs: it reads the policy (and records the run's
        job for the next warm start), writes the run's decision, and approves or rejects the
        retrained version in the registry."""
        self._read_and_write_runs(function, "DecideOnRetrainingRuns")
        versions = arn("sagemaker", MODEL_PACKAGE_VERSIONS)
        allow(
            function.role,
            "ApproveOrRejectRetrainedVersions",
            ["sagemaker:UpdateModelPackage"],
            [versions],
            {"StringEquals": {"sagemaker:ModelApprovalStatus": list(PROMOTION_DECISIONS)}},
        )
        # AwsSolutions-IAM5 on the versions' wildcard: acknowledged with the handler's other
        # registry statements (stacks/training.py), one reason for one finding.

    def _read_and_write_runs(self, function: PlatformFunction, sid: str) -> None:
        """Both tables' names in ``function``'s environment, and GetItem and PutItem on them
        (statement ``sid``)."""
        function.function.add_environment(
            "RETRAINING_POLICIES_TABLE", self.policies_table.table_name
        )
        function.function.add_environment("RETRAINING_RUNS_TABLE", self.runs_table.table_name)
        allow(
            function.role,
            sid,
            ["dynamodb:GetItem", "dynamodb:PutItem"],
            [self.policies_table.table_arn, self.runs_table.table_arn],
        )
