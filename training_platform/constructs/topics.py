"""An SNS topic for people: encrypted with a customer key, TLS only, email subscribers."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


def email_topic(
    scope: Construct, id: str, *, display_name: str, key: kms.IKey, emails: Sequence[str]
) -> sns.Topic:
    """A topic encrypted with ``key`` that accepts only TLS, with each of ``emails`` subscribed
    (each address confirms its subscription once)."""
    topic = sns.Topic(scope, id, display_name=display_name, master_key=key, enforce_ssl=True)
    for address in emails:
        topic.add_subscription(subscriptions.EmailSubscription(address))
    return topic
