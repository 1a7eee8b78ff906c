"""Managed policies through which other stacks' roles reach the data lake.

They live in the DataLake stack, next to the buckets and the key they name, and other stacks
attach them to their roles (``role.add_managed_policy``). The dependency then points one way
only (consumers depend on the DataLake stack), and every statement names its bucket and prefix
in this stack, where a reviewer reads them next to the buckets.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.nag import acknowledge

TENANTS = "tenants/"
ALGORITHMS = "algorithms/"
# The model metrics document of a registered version, in its job's own prefix
# (tenants/<tenant>/jobs/<job id>/, training_common.keys; lambda/job_events/registry.py).
MODEL_METRICS_DOCUMENTS = f"{TENANTS}*/jobs/*/registry/model-metrics.json"
# Serving (training_common.deployments): model artifacts under each job's output/, a tuning
# job's best model one level deeper; each endpoint's data capture, baseline and monitoring
# reports under tenants/<tenant>/monitoring/<endpoint>/; the training datasets a baseline reads.
MODEL_ARTIFACTS = f"{TENANTS}*/jobs/*/output/*"
CAPTURE_OBJECTS = f"{TENANTS}*/monitoring/*/capture/*"
MONITORING_OBJECTS = f"{TENANTS}*/monitoring/*"
DATASET_OBJECTS = f"{TENANTS}*/datasets/*"
# Retraining (training_common.retraining.manifest_key): each run's SageMaker manifest of the
# objects it trains on, tenants/<tenant>/retraining/<policy>/<slot>/manifest.json.
RETRAINING_MANIFESTS = f"{TENANTS}*/retraining/*"


def _list_prefix(sid: str, bucket: s3.IBucket, prefix: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
    )


def _key_through_s3(scope: Construct, key: kms.IKey, actions: list[str]) -> iam.PolicyStatement:
    return key_through_services(
        scope, key, services=["s3"], actions=actions, sid="DataKeyThroughS3Only"
    )


class DataAccessPolicies(Construct):
    """``training_jobs``: what SageMaker training jobs read and write (every tenant's prefix: the
    launch handler confines each job to its own tenant's paths, network isolation keeps the
    container from calling AWS). ``catalog_read``: reading the algorithm catalog.
    ``catalog_write``: adding and replacing catalog entries (the portal's admin area).
    ``model_metrics_write``: writing a registered model version's metrics document into its
    job's prefix of the artifacts bucket (the job-events handler). ``endpoints``: what SageMaker
    endpoints read (model artifacts) and write (data capture). ``monitoring``: what the
    data-quality baseline and Model Monitor jobs read (datasets, captured data) and write
    (baselines and reports under the monitoring prefix). ``retraining_manifests``: listing
    tenants' data (a run's new objects and feedback) and writing each run's manifest under
    ``tenants/<tenant>/retraining/`` (the launch handler)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        catalog_bucket: s3.IBucket,
        data_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        self.training_jobs = iam.ManagedPolicy(
            self,
            "TrainingJobs",
            description="SageMaker training jobs: read tenants' datasets, write their artifacts",
            statements=[
                _list_prefix("ListTenantDatasets", data_bucket, TENANTS),
                iam.PolicyStatement(
                    sid="ReadTenantDatasets",
                    actions=["s3:GetObject"],
                    resources=[data_bucket.arn_for_objects(f"{TENANTS}*")],
                ),
                _list_prefix("ListTenantArtifacts", artifacts_bucket, TENANTS),
                iam.PolicyStatement(
                    sid="WriteTenantArtifactsAndCheckpoints",
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[artifacts_bucket.arn_for_objects(f"{TENANTS}*")],
                ),
                _key_through_s3(self, data_key, ["kms:Decrypt", "kms:GenerateDataKey"]),
                iam.PolicyStatement(
                    sid="DataKeyForTrainingVolumes",
                    actions=[
                        "kms:CreateGrant",
                        "kms:DescribeKey",
                        "kms:Decrypt",
                        "kms:GenerateDataKeyWithoutPlaintext",
                    ],
                    resources=[data_key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                ),
            ],
        )
        acknowledge(
            self.training_jobs,
            "AwsSolutions-IAM5[Resource::<TenantDataBucket7376A0FC.Arn>/tenants/*]",
            "One execution role serves every tenant's jobs; the launch handler builds each job's "
            "input only from its own tenant's prefix and IAM on the launch role pins isolation.",
        )
        acknowledge(
            self.training_jobs,
            "AwsSolutions-IAM5[Resource::<ArtifactsBucket88671897.Arn>/tenants/*]",
            "One execution role serves every tenant's jobs; the launch handler sets each job's "
            "output and checkpoint paths under its own tenant's prefix only.",
        )

        self.catalog_read = iam.ManagedPolicy(
            self,
            "CatalogRead",
            description="Read the algorithm catalog (algorithms/*.json)",
            statements=[
                _list_prefix("ListCatalog", catalog_bucket, ALGORITHMS),
                iam.PolicyStatement(
                    sid="ReadCatalogEntries",
                    actions=["s3:GetObject"],
                    resources=[catalog_bucket.arn_for_objects(f"{ALGORITHMS}*")],
                ),
                _key_through_s3(self, data_key, ["kms:Decrypt"]),
            ],
        )
        acknowledge(
            self.catalog_read,
            "AwsSolutions-IAM5[Resource::<CatalogBucketC51B0955.Arn>/algorithms/*]",
            "The catalog is one JSON document per algorithm under algorithms/; readers need "
            "every entry and nothing else in the bucket.",
        )

        self.catalog_write = iam.ManagedPolicy(
            self,
            "CatalogWrite",
            description="Write algorithm catalog entries (algorithms/*.json)",
            statements=[
                iam.PolicyStatement(
                    sid="WriteCatalogEntries",
                    actions=["s3:PutObject"],
                    resources=[catalog_bucket.arn_for_objects(f"{ALGORITHMS}*.json")],
                ),
                _key_through_s3(self, data_key, ["kms:GenerateDataKey"]),
            ],
        )
        acknowledge(
            self.catalog_write,
            "AwsSolutions-IAM5[Resource::<CatalogBucketC51B0955.Arn>/algorithms/*.json]",
            "Administrators add and replace catalog entries; each is one JSON document under "
            "algorithms/ named after the algorithm id they choose, so the names are not known "
            "in advance. Nothing else in the bucket is writable.",
        )

        self.model_metrics_write = iam.ManagedPolicy(
            self,
            "ModelMetricsWrite",
            description="Write registered models' metrics documents into their jobs' prefixes",
            statements=[
                iam.PolicyStatement(
                    sid="WriteModelMetrics",
                    actions=["s3:PutObject"],
                    resources=[artifacts_bucket.arn_for_objects(MODEL_METRICS_DOCUMENTS)],
                ),
                _key_through_s3(self, data_key, ["kms:GenerateDataKey"]),
            ],
        )
        acknowledge(
            self.model_metrics_write,
            "AwsSolutions-IAM5[Resource::<ArtifactsBucket88671897.Arn>/"
            "tenants/*/jobs/*/registry/model-metrics.json]",
            "The job-events handler registers models of every tenant's jobs and writes each "
            "version's metrics document next to its job's artifacts, as "
            "tenants/<tenant>/jobs/<job id>/registry/model-metrics.json; the wildcards are the "
            "tenant and job ids, known only at run time. PutObject only, nothing is read or "
            "deleted.",
        )

        self.endpoints = iam.ManagedPolicy(
            self,
            "Endpoints",
            description="SageMaker endpoints: read model artifacts, write data capture",
            statements=[
                iam.PolicyStatement(
                    sid="ReadModelArtifacts",
                    actions=["s3:GetObject"],
                    resources=[artifacts_bucket.arn_for_objects(MODEL_ARTIFACTS)],
                ),
                iam.PolicyStatement(
                    sid="WriteDataCapture",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[data_bucket.arn_for_objects(CAPTURE_OBJECTS)],
                ),
                _key_through_s3(self, data_key, ["kms:Decrypt", "kms:GenerateDataKey"]),
            ],
        )
        acknowledge(
            self.endpoints,
            f"AwsSolutions-IAM5[Resource::<ArtifactsBucket88671897.Arn>/{MODEL_ARTIFACTS}]",
            "One execution role serves every tenant's models, created at run time: it reads "
            "only model artifacts (tenants/<tenant>/jobs/<job>/output/), and the deploy handler "
            "names each model's artifact from the tenant's own approved version.",
        )
        acknowledge(
            self.endpoints,
            f"AwsSolutions-IAM5[Resource::<TenantDataBucket7376A0FC.Arn>/{CAPTURE_OBJECTS}]",
            "Data capture of every tenant's endpoints, only under "
            "tenants/<tenant>/monitoring/<endpoint>/capture/: the deploy handler sets each "
            "endpoint's capture destination from its own tenant and endpoint name. Write only.",
        )

        self.monitoring = iam.ManagedPolicy(
            self,
            "Monitoring",
            description="Model Monitor: read datasets and captured data, write under monitoring/",
            statements=[
                _list_prefix("ListTenantData", data_bucket, TENANTS),
                iam.PolicyStatement(
                    sid="ReadDatasetsAndCapture",
                    actions=["s3:GetObject"],
                    resources=[
                        data_bucket.arn_for_objects(DATASET_OBJECTS),
                        data_bucket.arn_for_objects(MONITORING_OBJECTS),
                    ],
                ),
                iam.PolicyStatement(
                    sid="WriteBaselinesAndReports",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[data_bucket.arn_for_objects(MONITORING_OBJECTS)],
                ),
                _key_through_s3(self, data_key, ["kms:Decrypt", "kms:GenerateDataKey"]),
            ],
        )
        for objects, what in (
            (DATASET_OBJECTS, "reads the training dataset of the deployed model version"),
            (MONITORING_OBJECTS, "reads captured data and writes baselines and reports"),
        ):
            acknowledge(
                self.monitoring,
                f"AwsSolutions-IAM5[Resource::<TenantDataBucket7376A0FC.Arn>/{objects}]",
                f"One role serves every tenant's baseline and monitoring jobs: it {what}; the "
                "deploy handler builds each job's input and output paths from the deployment's "
                "own tenant (tenants/<tenant>/...), and network isolation keeps the container "
                "from calling AWS itself.",
            )

        self.retraining_manifests = iam.ManagedPolicy(
            self,
            "RetrainingManifests",
            description="Retraining runs: list tenants' data, write and check each run's manifest",
            statements=[
                _list_prefix("ListTenantData", data_bucket, TENANTS),
                iam.PolicyStatement(
                    sid="WriteAndCheckRetrainingManifests",
                    actions=["s3:PutObject", "s3:GetObject"],
                    resources=[data_bucket.arn_for_objects(RETRAINING_MANIFESTS)],
                ),
                _key_through_s3(self, data_key, ["kms:Decrypt", "kms:GenerateDataKey"]),
            ],
        )
        acknowledge(
            self.retraining_manifests,
            f"AwsSolutions-IAM5[Resource::<TenantDataBucket7376A0FC.Arn>/{RETRAINING_MANIFESTS}]",
            "The launch handler plans every tenant's scheduled retraining runs and writes each "
            "run's manifest as tenants/<tenant>/retraining/<policy>/<slot>/manifest.json, the "
            "tenant taken from the policy record the trigger's token matched; the wildcards are "
            "tenant, policy and slot, known only at run time. It writes manifests and reads "
            "them back (before a launch it checks that every entry is the tenant's own data), "
            "reads no other object and deletes none (listing is limited to the tenants/ "
            "prefix).",
        )
