"""AWS IAM auth: config/client with sts_endpoint (a moto server), role/{name}, and login with a
signed sts:GetCallerIdentity request forwarded to that endpoint."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault
from tests.fixtures.aws import ACCOUNT, REGION, closed_port_url

MOTO_USER = f"arn:aws:iam::{ACCOUNT}:user/moto"


@pytest.fixture
def aws(client: hvac.Client, aws_endpoint: str) -> hvac.Client:
    """The aws auth method enabled, its STS endpoint the moto server."""
    client.sys.enable_auth_method("aws")
    client.auth.aws.configure(sts_endpoint=aws_endpoint)
    return client


@pytest.fixture
def anon(vault: DevVault) -> Iterator[hvac.Client]:
    c = hvac.Client(url=vault.address)
    yield c
    c.adapter.close()


def login(c: hvac.Client, role: str | None = None, **kwargs: Any) -> dict[str, Any]:
    got: dict[str, Any] = c.auth.aws.iam_login("testing", "testing", role=role, **kwargs)
    return got


def test_login_as_the_moto_user(aws: hvac.Client, anon: hvac.Client) -> None:
    """A role bound to moto's user ARN logs in; metadata carries client and canonical ARNs."""
    aws.auth.aws.create_role("app", auth_type="iam", bound_iam_principal_arn=[MOTO_USER],
                             policies=["app"])
    auth = login(anon, "app")["auth"]
    assert auth["policies"] == ["app", "default"]
    meta = auth["metadata"]
    assert (meta["auth_type"], meta["account_id"]) == ("iam", ACCOUNT)
    assert meta["canonical_arn"] == MOTO_USER
    assert meta["client_arn"] == f"arn:aws:sts::{ACCOUNT}:user/moto"
    data = aws.auth.token.lookup(auth["client_token"])["data"]
    assert data["path"] == "auth/aws/login" and data["display_name"] == "aws-moto"


def test_assumed_role_maps_to_the_role_arn(aws: hvac.Client, anon: hvac.Client,
                                          aws_endpoint: str) -> None:
    """assumed-role/NAME/SESSION matches a role bound to arn:aws:iam::ACCT:role/NAME."""
    import boto3

    iam = boto3.client("iam", region_name=REGION, endpoint_url=aws_endpoint)
    iam.create_role(RoleName="deployer", AssumeRolePolicyDocument="{}")
    sts = boto3.client("sts", region_name=REGION, endpoint_url=aws_endpoint)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/deployer",
                            RoleSessionName="ci-7")["Credentials"]
    aws.auth.aws.create_role("deploy", auth_type="iam",
                             bound_iam_principal_arn=[f"arn:aws:iam::{ACCOUNT}:role/deployer"])
    auth = anon.auth.aws.iam_login(creds["AccessKeyId"], creds["SecretAccessKey"],
                                   creds["SessionToken"], role="deploy")["auth"]
    assert auth["metadata"]["client_arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci-7"
    assert auth["metadata"]["canonical_arn"] == f"arn:aws:iam::{ACCOUNT}:role/deployer"


def test_role_defaults_to_the_principal_name(aws: hvac.Client, anon: hvac.Client) -> None:
    """Without role=, the role is the principal's friendly name ("moto")."""
    aws.auth.aws.create_role("moto", auth_type="iam", bound_iam_principal_arn=[MOTO_USER])
    assert login(anon)["auth"]["client_token"]


def test_wildcard_bound_principal(aws: hvac.Client, anon: hvac.Client) -> None:
    """bound_iam_principal_arn may end in "*"."""
    aws.auth.aws.create_role("any", auth_type="iam",
                             bound_iam_principal_arn=[f"arn:aws:iam::{ACCOUNT}:user/*"])
    assert login(anon, "any")["auth"]["metadata"]["canonical_arn"] == MOTO_USER


def test_principal_not_bound_is_400(aws: hvac.Client, anon: hvac.Client) -> None:
    """A caller outside bound_iam_principal_arn: 400 "IAM Principal … does not belong…"."""
    aws.auth.aws.create_role("app", auth_type="iam",
                             bound_iam_principal_arn=[f"arn:aws:iam::{ACCOUNT}:role/other"])
    with pytest.raises(exceptions.InvalidRequest) as info:
        login(anon, "app")
    assert info.value.errors == [
        f'IAM Principal "arn:aws:sts::{ACCOUNT}:user/moto" does not belong to the role "app"']


def test_unknown_role_is_400(aws: hvac.Client, anon: hvac.Client) -> None:
    """A role that does not exist: 400 "entry for role nope not found"."""
    with pytest.raises(exceptions.InvalidRequest, match="entry for role nope not found"):
        login(anon, "nope")


def test_server_id_header_required_when_configured(aws: hvac.Client, anon: hvac.Client,
                                                   aws_endpoint: str) -> None:
    """iam_server_id_header_value: missing or wrong X-Vault-AWS-IAM-Server-ID is 400."""
    aws.auth.aws.configure(sts_endpoint=aws_endpoint, iam_server_id_header_value="vault.test")
    aws.auth.aws.create_role("app", auth_type="iam", bound_iam_principal_arn=[MOTO_USER])
    with pytest.raises(exceptions.InvalidRequest,
                       match='error validating X-Vault-AWS-IAM-Server-ID header: missing'):
        login(anon, "app")
    with pytest.raises(exceptions.InvalidRequest, match=r'expected "vault\.test" but got "x"'):
        login(anon, "app", header_value="x")
    assert login(anon, "app", header_value="vault.test")["auth"]["client_token"]


def test_unsigned_server_id_header_is_400(vault: DevVault, aws: hvac.Client,
                                          aws_endpoint: str) -> None:
    """The server ID header must be among the signed headers."""
    aws.auth.aws.configure(sts_endpoint=aws_endpoint, iam_server_id_header_value="vault.test")
    aws.auth.aws.create_role("app", auth_type="iam", bound_iam_principal_arn=[MOTO_USER])
    headers = {"Authorization": ["AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/sts/"
                                 "aws4_request, SignedHeaders=host;x-amz-date, Signature=00"],
               "X-Vault-AWS-IAM-Server-ID": ["vault.test"]}
    resp = requests.post(vault.address + "/v1/auth/aws/login", timeout=5, json={
        "role": "app", "iam_http_request_method": "POST",
        "iam_request_url": base64.b64encode(b"https://sts.amazonaws.com/").decode(),
        "iam_request_body": base64.b64encode(
            b"Action=GetCallerIdentity&Version=2011-06-15").decode(),
        "iam_request_headers": base64.b64encode(json.dumps(headers).encode()).decode()})
    assert resp.status_code == 400
    assert resp.json() == {"errors": [
        "error validating X-Vault-AWS-IAM-Server-ID header: vault header wasn't signed"]}


def test_unreachable_sts_is_400(client: hvac.Client, anon: hvac.Client) -> None:
    """An STS endpoint that refuses connections: 400 "error making upstream request: …"."""
    client.sys.enable_auth_method("aws")
    client.auth.aws.configure(sts_endpoint=closed_port_url())
    client.auth.aws.create_role("app", auth_type="iam", bound_iam_principal_arn=[MOTO_USER])
    with pytest.raises(exceptions.InvalidRequest, match="error making upstream request"):
        login(anon, "app")


def test_missing_request_url_is_400(vault: DevVault, aws: hvac.Client) -> None:
    """A login body without iam_request_url: 400 "missing iam_request_url"."""
    resp = requests.post(vault.address + "/v1/auth/aws/login", timeout=5,
                         json={"role": "app", "iam_http_request_method": "POST"})
    assert resp.status_code == 400 and resp.json() == {"errors": ["missing iam_request_url"]}


def test_config_read_hides_the_secret_key(aws: hvac.Client, aws_endpoint: str) -> None:
    """config/client reads back sts_endpoint and access_key, never secret_key."""
    aws.auth.aws.configure(access_key="AKIA", secret_key="hush", sts_endpoint=aws_endpoint)
    data = aws.auth.aws.read_config()
    assert (data["sts_endpoint"], data["access_key"]) == (aws_endpoint, "AKIA")
    assert "secret_key" not in data and "hush" not in json.dumps(data)


def test_role_read_and_list(aws: hvac.Client) -> None:
    """role/{name} reads back auth_type and bound ARNs; LIST roles lists names."""
    aws.auth.aws.create_role("app", auth_type="iam", bound_iam_principal_arn=[MOTO_USER],
                             policies=["app"])
    data = aws.auth.aws.read_role("app")  # hvac returns the data
    assert data["auth_type"] == "iam" and data["bound_iam_principal_arn"] == [MOTO_USER]
    assert data["token_policies"] == ["app"]
    assert aws.auth.aws.list_roles()["keys"] == ["app"]


def test_ec2_roles_are_refused(aws: hvac.Client) -> None:
    """auth_type ec2 is not implemented: a clear 400."""
    with pytest.raises(exceptions.InvalidRequest, match="only iam"):
        aws.auth.aws.create_role("box", auth_type="ec2", bound_ami_id=["ami-1"])


def test_a_refused_role_write_leaves_the_role_as_it_was(aws: hvac.Client) -> None:
    """auth_type ec2 is refused with 400, and the stored role still reads as it was written."""
    aws.auth.aws.create_role("keep", auth_type="iam", bound_iam_principal_arn=[MOTO_USER])
    with pytest.raises(exceptions.InvalidRequest):
        aws.write("auth/aws/role/keep", auth_type="ec2")
    role = aws.read("auth/aws/role/keep")["data"]
    assert (role["auth_type"], role["bound_iam_principal_arn"]) == ("iam", [MOTO_USER])
