"""Secrets Manager source against moto in server mode, through real boto3 clients built by the factory."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from typing import Any

import boto3
import botocore.exceptions
import pytest

from injector.errors import AccessDeniedError, AuthError, ConfigError, NotFoundError, SourceError, UnavailableError
from injector.refs import Reference, parse_reference
from injector.sources import Fetched
from injector.sources._aws import AwsContext, map_aws_error
from injector.sources.aws_secretsmanager import SecretsManagerSource, build_secretsmanager_source
from tests.fixtures.aws import REGION, CallCounter, closed_port_url
from tests.fixtures.sentinel import SENTINEL

pytestmark = pytest.mark.aws

BATCH = "secretsmanager.BatchGetSecretValue"
GET = "secretsmanager.GetSecretValue"
DESCRIBE = "secretsmanager.DescribeSecret"


def ref(text: str) -> Reference:
    return parse_reference(text)


def fetched(result: Fetched | SourceError) -> Fetched:
    assert isinstance(result, Fetched), f"expected a value, got {result!r}"
    return result


def build(aws_config: Any, calls: CallCounter | None = None, **sections: Any) -> SecretsManagerSource:
    source = build_secretsmanager_source(aws_config(**sections))
    if calls is not None:
        calls.attach(source.client)
    return source


class TestFetch:
    def test_plain_string(self, sm_source, sm_client):
        """A plain SecretString comes back as text with the VersionId as version."""
        created = sm_client.create_secret(Name="prod/token", SecretString="plain-text")
        r = ref("aws-sm:prod/token")
        got = fetched(sm_source.fetch([r])[r])
        assert got.value.reveal() == "plain-text"
        assert got.version == created["VersionId"]

    def test_json_key_selected_by_caller(self, sm_source, sm_client):
        """A JSON SecretString is returned whole; Secret.select picks a key from it."""
        sm_client.create_secret(Name="prod/db", SecretString=json.dumps({"username": "app", "password": "pw"}))
        keyed = ref("aws-sm:prod/db#password")
        got = fetched(sm_source.fetch([keyed.base])[keyed.base])
        assert got.value.select("password", ref=str(keyed)).reveal() == "pw"
        assert got.value.keys() == ["password", "username"]

    def test_binary_secret(self, sm_source, sm_client):
        """A SecretBinary comes back as bytes."""
        sm_client.create_secret(Name="prod/keystore", SecretBinary=b"\x00\xffkeystore")
        r = ref("aws-sm:prod/keystore")
        assert fetched(sm_source.fetch([r])[r]).value.reveal() == b"\x00\xffkeystore"

    def test_full_arn_reference(self, sm_source, sm_client):
        """A bare full ARN is fetched in the batch and matched back to its reference."""
        arn = sm_client.create_secret(Name="prod/arn", SecretString="by-arn")["ARN"]
        r = ref(arn)
        assert r.scheme == "aws-sm"
        assert fetched(sm_source.fetch([r])[r]).value.reveal() == "by-arn"

    def test_partial_arn_reference(self, sm_source, sm_client):
        """An ARN without the random six-character suffix is matched back too."""
        arn = sm_client.create_secret(Name="prod/partial", SecretString="partial")["ARN"]
        r = ref(f"aws-sm:{arn.rsplit('-', 1)[0]}")
        assert fetched(sm_source.fetch([r])[r]).value.reveal() == "partial"

    def test_version_id_reference(self, sm_source, sm_client, aws_calls):
        """?version_id= reads that version with GetSecretValue, not the current one."""
        first = sm_client.create_secret(Name="prod/v", SecretString="one")["VersionId"]
        sm_client.put_secret_value(SecretId="prod/v", SecretString="two")
        r = ref(f"aws-sm:prod/v?version_id={first}")
        got = fetched(sm_source.fetch([r])[r])
        assert (got.value.reveal(), got.version) == ("one", first)
        assert aws_calls == {GET: 1}

    def test_stage_reference(self, sm_source, sm_client):
        """?stage=AWSPREVIOUS reads the version holding that label."""
        first = sm_client.create_secret(Name="prod/s", SecretString="one")["VersionId"]
        sm_client.put_secret_value(SecretId="prod/s", SecretString="two")
        r = ref("aws-sm:prod/s?stage=AWSPREVIOUS")
        got = fetched(sm_source.fetch([r])[r])
        assert (got.value.reveal(), got.version) == ("one", first)

    def test_explicit_awscurrent_is_batched_with_plain_reference(self, sm_source, sm_client, aws_calls):
        """aws-sm:x and aws-sm:x?stage=AWSCURRENT share one batch entry."""
        sm_client.create_secret(Name="prod/same", SecretString="v")
        plain, staged = ref("aws-sm:prod/same"), ref("aws-sm:prod/same?stage=AWSCURRENT")
        result = sm_source.fetch([plain, staged, plain])
        assert fetched(result[plain]).version == fetched(result[staged]).version
        assert aws_calls == {BATCH: 1}

    def test_describe(self, sm_source):
        """describe() is a short log-safe label that tells pinned versions apart."""
        assert sm_source.describe(ref("aws-sm:prod/db#password")) == "aws.sm(prod/db)"
        assert sm_source.describe(ref("aws-sm:prod/db?stage=AWSPREVIOUS")) == "aws.sm(prod/db?stage=AWSPREVIOUS)"
        assert sm_source.describe(ref("aws-sm:prod/db?version_id=abc")) == "aws.sm(prod/db?version_id=abc)"


class TestRotation:
    def test_pending_version_is_not_returned(self, sm_source, sm_client):
        """While AWSPENDING exists, the fetch still returns the AWSCURRENT value and VersionId."""
        current = sm_client.create_secret(Name="prod/rot", SecretString="old")["VersionId"]
        sm_client.put_secret_value(SecretId="prod/rot", SecretString="new", VersionStages=["AWSPENDING"])
        r = ref("aws-sm:prod/rot")
        got = fetched(sm_source.fetch([r])[r])
        assert (got.value.reveal(), got.version) == ("old", current)

    def test_full_rotation(self, sm_source, sm_client):
        """create → pending → stage moved: the next fetch sees the new value and the new VersionId."""
        old = sm_client.create_secret(Name="prod/rot", SecretString="old")["VersionId"]
        r = ref("aws-sm:prod/rot")
        assert fetched(sm_source.fetch([r])[r]).version == old
        new = sm_client.put_secret_value(SecretId="prod/rot", SecretString="new", VersionStages=["AWSPENDING"])[
            "VersionId"
        ]
        assert fetched(sm_source.fetch([r])[r]).value.reveal() == "old"
        sm_client.update_secret_version_stage(
            SecretId="prod/rot", VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
        )
        got = fetched(sm_source.fetch([r])[r])
        assert (got.value.reveal(), got.version) == ("new", new)
        previous = ref("aws-sm:prod/rot?stage=AWSPREVIOUS")
        assert fetched(sm_source.fetch([previous])[previous]).value.reveal() == "old"

    def test_stale_batch_entry_is_reread_by_stage(self, sm_source, sm_client, aws_calls):
        """moto answers the batch with the old version after a stage move; that entry is re-read once."""
        old = sm_client.create_secret(Name="prod/rot", SecretString="old")["VersionId"]
        new = sm_client.put_secret_value(SecretId="prod/rot", SecretString="new", VersionStages=["AWSPENDING"])[
            "VersionId"
        ]
        sm_client.update_secret_version_stage(
            SecretId="prod/rot", VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
        )
        r = ref("aws-sm:prod/rot")
        sm_source.fetch([r])
        assert aws_calls == {BATCH: 1, GET: 1}


def seed(sm_client: Any, n: int) -> list[Reference]:
    for i in range(n):
        sm_client.create_secret(Name=f"app/s{i:03d}", SecretString=f"value-{i}")
    return [ref(f"aws-sm:app/s{i:03d}") for i in range(n)]


def csi_style_refresh(client: Any, names: list[str], cache: dict[str, str]) -> None:
    """The CSI provider's loop: DescribeSecret each; GetSecretValue(VersionId) when AWSCURRENT moved."""
    for name in names:
        if name in cache:
            stages = client.describe_secret(SecretId=name)["VersionIdsToStages"]
            current = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
            if current == cache[name]:
                continue
            cache[name] = client.get_secret_value(SecretId=name, VersionId=current)["VersionId"]
        else:
            cache[name] = client.get_secret_value(SecretId=name)["VersionId"]


class TestCallCounts:
    def test_100_secrets_take_5_batch_calls(self, sm_source, sm_client, aws_calls):
        """100 current-version secrets cost ceil(100/20) = 5 BatchGetSecretValue and 0 GetSecretValue."""
        refs = seed(sm_client, 100)
        result = sm_source.fetch(refs)
        assert all(isinstance(result[r], Fetched) for r in refs)
        assert fetched(result[refs[42]]).value.reveal() == "value-42"
        assert aws_calls == {BATCH: math.ceil(100 / 20)}

    def test_change_detection_batch_vs_describe(self, sm_source, sm_client, aws_calls, aws_endpoint):
        """Three cycles (first, unchanged, 3 changed) cost 15 batch calls against 303 for Describe-then-Get."""
        refs = seed(sm_client, 100)
        names = [r.path for r in refs]
        csi_calls = CallCounter()
        # A client of its own: the source's has only the operations the source calls.
        csi_client = csi_calls.attach(boto3.client("secretsmanager", region_name=REGION, endpoint_url=aws_endpoint))
        versions: dict[Reference, str | None] = {}
        csi_cache: dict[str, str] = {}
        per_cycle = []
        for cycle in range(3):
            if cycle == 2:
                for name in names[:3]:
                    sm_client.put_secret_value(SecretId=name, SecretString="rotated")
            before, csi_before = sum(aws_calls.values()), sum(csi_calls.values())
            result = sm_source.fetch(refs)
            changed = [r for r in refs if fetched(result[r]).version != versions.get(r)]
            versions = {r: fetched(result[r]).version for r in refs}
            csi_style_refresh(csi_client, names, csi_cache)
            per_cycle.append((sum(aws_calls.values()) - before, sum(csi_calls.values()) - csi_before, len(changed)))
        assert per_cycle == [(5, 100, 100), (5, 100, 0), (5, 103, 3)]
        assert aws_calls == {BATCH: 15}
        assert csi_calls == {GET: 103, DESCRIBE: 200}


class TestErrors:
    def test_missing_secret_fails_alone(self, sm_source, sm_client, aws_calls):
        """A missing secret is a NotFoundError naming it; the others in the same batch succeed."""
        sm_client.create_secret(Name="prod/a", SecretString="a")
        sm_client.create_secret(Name="prod/b", SecretString="b")
        a, b, missing = ref("aws-sm:prod/a"), ref("aws-sm:prod/b"), ref("aws-sm:prod/missing")
        result = sm_source.fetch([a, missing, b])
        assert fetched(result[a]).value.reveal() == "a"
        assert fetched(result[b]).value.reveal() == "b"
        error = result[missing]
        assert isinstance(error, NotFoundError)
        assert "aws-sm:prod/missing" in str(error)
        assert error.ref == "aws-sm:prod/missing"
        assert aws_calls == {BATCH: 1}

    def test_missing_version_id(self, sm_source, sm_client):
        """A version_id that does not exist is a NotFoundError for that reference."""
        sm_client.create_secret(Name="prod/v", SecretString="v")
        r = ref("aws-sm:prod/v?version_id=00000000-0000-0000-0000-000000000000")
        assert isinstance(sm_source.fetch([r])[r], NotFoundError)

    def test_batch_denied_falls_back_to_get(self, aws_config, sm_client, moto_iam, monkeypatch, caplog):
        """Without secretsmanager:BatchGetSecretValue the source warns once and uses GetSecretValue per secret."""
        sm_client.create_secret(Name="prod/a", SecretString="a")
        sm_client.create_secret(Name="prod/b", SecretString="b")
        key, secret = moto_iam.user("getter", ["secretsmanager:GetSecretValue"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        calls = CallCounter()
        source = build(aws_config, calls)
        moto_iam.enforce()
        refs = [ref("aws-sm:prod/a"), ref("aws-sm:prod/b")]
        with caplog.at_level(logging.WARNING, logger="injector.sources.aws_secretsmanager"):
            first = source.fetch(refs)
            second = source.fetch(refs)
        assert [fetched(first[r]).value.reveal() for r in refs] == ["a", "b"]
        assert all(isinstance(second[r], Fetched) for r in refs)
        assert calls == {BATCH: 1, GET: 4}
        warnings = [rec.message for rec in caplog.records if rec.name == "injector.sources.aws_secretsmanager"]
        assert len(warnings) == 1
        assert "Grant secretsmanager:BatchGetSecretValue" in warnings[0]

    def test_access_denied(self, aws_config, sm_client, moto_iam, monkeypatch):
        """A role that may not read the secret gets AccessDeniedError naming the reference and the action."""
        sm_client.create_secret(Name="prod/a", SecretString=SENTINEL)
        key, secret = moto_iam.user("nobody", ["ssm:GetParameters"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        source = build(aws_config)
        moto_iam.enforce()
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, AccessDeniedError)
        assert "aws-sm:prod/a" in str(error)
        assert "secretsmanager:GetSecretValue" in str(error)
        assert SENTINEL not in str(error)

    def test_rejected_credentials_name_their_source(self, aws_config, sm_client, moto_iam):
        """Keys moto's IAM does not know give AuthError saying boto3 took them from the environment."""
        sm_client.create_secret(Name="prod/a", SecretString="a")
        source = build(aws_config)
        moto_iam.enforce()
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, AuthError)
        assert "InvalidClientTokenId" in str(error)
        assert "env (AWS_ACCESS_KEY_ID" in str(error)

    def test_expired_token_names_credential_source(self, aws_config, scripted_aws):
        """ExpiredTokenException (scripted: moto cannot expire tokens) is an AuthError naming "env"."""
        scripted_aws.error(400, "ExpiredTokenException", "The security token included in the request is expired")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 1})
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, AuthError)
        assert "expired" in str(error)
        assert "got them from env" in str(error)

    def test_throttling_is_retried_then_unavailable(self, aws_config, scripted_aws):
        """ThrottlingException is retried by standard mode, then UnavailableError (retryable)."""
        scripted_aws.error(400, "ThrottlingException", "Rate exceeded")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 2})
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, UnavailableError)
        assert error.retryable
        assert "after 2 attempts" in str(error)
        assert scripted_aws.targets == ["secretsmanager.BatchGetSecretValue"] * 2

    def test_server_error_is_unavailable(self, aws_config, scripted_aws):
        """A 5xx answer is an UnavailableError for every reference of the failed batch."""
        scripted_aws.error(503, "ServiceUnavailable", "try later")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 1})
        refs = [ref("aws-sm:prod/a"), ref("aws-sm:prod/b")]
        result = source.fetch(refs)
        assert [type(result[r]) for r in refs] == [UnavailableError, UnavailableError]
        assert str(result[refs[1]]).startswith("aws-sm:prod/b: ")

    def test_batch_error_entries_map_per_secret(self, aws_config, scripted_aws):
        """Errors listed inside a BatchGetSecretValue answer map per secret (AccessDenied, KMS, not found)."""
        scripted_aws.ok(
            {
                "SecretValues": [{"ARN": "arn:x", "Name": "ok", "VersionId": "v1", "SecretString": "fine"}],
                "Errors": [
                    {"SecretId": "denied", "ErrorCode": "AccessDeniedException", "Message": "not allowed"},
                    {"SecretId": "kms", "ErrorCode": "DecryptionFailure", "Message": "KMS refused"},
                    {"SecretId": "gone", "ErrorCode": "ResourceNotFoundException", "Message": "no such secret"},
                ],
            }
        )
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url})
        refs = {name: ref(f"aws-sm:{name}") for name in ("ok", "denied", "kms", "gone")}
        result = source.fetch(list(refs.values()))
        assert fetched(result[refs["ok"]]).value.reveal() == "fine"
        assert isinstance(result[refs["denied"]], AccessDeniedError)
        assert isinstance(result[refs["kms"]], AccessDeniedError)
        assert "DecryptionFailure" in str(result[refs["kms"]])
        assert isinstance(result[refs["gone"]], NotFoundError)

    def test_no_credentials(self, aws_config, monkeypatch):
        """With no credentials anywhere in the chain, AuthError says to give the pod a role."""
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        source = build(aws_config)
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, AuthError)
        assert "NoCredentialsError" in str(error)
        assert "IRSA" in str(error)

    def test_unreachable_endpoint_is_unavailable(self, aws_config):
        """A closed loopback port is an UnavailableError naming the endpoint."""
        url = closed_port_url()
        source = build(aws_config, aws={"endpoint_url": url, "max_attempts": 1, "timeout": "2s"})
        r = ref("aws-sm:prod/a")
        error = source.fetch([r])[r]
        assert isinstance(error, UnavailableError)
        assert url in str(error)

    def test_value_too_large(self, aws_config, sm_client):
        """A value over limits.max_secret_bytes is a SourceError that states sizes, never the value."""
        sm_client.create_secret(Name="prod/big", SecretString=SENTINEL * 4)
        source = build(aws_config, limits={"max_secret_bytes": 32})
        r = ref("aws-sm:prod/big")
        error = source.fetch([r])[r]
        assert type(error) is SourceError
        assert "limits.max_secret_bytes (32)" in str(error)
        assert SENTINEL not in str(error)


def client_error(code: str, status: int, message: str = "m", operation: str = "GetSecretValue") -> Exception:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, operation)


def _error_id(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return f"{exc.response['Error']['Code']}-{exc.response['ResponseMetadata']['HTTPStatusCode']}"
    return type(exc).__name__


class TestMapAwsError:
    """The mapping table on constructed botocore exceptions: codes moto never sends."""

    CTX = AwsContext(service="Secrets Manager", region="eu-west-1", credentials=lambda: "iam-role (the node)")

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (client_error("ResourceNotFoundException", 400), NotFoundError),
            (client_error("ParameterNotFound", 400), NotFoundError),
            (client_error("AccessDeniedException", 400), AccessDeniedError),
            (client_error("KMSAccessDeniedException", 400), AccessDeniedError),
            (client_error("DecryptionFailure", 400), AccessDeniedError),
            (client_error("ThrottlingException", 400), UnavailableError),
            (client_error("TooManyRequestsException", 400), UnavailableError),
            (client_error("InternalServiceError", 500), UnavailableError),
            (client_error("SomethingNew", 502), UnavailableError),
            (client_error("ExpiredTokenException", 400), AuthError),
            (client_error("ExpiredToken", 403), AuthError),
            (client_error("UnrecognizedClientException", 400), AuthError),
            (client_error("InvalidSignatureException", 400), AuthError),
            (client_error("ValidationException", 400), SourceError),
            (
                client_error("403", 403, "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"),
                AccessDeniedError,
            ),
            (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), UnavailableError),
            (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), UnavailableError),
            (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), UnavailableError),
            (botocore.exceptions.NoCredentialsError(), AuthError),
        ],
        ids=lambda v: v.__name__ if isinstance(v, type) else _error_id(v),
    )
    def test_maps_to_class(self, exc, expected):
        """Each botocore failure maps to the documented injector error class."""
        error = map_aws_error(exc, self.CTX, "aws-sm:prod/db")
        assert type(error) is expected
        assert str(error).startswith("aws-sm:prod/db: ")
        assert error.ref == "aws-sm:prod/db"

    def test_auth_error_says_what_to_do(self):
        """An expired-credentials message names the credential source and IRSA / Pod Identity."""
        error = map_aws_error(client_error("ExpiredTokenException", 400), self.CTX, "aws-sm:prod/db")
        assert "iam-role (the node)" in str(error)
        assert "Pod Identity" in str(error)

    def test_error_is_raised_from_botocore(self):
        """The context manager raises the mapped error from the botocore exception."""
        original = client_error("ThrottlingException", 400)
        with pytest.raises(UnavailableError) as info, self.CTX.errors("aws-sm:x"):
            raise original
        assert info.value.__cause__ is original


class TestLogging:
    def test_values_never_logged(self, aws_config, sm_client, caplog):
        """With every logger at DEBUG, a fetch never logs the value: the factory pins botocore's body dumps off."""
        sm_client.create_secret(Name="prod/sentinel", SecretString=SENTINEL)
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        with caplog.at_level(logging.DEBUG):
            source = build(aws_config)
            r = ref("aws-sm:prod/sentinel")
            assert fetched(source.fetch([r])[r]).value.reveal() == SENTINEL
        assert "aws.sm: 1 references" in caplog.text
        assert SENTINEL not in caplog.text


class TestFactory:
    def test_client_settings_come_from_config(self, aws_config, aws_endpoint):
        """The factory applies region, endpoint, adaptive retries with max_attempts, and timeouts."""
        source = build(aws_config, aws={"region": "eu-west-1", "max_attempts": 5, "timeout": "7s"})
        meta = source.client.meta
        assert (meta.region_name, meta.endpoint_url) == ("eu-west-1", aws_endpoint)
        assert meta.config.retries == {"mode": "adaptive", "total_max_attempts": 5}
        assert (meta.config.connect_timeout, meta.config.read_timeout) == (7.0, 7.0)

    def test_leaky_loggers_pinned_at_warning(self, aws_config):
        """Building a source pins botocore/boto3/urllib3 at WARNING even when they were at DEBUG."""
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        build(aws_config)
        assert [logging.getLogger(n).level for n in ("botocore", "boto3", "urllib3")] == [logging.WARNING] * 3

    def test_no_region_is_a_config_error(self, aws_config, monkeypatch):
        """Without aws.region or AWS_REGION the factory raises ConfigError naming aws.region."""
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        with pytest.raises(ConfigError, match=r"aws\.region"):
            build(aws_config, aws={"region": None})

    def test_boto3_not_imported_by_injector(self):
        """Importing injector, its config, refs, sources and the AWS source modules loads no boto3."""
        code = (
            "import sys, injector, injector.sources, injector.config, injector.refs, "
            "injector.sources.aws_secretsmanager, injector.sources.aws_ssm; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"
