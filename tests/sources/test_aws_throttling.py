"""AWS throttling: a throttled batch is retried with backoff, its value arrives, and every throttled
answer is counted per operation (``_aws.throttles``); beyond the attempts it is a retryable error
that keeps the last good render.

moto cannot throttle, so ``Throttler`` is a loopback endpoint speaking the AWS JSON protocol that
answers the first ``throttle`` calls with a 400 throttling error and the rest with success, through
real boto3 clients built by the factories.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import pytest

from injector.engine import Engine
from injector.errors import UnavailableError
from injector.refs import parse_reference
from injector.sources import Fetched
from injector.sources._aws import throttles
from injector.sources.aws_secretsmanager import build_secretsmanager_source
from injector.sources.aws_ssm import build_ssm_source
from tests.fixtures.aws import serve_aws_json

pytestmark = pytest.mark.aws


class Throttler:
    """Answers SSM GetParameters and Secrets Manager BatchGetSecretValue; the first ``throttle``
    calls get ``status`` (400) with ``{"__type": code}`` instead."""

    def __init__(self) -> None:
        self.throttle = 0
        self.code = "ThrottlingException"
        self.status = 400
        self.calls: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        self.url = ""

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            throttled = len(self.calls) < self.throttle
            self.calls.append((target, throttled))
        if throttled:
            return self.status, {"__type": self.code, "message": "scripted"}
        if target.endswith("GetParameters"):
            names = body.get("Names", [])
            return 200, {
                "Parameters": [{"Name": n, "Type": "String", "Value": f"value of {n}", "Version": 1} for n in names],
                "InvalidParameters": [],
            }
        return 200, {
            "SecretValues": [
                {
                    "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}-AbCdEf",
                    "Name": n,
                    "VersionId": "v1",
                    "SecretString": f"value of {n}",
                    "VersionStages": ["AWSCURRENT"],
                }
                for n in body.get("SecretIdList", [])
            ],
            "Errors": [],
        }


@pytest.fixture
def throttler(aws_env: None) -> Iterator[Throttler]:
    """A ``Throttler`` on a free 127.0.0.1 port."""
    script = Throttler()

    with serve_aws_json(script.answer) as url:
        script.url = url
        yield script


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays botocore sleeps before each retry (``botocore.endpoint`` calls ``time.sleep``)."""
    import time

    slept: list[float] = []

    class RecordingTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(botocore.endpoint, "time", RecordingTime())
    return slept


def test_throttled_batch_is_retried_with_backoff_and_the_value_arrives(aws_config, throttler, retry_sleeps):
    """Two throttled GetParameters answers are retried after a backoff, and the value arrives."""
    throttler.throttle = 2
    source = build_ssm_source(aws_config(aws={"endpoint_url": throttler.url, "max_attempts": 3}))
    r = parse_reference("aws-ssm:/app/db")
    result = source.fetch([r])[r]
    assert isinstance(result, Fetched)
    assert result.value.reveal() == "value of /app/db"
    assert [throttled for _, throttled in throttler.calls] == [True, True, False]
    assert len(retry_sleeps) == 2
    assert all(delay > 0 for delay in retry_sleeps)


def test_throttled_answers_are_counted_per_operation(aws_config, throttler):
    """``throttles(client)`` counts every throttled attempt, by API operation."""
    throttler.throttle = 2
    source = build_ssm_source(aws_config(aws={"endpoint_url": throttler.url, "max_attempts": 3}))
    r = parse_reference("aws-ssm:/app/db")
    source.fetch([r])
    assert throttles(source.client) == {"GetParameters": 2}
    assert source.throttles() == {"GetParameters": 2}  # what the metric reads


def test_too_many_requests_is_counted_for_secrets_manager(aws_config, throttler):
    """TooManyRequestsException on BatchGetSecretValue is a throttle too: retried, counted, value arrives."""
    throttler.throttle, throttler.code = 1, "TooManyRequestsException"
    source = build_secretsmanager_source(aws_config(aws={"endpoint_url": throttler.url, "max_attempts": 3}))
    r = parse_reference("aws-sm:prod/db")
    result = source.fetch([r])[r]
    assert isinstance(result, Fetched)
    assert source.throttles() == {"BatchGetSecretValue": 1}


def test_other_errors_are_not_counted_as_throttles(aws_config, throttler):
    """A 503 is retried but is no throttle: the count stays empty."""
    throttler.throttle, throttler.code, throttler.status = 1, "ServiceUnavailable", 503
    source = build_ssm_source(aws_config(aws={"endpoint_url": throttler.url, "max_attempts": 3}))
    r = parse_reference("aws-ssm:/app/db")
    assert isinstance(source.fetch([r])[r], Fetched)
    assert throttles(source.client) == {}


def test_throttled_past_the_attempts_keeps_the_last_good_render(aws_config, throttler, tmp_path):
    """Throttled on every attempt: a retryable UnavailableError, counted, and the render keeps the old value."""
    config = aws_config(
        aws={"endpoint_url": throttler.url, "max_attempts": 2},
        templates=[{"contents": '{{ secret("aws-ssm:/app/db") }}', "destination": "db.txt"}],
    )
    source = build_ssm_source(config)
    engine = Engine(config, sources={"aws-ssm": source})
    engine.compile()
    assert engine.render(engine.destinations) == {}
    before = [f.content for f in engine.files()]
    assert before == [b"value of /app/db"]
    r = parse_reference("aws-ssm:/app/db")
    throttler.throttle = len(throttler.calls) + 10
    errors = engine.fetch([r])
    assert isinstance(errors[r], UnavailableError)
    assert errors[r].retryable
    assert engine.render(engine.destinations) == {}
    assert [f.content for f in engine.files()] == before
    assert throttles(source.client) == {"GetParameters": 2}

