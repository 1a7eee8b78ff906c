"""The tenants' Cognito user pool, its admin group, hosted domain and the ALB's app client."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from training_platform.constructs.nag import acknowledge

# portal_app reads these names: ADMIN_GROUP (settings.py) and custom:tenant_id (services/admin.py).
ADMIN_GROUP = "admins"
TENANT_ATTRIBUTE = "tenant_id"
# Tenant ids are ^[a-z][a-z0-9-]{2,23}$ (contract.md).
TENANT_ID_MIN_LENGTH = 3
TENANT_ID_MAX_LENGTH = 24
ALB_CALLBACK_PATH = "/oauth2/idpresponse"


class TenantUserPool(Construct):
    """Tenant users and administrators: created by administrators only (no self sign-up), each
    with an immutable ``custom:tenant_id``; TOTP MFA required; a strong password policy.

    ``user_pool``, ``admin_group``, ``domain`` (Cognito's hosted sign-in pages) and
    ``alb_client`` (authorization code grant with a secret, for the ALB's authenticate-cognito
    action; its only callback is ``https://<domain_name>/oauth2/idpresponse``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        domain_name: str,
        domain_prefix: str,
        threat_protection: bool,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            custom_attributes={
                TENANT_ATTRIBUTE: cognito.StringAttribute(
                    min_len=TENANT_ID_MIN_LENGTH, max_len=TENANT_ID_MAX_LENGTH, mutable=False
                )
            },
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="Your AI training portal account",
                email_body=(
                    "You have been invited to the AI training portal. Sign in with {username} "
                    "and the temporary password {####}, then set up an authenticator app."
                ),
            ),
            feature_plan=cognito.FeaturePlan.PLUS
            if threat_protection
            else cognito.FeaturePlan.ESSENTIALS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION
            if threat_protection
            else None,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )
        if not threat_protection:
            acknowledge(
                self.user_pool,
                "AwsSolutions-COG8",
                "Threat protection needs the Cognito Plus plan (billed per monthly active user); "
                "this environment sets portal.threat_protection = false. Users are created only "
                "by administrators, TOTP MFA is required, the password policy is strong, and the "
                "WAF rate limit and IP reputation list front the sign-in flow. Set "
                "portal.threat_protection = true to enforce it.",
            )

        self.admin_group = cognito.UserPoolGroup(
            self,
            "Admins",
            user_pool=self.user_pool,
            group_name=ADMIN_GROUP,
            description="Platform administrators: the portal's /admin area",
        )
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=domain_prefix)
        )
        self.alb_client = self.user_pool.add_client(
            "AlbClient",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.PROFILE,
                ],
                callback_urls=[f"https://{domain_name}{ALB_CALLBACK_PATH}"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),
        )
