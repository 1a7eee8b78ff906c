"""The Portal stack: sign-in, the load balancer and its WAF, the fleet and what its role may do."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Synthesized
from training_platform.constructs import portal_fleet
from training_platform.constructs.handler import MissingBuildError
from training_platform.constructs.portal_fleet import portal_bundle

SETTINGS_PY = ROOT / "portal" / "portal_app" / "settings.py"


def of_type(synthesized: Synthesized, type_: str) -> dict[str, dict[str, Any]]:
    resources = synthesized.raw("Portal")["Resources"]
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def one(synthesized: Synthesized, type_: str, prefix: str = "") -> dict[str, Any]:
    matches = [v for k, v in of_type(synthesized, type_).items() if k.startswith(prefix)]
    assert len(matches) == 1, f"{type_} {prefix}: {len(matches)} found"
    return matches[0]["Properties"]  # type: ignore[no-any-return]


def flat(value: Any) -> str:
    """A value with Fn::Join flattened and other intrinsics as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(flat(part) for part in parts)
    return json.dumps(value, sort_keys=True)


def user_data(synthesized: Synthesized) -> str:
    data = one(synthesized, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    return flat(data["UserData"]["Fn::Base64"])


def instance_role_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    [role_id] = [k for k in of_type(synthesized, "AWS::IAM::Role") if k.startswith("FleetInstance")]
    statements = []
    for policy in [
        *of_type(synthesized, "AWS::IAM::ManagedPolicy").values(),
        *of_type(synthesized, "AWS::IAM::Policy").values(),
    ]:
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- sign-in -------------------------------------------------------------------------------------


def test_stateful_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming the user pool replaces it, and every user with it: change it on purpose."""
    assert list(of_type(full, "AWS::Cognito::UserPool")) == ["SignInUserPoolA2C003D1"]
    assert list(of_type(full, "AWS::S3::Bucket")) == ["LoadBalancerLogsC31A6119"]


def test_user_pool_tenant_id_is_immutable_mfa_required_no_self_sign_up(full: Synthesized) -> None:
    pool = one(full, "AWS::Cognito::UserPool")
    [tenant] = [a for a in pool["Schema"] if a["Name"] == "tenant_id"]
    assert tenant["Mutable"] is False
    assert tenant["AttributeDataType"] == "String"
    assert pool["MfaConfiguration"] == "ON"
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    password = pool["Policies"]["PasswordPolicy"]
    assert password["MinimumLength"] >= 14
    assert all(
        password[k]
        for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    )
    assert pool["AccountRecoverySetting"] == {
        "RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]
    }
    assert pool["DeletionProtection"] == "ACTIVE"  # production (retain) fixture


def test_threat_protection_follows_configuration(full: Synthesized, example: Synthesized) -> None:
    enforced = one(full, "AWS::Cognito::UserPool")
    assert enforced["UserPoolTier"] == "PLUS"
    assert enforced["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
    assert one(example, "AWS::Cognito::UserPool")["UserPoolTier"] == "ESSENTIALS"


def test_admin_group_has_the_name_the_portal_expects(full: Synthesized) -> None:
    source = SETTINGS_PY.read_text()
    assert 'admin_group: str = "admins"' in source
    assert one(full, "AWS::Cognito::UserPoolGroup")["GroupName"] == "admins"


def test_alb_client_uses_the_code_grant_with_a_secret_and_one_callback(full: Synthesized) -> None:
    client = one(full, "AWS::Cognito::UserPoolClient")
    assert client["GenerateSecret"] is True
    assert client["AllowedOAuthFlows"] == ["code"]
    assert sorted(client["AllowedOAuthScopes"]) == ["email", "openid", "profile"]
    assert client["CallbackURLs"] == ["https://portal.example.com/oauth2/idpresponse"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert one(full, "AWS::Cognito::UserPoolDomain")["Domain"] == "test-training-portal"


# --- load balancer -------------------------------------------------------------------------------


def test_https_listener_authenticates_with_cognito_then_forwards(full: Synthesized) -> None:
    listeners = of_type(full, "AWS::ElasticLoadBalancingV2::Listener").values()
    [https] = [
        listener["Properties"] for listener in listeners if listener["Properties"]["Port"] == 443
    ]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    assert https["Certificates"] == [
        {
            "CertificateArn": "arn:aws:acm:eu-west-1:111111111111:certificate/"
            "00000000-0000-4000-8000-000000000003"
        }
    ]
    authenticate, forward = sorted(https["DefaultActions"], key=lambda a: a["Order"])
    assert authenticate["Type"] == "authenticate-cognito"
    config = authenticate["AuthenticateCognitoConfig"]
    assert config["UserPoolArn"] == {"Fn::GetAtt": ["SignInUserPoolA2C003D1", "Arn"]}
    assert config["OnUnauthenticatedRequest"] == "authenticate"
    assert forward["Type"] == "forward"
    assert forward["TargetGroupArn"] == {"Ref": "TargetGroup3D7CD9B8"}


def test_http_only_redirects_to_https(full: Synthesized) -> None:
    listeners = of_type(full, "AWS::ElasticLoadBalancingV2::Listener").values()
    [http] = [
        listener["Properties"] for listener in listeners if listener["Properties"]["Port"] == 80
    ]
    assert http["Protocol"] == "HTTP"
    assert http["DefaultActions"] == [
        {
            "Type": "redirect",
            "RedirectConfig": {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"},
        }
    ]


def test_example_requests_a_dns_validated_certificate(example: Synthesized) -> None:
    certificate = one(example, "AWS::CertificateManager::Certificate")
    assert certificate["DomainName"] == "portal.example.com"
    assert certificate["ValidationMethod"] == "DNS"
    https = [
        listener["Properties"]
        for listener in of_type(example, "AWS::ElasticLoadBalancingV2::Listener").values()
        if listener["Properties"]["Port"] == 443
    ]
    assert https[0]["Certificates"][0]["CertificateArn"]["Ref"].startswith("Certificate")
    assert "arn:aws:acm" not in json.dumps(example.raw("Portal")), "no placeholder ARNs"


def test_load_balancer_drops_invalid_headers_and_logs_access(full: Synthesized) -> None:
    alb = one(full, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Scheme"] == "internet-facing"
    attributes = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": "LoadBalancerLogsC31A6119"}
    assert attributes["deletion_protection.enabled"] == "true"
    assert len(alb["Subnets"]) == 3
    assert all("PublicSubnet" in flat(subnet) for subnet in alb["Subnets"])


def test_access_log_bucket_is_sse_s3_private_ssl_only_and_expires(full: Synthesized) -> None:
    bucket = one(full, "AWS::S3::Bucket")
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    [expiry] = bucket["LifecycleConfiguration"]["Rules"]
    assert expiry["ExpirationInDays"] == 365
    policy = one(full, "AWS::S3::BucketPolicy")["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy)
    [delivery] = [s for s in policy if s.get("Sid") == "LoadBalancerAccessLogDelivery"]
    # eu-west-1's Elastic Load Balancing account.
    assert flat(delivery["Principal"]["AWS"]).endswith(":iam::156460612806:root")
    assert flat(delivery["Resource"]).endswith("/alb/AWSLogs/111111111111/*")


def test_security_groups_admit_the_internet_to_the_alb_and_only_the_alb_to_the_fleet(
    full: Synthesized,
) -> None:
    groups = of_type(full, "AWS::EC2::SecurityGroup")
    alb = groups["LoadBalancerSecurityGroup3036A0FC"]["Properties"]
    assert sorted(r["FromPort"] for r in alb["SecurityGroupIngress"]) == [80, 443]
    assert all(r["CidrIp"] == "0.0.0.0/0" for r in alb["SecurityGroupIngress"])
    [fleet_ingress] = [
        p["Properties"] for p in of_type(full, "AWS::EC2::SecurityGroupIngress").values()
    ]
    assert fleet_ingress["FromPort"] == fleet_ingress["ToPort"] == 8080
    assert fleet_ingress["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["LoadBalancerSecurityGroup3036A0FC", "GroupId"]
    }
    fleet = groups["FleetSecurityGroup97A0FCFD"]["Properties"]
    assert "SecurityGroupIngress" not in fleet
    assert [(r["IpProtocol"], r["FromPort"]) for r in fleet["SecurityGroupEgress"]] == [
        ("tcp", 443)
    ]


def test_target_group_checks_health_on_the_portal_port(full: Synthesized) -> None:
    group = one(full, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["Port"] == 8080
    assert group["HealthCheckPath"] == "/health"
    assert group["Matcher"] == {"HttpCode": "200"}


# --- WAF -----------------------------------------------------------------------------------------


def test_web_acl_has_managed_rules_and_the_rate_limit(full: Synthesized) -> None:
    acl = one(full, "AWS::WAFv2::WebACL", "WafWebAcl")
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    managed = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for r in acl["Rules"]
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert managed == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    [rate] = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == 2000
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert len({r["Priority"] for r in acl["Rules"]}) == len(acl["Rules"])


def test_web_acl_protects_the_load_balancer_and_logs(full: Synthesized) -> None:
    association = one(full, "AWS::WAFv2::WebACLAssociation", "WafLoadBalancerAssociation")
    assert association["ResourceArn"] == {"Ref": "LoadBalancerBE9EEC3A"}
    assert association["WebACLArn"] == {"Fn::GetAtt": ["WafWebAclBE24253C", "Arn"]}
    logging = one(full, "AWS::WAFv2::LoggingConfiguration", "WafLogging")
    assert logging["ResourceArn"] == {"Fn::GetAtt": ["WafWebAclBE24253C", "Arn"]}
    assert flat(logging["LogDestinationConfigs"][0]) == (
        'arn:aws:logs:eu-west-1:111111111111:log-group:{"Ref": "WafLogs5C6BB543"}'
    )
    assert {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]} == {
        "cookie",
        "authorization",
    }
    group = one(full, "AWS::Logs::LogGroup", "WafLogs")
    assert group["LogGroupName"] == "aws-waf-logs-TrainingPlatform-test-Portal"
    assert group["RetentionInDays"] == 365
    assert "KmsKeyId" in group


# --- fleet ---------------------------------------------------------------------------------------


def test_launch_template_requires_imdsv2_encrypts_and_uses_graviton(full: Synthesized) -> None:
    data = one(full, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 1,
        "HttpTokens": "required",
    }
    assert all(d["Ebs"]["Encrypted"] is True for d in data["BlockDeviceMappings"])
    assert data["InstanceType"] == "t4g.medium"
    assert "al2023" in data["ImageId"]["Ref"] and "arm64" in data["ImageId"]["Ref"]
    assert data["Monitoring"] == {"Enabled": True}
    assert "NetworkInterfaces" not in data, "no public IP association"


def test_group_spans_the_private_subnets_with_elb_health_checks(full: Synthesized) -> None:
    [resource] = of_type(full, "AWS::AutoScaling::AutoScalingGroup").values()
    group = resource["Properties"]
    assert group["HealthCheckType"] == "ELB"
    assert group["HealthCheckGracePeriod"] == 300
    assert (group["MinSize"], group["MaxSize"]) == ("3", "6")
    assert len(group["VPCZoneIdentifier"]) == 3
    assert all("PrivateSubnet" in flat(s) for s in group["VPCZoneIdentifier"])
    assert group["TargetGroupARNs"] == [{"Ref": "TargetGroup3D7CD9B8"}]
    rolling = resource["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["MaxBatchSize"] == 1
    assert resource["CreationPolicy"]["ResourceSignal"]["Count"] == 3
    # A new launch template version (image, user data, bundle) is what triggers the rolling update.
    assert group["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": ["FleetLaunchTemplate3FC2FEAE", "LatestVersionNumber"]
    }


def test_scaling_tracks_average_cpu(full: Synthesized) -> None:
    policy = one(full, "AWS::AutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingConfiguration"]
    assert config["TargetValue"] == 60
    assert config["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ASGAverageCPUUtilization"
    }


def test_example_fleet_uses_its_own_capacity(example: Synthesized) -> None:
    group = one(example, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["MinSize"], group["MaxSize"]) == ("2", "4")
    assert len(group["VPCZoneIdentifier"]) == 2


def required_portal_settings() -> set[str]:
    """The environment variables portal_app/settings.py cannot start without (fields without a
    default), read from its source so that a new required setting fails this test."""
    tree = ast.parse(SETTINGS_PY.read_text())
    [settings] = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == "PortalSettings"
    ]
    required = set()
    for node in settings.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = node.value
            no_default = value is None or (
                isinstance(value, ast.Call)
                and getattr(value.func, "id", "") == "Field"
                and not any(k.arg in ("default", "default_factory") for k in value.keywords)
            )
            if no_default:
                required.add(node.target.id.upper())
    return required


def environment_file(synthesized: Synthesized) -> dict[str, str]:
    script = user_data(synthesized)
    body = script.split("<<'PORTAL_ENV'\n", 1)[1].split("PORTAL_ENV\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines())


def test_user_data_sets_every_variable_the_portal_requires(full: Synthesized) -> None:
    required = required_portal_settings()
    assert len(required) >= 12 and "ALB_ARN" in required  # the parser found the fields
    environment = environment_file(full)
    assert required <= set(environment)
    assert environment["ALB_ARN"] == json.dumps({"Ref": "LoadBalancerBE9EEC3A"}, sort_keys=True)
    assert environment["USER_POOL_ID"] == json.dumps({"Ref": "SignInUserPoolA2C003D1"})
    assert environment["AWS_REGION"] == json.dumps({"Ref": "AWS::Region"})
    assert environment["PORT"] == "8080"
    assert environment["ADMIN_GROUP"] == "admins"
    assert "TrainingRequests" in environment["TRAINING_REQUESTS_QUEUE_URL"]
    # The tuning job page reads the trials, the models page the versions (training's tables).
    assert "Trials31C8D880" in environment["TRIALS_TABLE"]
    assert "ModelsC55D3500" in environment["MODELS_TABLE"]


def test_user_data_installs_offline_and_runs_a_restarting_service(full: Synthesized) -> None:
    script = user_data(full)
    assert "dnf install -y python3.11 python3.11-pip aws-cfn-bootstrap" in script
    assert "aws s3 cp 's3://cdk-hnb659fds-assets-111111111111-eu-west-1/" in script
    assert "pip install --no-index --find-links /opt/portal/app/wheels" in script
    assert "Restart=always" in script
    assert "User=portal" in script
    assert "ExecStart=/opt/portal/venv/bin/python3.11 -m portal_app" in script
    assert "systemctl enable --now portal.service" in script
    assert "curl -fsS http://127.0.0.1:8080/health" in script
    assert "cfn-signal --stack TrainingPlatform-test-Portal --resource FleetGroupASG" in script


# --- what the instance role may do ---------------------------------------------------------------


def test_instance_role_carries_the_tag_the_tenant_role_trusts(full: Synthesized) -> None:
    [role] = [
        r["Properties"]
        for k, r in of_type(full, "AWS::IAM::Role").items()
        if k.startswith("FleetInstanceRole")
    ]
    assert {"Key": "training-platform-component", "Value": "portal"} in role["Tags"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    assert any("AmazonSSMManagedInstanceCore" in flat(arn) for arn in role["ManagedPolicyArns"])


def test_instance_role_does_exactly_what_portal_app_does(full: Synthesized) -> None:
    by_sid = {s.get("Sid"): s for s in instance_role_statements(full)}
    assert by_sid["AssumeTenantRole"]["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert "TenantAccessRole" in flat(by_sid["AssumeTenantRole"]["Resource"])
    assert sorted(by_sid["AdministerTenants"]["Action"]) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Scan",
    ]
    assert "TenantsA9C48FD3Arn" in flat(by_sid["AdministerTenants"]["Resource"])
    assert sorted(by_sid["AdministerUsers"]["Action"]) == [
        "cognito-idp:AdminCreateUser",
        "cognito-idp:AdminListGroupsForUser",
        "cognito-idp:ListUsers",
    ]
    assert by_sid["AdministerUsers"]["Resource"] == {
        "Fn::GetAtt": ["SignInUserPoolA2C003D1", "Arn"]
    }
    assert by_sid["SubscribeTenantsToNotifications"]["Action"] == "sns:Subscribe"
    via = by_sid["TrainingKeyThroughDynamoDbOnly"]["Condition"]["StringEquals"]["kms:ViaService"]
    assert flat(via).startswith("dynamodb.")


def test_instance_role_cannot_reach_tenant_data(full: Synthesized) -> None:
    """No S3 on tenants/*, no access to the jobs, notifications, trials or models table, no
    SageMaker: the instance role's own statements only; catalog access comes from the
    DataLake's catalog policies."""
    for statement in instance_role_statements(full):
        resources = " ".join(flat(r) for r in as_list(statement.get("Resource", [])))
        assert "tenants/" not in resources
        # The Training stack's tenant tables (test_training pins these ids), and no SageMaker.
        for table in ("JobsDF1CC2D4", "Notifications87298708", "Trials31C8D880", "ModelsC55D3500"):
            assert table not in resources
        assert "sagemaker:" not in json.dumps(statement["Action"])
        assert "*" not in " ".join(as_list(statement["Action"]))
        assert statement["Effect"] == "Allow"
    [role] = [
        r["Properties"]
        for k, r in of_type(full, "AWS::IAM::Role").items()
        if k.startswith("FleetInstanceRole")
    ]
    attached = " ".join(flat(a) for a in role["ManagedPolicyArns"])
    assert "CatalogRead" in attached and "CatalogWrite" in attached
    assert "TrainingJobs" not in attached


def test_catalog_write_policy_is_limited_to_catalog_entries(full: Synthesized) -> None:
    resources = full.raw("DataLake")["Resources"]
    [policy] = [v["Properties"] for k, v in resources.items() if k.startswith("AccessCatalogWrite")]
    write, key = policy["PolicyDocument"]["Statement"]
    assert write["Action"] == "s3:PutObject"
    assert flat(write["Resource"]).endswith("/algorithms/*.json")
    assert key["Action"] == "kms:GenerateDataKey"
    assert flat(key["Condition"]["StringEquals"]["kms:ViaService"]).startswith("s3.")


def test_tenant_sessions_may_queue_requests_and_nothing_more(full: Synthesized) -> None:
    """portal_app sends the training request with the tenant's session (services/jobs.py)."""
    [policy] = [
        v["Properties"]
        for k, v in of_type(full, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("TenantRequestsPolicy")
    ]
    assert "TenantAccessRole" in flat(policy["Roles"][0])
    send, deploy, retrain, key = policy["PolicyDocument"]["Statement"]
    assert send["Action"] == deploy["Action"] == retrain["Action"] == "sqs:SendMessage"
    assert "TrainingRequests" in flat(send["Resource"]) and "DeadLetters" not in flat(
        send["Resource"]
    )
    assert "DeploymentRequests" in flat(deploy["Resource"])
    assert "DeadLetters" not in flat(deploy["Resource"])
    # Retraining policies: apply or delete a schedule (services/retraining.py).
    assert "RetrainingRequests" in flat(retrain["Resource"])
    assert "DeadLetters" not in flat(retrain["Resource"])
    assert flat(key["Condition"]["StringEquals"]["kms:ViaService"]).startswith("sqs.")


# --- the bundle ----------------------------------------------------------------------------------


def test_missing_bundle_names_make_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_cdk import App, Stack

    monkeypatch.setattr(portal_fleet, "BUNDLE_ZIP", tmp_path / "portal-bundle.zip")
    with pytest.raises(MissingBuildError, match=r"missing or unreadable.*run `make build`"):
        portal_bundle(Stack(App(), "Probe"), "Bundle")
    with zipfile.ZipFile(tmp_path / "portal-bundle.zip", "w") as zf:
        zf.writestr("portal_app/__main__.py", "")
    with pytest.raises(MissingBuildError, match=r"missing: training_common/__init__\.py"):
        portal_bundle(Stack(App(), "Probe"), "Bundle")


def test_bundle_holds_the_app_and_wheels_but_not_the_local_runner() -> None:
    with zipfile.ZipFile(portal_fleet.BUNDLE_ZIP) as zf:
        names = zf.namelist()
    assert {name.split("/", 1)[0] for name in names} == {
        "portal_app",
        "training_common",
        "requirements.txt",
        "wheels",
    }
    wheels = {name for name in names if name.startswith("wheels/") and name.endswith(".whl")}
    for arch in ("aarch64", "x86_64"):
        assert any(w.startswith("wheels/cryptography-") and arch in w for w in wheels)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_every_asset_of_the_build_is_one_zip_file(full: Synthesized) -> None:
    """The layer and the bundle are staged as one file each, not as directories to walk."""
    sources = [
        entry["source"]
        for assets_file in full.outdir.glob("*.assets.json")
        for entry in json.loads(assets_file.read_text())["files"].values()
    ]
    zips = [source for source in sources if source["path"].endswith(".zip")]
    assert len(zips) >= 2  # the dependencies layer and the portal bundle
    assert {source["packaging"] for source in zips} == {"file"}


# --- ALB key relay -------------------------------------------------------------------------------


def test_alb_keys_come_through_a_relay_outside_the_vpc(full: Synthesized) -> None:
    """full.toml has no NAT gateway: the fleet reaches the ALB's public keys only via the relay."""
    functions = {
        k: v["Properties"]
        for k, v in of_type(full, "AWS::Lambda::Function").items()
        if k.startswith("AlbKeyRelay")
    }
    [(relay_id, relay)] = functions.items()
    assert relay["Handler"] == "alb_keys.app.handler"
    assert "VpcConfig" not in relay
    assert relay["ReservedConcurrentExecutions"] == 2
    assert f"\nALB_KEY_RELAY_FUNCTION={flat({'Ref': relay_id})}\n" in user_data(full)
    invokes = [s for s in instance_role_statements(full) if "lambda:" in flat(s["Action"])]
    assert invokes == [
        {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [relay_id, "Arn"]},
            "Sid": "FetchAlbKeysThroughTheRelay",
        }
    ]
