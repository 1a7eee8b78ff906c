"""Acknowledging cdk-nag findings, next to the resource they concern.

Every acknowledgement is a decision a security reviewer reads in the nag report: it names the
finding (``pack::rule`` or ``pack::rule[finding]``) and says why it is acceptable here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aws_cdk import Acknowledgment, CfnElement, Stack, Token, Validations
from cdk_nag import (
    AwsSolutionsChecks,
    HIPAASecurityChecks,
    NagPack,
    NIST80053R5Checks,
    PCIDSS321Checks,
)
from constructs import IConstruct

AWS_SOLUTIONS = "AwsSolutions"
NIST_800_53_R5 = "NIST.800.53.R5"
HIPAA_SECURITY = "HIPAA.Security"
PCI_DSS_321 = "PCI.DSS.321"
PACKS = (AWS_SOLUTIONS, NIST_800_53_R5, HIPAA_SECURITY, PCI_DSS_321)
"""Every pack an environment may run (``compliance.packs``), by the name its report carries."""

_PACK_CLASSES: dict[str, Callable[[IConstruct], NagPack]] = {
    AWS_SOLUTIONS: AwsSolutionsChecks,
    NIST_800_53_R5: NIST80053R5Checks,
    HIPAA_SECURITY: HIPAASecurityChecks,
    PCI_DSS_321: PCIDSS321Checks,
}


def add_nag_packs(app: IConstruct, packs: Iterable[str]) -> None:
    """Register ``packs`` (names of :data:`PACKS`) as validation plugins of ``app``.

    Acknowledgements of a pack that does not run stay in the construct metadata and change
    nothing, so each resource acknowledges every pack's findings once, whichever packs run.
    """
    Validations.of(app).add_plugins(*(_PACK_CLASSES[name](app) for name in packs))


_MIN_REASON = 40


# The HIPAA Security and PCI DSS 3.2.1 packs reuse many of the NIST 800-53 rev 5 pack's rules, by
# the same name and with the same check (cdk-nag's rules/ modules; what each pack holds is listed
# in cdk.out/compliance-report.md). A finding acknowledged under NIST is acknowledged under each
# pack below with the same reason, which names the resource and why that check does not apply to
# it: the decision is one decision, whichever frameworks a reviewer reads it under. The gates
# (tests/test_gates.py, all four packs) fail on any of these that matches no finding.
NIST_RULES_IN_OTHER_PACKS: dict[str, tuple[str, ...]] = {
    "APIGWCacheEnabledAndEncrypted": (HIPAA_SECURITY, PCI_DSS_321),
    "APIGWSSLEnabled": (HIPAA_SECURITY, PCI_DSS_321),
    "CloudWatchLogGroupEncrypted": (HIPAA_SECURITY, PCI_DSS_321),
    "ELBDeletionProtectionEnabled": (HIPAA_SECURITY,),  # not a rule of the PCI DSS pack
    "ELBv2ACMCertificateRequired": (HIPAA_SECURITY, PCI_DSS_321),
    "IAMNoInlinePolicy": (HIPAA_SECURITY, PCI_DSS_321),
    "IAMPolicyNoStatementsWithFullAccess": (HIPAA_SECURITY, PCI_DSS_321),
    "LambdaDLQ": (HIPAA_SECURITY,),  # not a rule of the PCI DSS pack
    "LambdaInsideVPC": (HIPAA_SECURITY, PCI_DSS_321),
    "S3BucketLoggingEnabled": (HIPAA_SECURITY, PCI_DSS_321),
    "S3BucketReplicationEnabled": (HIPAA_SECURITY, PCI_DSS_321),
    "S3DefaultEncryptionKMS": (HIPAA_SECURITY, PCI_DSS_321),
    "VPCNoUnrestrictedRouteToIGW": (HIPAA_SECURITY, PCI_DSS_321),
}


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one nag rule on ``construct`` (and its children).

    ``rule`` is the rule id as the report prints it, e.g. ``"AwsSolutions-IAM5"`` or
    ``"NIST.800.53.R5-IAMNoInlinePolicy"``, optionally with a finding in brackets to narrow an
    acknowledgement to one wildcard: ``"AwsSolutions-IAM5[Resource::*]"``. A NIST rule is also
    acknowledged under the packs that share it (:data:`NIST_RULES_IN_OTHER_PACKS`); a NIST rule
    missing from that table is an error, so each new one is a decision about the other packs too.
    """
    pack = next((p for p in PACKS if rule.startswith(p + "-")), None)
    if pack is None:
        raise ValueError(f"nag rule {rule!r} does not belong to a registered pack {PACKS}")
    if len(reason) < _MIN_REASON:
        raise ValueError(
            f"the acknowledgement of {rule} on {construct.node.path} needs a reason a reviewer "
            f"can check (at least {_MIN_REASON} characters), got {reason!r}"
        )
    rules = [(pack, rule)]
    if pack == NIST_800_53_R5:
        name = rule.removeprefix(f"{NIST_800_53_R5}-")
        if name not in NIST_RULES_IN_OTHER_PACKS:
            raise ValueError(
                f"{rule} on {construct.node.path}: add {name!r} to NIST_RULES_IN_OTHER_PACKS "
                f"with the packs among {HIPAA_SECURITY}, {PCI_DSS_321} that have the same rule"
            )
        rules += [(other, f"{other}-{name}") for other in NIST_RULES_IN_OTHER_PACKS[name]]
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=f"{p}::{r}", reason=reason) for p, r in rules)
    )


def acknowledge_findings(
    construct: IConstruct, rule: str, findings: list[str], reason: str
) -> None:
    """Acknowledge several findings of one rule (``rule[finding]`` each) with one reason.

    cdk-nag 3 matches acknowledgements exactly: ``AwsSolutions-IAM5`` does not cover
    ``AwsSolutions-IAM5[Resource::*]``, so each wildcard a reviewer accepts is named.
    """
    for finding in findings:
        acknowledge(construct, f"{rule}[{finding}]", reason)


def logical_id(construct: IConstruct) -> str:
    """The logical id of ``construct``'s CloudFormation resource, as nag findings quote it
    (``<LogicalId.Arn>``)."""
    child = construct.node.default_child
    assert isinstance(child, CfnElement), f"{construct.node.path} has no CloudFormation resource"
    return Stack.of(child).get_logical_id(child)


def nag_value(value: str, pseudo: str) -> str:
    """How cdk-nag writes ``value`` in a finding: ``<AWS::Partition>`` (``pseudo``) when it is
    unresolved, the value itself otherwise."""
    return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value
