"""Serving: the deploy path (Training stack), the inference API (Portal stack) and the operators'
view of endpoint alarms (Observability stack), read from the synthesized templates."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Synthesized
from tests.stacks.test_tenant_isolation import TENANT, unbound_grants


def of_type(full: Synthesized, stack: str, type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in full.raw(stack)["Resources"].items() if v["Type"] == type_}


def one(full: Synthesized, stack: str, type_: str, prefix: str) -> dict[str, Any]:
    matches = [v for k, v in of_type(full, stack, type_).items() if k.startswith(prefix)]
    assert len(matches) == 1, f"{type_} {prefix}: {len(matches)}"
    return matches[0]["Properties"]  # type: ignore[no-any-return]


def statements(full: Synthesized, stack: str, role_prefix: str) -> dict[str, dict[str, Any]]:
    [role_id] = [k for k in of_type(full, stack, "AWS::IAM::Role") if k.startswith(role_prefix)]
    found: dict[str, dict[str, Any]] = {}
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in of_type(full, stack, kind).values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                for s in policy["Properties"]["PolicyDocument"]["Statement"]:
                    found[s.get("Sid", json.dumps(s["Action"]))] = s
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Training stack: tables, queue, handler, rules ------------------------------------------------


def test_api_clients_have_the_contract_keys_and_the_client_id_index(full: Synthesized) -> None:
    clients = one(full, "Training", "AWS::DynamoDB::Table", "ServingApiClients")
    assert clients["KeySchema"] == [
        {"AttributeName": "tenant_id", "KeyType": "HASH"},
        {"AttributeName": "client_id", "KeyType": "RANGE"},
    ]
    [index] = clients["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByClientId"
    assert index["KeySchema"] == [{"AttributeName": "client_id", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    deployments = one(full, "Training", "AWS::DynamoDB::Table", "ServingDeployments")
    assert [k["AttributeName"] for k in deployments["KeySchema"]] == ["tenant_id", "deployment_id"]
    for table in (clients, deployments):
        assert table["SSESpecification"]["SSEEnabled"] is True
        assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert table["DeletionProtectionEnabled"] is True  # production fixture


def test_deploy_handler_reads_its_queue_with_the_environment_the_code_reads(
    full: Synthesized,
) -> None:
    function = one(full, "Training", "AWS::Lambda::Function", "ServingDeployHandler")
    assert function["Handler"] == "deploy.app.handler"
    variables = function["Environment"]["Variables"]
    for name in (
        "DEPLOYMENTS_TABLE",
        "MODELS_TABLE",
        "TENANTS_TABLE",
        "DEAD_LETTER_QUEUE_URL",
        "DATA_BUCKET",
        "DATA_KEY_ARN",
        "ENDPOINT_ROLE_ARN",
        "MONITORING_ROLE_ARN",
        "ENDPOINT_SUBNET_IDS",
        "ENDPOINT_SECURITY_GROUP_IDS",
        "ALARM_PREFIX",
        "MODEL_LATENCY_ALARM_MS",
        "CAPTURE_SAMPLING_PERCENTAGE",
        "MONITORING_INSTANCE_TYPE",
        "MONITORING_SCHEDULE",
        "BLUE_GREEN_BAKE_SECONDS",
    ):
        assert name in variables, name
    assert variables["ALARM_PREFIX"] == "TrainingPlatform-test-endpoint"
    assert variables["MONITORING_SCHEDULE"] == "cron(0 * ? * * *)"
    assert len(variables["ENDPOINT_SUBNET_IDS"]["Fn::Join"][1]) == 5  # 3 subnets, 2 commas
    queue = one(full, "Training", "AWS::SQS::Queue", "ServingDeploymentRequests9")
    assert queue["VisibilityTimeout"] == 720, "6 x the deploy handler's timeout"
    assert "deadLetterTargetArn" in queue["RedrivePolicy"]
    events = full.raw("Training")["Resources"]
    job_events = next(
        v["Properties"]
        for k, v in events.items()
        if k.startswith("JobEventsHandler") and v["Type"] == "AWS::Lambda::Function"
    )
    assert {"DEPLOYMENTS_TABLE", "DEPLOYMENT_REQUESTS_QUEUE_URL", "ALARM_PREFIX"} <= set(
        job_events["Environment"]["Variables"]
    )


def test_alarm_state_changes_of_the_platforms_alarms_reach_the_events_queue(
    full: Synthesized,
) -> None:
    rule = one(full, "Training", "AWS::Events::Rule", "ServingEndpointAlarmStateChanges")
    assert rule["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": "TrainingPlatform-test-endpoint-"}]},
    }
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["JobEventsCA70BF1D", "Arn"]}


def test_deploy_role_creates_only_tagged_isolated_encrypted_resources(full: Synthesized) -> None:
    by_sid = statements(full, "Training", "ServingDeployHandlerRole")
    tags = {"aws:RequestTag/tenant": "false", "aws:RequestTag/deployment": "false"}
    for sid in (
        "CreateIsolatedModelsOnly",
        "CreateEncryptedRealtimeConfigs",
        "CreateServerlessConfigs",
        "CreateTaggedEndpoints",
        "CreateIsolatedMonitoringJobsOnly",
        "CreateTaggedMonitoringSchedules",
        "TagWithTenantAndDeployment",
        "PutTaggedEndpointAlarms",
    ):
        conditions = by_sid[sid]["Condition"]
        assert tags.items() <= conditions["Null"].items(), sid
        assert conditions["ForAllValues:StringEquals"]["aws:TagKeys"] == ["tenant", "deployment"]
    model = by_sid["CreateIsolatedModelsOnly"]["Condition"]
    assert model["Bool"] == {"sagemaker:NetworkIsolation": "true"}
    assert len(model["ForAllValues:StringEquals"]["sagemaker:VpcSubnets"]) == 3
    realtime = by_sid["CreateEncryptedRealtimeConfigs"]["Condition"]
    assert "DataKey" in json.dumps(realtime["ArnEquals"]["sagemaker:VolumeKmsKeyArn"])
    serverless = by_sid["CreateServerlessConfigs"]["Condition"]["Null"]
    assert serverless["sagemaker:ServerlessMemorySize"] == "false"
    assert serverless["sagemaker:InstanceTypes"] == "true"
    jobs = by_sid["CreateIsolatedMonitoringJobsOnly"]["Condition"]
    assert jobs["Bool"] == {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
    }
    assert set(jobs["ArnEquals"]) == {"sagemaker:VolumeKmsKeyArn", "sagemaker:OutputKmsKeyArn"}
    assert by_sid["UpdateAndDeletePlatformResources"]["Condition"] == {
        "Null": {"aws:ResourceTag/tenant": "false"}
    }
    alarms = by_sid["PutTaggedEndpointAlarms"]["Resource"]["Fn::Join"][1][-1]
    assert alarms == ":alarm:TrainingPlatform-test-endpoint-*"
    passing = by_sid["PassTheServingRolesToSageMakerOnly"]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert sorted(r["Fn::GetAtt"][0] for r in passing["Resource"]) == [
        "ServingEndpointRoleF454D333",
        "ServingMonitoringRole081E888F",
    ]
    wildcard_actions = [a for s in by_sid.values() for a in as_list(s["Action"]) if a.endswith("*")]
    assert wildcard_actions == []


def test_serving_roles_are_for_sagemaker_with_the_data_lakes_policies(full: Synthesized) -> None:
    for prefix, policy in (
        ("ServingEndpointRole", "Endpoints"),
        ("ServingMonitoringRole", "Monitoring"),
    ):
        role = one(full, "Training", "AWS::IAM::Role", prefix)
        principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        assert principal == {"Service": "sagemaker.amazonaws.com"}
        assert any(f"Access{policy}" in json.dumps(a) for a in role["ManagedPolicyArns"])
    data_lake = full.raw("DataLake")["Resources"]
    endpoints = next(
        v["Properties"]["PolicyDocument"]["Statement"]
        for k, v in data_lake.items()
        if k.startswith("AccessEndpoints")
    )
    by_sid = {s["Sid"]: s for s in endpoints}
    assert by_sid["ReadModelArtifacts"]["Action"] == "s3:GetObject"
    assert by_sid["ReadModelArtifacts"]["Resource"]["Fn::Join"][1][-1] == (
        "/tenants/*/jobs/*/output/*"
    )
    assert by_sid["WriteDataCapture"]["Resource"]["Fn::Join"][1][-1] == (
        "/tenants/*/monitoring/*/capture/*"
    )
    endpoint = statements(full, "Training", "ServingEndpointRole")
    assert "Algorithms" in json.dumps(endpoint["PullAlgorithmImages"]["Resource"])


def test_tenant_sessions_own_deployments_and_only_list_api_clients(full: Synthesized) -> None:
    [policy] = [
        v["Properties"]
        for k, v in full.raw("Training")["Resources"].items()
        if k.startswith("TenantTablesPolicy") and v["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    own = by_sid["OwnDeployments"]
    assert sorted(as_list(own["Action"])) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    listing = by_sid["ListOwnApiClients"]
    assert listing["Action"] == "dynamodb:Query"
    assert listing["Resource"] == {"Fn::GetAtt": ["ServingApiClients3D240373", "Arn"]}  # no index
    for statement in (own, listing):
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [TENANT]}
        }
        assert unbound_grants(statement) == []


# --- Portal stack: the inference API -------------------------------------------------------------


def test_api_is_regional_with_the_invocations_route_behind_the_scoped_authorizer(
    full: Synthesized,
) -> None:
    api = one(full, "Portal", "AWS::ApiGateway::RestApi", "InferenceApi")
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["BinaryMediaTypes"] == ["application/octet-stream"]
    paths = sorted(
        r["PathPart"]
        for r in of_type(full, "Portal", "AWS::ApiGateway::Resource").values()
        for r in [r["Properties"]]
    )
    assert paths == ["endpoints", "invocations", "{endpoint}"]
    [method] = [
        m["Properties"] for m in of_type(full, "Portal", "AWS::ApiGateway::Method").values()
    ]
    assert method["HttpMethod"] == "POST"
    assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
    assert method["AuthorizationScopes"] == ["inference/invoke"]
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert method["RequestParameters"] == {
        "method.request.path.endpoint": True,
        "method.request.header.Content-Type": True,
    }
    validator = one(full, "Portal", "AWS::ApiGateway::RequestValidator", "InferenceApi")
    assert validator["ValidateRequestParameters"] is True
    authorizer = one(full, "Portal", "AWS::ApiGateway::Authorizer", "InferenceAuthorizer")
    assert authorizer["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["ProviderARNs"] == [{"Fn::GetAtt": ["SignInUserPoolA2C003D1", "Arn"]}]
    server = one(full, "Portal", "AWS::Cognito::UserPoolResourceServer", "SignInUserPool")
    assert server["Identifier"] == "inference"
    assert server["Scopes"] == [
        {"ScopeName": "invoke", "ScopeDescription": "Invoke the tenant's own endpoints"}
    ]


def test_stage_throttles_logs_with_the_client_id_and_traces(full: Synthesized) -> None:
    stage = one(full, "Portal", "AWS::ApiGateway::Stage", "InferenceApiDeploymentStage")
    assert stage["StageName"] == "v1"
    assert stage["TracingEnabled"] is True
    [settings] = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 100
    assert settings["ThrottlingBurstLimit"] == 200
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    access = stage["AccessLogSetting"]
    fields = json.loads(access["Format"])
    assert fields["clientId"] == "$context.authorizer.claims.client_id"
    assert fields["status"] == "$context.status"
    assert "InferenceAccessLogs" in json.dumps(access["DestinationArn"])
    group = one(full, "Portal", "AWS::Logs::LogGroup", "InferenceAccessLogs")
    assert "KmsKeyId" in group and group["RetentionInDays"] == 365


def test_api_waf_has_managed_rules_a_rate_limit_and_lets_large_bodies_through(
    full: Synthesized,
) -> None:
    acl = one(full, "Portal", "AWS::WAFv2::WebACL", "InferenceWaf")
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert "RateLimitPerIp" in rules
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["Limit"] == 10000
    common = rules["AWS-AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert common["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}
    ]
    association = one(full, "Portal", "AWS::WAFv2::WebACLAssociation", "InferenceWaf")
    assert "/restapis/" in json.dumps(association["ResourceArn"])
    assert "/stages/" in json.dumps(association["ResourceArn"])
    group = one(full, "Portal", "AWS::Logs::LogGroup", "InferenceWafLogs")
    assert group["LogGroupName"] == "aws-waf-logs-TrainingPlatform-test-Portal-inference"


def test_invoke_role_is_assumed_by_the_inference_function_only(full: Synthesized) -> None:
    role = one(full, "Portal", "AWS::IAM::Role", "InferenceTenantInvokeRole")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["InferenceHandlerRole0C40DB8B", "Arn"]}}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert trust["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["tenant"]}
    assert trust["Condition"]["Null"] == {"aws:RequestTag/tenant": "false"}
    assert "*/*" in trust["Condition"]["StringNotLike"]["aws:RequestTag/tenant"]
    by_sid = statements(full, "Portal", "InferenceTenantInvokeRole")
    invoke = by_sid["InvokeOwnEndpoints"]
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    assert invoke["Resource"] == "arn:aws:sagemaker:eu-west-1:111111111111:endpoint/*"
    assert invoke["Condition"] == {"StringEquals": {"aws:ResourceTag/tenant": TENANT}}
    assert unbound_grants(invoke) == []
    assert by_sid["DenyWithoutTenantTag"]["Effect"] == "Deny"
    allows = [s for s in by_sid.values() if s["Effect"] == "Allow"]
    assert allows == [invoke]


def test_inference_function_environment_and_grants(full: Synthesized) -> None:
    function = one(full, "Portal", "AWS::Lambda::Function", "InferenceHandler")
    assert function["Handler"] == "inference.app.handler"
    assert "VpcConfig" in function
    variables = function["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "TrainingPlatform/Inference"
    assert variables["MAX_PAYLOAD_BYTES"] == str(4 * 1024 * 1024)
    assert variables["CONTENT_TYPES"].split(",") == [
        "application/json",
        "text/csv",
        "application/jsonlines",
        "application/octet-stream",
    ]
    assert "InferenceTenantInvokeRole" in json.dumps(variables["TENANT_INVOKE_ROLE_ARN"])
    by_sid = statements(full, "Portal", "InferenceHandlerRole")
    assert by_sid["TenantOfApiClients"]["Action"] == "dynamodb:Query"
    assert json.dumps(by_sid["TenantOfApiClients"]["Resource"]).endswith('/index/ByClientId"]]}')
    assert by_sid["AssumeTheTenantInvokeRole"]["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert not any("sagemaker:" in json.dumps(s["Action"]) for s in by_sid.values())


def test_instance_role_manages_api_clients_of_its_pool(full: Synthesized) -> None:
    by_sid = statements(full, "Portal", "FleetInstanceRole")
    clients = by_sid["AdministerApiClients"]
    assert sorted(clients["Action"]) == [
        "cognito-idp:CreateUserPoolClient",
        "cognito-idp:DeleteUserPoolClient",
        "cognito-idp:DescribeUserPoolClient",
    ]
    assert clients["Resource"] == {"Fn::GetAtt": ["SignInUserPoolA2C003D1", "Arn"]}
    assert sorted(by_sid["RecordApiClients"]["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ]
    assert by_sid["ReadEndpointUsage"]["Action"] == "cloudwatch:GetMetricData"


# --- Observability stack ------------------------------------------------------------------------


def test_operators_hear_of_every_endpoint_alarm_and_the_dashboard_sums_endpoints(
    full: Synthesized,
) -> None:
    rule = one(full, "Observability", "AWS::Events::Rule", "EndpointAlarms")
    assert rule["EventPattern"]["detail"] == {
        "alarmName": [{"prefix": "TrainingPlatform-test-endpoint-"}]
    }
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": next(iter(of_type(full, "Observability", "AWS::SNS::Topic")))}
    body = json.dumps(one(full, "Observability", "AWS::CloudWatch::Dashboard", "Dashboard"))
    for text in (
        "Tenant endpoints",
        "Invocation5XXErrors",
        "TrainingPlatform/Inference",
        "Violations",
    ):
        assert text in body, text


def test_portal_environment_names_the_serving_resources(full: Synthesized) -> None:
    from tests.stacks.test_portal import environment_file

    environment = environment_file(full)
    assert "ServingDeployments" in environment["DEPLOYMENTS_TABLE"]
    assert "ServingApiClients" in environment["API_CLIENTS_TABLE"]
    assert "DeploymentRequests" in environment["DEPLOYMENT_REQUESTS_QUEUE_URL"]
    assert environment["INFERENCE_API_URL"].startswith('https://{"Ref": "InferenceApi')
    assert ".execute-api.eu-west-1." in environment["INFERENCE_API_URL"]
    assert environment["OAUTH_TOKEN_URL"].startswith('https://{"Ref": "SignInUserPoolDomain')
    assert ".auth.eu-west-1.amazoncognito.com/" in environment["OAUTH_TOKEN_URL"]
    assert environment["OAUTH_TOKEN_URL"].endswith("/oauth2/token")
    # Single-quoted: systemd's EnvironmentFile keeps the JSON's double quotes inside.
    assert environment["PRICE_OVERRIDES"] == """'{"ml.m5.large":0.1}'"""
