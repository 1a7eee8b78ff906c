#!/usr/bin/env python3
"""Move messages from a dead-letter queue back to the queue they came from.

Uses SQS's own redrive (``StartMessageMoveTask``), then lists the queue's move tasks
(``ListMessageMoveTasks``) so the operator sees what is running. The DLQ is named explicitly with
``--dlq-arn`` or looked up from the stack's outputs (``TrainingRequestsDlqArn``,
``JobEventsDlqArn``) with ``--stack-name``.

    python scripts/redrive.py --queue job-events --stack-name Training-prod
    python scripts/redrive.py --queue training-requests --dlq-arn arn:aws:sqs:...:dlq --list
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

DLQ_OUTPUTS = {
    "training-requests": "TrainingRequestsDlqArn",
    "job-events": "JobEventsDlqArn",
    "deployment-requests": "DeploymentRequestsDlqArn",
    "retraining-requests": "RetrainingRequestsDlqArn",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: which queue, how to find its DLQ, and what to do."""
    parser = argparse.ArgumentParser(
        description="Redrive a dead-letter queue of the training platform (SQS message move).",
    )
    parser.add_argument("--queue", required=True, choices=sorted(DLQ_OUTPUTS))
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack-name", help="stack whose outputs name the dead-letter queues")
    where.add_argument("--dlq-arn", help="ARN of the dead-letter queue to redrive")
    parser.add_argument(
        "--destination-arn",
        help="queue to move the messages to (default: each message's original source queue)",
    )
    parser.add_argument(
        "--max-per-second",
        type=int,
        help="messages moved per second (SQS default: as fast as possible, up to 500)",
    )
    parser.add_argument("--list", action="store_true", help="only list the DLQ's recent move tasks")
    parser.add_argument("--region", help="AWS region (default: from the environment)")
    args = parser.parse_args(argv)
    if args.max_per_second is not None and not 1 <= args.max_per_second <= 500:
        parser.error("--max-per-second must be between 1 and 500")
    return args


def dlq_arn_from_stack(cloudformation: Any, stack_name: str, queue: str) -> str:
    """The DLQ ARN from the stack's outputs; LookupError naming the output when it is missing."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    key = DLQ_OUTPUTS[queue]
    if key not in outputs:
        raise LookupError(f"stack {stack_name} has no output {key}")
    return str(outputs[key])


def redrive(
    sqs: Any,
    dlq_arn: str,
    *,
    destination_arn: str | None = None,
    max_per_second: int | None = None,
) -> str:
    """Start a message move task from ``dlq_arn``; returns its task handle."""
    request: dict[str, Any] = {"SourceArn": dlq_arn}
    if destination_arn:
        request["DestinationArn"] = destination_arn
    if max_per_second:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    return str(sqs.start_message_move_task(**request)["TaskHandle"])


def print_tasks(sqs: Any, dlq_arn: str, out: TextIO) -> None:
    """Print the DLQ's recent move tasks, newest first."""
    tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    if not tasks:
        print("no move tasks for this queue", file=out)
    for task in tasks:
        moved = task.get("ApproximateNumberOfMessagesMoved", 0)
        total = task.get("ApproximateNumberOfMessagesToMove", "?")
        line = f"{task.get('Status', '?'):<10} moved {moved}/{total}"
        if task.get("FailureReason"):
            line += f"  failure: {task['FailureReason']}"
        print(line, file=out)


def main(
    argv: Sequence[str] | None = None,
    *,
    session: Any = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the command; returns the process exit code."""
    args = parse_args(argv)
    session = session or boto3.Session(region_name=args.region)
    try:
        dlq_arn = args.dlq_arn or dlq_arn_from_stack(
            session.client("cloudformation"), args.stack_name, args.queue
        )
        sqs = session.client("sqs")
        print(f"dead-letter queue ({args.queue}): {dlq_arn}", file=out)
        if not args.list:
            handle = redrive(
                sqs,
                dlq_arn,
                destination_arn=args.destination_arn,
                max_per_second=args.max_per_second,
            )
            target = args.destination_arn or "each message's source queue"
            print(f"started moving messages to {target}; task handle {handle}", file=out)
        print_tasks(sqs, dlq_arn, out)
    except (ClientError, BotoCoreError, LookupError) as error:
        print(f"redrive failed: {error}", file=out)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
