"""A regional WAF web ACL: AWS managed rule groups, a per-IP rate limit, and logging."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from training_platform.constructs.logs import encrypted_log_group

# AWS managed rule groups, in evaluation order: reputation first (cheapest verdict), then the
# known-bad inputs and the common rule set (OWASP-style protections).
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesCommonRuleSet",
)
RATE_LIMIT_RULE = "RateLimitPerIp"
RATE_LIMIT_WINDOW_SECONDS = 300
# Never written to the logs: the ALB's session cookie and any bearer token.
REDACTED_HEADERS = ("cookie", "authorization")


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


class RegionalWebAcl(Construct):
    """``web_acl`` (REGIONAL, default allow) with :data:`MANAGED_RULE_GROUPS` and a rate-based
    rule that blocks a client IP above ``rate_limit`` requests in any 5 minutes; every request
    is logged to ``log_group`` (``aws-waf-logs-<stack>``, KMS, retention), cookies redacted.
    Associate it with a load balancer through :meth:`associate`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        rate_limit: int,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        name: str | None = None,
        count_only: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        """``name`` distinguishes a second web ACL of the stack (its log group
        ``aws-waf-logs-<stack>-<name>``); ``count_only`` names rules of a managed group that only
        count instead of blocking (e.g. the common rule set's 8 KB body limit, for an API whose
        payloads are larger and limited by the API itself)."""
        super().__init__(scope, id)
        stack = Stack.of(self)
        count_only = count_only or {}
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=f"AWS-{group}",
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=group,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=rule,
                                action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                            )
                            for rule in count_only.get(group, ())
                        ]
                        or None,
                    )
                ),
                visibility_config=_visibility(group),
            )
            for priority, group in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name=RATE_LIMIT_RULE,
                priority=len(MANAGED_RULE_GROUPS),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP",
                        limit=rate_limit,
                        evaluation_window_sec=RATE_LIMIT_WINDOW_SECONDS,
                    )
                ),
                visibility_config=_visibility(RATE_LIMIT_RULE),
            )
        )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description=f"Protects the public endpoints of {stack.stack_name}",
            rules=rules,
            visibility_config=_visibility("WebAcl"),
        )

        # WAF delivers to CloudWatch Logs only into log groups named aws-waf-logs-*.
        self.log_group = encrypted_log_group(
            self,
            "Logs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
            log_group_name=f"aws-waf-logs-{stack.stack_name}" + (f"-{name}" if name else ""),
        )
        self.logging = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            # The log group's ARN without the ':*' suffix that its Arn attribute carries.
            log_destination_configs=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=self.log_group.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": name})
                for name in REDACTED_HEADERS
            ],
        )

    def associate(self, id: str, resource_arn: str) -> wafv2.CfnWebACLAssociation:
        """Protect ``resource_arn`` (an ALB or an API Gateway stage) with this web ACL."""
        return wafv2.CfnWebACLAssociation(
            self, id, resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
