"""SSM Parameter Store source against moto in server mode, through real boto3 clients built by the factory."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from injector.errors import AccessDeniedError, AuthError, NotFoundError, SourceError, UnavailableError
from injector.refs import Reference, parse_reference
from injector.sources import Fetched
from injector.sources.aws_ssm import SsmSource, build_ssm_source, name_from_arn
from tests.fixtures.aws import ACCOUNT, REGION, CallCounter, closed_port_url
from tests.fixtures.sentinel import SENTINEL

pytestmark = pytest.mark.aws

GET = "ssm.GetParameters"
BY_PATH = "ssm.GetParametersByPath"


def ref(text: str) -> Reference:
    return parse_reference(text)


def fetched(result: Fetched | SourceError) -> Fetched:
    assert isinstance(result, Fetched), f"expected a value, got {result!r}"
    return result


def build(aws_config: Any, calls: CallCounter | None = None, **sections: Any) -> SsmSource:
    source = build_ssm_source(aws_config(**sections))
    if calls is not None:
        calls.attach(source.client)
    return source


def arn(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}"


class TestFetch:
    def test_string(self, ssm_source, ssm_client):
        """A String parameter comes back as its text, with str(Version) as version."""
        ssm_client.put_parameter(Name="/app/host", Value="db.internal", Type="String")
        ssm_client.put_parameter(Name="/app/host", Value="db2.internal", Type="String", Overwrite=True)
        r = ref("aws-ssm:/app/host")
        got = fetched(ssm_source.fetch([r])[r])
        assert (got.value.reveal(), got.version) == ("db2.internal", "2")

    def test_string_list_stays_comma_joined(self, ssm_source, ssm_client):
        """A StringList is the comma-joined string AWS returns, not a list."""
        ssm_client.put_parameter(Name="/app/hosts", Value="a,b,c", Type="StringList")
        r = ref("aws-ssm:/app/hosts")
        assert fetched(ssm_source.fetch([r])[r]).value.reveal() == "a,b,c"

    def test_secure_string_decrypted(self, ssm_source, ssm_client):
        """A SecureString comes back decrypted."""
        ssm_client.put_parameter(Name="/app/password", Value="s3cret", Type="SecureString")
        r = ref("aws-ssm:/app/password")
        assert fetched(ssm_source.fetch([r])[r]).value.reveal() == "s3cret"

    @pytest.mark.parametrize("name", ["/app/by-arn", "flat-name"], ids=["hierarchical", "flat"])
    def test_arn_reference(self, ssm_source, ssm_client, name):
        """A bare parameter ARN is sent as is and its answer matched back to the reference."""
        ssm_client.put_parameter(Name=name, Value="via-arn", Type="String")
        r = ref(arn(name))
        assert r.scheme == "aws-ssm"
        assert fetched(ssm_source.fetch([r])[r]).value.reveal() == "via-arn"

    @pytest.mark.parametrize(
        ("text", "name"),
        [(arn("/app/x/y"), "/app/x/y"), (arn("flat"), "flat")],
        ids=["hierarchical", "flat"],
    )
    def test_name_from_arn(self, text, name):
        """An ARN's name keeps a leading / only when it is hierarchical."""
        assert name_from_arn(text) == name

    def test_name_and_arn_of_one_parameter(self, ssm_source, ssm_client, aws_calls):
        """A name and the ARN of the same parameter both resolve, in one GetParameters call."""
        ssm_client.put_parameter(Name="/app/dup", Value="v", Type="String")
        by_name, by_arn = ref("aws-ssm:/app/dup"), ref(arn("/app/dup"))
        result = ssm_source.fetch([by_name, by_arn, by_name])
        assert fetched(result[by_name]).value == fetched(result[by_arn]).value
        assert aws_calls == {GET: 1}

    def test_describe(self, ssm_source):
        """describe() is aws.ssm(NAME) or aws.ssm(/PATH/)."""
        assert ssm_source.describe(ref("aws-ssm:/app/prod/")) == "aws.ssm(/app/prod/)"
        assert ssm_source.describe(ref("aws-ssm:/app/prod/db_host")) == "aws.ssm(/app/prod/db_host)"


def seed_tree(ssm_client: Any) -> dict[str, str]:
    params = {f"/app/prod/svc{i:02d}/key": f"v{i}" for i in range(22)}
    params |= {"/app/prod/db/host": "db.internal", "/app/prod/db/password": "pw", "/app/prod/flag": "on"}
    for name, value in params.items():
        ssm_client.put_parameter(Name=name, Value=value, Type="SecureString" if "password" in name else "String")
    ssm_client.put_parameter(Name="/app/prodx/outside", Value="no", Type="String")
    ssm_client.put_parameter(Name="/app/other", Value="no", Type="String")
    return params


class TestByPath:
    def test_nested_names_relative_to_path(self, ssm_source, ssm_client):
        """Every parameter under the path, recursively, keyed by its name relative to the path."""
        params = seed_tree(ssm_client)
        r = ref("aws-ssm:/app/prod/")
        value = fetched(ssm_source.fetch([r])[r]).value.reveal()
        assert value == {name.removeprefix("/app/prod/"): v for name, v in params.items()}
        assert value["db/host"] == "db.internal"
        assert value["db/password"] == "pw"

    def test_pages_followed(self, ssm_source, ssm_client, aws_calls):
        """25 parameters take ceil(25/10) = 3 GetParametersByPath pages."""
        seed_tree(ssm_client)
        r = ref("aws-ssm:/app/prod/")
        assert len(fetched(ssm_source.fetch([r])[r]).value.reveal()) == 25
        assert aws_calls == {BY_PATH: 3}

    def test_version_is_digest_of_names_and_versions(self, ssm_source, ssm_client):
        """The version digests sorted (name, Version) pairs only, and moves when a parameter changes."""
        ssm_client.put_parameter(Name="/svc/a", Value="1", Type="String")
        ssm_client.put_parameter(Name="/svc/b/c", Value="2", Type="String")
        r = ref("aws-ssm:/svc/")
        first = fetched(ssm_source.fetch([r])[r]).version
        expected = hashlib.sha256(b"/svc/a\t1\n/svc/b/c\t1").hexdigest()[:16]
        assert first == expected
        assert fetched(ssm_source.fetch([r])[r]).version == first
        ssm_client.put_parameter(Name="/svc/a", Value="1", Type="String", Overwrite=True)
        assert fetched(ssm_source.fetch([r])[r]).version != first

    def test_empty_path_not_found(self, ssm_source):
        """A path with no parameters is a NotFoundError naming the path and region."""
        r = ref("aws-ssm:/nothing/here/")
        error = ssm_source.fetch([r])[r]
        assert isinstance(error, NotFoundError)
        assert "/nothing/here/" in str(error)
        assert REGION in str(error)


class TestCallCounts:
    def test_100_parameters_take_10_calls(self, ssm_source, ssm_client, aws_calls):
        """100 names cost ceil(100/10) = 10 GetParameters calls."""
        for i in range(100):
            ssm_client.put_parameter(Name=f"/bulk/p{i:03d}", Value=f"value-{i}", Type="String")
        refs = [ref(f"aws-ssm:/bulk/p{i:03d}") for i in range(100)]
        result = ssm_source.fetch(refs)
        assert [fetched(result[r]).value.reveal() for r in refs] == [f"value-{i}" for i in range(100)]
        assert aws_calls == {GET: 10}

    def test_names_and_paths_in_one_fetch(self, ssm_source, ssm_client, aws_calls):
        """Names are batched and each path paged, in the same fetch."""
        seed_tree(ssm_client)
        refs = [ref("aws-ssm:/app/other"), ref("aws-ssm:/app/prod/flag"), ref("aws-ssm:/app/prod/")]
        result = ssm_source.fetch(refs)
        assert all(isinstance(result[r], Fetched) for r in refs)
        assert aws_calls == {GET: 1, BY_PATH: 3}


class TestErrors:
    def test_missing_parameter_fails_alone(self, ssm_source, ssm_client, aws_calls):
        """A name in InvalidParameters is a NotFoundError; the rest of its batch succeeds."""
        ssm_client.put_parameter(Name="/app/a", Value="a", Type="String")
        a, missing = ref("aws-ssm:/app/a"), ref("aws-ssm:/app/missing")
        result = ssm_source.fetch([missing, a])
        assert fetched(result[a]).value.reveal() == "a"
        error = result[missing]
        assert isinstance(error, NotFoundError)
        assert str(error).startswith("aws-ssm:/app/missing: parameter /app/missing not found")
        assert aws_calls == {GET: 1}

    def test_access_denied(self, aws_config, ssm_client, moto_iam, monkeypatch):
        """A role without ssm:GetParameters gets AccessDeniedError for every reference of the batch."""
        ssm_client.put_parameter(Name="/app/a", Value=SENTINEL, Type="SecureString")
        key, secret = moto_iam.user("nobody", ["secretsmanager:GetSecretValue"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        source = build(aws_config)
        moto_iam.enforce()
        refs = [ref("aws-ssm:/app/a"), ref("aws-ssm:/app/b")]
        result = source.fetch(refs)
        assert [type(result[r]) for r in refs] == [AccessDeniedError, AccessDeniedError]
        assert str(result[refs[1]]).startswith("aws-ssm:/app/b: access denied")
        assert "ssm:GetParameters" in str(result[refs[0]])
        assert SENTINEL not in str(result[refs[0]])

    def test_path_access_denied(self, aws_config, ssm_client, moto_iam, monkeypatch):
        """A by-path reference the role may not list gets AccessDeniedError naming it."""
        ssm_client.put_parameter(Name="/app/a", Value="a", Type="String")
        key, secret = moto_iam.user("names-only", ["ssm:GetParameters"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        source = build(aws_config)
        moto_iam.enforce()
        r = ref("aws-ssm:/app/")
        error = source.fetch([r])[r]
        assert isinstance(error, AccessDeniedError)
        assert str(error).startswith("aws-ssm:/app/: ")

    def test_kms_failure_is_access_denied(self, aws_config, scripted_aws):
        """A KMS refusal to decrypt a SecureString (scripted: moto has no KMS policy) is AccessDeniedError."""
        scripted_aws.error(400, "KMSAccessDeniedException", "kms:Decrypt denied")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 1})
        r = ref("aws-ssm:/app/secure")
        assert isinstance(source.fetch([r])[r], AccessDeniedError)
        assert scripted_aws.targets == ["AmazonSSM.GetParameters"]

    def test_throttling_is_unavailable(self, aws_config, scripted_aws):
        """ThrottlingException (scripted: moto does not throttle) is a retryable UnavailableError."""
        scripted_aws.error(400, "ThrottlingException", "Rate exceeded")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 1})
        r = ref("aws-ssm:/app/")
        error = source.fetch([r])[r]
        assert isinstance(error, UnavailableError)
        assert error.retryable

    def test_expired_token_names_credential_source(self, aws_config, scripted_aws):
        """ExpiredTokenException (scripted) is an AuthError naming the env credential source."""
        scripted_aws.error(400, "ExpiredTokenException", "The security token included in the request is expired")
        source = build(aws_config, aws={"endpoint_url": scripted_aws.url, "max_attempts": 1})
        r = ref("aws-ssm:/app/a")
        error = source.fetch([r])[r]
        assert isinstance(error, AuthError)
        assert "got them from env" in str(error)

    def test_unreachable_endpoint_is_unavailable(self, aws_config):
        """A closed loopback port is an UnavailableError for names and paths alike."""
        source = build(aws_config, aws={"endpoint_url": closed_port_url(), "max_attempts": 1, "timeout": "2s"})
        refs = [ref("aws-ssm:/app/a"), ref("aws-ssm:/app/")]
        result = source.fetch(refs)
        assert [type(result[r]) for r in refs] == [UnavailableError, UnavailableError]

    def test_value_too_large(self, aws_config, ssm_client):
        """A value over limits.max_secret_bytes is a SourceError that states sizes, never the value."""
        ssm_client.put_parameter(Name="/app/big", Value=SENTINEL * 4, Type="SecureString")
        source = build(aws_config, limits={"max_secret_bytes": 32})
        r = ref("aws-ssm:/app/big")
        error = source.fetch([r])[r]
        assert type(error) is SourceError
        assert "limits.max_secret_bytes (32)" in str(error)
        assert SENTINEL not in str(error)

    def test_path_too_large(self, aws_config, ssm_client):
        """A by-path mapping whose values total more than limits.max_secret_bytes is a SourceError."""
        for i in range(3):
            ssm_client.put_parameter(Name=f"/big/p{i}", Value=SENTINEL, Type="String")
        source = build(aws_config, limits={"max_secret_bytes": 40})
        r = ref("aws-ssm:/big/")
        error = source.fetch([r])[r]
        assert type(error) is SourceError
        assert "3 parameters" in str(error)
        assert SENTINEL not in str(error)
