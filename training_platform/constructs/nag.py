"""Acknowledging cdk-nag findings, next to the resource they concern.

Every acknowledgement is a decision a security reviewer reads in the nag report: it names the
finding (``pack::rule`` or ``pack::rule[finding]``) and says why it is acceptable here.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

AWS_SOLUTIONS = "AwsSolutions"
NIST_800_53_R5 = "NIST.800.53.R5"
PACKS = (AWS_SOLUTIONS, NIST_800_53_R5)

_MIN_REASON = 40


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one nag rule on ``construct`` (and its children).

    ``rule`` is the rule id as the report prints it, e.g. ``"AwsSolutions-IAM5"`` or
    ``"NIST.800.53.R5-IAMNoInlinePolicy"``, optionally with a finding in brackets to narrow an
    acknowledgement to one wildcard: ``"AwsSolutions-IAM5[Resource::*]"``.
    """
    pack = next((p for p in PACKS if rule.startswith(p + "-")), None)
    if pack is None:
        raise ValueError(f"nag rule {rule!r} does not belong to a registered pack {PACKS}")
    if len(reason) < _MIN_REASON:
        raise ValueError(
            f"the acknowledgement of {rule} on {construct.node.path} needs a reason a reviewer "
            f"can check (at least {_MIN_REASON} characters), got {reason!r}"
        )
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{pack}::{rule}", reason=reason))


def acknowledge_findings(
    construct: IConstruct, rule: str, findings: list[str], reason: str
) -> None:
    """Acknowledge several findings of one rule (``rule[finding]`` each) with one reason.

    cdk-nag 3 matches acknowledgements exactly: ``AwsSolutions-IAM5`` does not cover
    ``AwsSolutions-IAM5[Resource::*]``, so each wildcard a reviewer accepts is named.
    """
    for finding in findings:
        acknowledge(construct, f"{rule}[{finding}]", reason)
