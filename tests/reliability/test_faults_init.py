"""`injector init` against a failing backend: the right exit code, before ``--timeout`` plus a small
margin, one clear error line, and nothing written. Real processes against the dev Vault and a
loopback endpoint answering canned AWS errors (moto cannot expire credentials or throttle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.fixtures.aws import ScriptedAws
from tests.fixtures.vault import VaultServer
from tests.reliability.support import Run, run_injector, visible_files, write_config

pytestmark = pytest.mark.slow

#: init's --timeout in these tests, and how late after it the process may end: one request timeout
#: (vault.timeout 500ms) plus interpreter start-up, with room for a loaded 2-core machine.
TIMEOUT = 2.0
MARGIN = 1.5
BACKOFF = {"min_backoff": "200ms", "max_backoff": "1s"}


@pytest.fixture
def dev(vault_server: VaultServer, kv2_mount: str) -> Iterator[Any]:
    """The dev server's knobs; every fault is switched off again before the mount is removed."""
    if vault_server.dev is None:
        pytest.skip("dev server only: a real Vault has no fault knobs")
    dev = vault_server.dev
    try:
        yield dev
    finally:
        dev.set_outage(False)
        dev.set_latency(0)
        dev.set_error_rate(0.0)
        dev.unseal()


def vault_init(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, mount: str, token: str, timeout: float = TIMEOUT
) -> Run:
    config = write_config(
        tmp_path / "injector.yaml",
        {
            "output_dir": str(output_dir),
            "vault": {"address": vault_server.address, "timeout": "500ms", "auth": {"method": "token"}},
            "refresh": BACKOFF,
            "templates": [{"contents": "{{ secret('vault:" + mount + "/app#password') }}", "destination": "a"}],
        },
    )
    return run_injector(["init", "-c", str(config), "--timeout", f"{timeout}s"], env={"VAULT_TOKEN": token})


VAULT_FAULTS: list[tuple[str, Callable[[Any], None], str]] = [
    ("unreachable", lambda dev: dev.set_outage(True), "cannot reach Vault"),
    ("slow", lambda dev: dev.set_latency(1.5), "timed out"),
    ("5xx-storm", lambda dev: dev.set_error_rate(1.0, 500), "internal error"),
    ("429-storm", lambda dev: dev.set_error_rate(1.0, 429), "rate limit"),
    ("sealed", lambda dev: dev.seal(), "sealed"),
]


class TestVaultUnavailable:
    @pytest.mark.parametrize(
        ("fault", "words"), [(f, w) for _, f, w in VAULT_FAULTS], ids=[i for i, _, _ in VAULT_FAULTS]
    )
    def test_exits_15_just_after_the_timeout(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        dev: Any,
        fault: Callable[[Any], None],
        words: str,
    ) -> None:
        """A Vault that is down, slow, failing, throttling or sealed: exit 15 within --timeout + margin."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "pw"}, mount_point=kv2_mount)
        fault(dev)
        result = vault_init(tmp_path, output_dir, vault_server, kv2_mount, vault_server.root_token)
        assert result.returncode == 15, result.stderr
        assert TIMEOUT * 0.5 <= result.elapsed <= TIMEOUT + MARGIN, f"took {result.elapsed:.2f}s"
        assert len(result.errors) == 1, result.stderr
        assert f"vault:{kv2_mount}/app" in result.errors[0]
        assert "gave up after" in result.errors[0]
        assert words in result.errors[0], result.errors[0]
        assert "Traceback" not in result.stderr
        assert visible_files(output_dir) == {}

    def test_a_flaky_vault_still_gives_a_complete_init(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        dev: Any,
    ) -> None:
        """Half of all requests failing with 500: init retries until every file is rendered, exit 0."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "pw"}, mount_point=kv2_mount)
        dev.set_error_rate(0.5, 500)
        result = vault_init(tmp_path, output_dir, vault_server, kv2_mount, vault_server.root_token, timeout=20)
        assert result.returncode == 0, result.stderr
        assert visible_files(output_dir) == {"a": b"pw"}


class TestCredentials:
    def test_revoked_vault_token_exits_19_at_once(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
    ) -> None:
        """A token revoked through the API: exit 19 (auth) without waiting for --timeout, nothing written."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "pw"}, mount_point=kv2_mount)
        token = vault_admin.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        vault_admin.auth.token.revoke(token)
        result = vault_init(tmp_path, output_dir, vault_server, kv2_mount, token, timeout=30)
        assert result.returncode == 19, result.stderr
        assert result.elapsed < 10
        assert len(result.errors) == 1, result.stderr
        assert "VAULT_TOKEN" in result.errors[0]
        assert token not in result.output
        assert visible_files(output_dir) == {}


def aws_init(tmp_path: Path, output_dir: Path, endpoint: str, timeout: float = TIMEOUT, max_attempts: int = 3) -> Run:
    config = write_config(
        tmp_path / "injector.yaml",
        {
            "output_dir": str(output_dir),
            "aws": {"region": "us-east-1", "endpoint_url": endpoint, "timeout": "1s", "max_attempts": max_attempts},
            "refresh": BACKOFF,
            "templates": [{"contents": "{{ secret('aws-sm:app/db#password') }}", "destination": "a"}],
        },
    )
    # Killed well after the deadline: a run that ignores --timeout fails here instead of hanging.
    return run_injector(["init", "-c", str(config), "--timeout", f"{timeout}s"], timeout=timeout + MARGIN + 4)


class TestAws:
    def test_expired_credentials_exit_19_at_once(
        self, tmp_path: Path, output_dir: Path, scripted_aws: ScriptedAws
    ) -> None:
        """ExpiredTokenException: exit 19 naming the credential source, without retrying until --timeout."""
        scripted_aws.error(400, "ExpiredTokenException", "The security token included in the request is expired")
        result = aws_init(tmp_path, output_dir, scripted_aws.url, timeout=30)
        assert result.returncode == 19, result.stderr
        assert result.elapsed < 10
        assert len(result.errors) == 1, result.stderr
        assert "aws-sm:app/db" in result.errors[0]
        assert "AWS_ACCESS_KEY_ID" in result.errors[0]
        assert visible_files(output_dir) == {}

    @pytest.mark.parametrize(
        ("status", "code"),
        [(400, "ThrottlingException"), (500, "InternalFailure")],
        ids=["throttled", "5xx"],
    )
    def test_throttling_and_5xx_exit_15_with_bounded_requests(
        self, tmp_path: Path, output_dir: Path, scripted_aws: ScriptedAws, status: int, code: str
    ) -> None:
        """Throttling or 5xx from AWS: exit 15 saying it gave up, and no retry storm.

        Bound: init's rounds are spaced by equal-jitter backoff (min_backoff 200ms doubling to 1s, so
        at least 0.1, 0.2, 0.4, 0.5, 0.5 … s apart): at most 5 rounds fit in 2 s; each round is one
        BatchGetSecretValue that botocore tries at most 3 times — 15 requests. Adaptive retries may
        hold the second attempt past the 2 s (client-side rate limit once throttled): at least 1.
        A loop without backoff would send hundreds in 2 s.
        """
        scripted_aws.error(status, code, "Rate exceeded")
        result = aws_init(tmp_path, output_dir, scripted_aws.url)
        print(f"{code}: {len(scripted_aws.targets)} requests in {result.elapsed:.2f}s")
        assert result.returncode == 15, result.stderr
        assert "gave up after" in result.errors[0]
        assert 1 <= len(scripted_aws.targets) <= 15, len(scripted_aws.targets)
        assert visible_files(output_dir) == {}

    def test_the_deadline_holds_whatever_botocore_retries(
        self, tmp_path: Path, output_dir: Path, scripted_aws: ScriptedAws
    ) -> None:
        """With aws.max_attempts 6, throttling still ends init with 15 within --timeout + margin.

        botocore's standard mode sleeps up to 1, 2, 4, 8, 16 s between its own attempts of one
        throttled call; a call started before the deadline must not carry init that far past it.
        """
        scripted_aws.error(400, "ThrottlingException", "Rate exceeded")
        result = aws_init(tmp_path, output_dir, scripted_aws.url, max_attempts=6)
        seen = (
            f"exit {result.returncode} (None: killed) after {result.elapsed:.2f}s, {len(scripted_aws.targets)} requests"
        )
        assert result.returncode == 15, seen
        assert result.elapsed <= TIMEOUT + MARGIN, seen
