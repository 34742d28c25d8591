"""Building the AWS clients (sources/_aws.py): one botocore session per config, lean endpoint data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from injector.sources._aws import (
    ENDPOINT_SERVICES,
    HANDLER_SERVICES,
    _shared_session,
    build_client,
    concerns_our_clients,
)
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


def _builtin_handlers_by_event(session: Any, events: list[str]) -> dict[str, list[Any]]:
    """For each event, the built-in handlers (botocore's ``BUILTIN_HANDLERS``) ``session`` calls for it, in order."""
    from botocore import handlers

    builtin = {id(spec[1]) for spec in handlers.BUILTIN_HANDLERS}
    emitter = session._events._emitter  # the HierarchicalEmitter behind the session's aliaser
    return {
        event: [handler for handler in emitter._handlers.prefix_search(event) if id(handler) in builtin]
        for event in events
    }


def test_the_lean_session_calls_every_builtin_handler_a_plain_one_calls(
    aws_config: Any, sm_client: Any, ssm_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event our clients raise (building them, and each call the sources make, against moto)
    reaches the same built-in handlers, in the same order, in the session ``_aws`` builds as in a
    plain botocore session; and the handlers it left out are of other services only."""
    import botocore.session
    from botocore import handlers
    from botocore.hooks import HierarchicalEmitter

    sm_client.create_secret(Name="app/one", SecretString="s3cret-one")
    ssm_client.put_parameter(Name="/app/one", Value="p-one", Type="SecureString")
    raised: list[str] = []
    emit = HierarchicalEmitter._emit

    def recording(self: Any, event_name: str, kwargs: Any, stop_on_response: bool = False) -> Any:
        raised.append(event_name)
        return emit(self, event_name, kwargs, stop_on_response)

    monkeypatch.setattr(HierarchicalEmitter, "_emit", recording)
    config = aws_config()
    sm, _ = build_client("secretsmanager", config, SecretsManagerClient)
    ssm, _ = build_client("ssm", config, SsmClient)
    sts = _shared_session(config).create_client("sts", region_name=REGION, endpoint_url=config.aws.endpoint_url)
    assert sm.get_secret_value(SecretId="app/one")["SecretString"] == "s3cret-one"  # type: ignore[attr-defined]
    assert sm.batch_get_secret_value(SecretIdList=["app/one"])["SecretValues"]  # type: ignore[attr-defined]
    assert ssm.get_parameters(Names=["/app/one"], WithDecryption=True)["Parameters"]  # type: ignore[attr-defined]
    assert ssm.get_parameters_by_path(Path="/app", WithDecryption=True)["Parameters"]  # type: ignore[attr-defined]
    assert sts.get_caller_identity()["Account"]
    monkeypatch.undo()

    events = sorted(set(raised))
    assert any(e.startswith("before-call.secrets-manager.") for e in events)
    assert any(e.startswith("before-call.ssm.") for e in events)
    lean = _builtin_handlers_by_event(_shared_session(config), events)
    plain = _builtin_handlers_by_event(botocore.session.Session(), events)
    assert lean == plain
    assert any(lean.values())  # the comparison is not of empty lists

    left_out = [spec[0] for spec in handlers.BUILTIN_HANDLERS if not concerns_our_clients(spec[0])]
    assert left_out  # S3's, EC2's … handlers are not registered
    assert not any(HANDLER_SERVICES & set(name.split(".")) for name in left_out if not name.startswith("docs."))


@pytest.mark.parametrize(
    ("event", "ours"),
    [
        ("creating-client-class", True),
        ("before-call.*", True),
        ("before-call.secrets-manager.GetSecretValue", True),
        ("needs-retry.sts", True),
        ("before-parameter-build.s3.PutObject", False),
        ("before-call.ec2", False),
        ("docs.*.s3.CopyObject.complete-section", False),
        ("docs.*.iam.*.complete-section", False),
    ],
)
def test_which_handlers_concern_our_clients(event: str, ours: bool) -> None:
    assert concerns_our_clients(event) is ours


def test_a_fresh_process_fetches_from_both_services_without_jmespath(
    tmp_path: Path, aws_endpoint: str, sm_client: Any, ssm_client: Any
) -> None:
    """Built in a fresh process, the Secrets Manager and SSM sources fetch a secret, a parameter and
    a parameter path with JMESPath's package registered but not run (``_imports.botocore_without_jmespath``):
    none of its modules is loaded. ``jmespath.search`` still works after, in the same process."""
    sm_client.create_secret(Name="app", SecretString="s1")
    ssm_client.put_parameter(Name="/app/one", Value="p1", Type="String")
    ssm_client.put_parameter(Name="/app/two", Value="p2", Type="String")
    code = f"""
import json, sys
from pathlib import Path
from injector.config.load import parse_config
from injector.refs import parse_reference
from injector.sources import build_source
raw = {{"output_dir": {str(tmp_path / "out")!r}, "aws": {{"region": {REGION!r}, "endpoint_url": {aws_endpoint!r}}}}}
config = parse_config(raw, base_dir=Path({str(tmp_path)!r}), environ={{}})
values = {{}}
for scheme, text in (("aws-sm", "aws-sm:app"), ("aws-ssm", "aws-ssm:/app/one"), ("aws-ssm", "aws-ssm:/app/")):
    ref = parse_reference(text).base
    values[text] = build_source(scheme, config).fetch([ref])[ref].value.reveal()
loaded = sorted(name for name in sys.modules if name.startswith("jmespath."))
deferred = type(sys.modules["jmespath"]).__name__
import jmespath
print(json.dumps({{"values": values, "loaded": loaded, "deferred": deferred,
                   "search": jmespath.search("a.b", {{"a": {{"b": 1}}}})}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    path = {"one": "p1", "two": "p2"}
    assert result["values"] == {"aws-sm:app": "s1", "aws-ssm:/app/one": "p1", "aws-ssm:/app/": path}
    assert result["loaded"] == []
    assert result["deferred"] == "DeferredModule"
    assert result["search"] == 1
