"""Security-critical properties of the DataLake stack, and the logical IDs of its stateful parts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Synthesized

# full.toml's [data_lake] section; the example environment uses the defaults.
FULL = {"backup": 90, "noncurrent": 60, "tiering": 30, "efs_ia": "AFTER_60_DAYS"}
DEFAULTS = {"backup": 35, "noncurrent": 90, "tiering": 0, "efs_ia": "AFTER_30_DAYS"}

BUCKETS = {
    "AccessLogsBucketCD784A59": "AccessLogsKeyE5B288A2",
    "ArtifactsBucket88671897": "DataKey17AFBB84",
    "CatalogBucketC51B0955": "DataKey17AFBB84",
    "TenantDataBucket7376A0FC": "DataKey17AFBB84",
}
KEYS = ["AccessLogsKeyE5B288A2", "BackupKey60B97760", "DataKey17AFBB84"]
FILE_SYSTEM = "SharedFileSystemB0CF935E"
VAULT = "BackupVault3A9C5852"


def resources(synthesized: Synthesized, type_: str) -> dict[str, dict[str, Any]]:
    template = synthesized.raw("DataLake")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def properties(synthesized: Synthesized, logical_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = synthesized.raw("DataLake")["Resources"][logical_id]
    return resource["Properties"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def getatt(logical_id: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attribute]}


# --- Logical IDs ---------------------------------------------------------------------------------


def test_stateful_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming one of these replaces a key, a bucket, the file system or the vault (and loses
    or orphans its data): change them only on purpose."""
    assert sorted(resources(full, "AWS::KMS::Key")) == KEYS
    assert sorted(resources(full, "AWS::S3::Bucket")) == sorted(BUCKETS)
    assert list(resources(full, "AWS::EFS::FileSystem")) == [FILE_SYSTEM]
    assert list(resources(full, "AWS::Backup::BackupVault")) == [VAULT]


def test_example_has_the_same_stateful_logical_ids(example: Synthesized) -> None:
    assert sorted(resources(example, "AWS::KMS::Key")) == KEYS
    assert sorted(resources(example, "AWS::S3::Bucket")) == sorted(BUCKETS)
    assert list(resources(example, "AWS::EFS::FileSystem")) == [FILE_SYSTEM]
    assert list(resources(example, "AWS::Backup::BackupVault")) == [VAULT]


# --- Keys ----------------------------------------------------------------------------------------


def test_keys_rotate_yearly(full: Synthesized) -> None:
    for key in resources(full, "AWS::KMS::Key").values():
        assert key["Properties"]["EnableKeyRotation"] is True
        assert key["Properties"]["RotationPeriodInDays"] == 365
        assert key["Properties"]["PendingWindowInDays"] == 30


def test_key_policies_grant_only_the_account_and_the_log_delivery(full: Synthesized) -> None:
    """The only kms:* is CDK's default statement for the account (use needs an IAM grant too);
    the only service principal is S3's log delivery, on the access log key alone."""
    root = "arn:aws:iam::111111111111:root"
    for logical_id, key in resources(full, "AWS::KMS::Key").items():
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        assert statements[0] == {
            "Action": "kms:*",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Resource": "*",
        }
        others = statements[1:]
        if logical_id == "AccessLogsKeyE5B288A2":
            assert len(others) == 1
            assert others[0]["Principal"] == {"Service": "logging.s3.amazonaws.com"}
            assert "kms:*" not in as_list(others[0]["Action"])
        else:
            assert others == [], logical_id


# --- Buckets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_baseline(full: Synthesized, bucket: str) -> None:
    props = properties(full, bucket)
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {
            "BucketKeyEnabled": True,
            "ServerSideEncryptionByDefault": {
                "KMSMasterKeyID": getatt(BUCKETS[bucket]),
                "SSEAlgorithm": "aws:kms",
            },
        }
    ]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "AccessControl" not in props


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_lifecycle(full: Synthesized, bucket: str) -> None:
    rules = {r["Id"]: r for r in properties(full, bucket)["LifecycleConfiguration"]["Rules"]}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": FULL["noncurrent"]
    }
    assert rules["IntelligentTiering"]["Transitions"] == [
        {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": FULL["tiering"]}
    ]
    if bucket == "AccessLogsBucketCD784A59":
        assert rules["ExpireCurrentObjects"]["ExpirationInDays"] == 365  # log_retention_days
    else:
        assert "ExpireCurrentObjects" not in rules


def test_example_lifecycle_uses_defaults(example: Synthesized) -> None:
    rules = {
        r["Id"]: r
        for r in properties(example, "TenantDataBucket7376A0FC")["LifecycleConfiguration"]["Rules"]
    }
    assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": DEFAULTS["noncurrent"]
    }
    assert rules["IntelligentTiering"]["Transitions"][0]["TransitionInDays"] == 0


@pytest.mark.parametrize("bucket", ["TenantData", "Catalog", "Artifacts"])
def test_server_access_logs_go_to_the_log_bucket(full: Synthesized, bucket: str) -> None:
    logical_id = next(k for k in BUCKETS if k.startswith(f"{bucket}Bucket"))
    assert properties(full, logical_id)["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": "AccessLogsBucketCD784A59"},
        "LogFilePrefix": f"{bucket}/",
    }


def test_log_bucket_admits_log_delivery_from_its_own_buckets_only(full: Synthesized) -> None:
    policy = next(
        p["Properties"]["PolicyDocument"]
        for p in resources(full, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "AccessLogsBucketCD784A59"}
    )
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    [trail] = [s for s in allows if s.get("Sid") == "S3ServerAccessLogsOfTheAuditTrailBucket"]
    allows.remove(trail)
    # The audit trail's bucket (Observability stack) may deliver under Trail/ only.
    assert trail["Condition"] == {"StringEquals": {"aws:SourceAccount": "111111111111"}}
    assert trail["Resource"] == {"Fn::Join": ["", [getatt("AccessLogsBucketCD784A59"), "/Trail/*"]]}
    assert len(allows) == 3
    for statement in allows:
        assert statement["Principal"] == {"Service": "logging.s3.amazonaws.com"}
        assert statement["Action"] == "s3:PutObject"
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "111111111111"}
        assert statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::GetAtt"][0] in BUCKETS


def bucket_policy(synthesized: Synthesized, bucket: str) -> list[dict[str, Any]]:
    for policy in resources(synthesized, "AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket}:
            statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
            return statements
    raise AssertionError(f"{bucket} has no bucket policy")


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_buckets_refuse_plain_http_old_tls_and_other_keys(full: Synthesized, bucket: str) -> None:
    statements = bucket_policy(full, bucket)
    everything = [getatt(bucket), {"Fn::Join": ["", [getatt(bucket), "/*"]]}]
    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": everything,
    } in statements
    assert {
        "Action": "s3:*",
        "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": everything,
    } in statements
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["DenyOtherEncryption"]["Condition"]["StringNotEquals"] == {
        "s3:x-amz-server-side-encryption": "aws:kms"
    }
    assert by_sid["DenyOtherKmsKeys"]["Condition"]["StringNotEquals"] == {
        "s3:x-amz-server-side-encryption-aws-kms-key-id": getatt(BUCKETS[bucket])
    }


def test_no_bucket_policy_allows_anyone_but_log_delivery(full: Synthesized) -> None:
    """Tenant data is reached through IAM (the tenant role), never through a bucket policy."""
    for policy in resources(full, "AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] == {"Service": "logging.s3.amazonaws.com"}


def test_cors_only_on_the_data_bucket_for_configured_origins(full: Synthesized) -> None:
    for logical_id in BUCKETS:
        cors = properties(full, logical_id).get("CorsConfiguration")
        if logical_id == "TenantDataBucket7376A0FC":
            assert cors == {
                "CorsRules": [
                    {
                        "AllowedHeaders": ["content-type"],
                        "AllowedMethods": ["POST"],
                        "AllowedOrigins": ["https://portal.example.com"],
                        "ExposedHeaders": ["ETag", "Location"],
                        "MaxAge": 3000,
                    }
                ]
            }
        else:
            assert cors is None, logical_id


def test_no_cors_without_configured_origins(example: Synthesized) -> None:
    for logical_id in BUCKETS:
        assert "CorsConfiguration" not in properties(example, logical_id)


# --- Removal policy ------------------------------------------------------------------------------

STATEFUL_TYPES = (
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::EFS::FileSystem",
    "AWS::Backup::BackupVault",
)


def test_production_retains_stateful_resources(full: Synthesized) -> None:
    for type_ in STATEFUL_TYPES:
        for logical_id, resource in resources(full, type_).items():
            assert resource["DeletionPolicy"] == "Retain", logical_id
            assert resource["UpdateReplacePolicy"] == "Retain", logical_id
    assert resources(full, "Custom::S3AutoDeleteObjects") == {}


def test_destroy_policy_deletes_with_the_stack(example: Synthesized) -> None:
    for type_ in STATEFUL_TYPES:
        for logical_id, resource in resources(example, type_).items():
            assert resource["DeletionPolicy"] == "Delete", logical_id
    emptied = {
        r["Properties"]["BucketName"]["Ref"]
        for r in resources(example, "Custom::S3AutoDeleteObjects").values()
    }
    assert emptied == set(BUCKETS)


def test_recovery_points_cannot_be_deleted_early_when_retained(full: Synthesized) -> None:
    policy = properties(full, VAULT)["AccessPolicy"]["Statement"]
    assert policy == [
        {
            "Action": ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle"],
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": "*",
        }
    ]


# --- EFS -----------------------------------------------------------------------------------------


def test_file_system_encrypted_with_the_data_key(full: Synthesized) -> None:
    props = properties(full, FILE_SYSTEM)
    assert props["Encrypted"] is True
    assert props["KmsKeyId"] == getatt("DataKey17AFBB84")
    assert "BackupPolicy" not in props  # AWS Backup's plan below covers it


def test_file_system_lifecycle(full: Synthesized, example: Synthesized) -> None:
    for synthesized, expected in ((full, FULL), (example, DEFAULTS)):
        assert properties(synthesized, FILE_SYSTEM)["LifecyclePolicies"] == [
            {"TransitionToIA": expected["efs_ia"]},
            {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
        ]


def test_mount_targets_in_each_private_subnet(full: Synthesized) -> None:
    targets = resources(full, "AWS::EFS::MountTarget").values()
    subnets = sorted(
        t["Properties"]["SubnetId"]["Fn::GetStackOutput"]["OutputName"] for t in targets
    )
    assert len(subnets) == 3
    assert all("VpcPrivateSubnet" in s for s in subnets)
    for target in targets:
        assert target["Properties"]["SecurityGroups"] == [
            getatt("SharedFileSystemSecurityGroup71096D28", "GroupId")
        ]


def test_nfs_only_from_admin_and_training_groups(full: Synthesized) -> None:
    group = properties(full, "SharedFileSystemSecurityGroup71096D28")
    assert "SecurityGroupIngress" not in group
    assert group["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"  # no egress
    rules = resources(full, "AWS::EC2::SecurityGroupIngress").values()
    sources = sorted(
        r["Properties"]["SourceSecurityGroupId"]["Fn::GetStackOutput"]["OutputName"] for r in rules
    )
    assert len(sources) == 2
    assert "AdminSecurityGroup" in sources[0] and "TrainingSecurityGroup" in sources[1]
    for rule in rules:
        props = rule["Properties"]
        assert (props["IpProtocol"], props["FromPort"], props["ToPort"]) == ("tcp", 2049, 2049)
        assert props["GroupId"] == getatt("SharedFileSystemSecurityGroup71096D28", "GroupId")


def test_file_system_policy_requires_tls_iam_and_an_access_point(full: Synthesized) -> None:
    statements = {
        s["Sid"]: s for s in properties(full, FILE_SYSTEM)["FileSystemPolicy"]["Statement"]
    }
    assert statements["DenyWithoutTls"] == {
        "Action": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Sid": "DenyWithoutTls",
    }
    assert statements["DenyWithoutAccessPoint"]["Condition"] == {
        "Null": {"elasticfilesystem:AccessPointArn": "true"}
    }
    assert statements["DenyWithoutAccessPoint"]["Effect"] == "Deny"
    # Anonymous clients match no Allow: the only one names this account's IAM principals.
    allows = [s for s in statements.values() if s["Effect"] == "Allow"]
    assert allows == [statements["AllowIamPrincipalsOfThisAccount"]]
    assert allows[0]["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
    assert "elasticfilesystem:ClientRootAccess" not in allows[0]["Action"]


def test_access_points_have_fixed_posix_users(full: Synthesized) -> None:
    points = {
        k.split("SharedFileSystem")[1].split("AccessPoint")[0]: v["Properties"]
        for k, v in resources(full, "AWS::EFS::AccessPoint").items()
    }
    assert points["Admin"]["PosixUser"] == {"Gid": "4000", "Uid": "4000"}
    assert points["Training"]["PosixUser"] == {"Gid": "4000", "Uid": "4001"}
    for point in points.values():
        assert point["RootDirectory"] == {
            "CreationInfo": {"OwnerGid": "4000", "OwnerUid": "4000", "Permissions": "750"},
            "Path": "/training-data",
        }


def test_bastion_mounts_through_the_admin_access_point_only(full: Synthesized) -> None:
    policy = properties(full, "AdminMountPolicyA0EB91C6")
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == [
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
    ]
    assert statement["Resource"] == getatt(FILE_SYSTEM)
    arn = statement["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"]
    assert {"Ref": "SharedFileSystemAdminAccessPoint1362C82B"} in arn["Fn::Join"][1]
    [role] = policy["Roles"]
    assert "BastionInstanceRole" in role["Fn::GetStackOutput"]["OutputName"]


def test_training_mount_statements_are_read_only(full: Synthesized) -> None:
    data_lake = full.platform.data_lake
    [statement] = [
        data_lake.resolve(s.to_statement_json()) for s in data_lake.training_mount_statements()
    ]
    assert statement["Action"] == "elasticfilesystem:ClientMount"
    arn = statement["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"]
    assert {"Ref": "SharedFileSystemTrainingAccessPointAB15D7DD"} in arn["Fn::Join"][1]


# --- Backups -------------------------------------------------------------------------------------


def test_backup_vault_encrypted_with_its_own_key(full: Synthesized) -> None:
    assert properties(full, VAULT)["EncryptionKeyArn"] == getatt("BackupKey60B97760")


def test_backup_plan_retention_from_configuration(full: Synthesized, example: Synthesized) -> None:
    for synthesized, expected in ((full, FULL), (example, DEFAULTS)):
        [plan] = resources(synthesized, "AWS::Backup::BackupPlan").values()
        [rule] = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
        assert rule["Lifecycle"] == {"DeleteAfterDays": expected["backup"]}
        assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
        assert rule["TargetBackupVault"] == getatt(VAULT, "BackupVaultName")


def test_backup_covers_file_system_data_and_artifacts(full: Synthesized) -> None:
    [selection] = resources(full, "AWS::Backup::BackupSelection").values()
    covered = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    assert FILE_SYSTEM in covered
    assert "TenantDataBucket7376A0FC" in covered and "ArtifactsBucket88671897" in covered
    assert "CatalogBucket" not in covered and "AccessLogsBucket" not in covered
