"""Which paths vault: references may touch, against the dev Vault with a root token (the worst case)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from injector.config.load import parse_config
from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.errors import AccessDeniedError, ConfigError, SourceError
from injector.refs import parse_reference
from injector.sources.vault import VaultSource, build_vault_source
from tests.fixtures.vault import PkiMount, VaultServer, dev_only

pytestmark = pytest.mark.vault


@pytest.fixture
def root_source(vault_server: VaultServer, tmp_path: Path) -> Iterator[Callable[..., VaultSource]]:
    """Builds sources from a Config whose token is the root token; closes them after."""
    made: list[VaultSource] = []
    (tmp_path / "root-token").write_text(vault_server.root_token)

    def make(allowed_paths: tuple[str, ...] | None = None) -> VaultSource:
        vault = VaultConfig(
            address=vault_server.address,
            auth=VaultAuthConfig(method="token", token_file=tmp_path / "root-token"),
            allowed_paths=allowed_paths,
        )
        source = build_vault_source(Config(path=None, base_dir=tmp_path, output_dir=tmp_path / "out", vault=vault))
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def fetch(source: VaultSource, text: str) -> Any:
    ref = parse_reference(text)
    return source.fetch([ref])[ref]


class TestRefused:
    @dev_only("counts the requests that reached the server")
    @pytest.mark.parametrize(
        "text",
        [
            "vault:auth/token/create?ttl=768h",
            "vault:sys/policy/default",
            "vault:sys/mounts",
            "vault:identity/entity/name/app",
            "vault:cubbyhole/app",
        ],
    )
    def test_own_namespaces_are_refused_before_any_request(self, root_source, vault_server: VaultServer, text: str):
        """auth/, sys/, identity/ and cubbyhole/ are refused without a request, even with a root token."""
        source = root_source()
        path = parse_reference(text).path
        before = vault_server.dev.request_count(path)
        before_mounts = vault_server.dev.request_count(f"sys/internal/ui/mounts/{path}")
        result = fetch(source, text)
        assert isinstance(result, AccessDeniedError), result
        assert str(result).startswith(text) and "allowed: KV reads" in str(result)
        assert vault_server.dev.request_count(path) == before
        assert vault_server.dev.request_count(f"sys/internal/ui/mounts/{path}") == before_mounts

    def test_root_ca_generation_is_refused(self, root_source, pki_mount: PkiMount, vault_admin: hvac.Client):
        """A reference that would generate a new root CA on a pki mount is refused; the CA stays."""
        result = fetch(root_source(), f"vault:{pki_mount.mount}/root/generate/internal?common_name=evil")
        assert isinstance(result, AccessDeniedError)
        assert "issue/*" in str(result)
        ca = vault_admin.read(f"{pki_mount.mount}/cert/ca")
        assert ca is not None and ca["data"]["certificate"].strip() == pki_mount.ca_pem.strip()

    def test_kv_write_is_refused(self, root_source, kv1_mount: str, vault_admin: hvac.Client):
        """A KV v1 reference with parameters (a write) is refused and the secret is unchanged."""
        vault_admin.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v"}, mount_point=kv1_mount)
        result = fetch(root_source(), f"vault:{kv1_mount}/app?common_name=overwritten")
        assert isinstance(result, AccessDeniedError) and "write to a KV mount" in str(result)
        assert vault_admin.secrets.kv.v1.read_secret(path="app", mount_point=kv1_mount)["data"] == {"k": "v"}

    def test_allowed_paths_replace_the_engine_defaults(self, root_source, kv2_mount: str, vault_server: VaultServer):
        """With vault.allowed_paths set, an issuing path not listed is refused; KV reads still work."""
        if vault_server.dev is None:
            pytest.skip("needs the dev server's database engine")
        source = root_source(allowed_paths=("pki/issue/*",))
        refused = fetch(source, "vault:database/creds/dev")
        assert isinstance(refused, AccessDeniedError) and "vault.allowed_paths: pki/issue/*" in str(refused)
        assert isinstance(fetch(source, f"vault:{kv2_mount}/none"), SourceError)  # a 404, not a refusal
        assert not isinstance(fetch(source, f"vault:{kv2_mount}/none"), AccessDeniedError)


class TestAllowed:
    def test_kv_reads_are_allowed(self, root_source, kv2_mount: str, vault_admin: hvac.Client):
        """A KV v2 read goes through."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"}, mount_point=kv2_mount)
        assert fetch(root_source(), f"vault:{kv2_mount}/app").value.reveal() == {"k": "v"}

    def test_issue_on_a_pki_mount_of_any_name_is_allowed(self, root_source, pki_mount: PkiMount):
        """issue/ROLE of a pki engine is allowed wherever the engine is mounted."""
        got = fetch(root_source(), f"vault:{pki_mount.mount}/issue/{pki_mount.role}?common_name=app.local")
        assert not isinstance(got, SourceError), str(got)
        assert "certificate" in got.value.reveal()

    @dev_only("the dev server's database engine")
    def test_database_creds_are_allowed(self, root_source):
        """database/creds/ROLE is allowed by default."""
        got = fetch(root_source(), "vault:database/creds/dev")
        assert not isinstance(got, SourceError), str(got)


class TestConfig:
    def test_allowed_paths_cannot_open_vaults_own_paths(self, tmp_path: Path):
        """vault.allowed_paths refuses auth/, sys/, identity/ and cubbyhole/ entries."""
        raw = {
            "output_dir": str(tmp_path / "out"),
            "vault": {"address": "http://127.0.0.1:8200", "allowed_paths": ["auth/token/create"]},
        }
        with pytest.raises(ConfigError, match=r"vault\.allowed_paths"):
            parse_config(raw, base_dir=tmp_path, environ={})
