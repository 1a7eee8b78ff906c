"""scripts/redrive.py: arguments and the SQS calls (moto has no message move tasks: Stubber)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

DLQ = "arn:aws:sqs:eu-west-1:123456789012:training-requests-dlq"


def load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "redrive.py"
    spec = importlib.util.spec_from_file_location("redrive", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


redrive = load_script()


class FakeSession:
    """Hands out pre-stubbed clients."""

    def __init__(self, **clients: Any) -> None:
        self.clients = clients

    def client(self, name: str) -> Any:
        return self.clients[name]


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client("sqs", region_name="eu-west-1")


TASKS = {
    "Results": [
        {
            "TaskHandle": "h-1",
            "Status": "RUNNING",
            "SourceArn": DLQ,
            "ApproximateNumberOfMessagesMoved": 3,
            "ApproximateNumberOfMessagesToMove": 7,
        }
    ]
}


def test_redrive_by_arn_starts_a_move_task_and_lists_it(sqs: Any) -> None:
    out = io.StringIO()
    with Stubber(sqs) as stub:
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "h-1"},
            {"SourceArn": DLQ, "MaxNumberOfMessagesPerSecond": 10},
        )
        stub.add_response("list_message_move_tasks", TASKS, {"SourceArn": DLQ, "MaxResults": 10})
        code = redrive.main(
            ["--queue", "training-requests", "--dlq-arn", DLQ, "--max-per-second", "10"],
            session=FakeSession(sqs=sqs),
            out=out,
        )
        stub.assert_no_pending_responses()
    assert code == 0
    text = out.getvalue()
    assert "started moving messages to each message's source queue; task handle h-1" in text
    assert "RUNNING    moved 3/7" in text


def test_stack_name_resolves_the_dlq_from_the_stack_outputs(sqs: Any) -> None:
    cloudformation = boto3.client("cloudformation", region_name="eu-west-1")
    events_dlq = DLQ.replace("training-requests", "job-events")
    out = io.StringIO()
    with Stubber(cloudformation) as cfn, Stubber(sqs) as stub:
        cfn.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "Training",
                        "CreationTime": "2024-01-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [
                            {"OutputKey": "TrainingRequestsDlqArn", "OutputValue": DLQ},
                            {"OutputKey": "JobEventsDlqArn", "OutputValue": events_dlq},
                        ],
                    }
                ]
            },
            {"StackName": "Training"},
        )
        stub.add_response(
            "start_message_move_task", {"TaskHandle": "h-2"}, {"SourceArn": events_dlq}
        )
        stub.add_response(
            "list_message_move_tasks", {"Results": []}, {"SourceArn": events_dlq, "MaxResults": 10}
        )
        code = redrive.main(
            ["--queue", "job-events", "--stack-name", "Training"],
            session=FakeSession(sqs=sqs, cloudformation=cloudformation),
            out=out,
        )
    assert code == 0
    assert f"dead-letter queue (job-events): {events_dlq}" in out.getvalue()
    assert "no move tasks for this queue" in out.getvalue()


def test_list_only_does_not_start_a_task(sqs: Any) -> None:
    out = io.StringIO()
    with Stubber(sqs) as stub:
        stub.add_response("list_message_move_tasks", TASKS, {"SourceArn": DLQ, "MaxResults": 10})
        code = redrive.main(
            ["--queue", "training-requests", "--dlq-arn", DLQ, "--list"],
            session=FakeSession(sqs=sqs),
            out=out,
        )
        stub.assert_no_pending_responses()
    assert code == 0
    assert "started" not in out.getvalue()


def test_an_aws_error_is_reported_with_exit_code_1(sqs: Any) -> None:
    out = io.StringIO()
    with Stubber(sqs) as stub:
        stub.add_client_error(
            "start_message_move_task",
            service_error_code="InvalidParameterValue",
            service_message="Source queue must be configured as a Dead Letter Queue.",
        )
        code = redrive.main(
            ["--queue", "training-requests", "--dlq-arn", DLQ],
            session=FakeSession(sqs=sqs),
            out=out,
        )
    assert code == 1
    assert "redrive failed" in out.getvalue()
    assert "must be configured as a Dead Letter Queue" in out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["--queue", "training-requests"],
        ["--queue", "other", "--dlq-arn", DLQ],
        ["--queue", "job-events", "--dlq-arn", DLQ, "--stack-name", "S"],
        ["--queue", "job-events", "--dlq-arn", DLQ, "--max-per-second", "501"],
    ],
    ids=["no-dlq", "unknown-queue", "both-dlq-sources", "rate-too-high"],
)
def test_bad_arguments_exit_with_usage_error(argv: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        redrive.parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
