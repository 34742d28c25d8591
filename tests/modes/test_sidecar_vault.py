"""`injector sidecar` with Vault: dynamic credentials renewed in place and replaced before their max
TTL, one set of credentials for init + sidecar, and an outage survived without a restart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.sidecar import Harness, wait_for
from tests.fixtures.vault import AuthSetup, VaultServer, dev_only, unique

#: The process name a pidfile notifier expects: the app is this Python interpreter.
APP_NAME = Path(sys.executable).name

pytestmark = [pytest.mark.vault, pytest.mark.slow]

FAST = {
    "interval": "1s",
    "jitter": 0.0,
    "wait": {"min": "50ms", "max": "500ms"},
    "min_backoff": "200ms",
    "max_backoff": "1s",
}


def vault_config(
    harness: Harness,
    server: VaultServer,
    output_dir: Path,
    templates: list[dict[str, Any]],
    auth: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    state = harness.tmp_path / "state"
    return harness.config(
        {
            "output_dir": str(output_dir),
            "state_dir": str(state),
            "vault": {"address": server.address, "auth": auth or {"method": "token"}, "timeout": "2s"},
            "templates": templates,
            "refresh": {**FAST, **extra.pop("refresh", {})},
            **extra,
        }
    )


def init(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "injector", "init", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.fixture
def short_db_role(vault_server: VaultServer, vault_admin: hvac.Client) -> str:
    """A database role whose leases last 2 s and at most 6 s: renewals and a replacement in seconds."""
    if vault_server.dev is None:
        pytest.skip("a real Vault needs a reachable database for database/creds")
    role = unique("short")
    vault_admin.write_data(f"database/roles/{role}", data={"db_name": "dev", "default_ttl": "2s", "max_ttl": "6s"})
    return f"database/creds/{role}"


@dev_only("database credentials need a database on a real Vault")
class TestDynamicCredentials:
    def test_renewed_in_place_then_replaced_before_max_ttl(
        self, harness: Harness, output_dir: Path, vault_server: VaultServer, short_db_role: str
    ) -> None:
        """Renewals keep the same credentials (no render, no signal); near the max TTL new ones
        are issued, rendered and signalled once, before the old lease ends."""
        dev = vault_server.dev
        assert dev is not None
        pidfile = harness.tmp_path / "app-0.pid"
        config = vault_config(
            harness,
            vault_server,
            output_dir,
            [
                {
                    "contents": "{{ secrets.db.username }}",
                    "destination": "db-user",
                    "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}],
                },
            ],
            secrets={"db": f"vault:{short_db_role}"},
        )
        env = {"VAULT_TOKEN": vault_server.root_token}
        sidecar = harness.sidecar(config, "--log-level", "debug", env=env)
        sidecar.wait_ready()
        first_user = (output_dir / "db-user").read_text()
        app = harness.app(output_dir / "db-user")
        renew_count = lambda: dev.request_count("sys/leases/renew")  # noqa: E731
        wait_for(lambda: renew_count() >= 2, 10, "two renewals")
        assert (output_dir / "db-user").read_text() == first_user
        assert app.reloads() == []
        wait_for(lambda: app.reloads(), 15, "the replacement credentials and one reload")
        assert app.reloads()[0] != first_user
        assert "renewed" in sidecar.logs()

    def test_init_then_sidecar_issue_one_set_of_credentials(
        self,
        harness: Harness,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        approle: Callable[..., AuthSetup],
    ) -> None:
        """init leaves its token and lease in state_dir; the sidecar adopts them: one login, one lease."""
        dev = vault_server.dev
        assert dev is not None
        setup = approle(policies=["root"])
        auth = {
            "method": "approle",
            "mount": setup.mount,
            "role_id_file": str(setup.files["role_id"]),
            "secret_id_file": str(setup.files["secret_id"]),
        }
        config = vault_config(
            harness,
            vault_server,
            output_dir,
            [
                {"contents": "{{ secrets.db.username }}:{{ secrets.db.password }}", "destination": "db"},
            ],
            auth=auth,
            secrets={"db": "vault:database/creds/dev"},
            refresh={"interval": "1h"},
        )
        leases_before = set(dev.active_leases("database/"))
        logins_before = dev.request_count(f"auth/{setup.mount}/login")
        result = init(config)
        assert result.returncode == 0, result.stderr
        rendered = (output_dir / "db").read_text()
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        assert (output_dir / "db").read_text() == rendered
        assert len(set(dev.active_leases("database/")) - leases_before) == 1
        assert dev.request_count(f"auth/{setup.mount}/login") - logins_before == 1
        state = harness.tmp_path / "state"
        assert oct(state.stat().st_mode & 0o777) == oct(0o700)
        assert oct((state / "state.json").stat().st_mode & 0o777) == oct(0o600)


@dev_only("the outage knob belongs to the dev server")
class TestOutage:
    def test_files_kept_unready_after_max_stale_then_recovers(
        self, harness: Harness, output_dir: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
    ) -> None:
        """During an outage the files stay, /readyz fails after max_stale; when Vault returns the
        sidecar recovers by itself and a new value renders."""
        dev = vault_server.dev
        assert dev is not None
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "before"}, mount_point=kv2_mount)
        config = vault_config(
            harness,
            vault_server,
            output_dir,
            [
                {"contents": f"{{{{ secret('vault:{kv2_mount}/app#k') }}}}", "destination": "k"},
            ],
            refresh={"max_stale": "2s"},
        )
        sidecar = harness.sidecar(config, env={"VAULT_TOKEN": vault_server.root_token})
        sidecar.wait_ready()
        dev.set_outage(True)
        try:
            status_body = wait_for(lambda: (r := sidecar.get("/readyz"))[0] == 503 and r, 15, "/readyz to fail")
            assert "stale" in status_body[1]
            assert (output_dir / "k").read_text() == "before"
            assert sidecar.get("/healthz")[0] == 200
        finally:
            dev.set_outage(False)
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "after"}, mount_point=kv2_mount)
        wait_for(lambda: sidecar.get("/readyz")[0] == 200, 15, "/readyz to recover")
        wait_for(lambda: (output_dir / "k").read_text() == "after", 15, "the new value")
        assert sidecar.proc.poll() is None


def test_vault_values_never_reach_logs_or_metrics(
    harness: Harness, output_dir: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
) -> None:
    """A Vault value changing under a debug-level sidecar reaches the file only."""
    vault_admin.secrets.kv.v2.create_or_update_secret(path="s", secret={"pw": SENTINEL + "-a"}, mount_point=kv2_mount)
    config = vault_config(
        harness,
        vault_server,
        output_dir,
        [
            {"contents": f"{{{{ secret('vault:{kv2_mount}/s#pw') }}}}", "destination": "pw"},
        ],
    )
    env = {"VAULT_TOKEN": vault_server.root_token}
    sidecar = harness.sidecar(config, "--log-level", "debug", "--log-format", "json", env=env)
    sidecar.wait_ready()
    vault_admin.secrets.kv.v2.create_or_update_secret(path="s", secret={"pw": SENTINEL + "-b"}, mount_point=kv2_mount)
    wait_for(lambda: (output_dir / "pw").read_text() == SENTINEL + "-b", 10, "the new value")
    assert SENTINEL not in sidecar.get("/metrics")[1]
    sidecar.stop()
    assert SENTINEL not in sidecar.logs()
