"""VaultSource against a Vault API: KV v1/v2, leases, PKI, and the error mapping."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest
from cryptography import x509

from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.errors import (
    AccessDeniedError,
    AuthError,
    NotFoundError,
    SourceError,
    UnavailableError,
)
from injector.refs import Reference, parse_reference
from injector.sources import Fetched, LeasedSource, StatefulSource
from injector.sources.vault import VaultSource, build_vault_source
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import AuthSetup, PkiMount, VaultClock, VaultServer, dev_only

pytestmark = pytest.mark.vault

MakeSource = Callable[..., VaultSource]


def ref(text: str) -> Reference:
    return parse_reference(text)


def fetch_one(source: VaultSource, text: str) -> Fetched:
    """Fetches one reference and returns its Fetched (raising the SourceError it got)."""
    reference = ref(text).base
    result = source.fetch([reference])[reference]
    if isinstance(result, SourceError):
        raise result
    return result


def fetch_error(source: VaultSource, text: str) -> SourceError:
    reference = ref(text).base
    result = source.fetch([reference])[reference]
    assert isinstance(result, SourceError), f"expected an error for {text}, got a value"
    return result


def write_kv2(admin: hvac.Client, mount: str, path: str, data: dict[str, Any]) -> None:
    admin.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount)


class TestKV2:
    def test_reads_the_latest_version(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """A KV v2 read returns data.data as a mapping and the version number."""
        write_kv2(vault_admin, kv2_mount, "app", {"user": "app", "password": SENTINEL})
        fetched = fetch_one(make_vault_source(), f"vault:{kv2_mount}/app")
        assert fetched.value.reveal() == {"user": "app", "password": SENTINEL}
        assert fetched.version == "1"
        assert fetched.lease is None

    def test_key_selection(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """#KEY picks one key of the fetched map (selection is the caller's, via Secret.select)."""
        write_kv2(vault_admin, kv2_mount, "app", {"user": "app", "password": SENTINEL})
        reference = ref(f"vault:{kv2_mount}/app#password")
        fetched = fetch_one(make_vault_source(), str(reference))
        assert fetched.value.select("password", ref=str(reference)).reveal() == SENTINEL

    def test_version_parameter(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """?version=N reads that version, not the latest."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": "one"})
        write_kv2(vault_admin, kv2_mount, "app", {"password": "two"})
        source = make_vault_source()
        old = fetch_one(source, f"vault:{kv2_mount}/app?version=1")
        new = fetch_one(source, f"vault:{kv2_mount}/app")
        assert (old.value.reveal(), old.version) == ({"password": "one"}, "1")
        assert (new.value.reveal(), new.version) == ({"password": "two"}, "2")

    def test_path_with_data_prefix_is_not_rewritten(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A path that already has data/ after the mount is read as written."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        assert fetch_one(make_vault_source(), f"vault:{kv2_mount}/data/app").value.reveal() == {"password": SENTINEL}

    def test_deleted_version_says_undelete(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A soft-deleted version is a NotFoundError that names the version and `vault kv undelete`."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        write_kv2(vault_admin, kv2_mount, "app", {"password": "two"})
        vault_admin.secrets.kv.v2.delete_secret_versions(path="app", versions=[1], mount_point=kv2_mount)
        error = fetch_error(make_vault_source(), f"vault:{kv2_mount}/app?version=1")
        assert isinstance(error, NotFoundError)
        assert "version 1" in str(error)
        assert "was deleted" in str(error)
        assert f"vault kv undelete -versions=1 {kv2_mount}/app" in str(error)

    def test_deleted_latest_version(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """Deleting the latest version makes the plain reference a NotFoundError saying so."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        vault_admin.secrets.kv.v2.delete_latest_version_of_secret(path="app", mount_point=kv2_mount)
        error = fetch_error(make_vault_source(), f"vault:{kv2_mount}/app")
        assert isinstance(error, NotFoundError)
        assert "version 1" in str(error)
        assert "deleted" in str(error)

    def test_destroyed_version_says_cannot_be_restored(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A destroyed version is a NotFoundError saying it cannot be restored."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        write_kv2(vault_admin, kv2_mount, "app", {"password": "two"})
        vault_admin.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1], mount_point=kv2_mount)
        error = fetch_error(make_vault_source(), f"vault:{kv2_mount}/app?version=1")
        assert isinstance(error, NotFoundError)
        assert "destroyed" in str(error)
        assert "cannot be restored" in str(error)

    def test_unknown_version(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """A version that never existed is a NotFoundError naming it."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        error = fetch_error(make_vault_source(), f"vault:{kv2_mount}/app?version=9")
        assert isinstance(error, NotFoundError)
        assert "version 9" in str(error)


class TestKV1:
    def test_reads_data_and_ttl(self, vault_admin: hvac.Client, kv1_mount: str, make_vault_source: MakeSource):
        """A KV v1 read returns data as a mapping and lease_duration as an advisory ttl, no lease."""
        vault_admin.secrets.kv.v1.create_or_update_secret(
            path="app", secret={"password": SENTINEL, "ttl": "30m"}, mount_point=kv1_mount
        )
        fetched = fetch_one(make_vault_source(), f"vault:{kv1_mount}/app")
        assert fetched.value.reveal() == {"password": SENTINEL, "ttl": "30m"}
        assert fetched.ttl == 1800
        assert fetched.lease is None
        assert fetched.version is None

    def test_version_is_refused(self, vault_admin: hvac.Client, kv1_mount: str, make_vault_source: MakeSource):
        """?version=N on a KV v1 mount is a SourceError saying KV v1 has no versions."""
        vault_admin.secrets.kv.v1.create_or_update_secret(path="app", secret={"a": "b"}, mount_point=kv1_mount)
        error = fetch_error(make_vault_source(), f"vault:{kv1_mount}/app?version=1")
        assert type(error) is SourceError
        assert "KV v1 has no versions" in str(error)


class TestMounts:
    @dev_only("counts requests with dev.request_count")
    def test_detection_once_per_mount(
        self, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """The KV version is looked up once per mount, however many references and fetches use it."""
        for name in ("a", "b", "c"):
            write_kv2(vault_admin, kv2_mount, name, {"k": name})
        source = make_vault_source()
        before = vault_server.dev.request_count("sys/internal/ui/mounts")
        refs = [ref(f"vault:{kv2_mount}/{name}") for name in ("a", "b", "c")]
        source.fetch(refs)
        source.fetch(refs)
        assert vault_server.dev.request_count("sys/internal/ui/mounts") - before == 1

    def test_concurrent_fetch_of_50(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """50 references fetch concurrently, one result each, each its own value."""
        for i in range(50):
            write_kv2(vault_admin, kv2_mount, f"s{i}", {"i": str(i)})
        refs = [ref(f"vault:{kv2_mount}/s{i}") for i in range(50)]
        results = make_vault_source(max_concurrency=16).fetch(refs)
        assert list(results) == refs
        for i, reference in enumerate(refs):
            result = results[reference]
            assert isinstance(result, Fetched)
            assert result.value.reveal() == {"i": str(i)}

    def test_no_worker_thread_outlives_a_round(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A concurrent round leaves no worker thread behind: an idle sidecar has none."""
        for i in range(8):
            write_kv2(vault_admin, kv2_mount, f"t{i}", {"i": str(i)})
        source = make_vault_source(max_concurrency=4)
        source.fetch([ref(f"vault:{kv2_mount}/t{i}") for i in range(8)])
        assert not [t for t in threading.enumerate() if t.name.startswith("vault_")]

    def test_describe_labels(
        self,
        vault_admin: hvac.Client,
        kv2_mount: str,
        kv1_mount: str,
        pki_mount: PkiMount,
        make_vault_source: MakeSource,
    ):
        """describe() names the engine kind once the mount is known: kv2, kv1, pki."""
        write_kv2(vault_admin, kv2_mount, "app", {"k": "v"})
        vault_admin.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v"}, mount_point=kv1_mount)
        source = make_vault_source()
        kv2, kv1 = ref(f"vault:{kv2_mount}/app"), ref(f"vault:{kv1_mount}/app")
        pki = ref(f"vault:{pki_mount.mount}/issue/web?common_name=a.example.com")
        assert source.describe(kv2) == f"vault({kv2_mount}/app)"
        source.fetch([kv2, kv1, pki])
        assert source.describe(kv2) == f"vault.kv2({kv2_mount}/app)"
        assert source.describe(kv1) == f"vault.kv1({kv1_mount}/app)"
        assert source.describe(pki) == f"vault.pki({pki_mount.mount}/issue/web)"

    def test_is_a_leased_and_stateful_source(self, make_vault_source: MakeSource):
        """VaultSource meets the LeasedSource and StatefulSource protocols."""
        source = make_vault_source()
        assert isinstance(source, LeasedSource)
        assert isinstance(source, StatefulSource)
        assert source.scheme == "vault"


class TestLeases:
    def test_database_creds_carry_a_lease(self, lease_role: str, make_vault_source: MakeSource):
        """A dynamic read returns its data and a renewable Lease with the granted duration."""
        source = make_vault_source()
        fetched = fetch_one(source, f"vault:{lease_role}")
        assert {"username", "password"} <= set(fetched.value.reveal())  # type: ignore[arg-type]
        assert fetched.lease is not None
        assert fetched.lease.lease_id.startswith(f"{lease_role}/")
        assert fetched.lease.duration == 3600
        assert fetched.lease.renewable
        assert source.describe(ref(f"vault:{lease_role}")) == f"vault.lease({lease_role})"

    @dev_only("moves the server clock with advance_clock")
    def test_renew_extends_then_caps_at_max_ttl(
        self, lease_role: str, make_vault_source: MakeSource, vault_clock: VaultClock
    ):
        """Renewal keeps the value and extends the lease; near the max TTL it grants less than asked."""
        source = make_vault_source()
        reference = ref(f"vault:{lease_role}")
        fetched = fetch_one(source, str(reference))
        vault_clock.advance(1800)
        renewed = source.renew(reference, fetched)
        assert renewed.value == fetched.value
        assert renewed.lease is not None
        assert renewed.lease.duration == 3600
        assert renewed.lease.granted_at == pytest.approx(vault_clock(), abs=5)
        # Walk to within 30 minutes of the 24h max TTL, renewing before each expiry.
        while vault_clock.offset < 23.5 * 3600:
            vault_clock.advance(2700)
            renewed = source.renew(reference, renewed)
        assert renewed.lease is not None
        assert 0 < renewed.lease.duration < 3600

    @dev_only("moves the server clock with advance_clock")
    def test_renew_of_expired_lease_is_not_found(
        self, lease_role: str, make_vault_source: MakeSource, vault_clock: VaultClock
    ):
        """Renewing a lease that already expired is a NotFoundError, so the scheduler fetches again."""
        source = make_vault_source()
        reference = ref(f"vault:{lease_role}")
        fetched = fetch_one(source, str(reference))
        vault_clock.advance(2 * 3600)
        with pytest.raises(NotFoundError, match="fetch it again"):
            source.renew(reference, fetched)

    def test_renew_without_lease_is_refused(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A value without a lease cannot be renewed: a SourceError says to fetch again."""
        write_kv2(vault_admin, kv2_mount, "app", {"k": "v"})
        source = make_vault_source()
        fetched = fetch_one(source, f"vault:{kv2_mount}/app")
        with pytest.raises(SourceError, match="no lease"):
            source.renew(ref(f"vault:{kv2_mount}/app"), fetched)

    def test_revoke_ends_the_lease(self, vault_server: VaultServer, lease_role: str, make_vault_source: MakeSource):
        """After revoke() the lease is gone: renewing it is a NotFoundError."""
        source = make_vault_source()
        reference = ref(f"vault:{lease_role}")
        fetched = fetch_one(source, str(reference))
        assert fetched.lease is not None
        source.revoke(reference, fetched)
        if vault_server.dev is not None:
            assert fetched.lease.lease_id not in vault_server.dev.active_leases(lease_role)
        with pytest.raises(NotFoundError):
            source.renew(reference, fetched)


class TestPki:
    def test_issue_with_params(self, pki_mount: PkiMount, make_vault_source: MakeSource):
        """pki/issue with common_name, alt_names and ttl returns the cert, key and CA, and its validity."""
        text = (
            f"vault:{pki_mount.mount}/issue/{pki_mount.role}"
            "?common_name=web.example.com&alt_names=www.example.com,api.example.com&ttl=2h"
        )
        fetched = fetch_one(make_vault_source(), text)
        data = fetched.value.reveal()
        assert isinstance(data, dict)
        assert "BEGIN" in data["private_key"]
        assert data["issuing_ca"].strip() == pki_mount.ca_pem.strip()
        cert = x509.load_pem_x509_certificate(data["certificate"].encode())
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "web.example.com"
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"www.example.com", "api.example.com"} <= set(sans.get_values_for_type(x509.DNSName))
        assert fetched.not_after == pytest.approx(cert.not_valid_after_utc.timestamp(), abs=1)
        # Vault back-dates NotBefore by 30 s against clock skew.
        lifetime = cert.not_valid_after_utc.timestamp() - cert.not_valid_before_utc.timestamp()
        assert 2 * 3600 <= lifetime <= 2 * 3600 + 60

    def test_issue_without_common_name_is_bad_request(self, pki_mount: PkiMount, make_vault_source: MakeSource):
        """A 400 from Vault is a plain SourceError carrying Vault's message."""
        error = fetch_error(make_vault_source(), f"vault:{pki_mount.mount}/issue/{pki_mount.role}?ttl=1h")
        assert type(error) is SourceError
        assert "common_name" in str(error)


class TestErrors:
    def test_wrong_key_lists_keys(self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource):
        """A missing #KEY is a NotFoundError listing the keys that exist, never their values."""
        write_kv2(vault_admin, kv2_mount, "app", {"user": "app", "password": SENTINEL})
        reference = ref(f"vault:{kv2_mount}/app#pasword")
        fetched = fetch_one(make_vault_source(), str(reference))
        with pytest.raises(NotFoundError, match=r"key 'pasword' not found \(keys: password, user\)") as info:
            fetched.value.select("pasword", ref=str(reference))
        assert SENTINEL not in str(info.value)

    def test_missing_path(self, kv2_mount: str, make_vault_source: MakeSource):
        """A path with nothing at it is a NotFoundError naming the reference and the Vault path."""
        error = fetch_error(make_vault_source(), f"vault:{kv2_mount}/nope")
        assert isinstance(error, NotFoundError)
        assert f"vault:{kv2_mount}/nope" in str(error)
        assert f"{kv2_mount}/data/nope" in str(error)

    def test_bad_token_is_auth_error(self, kv2_mount: str, make_vault_source: MakeSource):
        """A token Vault does not know is an AuthError naming where the token came from."""
        error = fetch_error(make_vault_source(environ={"VAULT_TOKEN": "hvs.not-a-token"}), f"vault:{kv2_mount}/app")
        assert isinstance(error, AuthError)
        assert "VAULT_TOKEN" in str(error)
        assert "hvs.not-a-token" not in str(error)

    def test_limited_policy_is_access_denied(
        self,
        vault_admin: hvac.Client,
        kv2_mount: str,
        policy: Callable[[str], str],
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
    ):
        """A 403 with a valid token is an AccessDeniedError naming the path, the role and its policies."""
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        write_kv2(vault_admin, kv2_mount, "other", {"password": SENTINEL})
        name = policy(f'path "{kv2_mount}/data/app" {{ capabilities = ["read"] }}')
        setup = approle(policies=[name])
        auth = VaultAuthConfig(
            method="approle",
            mount=setup.mount,
            role_id_file=setup.files["role_id"],
            secret_id_file=setup.files["secret_id"],
        )
        source = make_vault_source(auth)
        assert fetch_one(source, f"vault:{kv2_mount}/app").value.reveal() == {"password": SENTINEL}
        error = fetch_error(source, f"vault:{kv2_mount}/other")
        assert isinstance(error, AccessDeniedError)
        message = str(error)
        assert f"permission denied reading {kv2_mount}/data/other" in message
        assert f"role {setup.role}" in message
        assert name in message

    @dev_only("seals the server")
    def test_sealed_is_unavailable(self, vault_server: VaultServer, kv2_mount: str, make_vault_source: MakeSource):
        """A sealed Vault is a retryable UnavailableError saying it is sealed."""
        source = make_vault_source()
        source.authenticator.ensure()
        vault_server.dev.seal()
        try:
            error = fetch_error(source, f"vault:{kv2_mount}/app")
        finally:
            vault_server.dev.unseal()
        assert isinstance(error, UnavailableError)
        assert error.retryable
        assert "sealed" in str(error)

    @dev_only("injects server errors with set_error_rate")
    def test_server_error_is_unavailable(
        self, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: MakeSource
    ):
        """A 500 from Vault is a retryable UnavailableError."""
        write_kv2(vault_admin, kv2_mount, "app", {"k": "v"})
        source = make_vault_source()
        fetch_one(source, f"vault:{kv2_mount}/app")
        vault_server.dev.set_error_rate(1.0, status=500, paths=f"{kv2_mount}/")
        try:
            error = fetch_error(source, f"vault:{kv2_mount}/app")
        finally:
            vault_server.dev.set_error_rate(0.0)
        assert isinstance(error, UnavailableError)
        assert "500" in str(error)

    def test_unreachable_is_unavailable(self, make_vault_source: MakeSource):
        """A closed port is a retryable UnavailableError naming the address, not a traceback."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        address = f"http://127.0.0.1:{port}"
        error = fetch_error(make_vault_source(address=address), "vault:secret/app")
        assert isinstance(error, UnavailableError)
        assert address in str(error)
        assert "connection refused" in str(error)

    @dev_only("drops connections with set_outage")
    def test_outage_is_unavailable(self, vault_server: VaultServer, kv2_mount: str, make_vault_source: MakeSource):
        """A Vault that closes connections without answering is a retryable UnavailableError."""
        source = make_vault_source()
        source.authenticator.ensure()
        vault_server.dev.set_outage(True)
        try:
            error = fetch_error(source, f"vault:{kv2_mount}/app")
        finally:
            vault_server.dev.set_outage(False)
        assert isinstance(error, UnavailableError)
        assert "closed without an answer" in str(error)

    def test_unknown_mount(self, make_vault_source: MakeSource):
        """A path under no mount is an error naming the reference (403 on a real Vault, by design)."""
        error = fetch_error(make_vault_source(), "vault:no-such-mount-x/app")
        assert isinstance(error, AccessDeniedError | NotFoundError)
        assert "vault:no-such-mount-x/app" in str(error)

    def test_relogin_once_after_token_revoked(
        self,
        vault_server: VaultServer,
        vault_admin: hvac.Client,
        kv2_mount: str,
        policy: Callable[[str], str],
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
    ):
        """A token revoked behind our back causes one new login for many references, and they succeed."""
        for i in range(8):
            write_kv2(vault_admin, kv2_mount, f"s{i}", {"i": str(i)})
        setup = approle(policies=[policy(f'path "{kv2_mount}/*" {{ capabilities = ["read"] }}')])
        source = make_vault_source(
            VaultAuthConfig(
                method="approle",
                mount=setup.mount,
                role_id_file=setup.files["role_id"],
                secret_id_file=setup.files["secret_id"],
            ),
            max_concurrency=4,
        )
        refs = [ref(f"vault:{kv2_mount}/s{i}") for i in range(8)]
        source.fetch(refs)
        first = source.authenticator.token
        vault_admin.auth.token.revoke(first)
        logins = vault_server.dev.request_count(f"auth/{setup.mount}/login") if vault_server.dev else 0
        results = source.fetch(refs)
        assert all(isinstance(r, Fetched) for r in results.values())
        assert source.authenticator.token not in (None, first)
        if vault_server.dev is not None:
            assert vault_server.dev.request_count(f"auth/{setup.mount}/login") == logins + 1

    def test_no_message_or_log_contains_the_value(
        self,
        vault_admin: hvac.Client,
        kv2_mount: str,
        kv1_mount: str,
        make_vault_source: MakeSource,
        caplog: pytest.LogCaptureFixture,
    ):
        """Across reads and failures, the stored value appears in no exception text and no log record."""
        caplog.set_level(logging.DEBUG)
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
        vault_admin.secrets.kv.v2.delete_secret_versions(path="app", versions=[1], mount_point=kv2_mount)
        vault_admin.secrets.kv.v1.create_or_update_secret(path="app", secret={"p": SENTINEL}, mount_point=kv1_mount)
        source = make_vault_source()
        texts = [
            f"vault:{kv2_mount}/app",
            f"vault:{kv2_mount}/app?version=1",
            f"vault:{kv2_mount}/app?version=7",
            f"vault:{kv1_mount}/app",
            f"vault:{kv1_mount}/app?version=1",
            f"vault:{kv2_mount}/nope",
        ]
        results = source.fetch([ref(t) for t in texts])
        messages = [str(r) for r in results.values()] + [repr(r) for r in results.values()]
        for result in results.values():
            if isinstance(result, Fetched):
                try:
                    result.value.select("missing", ref="x")
                except NotFoundError as exc:
                    messages.append(str(exc))
        assert any(isinstance(r, SourceError) for r in results.values())
        assert all(SENTINEL not in m for m in messages)
        assert SENTINEL not in caplog.text


def test_build_vault_source_from_config(
    vault_server: VaultServer,
    vault_admin: hvac.Client,
    kv2_mount: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """build_vault_source builds a working source from config.vault (token auth from VAULT_TOKEN)."""
    write_kv2(vault_admin, kv2_mount, "app", {"password": SENTINEL})
    monkeypatch.setenv("VAULT_TOKEN", vault_server.root_token)
    config = Config(
        path=None,
        base_dir=tmp_path,
        output_dir=tmp_path,
        vault=VaultConfig(
            address=vault_server.address,
            ca_cert=Path(vault_server.verify) if isinstance(vault_server.verify, str) else None,
            timeout=5,
            auth=VaultAuthConfig(method="token"),
        ),
    )
    source = build_vault_source(config)
    try:
        assert fetch_one(source, f"vault:{kv2_mount}/app").value.reveal() == {"password": SENTINEL}
    finally:
        source.close()
