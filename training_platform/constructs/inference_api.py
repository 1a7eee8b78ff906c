"""The inference API: tenants' devices and back ends call their endpoints with OAuth 2.0 client
credentials.

Request path: WAF (managed rule groups, a per-IP rate limit) -> API Gateway (regional REST API,
stage ``v1``: ``POST /v1/endpoints/{endpoint}/invocations``; the Cognito user-pool authorizer
requires an access token with the scope ``inference/invoke``, so a missing, expired or forged
token is a 401 from API Gateway; stage throttling; access logs with the client id) -> the
inference function (Lambda proxy), which finds the client's tenant in the ApiClients table,
assumes the **tenant invoke role** with the session tag ``tenant=<tenant>`` and invokes the
endpoint with those credentials. The invoke role allows ``sagemaker:InvokeEndpoint`` only on
endpoints tagged with the session's tenant: acme's client on globex's endpoint is refused by
IAM (403), and so is a name that exists for nobody (no existence oracle).

It lives in the Portal stack: it needs the Portal's user pool (resource server, authorizer), and
the portal needs its URL for the curl examples; a stack of its own would depend on the Portal
stack and be depended on by it (a cycle).
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from training_platform.config import ServingSettings
from training_platform.constructs.handler import PlatformFunction
from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.logs import encrypted_log_group
from training_platform.constructs.nag import acknowledge, acknowledge_findings, nag_value
from training_platform.constructs.serving import API_CLIENTS_BY_CLIENT_ID
from training_platform.constructs.tenant_access import TENANT, TENANT_TAG, tenant_tag_conditions
from training_platform.constructs.web_acl import RegionalWebAcl

STAGE = "v1"
RESOURCE_SERVER = "inference"  # training_common.INFERENCE_RESOURCE_SERVER
SCOPE = "invoke"
INFERENCE_SCOPE = f"{RESOURCE_SERVER}/{SCOPE}"  # training_common.INFERENCE_SCOPE
METRICS_NAMESPACE = "TrainingPlatform/Inference"  # training_common.INFERENCE_METRICS_NAMESPACE
CONTENT_TYPES = (
    "application/json",
    "text/csv",
    "application/jsonlines",
    "application/octet-stream",
)
BINARY_MEDIA_TYPES = ("application/octet-stream",)
INFERENCE_TIMEOUT = Duration.seconds(29)  # API Gateway's integration timeout
# The common rule set's SizeRestrictions_BODY blocks bodies over 8 KB; inference payloads are
# larger and limited by the function (MAX_PAYLOAD_BYTES, 413) and API Gateway (10 MB).
COUNT_ONLY: dict[str, tuple[str, ...]] = {
    "AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",)
}
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "time": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "clientId": "$context.authorizer.claims.client_id",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "wafStatus": "$context.waf.status",
    "error": "$context.error.message",
}
# API Gateway's own refusals, in the function's error format {"error": ..., "message": ...}.
GATEWAY_ERRORS = {
    "UNAUTHORIZED": (
        "unauthorized",
        "a valid access token with scope inference/invoke is required",
    ),
    "MISSING_AUTHENTICATION_TOKEN": ("not_found", "no such route"),
    "ACCESS_DENIED": ("forbidden", "the token does not allow this request"),
    "BAD_REQUEST_PARAMETERS": ("bad_request", "a Content-Type header is required"),
    "REQUEST_TOO_LARGE": ("payload_too_large", "the request body is over API Gateway's limit"),
    "THROTTLED": ("throttled", "too many requests; retry with backoff"),
    "WAF_FILTERED": ("forbidden", "the request was blocked"),
}


class InferenceApi(Construct):
    """The API, its WAF, authorizer, function and the tenant invoke role (module docstring).

    Attributes: ``api`` (RestApi), ``url`` (``https://<id>.execute-api.<region>.<suffix>``; the
    stage is the path's ``/v1``), ``resource_server``, ``function`` (PlatformFunction),
    ``invoke_role``, ``access_log_group``, ``waf`` (RegionalWebAcl).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        user_pool: cognito.IUserPool,
        api_clients_table: dynamodb.ITable,
        table_key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        layer: lambda_.ILayerVersion,
        settings: ServingSettings,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.resource_server = user_pool.add_resource_server(
            "ResourceServer",
            identifier=RESOURCE_SERVER,
            user_pool_resource_server_name="Inference API",
            scopes=[
                cognito.ResourceServerScope(
                    scope_name=SCOPE, scope_description="Invoke the tenant's own endpoints"
                )
            ],
        )

        self.function = PlatformFunction(
            self,
            "Handler",
            name="inference",
            description=(
                "Invokes a tenant's endpoint for an API client, with tenant-bound credentials"
            ),
            layer=layer,
            vpc=vpc,
            subnets=subnets,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            timeout=INFERENCE_TIMEOUT,
            memory_size=1024,
            reserved_concurrency=settings.inference_concurrency,
            environment={
                "API_CLIENTS_TABLE": api_clients_table.table_name,
                "MAX_PAYLOAD_BYTES": str(settings.max_payload_bytes),
                "CONTENT_TYPES": ",".join(CONTENT_TYPES),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        acknowledge(
            self.function.function,
            "NIST.800.53.R5-LambdaDLQ",
            "API Gateway invokes the function synchronously and returns its answer (or error) "
            "to the client, which retries; an asynchronous-invocation DLQ never applies.",
        )
        self.invoke_role = self._invoke_role(self.function.role)
        self.function.function.add_environment("TENANT_INVOKE_ROLE_ARN", self.invoke_role.role_arn)
        self.function.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TenantOfApiClients",
                actions=["dynamodb:Query"],
                resources=[f"{api_clients_table.table_arn}/index/{API_CLIENTS_BY_CLIENT_ID}"],
            )
        )
        self.function.role.add_to_principal_policy(
            key_through_services(
                self,
                table_key,
                services=["dynamodb"],
                actions=["kms:Decrypt", "kms:DescribeKey"],
                sid="TableKeyThroughDynamoDbOnly",
            )
        )
        self.function.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AssumeTheTenantInvokeRole",
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[self.invoke_role.role_arn],
            )
        )
        acknowledge_findings(
            self.function.role,
            "AwsSolutions-IAM5",
            ["Resource::*"],
            "The only '*' is X-Ray's PutTraceSegments and PutTelemetryRecords (active tracing), "
            "which have no resource-level permissions.",
        )

        self.access_log_group = encrypted_log_group(
            self,
            "AccessLogs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{stack.stack_name}-inference",
            description="Tenants' endpoints for their devices and back ends (OAuth 2.0 clients)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            disable_execute_api_endpoint=False,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                throttling_rate_limit=settings.api_throttle_rate,
                throttling_burst_limit=settings.api_throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
        )
        for response_type, (code, message) in GATEWAY_ERRORS.items():
            self.api.add_gateway_response(
                response_type.title().replace("_", ""),
                type=getattr(apigw.ResponseType, response_type),
                templates={"application/json": json.dumps({"error": code, "message": message})},
            )
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self,
            "Authorizer",
            cognito_user_pools=[user_pool],
            authorizer_name="InferenceClients",
            results_cache_ttl=Duration.minutes(5),
        )
        validator = self.api.add_request_validator(
            "RequireContentType",
            request_validator_name="content-type-and-endpoint",
            validate_request_parameters=True,
            validate_request_body=True,
        )
        invocations = (
            self.api.root.add_resource("endpoints")
            .add_resource("{endpoint}")
            .add_resource("invocations")
        )
        self.method = invocations.add_method(
            "POST",
            apigw.LambdaIntegration(self.function.function, proxy=True),
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.COGNITO,
            authorization_scopes=[INFERENCE_SCOPE],
            request_validator=validator,
            request_parameters={
                "method.request.path.endpoint": True,
                "method.request.header.Content-Type": True,
            },
        )
        self.url = f"https://{self.api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}"

        self.waf = RegionalWebAcl(
            self,
            "Waf",
            name="inference",
            rate_limit=settings.api_waf_rate_limit,
            count_only=COUNT_ONLY,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        association = self.waf.associate("StageAssociation", self.api.deployment_stage.stage_arn)
        association.node.add_dependency(self.api.deployment_stage)
        self._acknowledge(stack)

    def _invoke_role(self, caller: iam.IRole) -> iam.Role:
        """Assumed by the inference function only, with the session tag ``tenant``; its one
        permission is invoking endpoints tagged with that tenant."""
        principal = iam.ArnPrincipal(caller.role_arn).with_conditions(tenant_tag_conditions())
        role = iam.Role(
            self,
            "TenantInvokeRole",
            assumed_by=iam.SessionTagsPrincipal(principal),
            description=(
                "Assumed by the inference function for one tenant (session tag tenant=<id>); "
                "invokes only that tenant's endpoints"
            ),
            max_session_duration=Duration.hours(1),
        )
        stack = Stack.of(self)
        endpoints = stack.format_arn(service="sagemaker", resource="endpoint", resource_name="*")
        policy = iam.ManagedPolicy(
            self,
            "TenantInvokePolicy",
            description="Invoke the endpoints tagged with the session's tenant, nothing else",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="InvokeOwnEndpoints",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=[endpoints],
                    conditions={"StringEquals": {f"aws:ResourceTag/{TENANT_TAG}": TENANT}},
                ),
                iam.PolicyStatement(
                    sid="DenyWithoutTenantTag",
                    effect=iam.Effect.DENY,
                    actions=["sagemaker:*"],
                    resources=["*"],
                    conditions={"Null": {f"aws:PrincipalTag/{TENANT_TAG}": "true"}},
                ),
            ],
        )
        sagemaker = (
            f"arn:{nag_value(stack.partition, 'Partition')}:sagemaker:"
            f"{nag_value(stack.region, 'Region')}:{nag_value(stack.account, 'AccountId')}:"
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{sagemaker}endpoint/*]",
            "Endpoints are created at run time per tenant deployment; the statement's condition "
            "aws:ResourceTag/tenant = ${aws:PrincipalTag/tenant} limits InvokeEndpoint to the "
            "session's own tenant's endpoints (the trust policy checks the tag).",
        )
        return role

    def _acknowledge(self, stack: Stack) -> None:
        stage = self.api.deployment_stage
        acknowledge(
            stage,
            "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
            "The inference API answers each request with a fresh prediction for one tenant's "
            "client: a response cache would serve stale predictions and keep tenant payloads "
            "outside the endpoint, so the stage has no cache to encrypt.",
        )
        acknowledge(
            stage,
            "NIST.800.53.R5-APIGWSSLEnabled",
            "The stage's only integration is a Lambda proxy (AWS's own HTTPS API, signed), not an "
            "HTTP back end that could verify an API Gateway client certificate.",
        )
        acknowledge_findings(
            self.api,
            "AwsSolutions-IAM4",
            [
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs"
            ],
            "API Gateway's account-level logging role, which writes the stage's access and "
            "execution logs: AmazonAPIGatewayPushToCloudWatchLogs is the policy AWS documents "
            "for it, and the role is assumable only by apigateway.amazonaws.com.",
        )
