"""SQS helpers shared by the queue-driven handlers: the message as the handlers see it, the
dead-letter hand-off for unreadable messages, and the retry back-off.

An unreadable message is never dropped and never crashes a batch: it is sent to the queue's
dead-letter queue with message attributes that say why, and the original is then acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SQS_MAX_DELAY_SECONDS = 900
SQS_MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200
_MAX_ATTRIBUTE_LENGTH = 1_000

SqsClient = Any
"""A ``boto3.client("sqs")`` object."""


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One SQS message of a Lambda event, reduced to what the handlers use."""

    message_id: str
    body: str
    receipt_handle: str
    receive_count: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)
    """String values of the message attributes (``messageAttributes``)."""
    source_arn: str = ""

    @classmethod
    def from_lambda_record(cls, record: Mapping[str, Any]) -> QueueMessage:
        """Build from one item of a Lambda SQS event's ``Records``."""
        attributes = {
            name: str(value.get("stringValue", ""))
            for name, value in (record.get("messageAttributes") or {}).items()
            if isinstance(value, Mapping) and value.get("stringValue") is not None
        }
        return cls(
            message_id=str(record.get("messageId", "")),
            body=str(record.get("body", "")),
            receipt_handle=str(record.get("receiptHandle", "")),
            receive_count=int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1)),
            attributes=attributes,
            source_arn=str(record.get("eventSourceARN", "")),
        )

    def int_attribute(self, name: str, default: int = 0) -> int:
        """A numeric message attribute, or ``default`` when missing or not a number."""
        try:
            return int(self.attributes.get(name, default))
        except ValueError:
            return default


def backoff_seconds(attempt: int, *, base: int, cap: int) -> int:
    """Back-off ``base * 2 ** (attempt - 1)`` seconds, at most ``cap``; attempts count from 1."""
    exponent = max(0, attempt - 1)
    return int(min(cap, base * 2 ** min(exponent, 30)))


def _attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value[:_MAX_ATTRIBUTE_LENGTH] or "-"}


def send_to_dead_letter_queue(
    sqs: SqsClient,
    dlq_url: str,
    message: QueueMessage,
    *,
    reason: str,
    handler: str,
) -> str:
    """Park an unreadable message on the dead-letter queue; returns the new message id.

    The body is kept byte for byte; message attributes record ``failure_reason``, the ``handler``
    that gave up, the ``source_message_id``, the ``source_queue_arn`` and the ``receive_count``.
    """
    response = sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=message.body or "(empty body)",
        MessageAttributes={
            "failure_reason": _attribute(reason),
            "handler": _attribute(handler),
            "source_message_id": _attribute(message.message_id),
            "source_queue_arn": _attribute(message.source_arn),
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        },
    )
    return str(response["MessageId"])
