"""An S3 bucket with the platform's baseline: KMS, versions, TLS only, private, logged, tiered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from training_platform.constructs.nag import acknowledge

# Parts of a multipart upload that never completed are billed until removed.
ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS = 7


@dataclass(frozen=True)
class BucketLifecycle:
    """What S3 does with a bucket's objects over time."""

    noncurrent_version_expiration_days: int
    intelligent_tiering_after_days: int
    # Current objects expire after this many days (access logs); None keeps them.
    expiration_days: int | None = None


class SecureBucket(Construct):
    """A bucket encrypted with ``key`` (SSE-KMS with an S3 Bucket Key), versioned, reachable only
    over TLS 1.2+, with every form of public access blocked and ACLs disabled (bucket owner
    enforced).

    Server access logs go to ``access_logs_bucket`` under ``<id>/``; the access log bucket itself is
    created with ``access_logs_bucket=None`` (it cannot log to itself). CORS is added only when
    ``cors_post_origins`` is non-empty, for browser POSTs of presigned uploads. With
    ``RemovalPolicy.DESTROY`` the objects are deleted with the stack (CDK's auto-delete custom
    resource); with RETAIN the bucket and its objects outlive the stack.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        key: kms.IKey,
        access_logs_bucket: s3.IBucket | None,
        lifecycle: BucketLifecycle,
        removal_policy: RemovalPolicy,
        cors_post_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id)
        rules = [
            s3.LifecycleRule(
                id="AbortIncompleteMultipartUploads",
                abort_incomplete_multipart_upload_after=Duration.days(
                    ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS
                ),
            ),
            s3.LifecycleRule(
                id="ExpireNoncurrentVersions",
                noncurrent_version_expiration=Duration.days(
                    lifecycle.noncurrent_version_expiration_days
                ),
                expired_object_delete_marker=True,
            ),
            s3.LifecycleRule(
                id="IntelligentTiering",
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                        transition_after=Duration.days(lifecycle.intelligent_tiering_after_days),
                    )
                ],
            ),
        ]
        if lifecycle.expiration_days is not None:
            rules.append(
                s3.LifecycleRule(
                    id="ExpireCurrentObjects",
                    expiration=Duration.days(lifecycle.expiration_days),
                )
            )
        cors = (
            [
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST],
                    allowed_origins=list(cors_post_origins),
                    allowed_headers=["content-type"],
                    exposed_headers=["ETag", "Location"],
                    max_age=3000,
                )
            ]
            if cors_post_origins
            else None
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix=f"{id}/" if access_logs_bucket is not None else None,
            lifecycle_rules=rules,
            cors=cors,
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
        )
        # Objects are encrypted with this bucket's key only: a writer cannot pick SSE-S3 or another
        # KMS key through request headers (without headers the bucket default applies).
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyOtherEncryption",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={
                    "Null": {"s3:x-amz-server-side-encryption": "false"},
                    "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                },
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyOtherKmsKeys",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={
                    "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
                    "StringNotEquals": {
                        "s3:x-amz-server-side-encryption-aws-kms-key-id": key.key_arn
                    },
                },
            )
        )
        acknowledge(
            self.bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "The platform is single-region by design; S3 stores every object across at least "
            "three AZs, versions are kept, and AWS Backup keeps daily recovery points of the "
            "tenant data and artifact buckets in a separately keyed vault.",
        )
