"""MotoState: each restore is a copy of the state taken, whatever an earlier copy went through."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tests.moto_state import MotoState

REGION = "eu-west-1"


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> MotoState:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket="data", Key="tenants/acme/a.csv", Body=b"x,y\n1,2\n")
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="jobs", Item={"pk": {"S": "acme#1"}})
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="requests")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="first")
        boto3.client("cognito-idp", region_name=REGION).create_user_pool(PoolName="portal")
        return MotoState.take()


def _contents() -> tuple[bytes, list[str], list[str], int]:
    s3 = boto3.client("s3", region_name=REGION)
    body = s3.get_object(Bucket="data", Key="tenants/acme/a.csv")["Body"].read()
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName="jobs")["Items"]
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName="requests")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    pools = boto3.client("cognito-idp", region_name=REGION).list_user_pools(MaxResults=5)
    return (
        body,
        sorted(item["pk"]["S"] for item in items),
        [m["Body"] for m in messages],
        len(pools["UserPools"]),
    )


def test_each_restore_is_a_copy_that_later_restores_do_not_share(state: MotoState) -> None:
    with mock_aws():
        state.restore()
        assert _contents() == (b"x,y\n1,2\n", ["acme#1"], ["first"], 1)
        boto3.client("s3", region_name=REGION).delete_object(
            Bucket="data", Key="tenants/acme/a.csv"
        )
        boto3.client("dynamodb", region_name=REGION).put_item(
            TableName="jobs", Item={"pk": {"S": "globex#1"}}
        )
    with mock_aws():
        state.restore()
        # the message is visible again: the first copy's receive left the state untouched
        assert _contents() == (b"x,y\n1,2\n", ["acme#1"], ["first"], 1)


def test_a_restored_pool_still_signs_in(state: MotoState) -> None:
    with mock_aws():
        state.restore()
        cognito = boto3.client("cognito-idp", region_name=REGION)
        pool = cognito.list_user_pools(MaxResults=5)["UserPools"][0]["Id"]
        client = cognito.create_user_pool_client(
            UserPoolId=pool, ClientName="portal", ExplicitAuthFlows=["ADMIN_NO_SRP_AUTH"]
        )["UserPoolClient"]["ClientId"]
        cognito.admin_create_user(UserPoolId=pool, Username="alice", TemporaryPassword="Tmp-1234!")
        cognito.admin_set_user_password(
            UserPoolId=pool, Username="alice", Password="Secret-1234!", Permanent=True
        )
        tokens = cognito.admin_initiate_auth(
            UserPoolId=pool,
            ClientId=client,
            AuthFlow="ADMIN_NO_SRP_AUTH",
            AuthParameters={"USERNAME": "alice", "PASSWORD": "Secret-1234!"},
        )["AuthenticationResult"]
        assert tokens["IdToken"].count(".") == 2


def test_restore_refuses_a_mock_already_in_use(state: MotoState) -> None:
    with mock_aws():
        boto3.client("sqs", region_name=REGION).list_queues()
        with pytest.raises(RuntimeError, match="fresh mock_aws"):
            state.restore()
