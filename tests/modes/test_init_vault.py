"""`injector init` against Vault: KV v2, KV v1, dynamic database credentials and a PKI certificate,
with token, AppRole and Kubernetes auth — and each failure a clear message with the right exit code.

Runs against the dev server, or unchanged against a real Vault when VAULT_ADDR/VAULT_TOKEN are set
(tests needing the dev server's knobs or a database say so and skip there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest
from cryptography import x509

from tests.fixtures.cli import run, write_config
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import AuthSetup, PkiMount, VaultServer, dev_only

pytestmark = pytest.mark.vault


def vault_section(server: VaultServer, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"address": server.address, "auth": auth or {"method": "token"}, "timeout": "5s"}


def token_env(server: VaultServer) -> dict[str, str]:
    env = {"VAULT_TOKEN": server.root_token}
    if isinstance(server.verify, str):
        env["VAULT_CACERT"] = server.verify
    return env


class TestRenders:
    def test_kv2_kv1_and_pki_in_one_init(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        kv1_mount: str,
        pki_mount: PkiMount,
    ) -> None:
        """One init renders KV v2 and KV v1 keys and a certificate with its key, as one snapshot."""
        vault_admin.secrets.kv.v2.create_or_update_secret(
            path="app", secret={"user": "app", "password": SENTINEL}, mount_point=kv2_mount
        )
        vault_admin.secrets.kv.v1.create_or_update_secret(path="legacy", secret={"token": "t-1"}, mount_point=kv1_mount)
        issue = f"vault:{pki_mount.mount}/issue/{pki_mount.role}?common_name=web.test&ttl=1h"
        config = write_config(
            tmp_path,
            output_dir,
            [
                {
                    "contents": f"USER={{{{ secret('vault:{kv2_mount}/app#user') }}}}\n"
                    f"PASSWORD={{{{ secret('vault:{kv2_mount}/app#password') }}}}\n"
                    f"LEGACY={{{{ secret('vault:{kv1_mount}/legacy#token') }}}}\n",
                    "destination": "app.env",
                },
                {"contents": "{{ secrets.tls.certificate }}\n", "destination": "tls/cert.pem"},
                {"contents": "{{ secrets.tls.private_key }}\n", "destination": "tls/key.pem", "mode": "0400"},
            ],
            vault=vault_section(vault_server),
            secrets={"tls": issue},
        )
        result = run(["init", "-c", str(config), "--log-level", "debug"], env=token_env(vault_server))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "app.env").read_text() == f"USER=app\nPASSWORD={SENTINEL}\nLEGACY=t-1\n"
        cert = x509.load_pem_x509_certificate((output_dir / "tls" / "cert.pem").read_bytes())
        assert cert.subject.rfc4514_string() == "CN=web.test"
        assert (output_dir / "tls" / "key.pem").read_text().startswith("-----BEGIN")
        assert oct((output_dir / "tls" / "key.pem").stat().st_mode & 0o777) == oct(0o400)
        assert SENTINEL not in result.stderr + result.stdout

    def test_kv2_version_pinning(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
    ) -> None:
        """?version=N renders that version of a KV v2 secret, not the latest."""
        for value in ("one", "two"):
            vault_admin.secrets.kv.v2.create_or_update_secret(path="v", secret={"k": value}, mount_point=kv2_mount)
        config = write_config(
            tmp_path,
            output_dir,
            [{"contents": f"{{{{ secret('vault:{kv2_mount}/v#k?version=1') }}}}", "destination": "v"}],
            vault=vault_section(vault_server),
        )
        assert run(["init", "-c", str(config)], env=token_env(vault_server)).returncode == 0
        assert (output_dir / "v").read_text() == "one"

    @dev_only("database/creds needs a database on a real Vault")
    def test_database_credentials_with_a_lease(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, lease_role: str
    ) -> None:
        """Dynamic credentials render as username and password; one lease is issued."""
        assert vault_server.dev is not None
        before = len(vault_server.dev.active_leases("database/"))
        config = write_config(
            tmp_path,
            output_dir,
            [{"contents": "{{ secrets.db.username }}:{{ secrets.db.password }}", "destination": "db"}],
            vault=vault_section(vault_server),
            secrets={"db": f"vault:{lease_role}"},
        )
        result = run(["init", "-c", str(config)], env=token_env(vault_server))
        assert result.returncode == 0, result.stderr
        user, password = (output_dir / "db").read_text().split(":")
        assert user and password
        assert len(vault_server.dev.active_leases("database/")) == before + 1

    def login_and_render(
        self, tmp_path: Path, output_dir: Path, server: VaultServer, kv2_mount: str, auth: dict[str, Any]
    ) -> str:
        """Runs init with ``auth`` reading kv2_mount/app#k; returns the rendered value."""
        config = write_config(
            tmp_path,
            output_dir,
            [{"contents": f"{{{{ secret('vault:{kv2_mount}/app#k') }}}}", "destination": "a"}],
            vault=vault_section(server, auth),
        )
        result = run(["init", "-c", str(config)])
        assert result.returncode == 0, result.stderr
        return (output_dir / "a").read_text()

    def test_approle_login(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        approle: Callable[..., AuthSetup],
        policy: Callable[[str], str],
    ) -> None:
        """AppRole auth reads role_id and secret_id from files and renders what its policy allows."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "approle-ok"}, mount_point=kv2_mount)
        setup = approle(policies=[policy(f'path "{kv2_mount}/data/app" {{ capabilities = ["read"] }}')])
        auth = {
            "method": "approle",
            "mount": setup.mount,
            "role_id_file": str(setup.files["role_id"]),
            "secret_id_file": str(setup.files["secret_id"]),
        }
        assert self.login_and_render(tmp_path, output_dir, vault_server, kv2_mount, auth) == "approle-ok"

    @dev_only("Kubernetes auth on a real Vault asks a cluster's TokenReview API")
    def test_kubernetes_login(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        kubernetes_auth: Callable[..., AuthSetup],
        policy: Callable[[str], str],
    ) -> None:
        """Kubernetes auth logs in with the service-account token file and renders."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "k8s-ok"}, mount_point=kv2_mount)
        setup = kubernetes_auth(policies=[policy(f'path "{kv2_mount}/data/app" {{ capabilities = ["read"] }}')])
        auth = {
            "method": "kubernetes",
            "mount": setup.mount,
            "role": setup.role,
            "token_path": str(setup.files["token"]),
        }
        assert self.login_and_render(tmp_path, output_dir, vault_server, kv2_mount, auth) == "k8s-ok"


class TestErrors:
    def config_for(self, tmp_path: Path, output_dir: Path, server: VaultServer, ref: str, **vault: Any) -> Path:
        return write_config(
            tmp_path,
            output_dir,
            [{"contents": f"{{{{ secret('{ref}') }}}}", "destination": "a"}],
            vault={**vault_section(server), **vault},
            refresh={"min_backoff": "100ms", "max_backoff": "300ms"},
        )

    def test_wrong_key_lists_the_keys(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
    ) -> None:
        """A missing key is exit 13 and lists the keys that exist, never their values."""
        vault_admin.secrets.kv.v2.create_or_update_secret(
            path="app", secret={"password": SENTINEL, "user": "u"}, mount_point=kv2_mount
        )
        config = self.config_for(tmp_path, output_dir, vault_server, f"vault:{kv2_mount}/app#pasword")
        result = run(["init", "-c", str(config)], env=token_env(vault_server))
        assert result.returncode == 13
        assert "key 'pasword' not found (keys: password, user)" in result.stderr
        assert SENTINEL not in result.stderr

    def test_missing_path(self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, kv2_mount: str) -> None:
        """A path that does not exist is exit 13 and names it."""
        config = self.config_for(tmp_path, output_dir, vault_server, f"vault:{kv2_mount}/nope#k")
        result = run(["init", "-c", str(config)], env=token_env(vault_server))
        assert result.returncode == 13, result.stderr
        assert f"{kv2_mount}/nope" in result.stderr

    def test_deleted_version_says_so(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
    ) -> None:
        """A soft-deleted latest version is exit 13 and says it was deleted (and can be undeleted)."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="gone", secret={"k": "v"}, mount_point=kv2_mount)
        vault_admin.secrets.kv.v2.delete_latest_version_of_secret(path="gone", mount_point=kv2_mount)
        config = self.config_for(tmp_path, output_dir, vault_server, f"vault:{kv2_mount}/gone#k")
        result = run(["init", "-c", str(config)], env=token_env(vault_server))
        assert result.returncode == 13
        assert "deleted" in result.stderr

    def test_bad_token_is_an_auth_error(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, kv2_mount: str
    ) -> None:
        """An invalid token is exit 19 and says the login failed, without the token."""
        config = self.config_for(tmp_path, output_dir, vault_server, f"vault:{kv2_mount}/app#k")
        result = run(["init", "-c", str(config)], env={**token_env(vault_server), "VAULT_TOKEN": "hvs.not-a-token"})
        assert result.returncode == 19, result.stderr
        assert "hvs.not-a-token" not in result.stderr

    @dev_only("sealing a shared real Vault would break other users")
    def test_sealed_vault_is_unavailable(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, kv2_mount: str
    ) -> None:
        """A sealed Vault is retried until --timeout, then exit 15 naming the seal."""
        assert vault_server.dev is not None
        config = self.config_for(tmp_path, output_dir, vault_server, f"vault:{kv2_mount}/app#k")
        vault_server.dev.seal()
        try:
            result = run(["init", "-c", str(config), "--timeout", "1s"], env=token_env(vault_server))
        finally:
            vault_server.dev.unseal()
        assert result.returncode == 15, result.stderr
        assert "sealed" in result.stderr

    def test_unreachable_vault(self, tmp_path: Path, output_dir: Path, vault_server: VaultServer) -> None:
        """A Vault nobody listens on is exit 15 after --timeout."""
        config = self.config_for(tmp_path, output_dir, vault_server, "vault:secret/app#k", address="http://127.0.0.1:9")
        result = run(["init", "-c", str(config), "--timeout", "1s"], env=token_env(vault_server))
        assert result.returncode == 15, result.stderr
        assert "gave up after" in result.stderr

    def test_access_denied_names_the_path(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        approle: Callable[..., AuthSetup],
    ) -> None:
        """A login whose policy does not cover the path is exit 14 naming the path."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"}, mount_point=kv2_mount)
        setup = approle(policies=["default"])
        config = self.config_for(
            tmp_path,
            output_dir,
            vault_server,
            f"vault:{kv2_mount}/app#k",
            auth={
                "method": "approle",
                "mount": setup.mount,
                "role_id_file": str(setup.files["role_id"]),
                "secret_id_file": str(setup.files["secret_id"]),
            },
        )
        result = run(["init", "-c", str(config)])
        assert result.returncode == 14, result.stderr
        assert f"{kv2_mount}/data/app" in result.stderr or f"{kv2_mount}/app" in result.stderr


@pytest.mark.aws
def test_vault_and_aws_values_in_one_file(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    vault_admin: hvac.Client,
    kv2_mount: str,
    aws_endpoint: str,
    sm_client: Any,
    ssm_client: Any,
) -> None:
    """One template mixes a Vault KV value, a Secrets Manager JSON key and an SSM parameter."""
    vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"user": "vault-user"}, mount_point=kv2_mount)
    sm_client.create_secret(Name="prod/db", SecretString=json.dumps({"password": "sm-pass"}))
    ssm_client.put_parameter(Name="/app/prod/host", Value="db.internal", Type="String")
    config = write_config(
        tmp_path,
        output_dir,
        [
            {
                "contents": f"USER={{{{ secret('vault:{kv2_mount}/app#user') }}}}\n"
                "PASSWORD={{ secret('aws-sm:prod/db#password') }}\n"
                "HOST={{ secret('aws-ssm:/app/prod/host') }}\n",
                "destination": "db.env",
            }
        ],
        vault=vault_section(vault_server),
        aws={"region": "us-east-1", "endpoint_url": aws_endpoint},
    )
    result = run(["init", "-c", str(config)], env=token_env(vault_server))
    assert result.returncode == 0, result.stderr
    assert (output_dir / "db.env").read_text() == "USER=vault-user\nPASSWORD=sm-pass\nHOST=db.internal\n"
