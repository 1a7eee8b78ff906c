"""IAM statements that let a principal use a KMS key only through the services that need it."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import IConstruct


def key_through_services(
    scope: IConstruct,
    key: kms.IKey,
    *,
    services: Sequence[str],
    actions: Sequence[str],
    sid: str,
) -> iam.PolicyStatement:
    """Allow ``actions`` on ``key`` only when a request comes through one of ``services``
    (``kms:ViaService``, e.g. ``"s3"`` for ``s3.<region>.amazonaws.com`` in ``scope``'s region),
    so the principal can read and write encrypted data through those services but cannot call
    KMS to decrypt anything directly."""
    region = Stack.of(scope).region
    via = [f"{service}.{region}.amazonaws.com" for service in services]
    return iam.PolicyStatement(
        sid=sid,
        actions=list(actions),
        resources=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": via[0] if len(via) == 1 else via}},
    )
