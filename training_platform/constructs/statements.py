"""One IAM statement added to a role's own policy: how the stacks write least-privilege grants."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_iam as iam


def allow(
    role: iam.IRole,
    sid: str,
    actions: list[str],
    resources: list[str],
    conditions: dict[str, Any] | None = None,
) -> None:
    """Add an Allow statement ``sid`` for ``actions`` on ``resources`` (under ``conditions``)
    to ``role``'s default policy."""
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions)
    )
