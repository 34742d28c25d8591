"""`injector init` and `injector sidecar` with the Vault Agent auto-auth features: wrapped AppRole secret IDs,
namespaces, cert and aws (iam) auth, and the VAULT_* environment conventions — against the dev server."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.sources.vault import build_vault_source
from tests.fixtures.aws import ACCOUNT
from tests.fixtures.cli import run, write_config
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.sidecar import Harness, wait_for
from tests.fixtures.vault import AuthSetup, VaultServer, dev_only, unique

pytestmark = [pytest.mark.vault, dev_only("namespaces, wrapping and TLS listener knobs of the dev server")]


def kv_template(mount: str, path: str = "app", key: str = "password") -> list[dict[str, Any]]:
    return [{"contents": f"{{{{ secret('vault:{mount}/{path}#{key}') }}}}", "destination": "secret.txt"}]


def env_for(server: VaultServer, **extra: str) -> dict[str, str]:
    env = dict(extra)
    if isinstance(server.verify, str):
        env.setdefault("VAULT_CACERT", server.verify)
    return env


@pytest.fixture
def secret_in_kv(vault_admin: hvac.Client, kv2_mount: str) -> str:
    vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": SENTINEL}, mount_point=kv2_mount)
    return kv2_mount


@pytest.fixture
def reader_policy(policy, secret_in_kv: str) -> str:
    return policy(f'path "{secret_in_kv}/data/*" {{ capabilities = ["read"] }}')


# --- AppRole with a response-wrapped secret ID -------------------------------------------------


@dataclass
class Wrapped:
    setup: AuthSetup
    config: Path
    wrapping_token: str


@pytest.fixture
def wrapped(
    approle, reader_policy: str, secret_in_kv: str, vault_admin: hvac.Client, tmp_path: Path, output_dir: Path
) -> Wrapped:
    """An AppRole whose secret_id file holds a wrapping token, and a config that unwraps it."""
    setup = approle(policies=[reader_policy])
    answer = vault_admin.write_data(f"auth/{setup.mount}/role/{setup.role}/secret-id", data={}, wrap_ttl="5m")
    token = answer["wrap_info"]["token"]
    setup.files["secret_id"].write_text(token)
    auth = {
        "method": "approle",
        "mount": setup.mount,
        "role_id_file": str(setup.files["role_id"]),
        "secret_id_file": str(setup.files["secret_id"]),
        "secret_id_response_wrapping_path": f"auth/{setup.mount}/role/{setup.role}/secret-id",
    }
    return Wrapped(setup=setup, config=_config(tmp_path, output_dir, secret_in_kv, auth), wrapping_token=token)


def _config(tmp_path: Path, output_dir: Path, mount: str, auth: dict[str, Any], **vault: Any) -> Path:
    server = vault.pop("server", None)
    section = {"address": vault.pop("address", None) or server, "auth": auth, "timeout": "5s", **vault}
    return write_config(tmp_path, output_dir, kv_template(mount), vault=section)


class TestWrappedSecretId:
    def test_unwraps_once_logs_in_and_removes_the_file(self, wrapped: Wrapped, vault_server: VaultServer, output_dir):
        """The wrapping token is unwrapped, the login works, and the consumed file is removed."""
        cfg = wrapped.config.read_text().replace("address: null", f"address: {vault_server.address}")
        wrapped.config.write_text(cfg)
        result = run(["init", "-c", str(wrapped.config)], env=env_for(vault_server))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL
        assert not wrapped.setup.files["secret_id"].exists()
        assert wrapped.wrapping_token not in result.stderr

    def test_used_wrapping_token_is_a_clear_error(self, wrapped: Wrapped, vault_server: VaultServer):
        """A wrapping token someone already unwrapped fails with exit 19 saying so."""
        hvac.Client(url=vault_server.address, token=wrapped.wrapping_token).sys.unwrap()
        cfg = wrapped.config.read_text().replace("address: null", f"address: {vault_server.address}")
        wrapped.config.write_text(cfg)
        result = run(["init", "-c", str(wrapped.config), "--timeout", "1s"], env=env_for(vault_server))
        assert result.returncode == 19, result.stderr
        assert "already used" in result.stderr and str(wrapped.setup.files["secret_id"]) in result.stderr

    def test_token_from_another_path_is_not_unwrapped(
        self, wrapped: Wrapped, vault_server: VaultServer, vault_admin: hvac.Client
    ):
        """A wrapping token created elsewhere (sys/wrapping/wrap) is refused and stays unconsumed."""
        other = vault_admin.sys.wrap(payload={"secret_id": "planted"}, ttl=300)["wrap_info"]["token"]
        wrapped.setup.files["secret_id"].write_text(other)
        cfg = wrapped.config.read_text().replace("address: null", f"address: {vault_server.address}")
        wrapped.config.write_text(cfg)
        result = run(["init", "-c", str(wrapped.config), "--timeout", "1s"], env=env_for(vault_server))
        assert result.returncode == 19, result.stderr
        assert "sys/wrapping/wrap" in result.stderr and "refusing to unwrap" in result.stderr
        assert vault_admin.sys.unwrap(token=other)["data"] == {"secret_id": "planted"}

    def test_second_login_reuses_the_unwrapped_id(self, wrapped: Wrapped, vault_server: VaultServer, tmp_path: Path):
        """After the file is consumed, a new login (token expiry) uses the unwrapped ID, not the file."""
        vault = VaultConfig(
            address=vault_server.address,
            auth=VaultAuthConfig(
                method="approle",
                mount=wrapped.setup.mount,
                role_id_file=wrapped.setup.files["role_id"],
                secret_id_file=wrapped.setup.files["secret_id"],
                secret_id_response_wrapping_path=f"auth/{wrapped.setup.mount}/role/{wrapped.setup.role}/secret-id",
            ),
        )
        source = build_vault_source(Config(path=None, base_dir=tmp_path, output_dir=tmp_path / "o", vault=vault))
        try:
            source.authenticator.login()
            first = source.authenticator.token
            source.authenticator.login()
            assert source.authenticator.token not in (None, first)
        finally:
            source.close()


# --- namespaces --------------------------------------------------------------------------------


@pytest.fixture
def namespace(vault_admin: hvac.Client, vault_server: VaultServer) -> Iterator[tuple[str, hvac.Client]]:
    """A namespace with a KV v2 mount ``kv`` holding ``app`` and an AppRole; yields (name, admin in it)."""
    name = unique("ns")
    vault_admin.sys.create_namespace(name)
    admin = hvac.Client(url=vault_server.address, token=vault_server.root_token, namespace=name)
    admin.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": SENTINEL}, mount_point="kv")
    try:
        yield name, admin
    finally:
        vault_admin.sys.delete_namespace(name)


class TestNamespace:
    def _approle(self, admin: hvac.Client, tmp_path: Path) -> dict[str, str]:
        admin.sys.create_or_update_policy("reader", 'path "kv/data/*" { capabilities = ["read"] }')
        admin.sys.enable_auth_method("approle")
        admin.write_data("auth/approle/role/app", data={"token_policies": ["reader"]})
        (tmp_path / "role_id").write_text(admin.read("auth/approle/role/app/role-id")["data"]["role_id"])
        (tmp_path / "secret_id").write_text(
            admin.write_data("auth/approle/role/app/secret-id", data={})["data"]["secret_id"]
        )
        return {
            "method": "approle",
            "role_id_file": str(tmp_path / "role_id"),
            "secret_id_file": str(tmp_path / "secret_id"),
        }

    def test_login_and_read_inside_the_namespace(self, namespace, vault_server: VaultServer, tmp_path, output_dir):
        """vault.namespace goes with the login and the reads: an AppRole and a KV mount of the namespace work."""
        name, admin = namespace
        config = _config(
            tmp_path, output_dir, "kv", self._approle(admin, tmp_path), server=vault_server.address, namespace=name
        )
        result = run(["init", "-c", str(config)], env=env_for(vault_server))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL

    def test_vault_namespace_variable_fills_the_config(
        self, namespace, vault_server: VaultServer, tmp_path, output_dir
    ):
        """VAULT_NAMESPACE is used when the config names no namespace."""
        name, admin = namespace
        config = _config(tmp_path, output_dir, "kv", self._approle(admin, tmp_path), server=vault_server.address)
        result = run(["init", "-c", str(config)], env=env_for(vault_server, VAULT_NAMESPACE=name))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL

    def test_lease_calls_carry_the_namespace(self, namespace, vault_server: VaultServer, tmp_path: Path):
        """A lease issued inside the namespace is revoked there (sys/leases/revoke with the namespace)."""
        name, admin = namespace
        admin.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
        admin.write_data("pki/root/generate/internal", data={"common_name": "ns CA", "ttl": "87600h"})
        admin.write_data("pki/roles/web", data={"allow_any_name": True, "generate_lease": True, "max_ttl": "72h"})
        (tmp_path / "root-token").write_text(vault_server.root_token)
        vault = VaultConfig(
            address=vault_server.address,
            namespace=name,
            auth=VaultAuthConfig(method="token", token_file=tmp_path / "root-token"),
        )
        source = build_vault_source(Config(path=None, base_dir=tmp_path, output_dir=tmp_path / "o", vault=vault))
        try:
            from injector.refs import parse_reference

            ref = parse_reference("vault:pki/issue/web?common_name=a.test&ttl=1h")
            fetched = source.fetch([ref])[ref]
            assert fetched.lease is not None, fetched
            assert admin.sys.read_lease(fetched.lease.lease_id)["data"]["id"] == fetched.lease.lease_id
            source.revoke(ref, fetched)
            with pytest.raises(hvac.exceptions.InvalidRequest):
                admin.sys.read_lease(fetched.lease.lease_id)
        finally:
            source.close()


# --- cert auth ---------------------------------------------------------------------------------


def _client_pki(folder: Path, cn: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None):
    """A client CA (or the given one) and a client certificate for ``cn`` written to folder/client.*."""
    now = datetime.datetime.now(datetime.UTC)
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        # Unique: a TLS trust store finds an issuer by its name, and the listener keeps earlier CAs.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique("client CA"))])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        ca = (ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(ca[1], hashes.SHA256())
    )
    (folder / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "client.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca


@pytest.fixture
def cert_role(tls_vault_server: VaultServer, tmp_path: Path):
    """cert auth on the TLS dev server with a role trusting a fresh client CA; a KV secret to read."""
    admin = hvac.Client(url=tls_vault_server.address, token=tls_vault_server.root_token, verify=tls_vault_server.verify)
    mount, kv = unique("cert"), unique("kv")
    admin.sys.enable_auth_method("cert", path=mount)
    admin.sys.enable_secrets_engine("kv", path=kv, options={"version": "2"})
    admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": SENTINEL}, mount_point=kv)
    admin.sys.create_or_update_policy(kv, f'path "{kv}/data/*" {{ capabilities = ["read"] }}')
    ca = _client_pki(tmp_path, "app.client")
    admin.write_data(
        f"auth/{mount}/certs/app",
        data={"certificate": ca[0].public_bytes(serialization.Encoding.PEM).decode(), "token_policies": [kv]},
    )
    try:
        yield mount, kv, ca
    finally:
        admin.sys.disable_auth_method(mount)
        admin.sys.disable_secrets_engine(kv)


class TestCertAuth:
    def test_init_logs_in_with_the_client_certificate(self, cert_role, tls_vault_server, tmp_path, output_dir):
        """method cert with vault.client_cert/client_key logs in and reads the secret."""
        mount, kv, _ = cert_role
        config = _config(
            tmp_path,
            output_dir,
            kv,
            {"method": "cert", "mount": mount, "name": "app"},
            server=tls_vault_server.address,
            client_cert=str(tmp_path / "client.pem"),
            client_key=str(tmp_path / "client.key"),
        )
        result = run(["init", "-c", str(config)], env=env_for(tls_vault_server))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL

    def test_client_certificate_from_the_environment(self, cert_role, tls_vault_server, tmp_path, output_dir):
        """VAULT_CLIENT_CERT / VAULT_CLIENT_KEY fill vault.client_cert / client_key."""
        mount, kv, _ = cert_role
        config = _config(tmp_path, output_dir, kv, {"method": "cert", "mount": mount}, server=tls_vault_server.address)
        env = env_for(
            tls_vault_server,
            VAULT_CLIENT_CERT=str(tmp_path / "client.pem"),
            VAULT_CLIENT_KEY=str(tmp_path / "client.key"),
        )
        result = run(["init", "-c", str(config)], env=env)
        assert result.returncode == 0, result.stderr

    def test_rotated_certificate_is_read_at_the_next_login(self, cert_role, tls_vault_server, tmp_path: Path):
        """A key pair rewritten on disk is what the next login presents (no restart)."""
        mount, _kv, ca = cert_role
        vault = VaultConfig(
            address=tls_vault_server.address,
            ca_cert=Path(str(tls_vault_server.verify)),
            client_cert=tmp_path / "client.pem",
            client_key=tmp_path / "client.key",
            auth=VaultAuthConfig(method="cert", mount=mount, name="app"),
        )
        source = build_vault_source(Config(path=None, base_dir=tmp_path, output_dir=tmp_path / "o", vault=vault))
        try:
            source.authenticator.login()
            _client_pki(tmp_path, "rotated.client", ca)
            source.authenticator.login()
            look = hvac.Client(
                url=tls_vault_server.address, token=tls_vault_server.root_token, verify=tls_vault_server.verify
            )
            meta = look.auth.token.lookup(source.authenticator.token)["data"]["meta"]
            assert meta["common_name"] == "rotated.client"
        finally:
            source.close()


# --- aws (iam) auth ----------------------------------------------------------------------------


@pytest.fixture
def aws_role(vault_admin: hvac.Client, aws_endpoint: str, reader_policy: str) -> Iterator[str]:
    mount = unique("aws")
    vault_admin.sys.enable_auth_method("aws", path=mount)
    vault_admin.write_data(
        f"auth/{mount}/config/client",
        data={"sts_endpoint": aws_endpoint, "iam_server_id_header_value": "vault.test"},
    )
    vault_admin.write_data(
        f"auth/{mount}/role/app",
        data={
            "auth_type": "iam",
            "bound_iam_principal_arn": [f"arn:aws:iam::{ACCOUNT}:user/moto"],
            "token_policies": [reader_policy],
        },
    )
    try:
        yield mount
    finally:
        vault_admin.sys.disable_auth_method(mount)


@pytest.mark.aws
class TestAwsAuth:
    def test_init_logs_in_with_a_signed_get_caller_identity(
        self, aws_role: str, secret_in_kv: str, vault_server: VaultServer, tmp_path, output_dir
    ):
        """method aws signs sts:GetCallerIdentity with the pod's credentials and the server-ID header."""
        auth = {"method": "aws", "mount": aws_role, "role": "app", "header_value": "vault.test"}
        config = _config(tmp_path, output_dir, secret_in_kv, auth, server=vault_server.address)
        result = run(["init", "-c", str(config)], env=env_for(vault_server))
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL

    def test_wrong_server_id_header_is_refused(
        self, aws_role: str, secret_in_kv: str, vault_server: VaultServer, tmp_path, output_dir
    ):
        """A header value other than the auth method's iam_server_id_header_value fails with exit 19."""
        auth = {"method": "aws", "mount": aws_role, "role": "app", "header_value": "elsewhere"}
        config = _config(tmp_path, output_dir, secret_in_kv, auth, server=vault_server.address)
        result = run(["init", "-c", str(config), "--timeout", "1s"], env=env_for(vault_server))
        assert result.returncode == 19, result.stderr
        assert "bound_iam_principal_arn" in result.stderr


# --- VAULT_* conventions -----------------------------------------------------------------------


class TestEnvironment:
    def test_vault_skip_verify_is_refused(self, vault_server: VaultServer, tmp_path, output_dir, secret_in_kv):
        """VAULT_SKIP_VERIFY is a config error that says why and what to do instead."""
        config = _config(tmp_path, output_dir, secret_in_kv, {"method": "token"}, server=vault_server.address)
        result = run(["init", "-c", str(config)], env={"VAULT_TOKEN": "x", "VAULT_SKIP_VERIFY": "true"})
        assert result.returncode == 11
        assert "VAULT_SKIP_VERIFY" in result.stderr and "VAULT_CACERT" in result.stderr

    def test_vault_addr_token_and_capath(self, tls_vault_server: VaultServer, tmp_path, output_dir):
        """VAULT_ADDR, VAULT_TOKEN and a VAULT_CAPATH directory are enough to reach a TLS Vault."""
        import subprocess

        admin = hvac.Client(
            url=tls_vault_server.address, token=tls_vault_server.root_token, verify=tls_vault_server.verify
        )
        admin.secrets.kv.v2.create_or_update_secret(path="capath", secret={"password": SENTINEL}, mount_point="secret")
        capath = tmp_path / "cas"
        capath.mkdir()
        (capath / "vault-ca.pem").write_text(tls_vault_server.ca_pem or "")
        subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True)
        config = write_config(
            tmp_path, output_dir, kv_template("secret", "capath"), vault={"auth": {"method": "token"}}
        )
        env = {
            "VAULT_ADDR": tls_vault_server.address,
            "VAULT_TOKEN": tls_vault_server.root_token,
            "VAULT_CAPATH": str(capath),
        }
        result = run(["init", "-c", str(config)], env=env)
        assert result.returncode == 0, result.stderr
        assert (output_dir / "secret.txt").read_text() == SENTINEL


# --- the sidecar, with each method -------------------------------------------------------------

NEW_VALUE = "rotated-" + SENTINEL[:8]


def sidecar_follows_a_change(
    harness: Harness, config: Path, env: dict[str, str], write: Callable[[], None], output_dir: Path
) -> None:
    """Starts a sidecar on ``config`` (polling every 500 ms), waits for /readyz, calls ``write`` (a new
    value at Vault) and waits for the file to follow."""
    data = yaml.safe_load(config.read_text())
    data["refresh"] = {"interval": "500ms", "min_backoff": "100ms", "max_backoff": "1s"}
    config.write_text(yaml.safe_dump(data))
    sidecar = harness.sidecar(config, env=env)
    sidecar.wait_ready()
    assert (output_dir / "secret.txt").read_text() == SENTINEL
    write()
    wait_for(lambda: (output_dir / "secret.txt").read_text() == NEW_VALUE, 15, "the new value in the file")
    assert sidecar.stop() == 0


class TestSidecarWithEachMethod:
    def test_wrapped_secret_id(self, wrapped: Wrapped, harness: Harness, vault_server: VaultServer,
                               vault_admin: hvac.Client, secret_in_kv: str, output_dir: Path) -> None:
        """A sidecar unwraps the secret ID, logs in, and keeps the file current."""
        sidecar_follows_a_change(
            harness, wrapped.config, env_for(vault_server, VAULT_ADDR=vault_server.address),
            lambda: vault_admin.secrets.kv.v2.create_or_update_secret(
                path="app", secret={"password": NEW_VALUE}, mount_point=secret_in_kv),
            output_dir,
        )
        assert not wrapped.setup.files["secret_id"].exists()

    def test_namespace(self, namespace, harness: Harness, vault_server: VaultServer, tmp_path, output_dir) -> None:
        """A sidecar in a namespace logs in and polls there."""
        name, admin = namespace
        config = _config(
            tmp_path, output_dir, "kv", TestNamespace()._approle(admin, tmp_path), server=vault_server.address,
            namespace=name,
        )
        sidecar_follows_a_change(
            harness, config, env_for(vault_server),
            lambda: admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": NEW_VALUE},
                                                                 mount_point="kv"),
            output_dir,
        )

    def test_cert(self, cert_role, harness: Harness, tls_vault_server: VaultServer, tmp_path, output_dir) -> None:
        """A sidecar logged in with a client certificate keeps the file current."""
        mount, kv, _ = cert_role
        config = _config(
            tmp_path, output_dir, kv, {"method": "cert", "mount": mount, "name": "app"},
            server=tls_vault_server.address, client_cert=str(tmp_path / "client.pem"),
            client_key=str(tmp_path / "client.key"),
        )
        admin = hvac.Client(url=tls_vault_server.address, token=tls_vault_server.root_token,
                            verify=tls_vault_server.verify)
        sidecar_follows_a_change(
            harness, config, env_for(tls_vault_server),
            lambda: admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": NEW_VALUE},
                                                                 mount_point=kv),
            output_dir,
        )

    @pytest.mark.aws
    def test_aws_iam(self, harness: Harness, vault_admin: hvac.Client, aws_role: str,
                     secret_in_kv: str, vault_server: VaultServer, tmp_path, output_dir) -> None:
        """A sidecar logged in with a signed sts:GetCallerIdentity (moto STS) keeps the file current."""
        auth = {"method": "aws", "mount": aws_role, "role": "app", "header_value": "vault.test"}
        config = _config(tmp_path, output_dir, secret_in_kv, auth, server=vault_server.address)
        sidecar_follows_a_change(
            harness, config, env_for(vault_server),
            lambda: vault_admin.secrets.kv.v2.create_or_update_secret(
                path="app", secret={"password": NEW_VALUE}, mount_point=secret_in_kv),
            output_dir,
        )


def test_a_namespaced_secret_is_refused_from_the_root_namespace(
    namespace, vault_server: VaultServer, tmp_path, output_dir
) -> None:
    """The namespace's credentials and secret, asked for without the namespace: refused, nothing written."""
    _, admin = namespace
    config = _config(tmp_path, output_dir, "kv", TestNamespace()._approle(admin, tmp_path), server=vault_server.address)
    result = run(["init", "-c", str(config), "--timeout", "3s"], env=env_for(vault_server))
    assert result.returncode in (14, 19), result.stderr
    assert not (output_dir / "secret.txt").exists()
