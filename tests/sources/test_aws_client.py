"""Building the AWS clients (sources/_aws.py): one botocore session per config, lean endpoint data."""

from __future__ import annotations

from typing import Any

import pytest

from injector.sources._aws import ENDPOINT_SERVICES, _shared_session, build_client
from injector.sources.aws_secretsmanager import SecretsManagerClient
from injector.sources.aws_ssm import SsmClient
from tests.fixtures.aws import REGION

pytestmark = pytest.mark.aws


def test_both_sources_share_one_session(aws_config: Any) -> None:
    """The Secrets Manager and SSM clients of one config are built from one session."""
    config = aws_config()
    build_client("secretsmanager", config, SecretsManagerClient)
    build_client("ssm", config, SsmClient)
    assert _shared_session(config) is _shared_session(config)
    assert _shared_session(config) is not _shared_session(aws_config())


def test_endpoint_data_keeps_our_services_only(aws_config: Any) -> None:
    """The session's parsed endpoint data lists only the services the injector and its credential providers call."""
    config = aws_config()
    build_client("ssm", config, SsmClient)
    data, _ = _shared_session(config).get_component("data_loader").load_data_with_path("endpoints")
    services = {name for partition in data["partitions"] for name in partition["services"]}
    assert "ssm" in services
    assert services <= ENDPOINT_SERVICES


def test_a_service_left_out_still_resolves(aws_config: Any) -> None:
    """A client of a service trimmed from the endpoint data still gets its regional endpoint."""
    config = aws_config()
    client = _shared_session(config).create_client("sqs", region_name=REGION)
    assert client.meta.endpoint_url == f"https://sqs.{REGION}.amazonaws.com"


def test_a_client_has_the_operations_its_source_calls(aws_config: Any) -> None:
    """The model behind each client keeps only the calls in its source's Protocol."""
    config = aws_config()
    ssm, _ = build_client("ssm", config, SsmClient)
    sm, _ = build_client("secretsmanager", config, SecretsManagerClient)
    assert sorted(ssm.meta.service_model.operation_names) == ["GetParameters", "GetParametersByPath"]  # type: ignore[attr-defined]
    assert sorted(sm.meta.service_model.operation_names) == ["BatchGetSecretValue", "GetSecretValue"]  # type: ignore[attr-defined]
    assert not hasattr(ssm, "put_parameter")
