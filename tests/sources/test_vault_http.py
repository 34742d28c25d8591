"""VaultSession over real HTTPS: one redirect at most, never https → http, bounded bodies."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from injector.config.model import Config, LimitsConfig, VaultAuthConfig, VaultConfig
from injector.errors import SourceError
from injector.refs import parse_reference
from injector.sources.vault import build_vault_source
from injector.sources.vault_http import VaultSession

pytestmark = pytest.mark.vault

TOKEN = "hvs.redirect-test-token"


# --- a CA and HTTPS servers on 127.0.0.1 -------------------------------------------------------


@dataclass
class Tls:
    ca_pem: bytes
    cert_file: Path
    key_file: Path


def make_tls(folder: Path) -> Tls:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redirect test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Tls(ca_pem=ca.public_bytes(serialization.Encoding.PEM), cert_file=cert_file, key_file=key_file)


@dataclass
class Seen:
    """What one server received: paths, whether a token came, and the bodies."""

    paths: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


@dataclass
class Server:
    url: str
    seen: Seen


def _handler(seen: Seen, answer: Answer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.paths.append(self.path)
            seen.bodies.append(body)
            if self.headers.get("X-Vault-Token"):
                seen.tokens.append(self.headers["X-Vault-Token"])
            status, headers, payload = answer(self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(payload)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _any

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Starts HTTP(S) servers on 127.0.0.1 answering with ``answer(path)``; stops them after."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer, tls: Tls | None = None) -> Server:
        seen = Seen()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen, answer))
        httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        scheme = "https" if tls is not None else "http"
        return Server(url=f"{scheme}://127.0.0.1:{httpd.server_address[1]}", seen=seen)

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def redirect_to(base: str) -> Answer:
    return lambda path: (307, {"Location": base + path}, b"")


def config_for(tmp_path: Path, address: str, ca_file: Path, auth: VaultAuthConfig | None = None) -> Config:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return Config(
        path=None,
        base_dir=tmp_path,
        output_dir=tmp_path / "out",
        vault=VaultConfig(
            address=address,
            ca_cert=ca_file,
            timeout=5,
            auth=auth or VaultAuthConfig(method="token", token_file=token_file),
        ),
    )


def fetch_error(config: Config, text: str = "vault:secret/app") -> SourceError:
    source = build_vault_source(config)
    try:
        ref = parse_reference(text)
        result = source.fetch([ref])[ref]
    finally:
        source.close()
    assert isinstance(result, SourceError), "expected the request to be refused"
    return result


# --- redirects ---------------------------------------------------------------------------------


class TestRedirects:
    def test_https_to_http_redirect_sends_no_token(self, serve, tmp_path: Path):
        """A 307 from https to plain http is refused, naming both addresses; http never sees the token."""
        tls = make_tls(tmp_path)
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        plain = serve(lambda path: (200, {"Content-Type": "application/json"}, b"{}"))
        vault = serve(redirect_to(plain.url), tls)
        error = fetch_error(config_for(tmp_path, vault.url, tmp_path / "ca.pem"))
        assert plain.seen.paths == []
        assert plain.seen.tokens == []
        assert vault.url in str(error) and plain.url in str(error)
        assert "https to http" in str(error)
        assert not error.retryable

    def test_approle_login_body_is_not_sent_to_http(self, serve, tmp_path: Path):
        """An AppRole login redirected to http leaves no role_id or secret_id there."""
        tls = make_tls(tmp_path)
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        (tmp_path / "role_id").write_text("role-id-value")
        (tmp_path / "secret_id").write_text("secret-id-value")
        plain = serve(lambda path: (200, {"Content-Type": "application/json"}, b"{}"))
        vault = serve(redirect_to(plain.url), tls)
        auth = VaultAuthConfig(
            method="approle", mount="approle", role_id_file=tmp_path / "role_id", secret_id_file=tmp_path / "secret_id"
        )
        error = fetch_error(config_for(tmp_path, vault.url, tmp_path / "ca.pem", auth))
        assert plain.seen.bodies == []
        assert "https to http" in str(error)

    def test_second_redirect_is_not_followed(self, serve, tmp_path: Path):
        """A redirect to a server that redirects again ends there: the third server gets nothing."""
        tls = make_tls(tmp_path)
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        third = serve(lambda path: (200, {"Content-Type": "application/json"}, b"{}"), tls)
        second = serve(redirect_to(third.url), tls)
        first = serve(redirect_to(second.url), tls)
        error = fetch_error(config_for(tmp_path, first.url, tmp_path / "ca.pem"))
        assert third.seen.paths == []
        assert len(second.seen.tokens) == 1
        assert "at most one redirect" in str(error)

    def test_one_https_redirect_reaches_the_active_node(self, serve, tmp_path: Path):
        """One https → https redirect is followed, as a standby's 307 to the active node."""
        from devvault import DevVault

        active = DevVault(host="127.0.0.1", port=0, root_token="root", tls=True).start()
        try:
            tls = make_tls(tmp_path)
            bundle = tmp_path / "ca.pem"
            bundle.write_bytes(tls.ca_pem + (active.ca_pem or "").encode())
            admin = hvac.Client(url=active.address, token="root", verify=str(bundle))
            admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"}, mount_point="secret")
            standby = serve(redirect_to(active.address), tls)
            (tmp_path / "root-token").write_text("root")
            auth = VaultAuthConfig(method="token", token_file=tmp_path / "root-token")
            source = build_vault_source(config_for(tmp_path, standby.url, bundle, auth))
            try:
                ref = parse_reference("vault:secret/app")
                result = source.fetch([ref])[ref]
            finally:
                source.close()
        finally:
            active.stop()
        assert not isinstance(result, SourceError), str(result)
        assert result.value.reveal() == {"k": "v"}
        assert standby.seen.paths


# --- bodies ------------------------------------------------------------------------------------


class TestBodies:
    def test_deep_json_answer_is_that_references_error(self, serve, tmp_path: Path):
        """A 3 KB answer of nested arrays is refused before parsing: an error, not a RecursionError."""
        deep = b"[" * 3000 + b"]" * 3000

        def answer(path: str) -> tuple[int, dict[str, str], bytes]:
            if "lookup-self" in path:
                body = {"data": {"ttl": 0, "policies": ["root"], "accessor": "a"}}
                return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
            if "sys/internal/ui/mounts" in path:
                body = {"data": {"path": "secret/", "type": "kv", "options": {"version": "1"}}}
                return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
            return 200, {"Content-Type": "application/json"}, b'{"data": {"v": ' + deep + b"}}"

        plain = serve(answer)
        error = fetch_error(config_for(tmp_path, plain.url, tmp_path / "none"))
        assert "limits.max_depth" in str(error)
        assert str(error).startswith("vault:secret/app")
        assert not error.retryable

    def test_oversized_answer_is_refused_by_content_length(self, serve, tmp_path: Path):
        """An answer whose Content-Length is over the limit is refused without reading it."""

        def answer(path: str) -> tuple[int, dict[str, str], bytes]:
            if "lookup-self" in path:
                body = {"data": {"ttl": 0, "policies": ["root"], "accessor": "a"}}
                return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
            return 200, {"Content-Type": "application/json"}, b" " * 300_000

        plain = serve(answer)
        config = config_for(tmp_path, plain.url, tmp_path / "none")
        small = Config(
            path=None,
            base_dir=tmp_path,
            output_dir=tmp_path / "out",
            vault=config.vault,
            limits=LimitsConfig(max_secret_bytes=1000),
        )
        error = fetch_error(small)
        assert "limits.max_secret_bytes" in str(error)


def test_the_vault_source_imports_no_charset_detector(tmp_path: Path) -> None:
    """Built in a fresh process, the Vault source loads requests without charset_normalizer or chardet,
    warns about nothing, and a body that names no charset is read as UTF-8."""
    (tmp_path / "token").write_text(TOKEN)
    code = f"""
import sys, warnings
from pathlib import Path
warnings.simplefilter("error")
from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.sources import build_source
auth = VaultAuthConfig(method="token", token_file=Path({str(tmp_path / "token")!r}))
config = Config(path=None, base_dir=Path("."), output_dir=Path("out"),
                vault=VaultConfig(address="http://127.0.0.1:9", auth=auth))
build_source("vault", config)
import requests
response = requests.models.Response()
response._content = b"\\xc3\\xa9t\\xc3\\xa9 \\xff"
print(sys.modules.get("charset_normalizer"), sys.modules.get("chardet"), repr(response.text))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == "None None 'été \ufffd'"


def test_environment_settings_are_requests_own_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies (with NO_PROXY) and REQUESTS_CA_BUNDLE come out as requests computes them, and the
    environment is read once per host and settings, not at every request."""
    import requests.sessions

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "vault.internal")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    reads: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: Any = None) -> Any:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    ours, plain = VaultSession(max_bytes=1000, max_depth=10), requests.Session()
    urls = [
        "https://vault.internal:8200/v1/secret/data/a",
        "https://vault.internal:8200/v1/secret/data/b",
        "https://other.internal:8200/v1/secret/data/a",
        "https://other.internal:8200/v1/secret/data/b",
    ]
    for verify in (True, "/etc/vault/ca.pem"):
        for url in urls:
            expected = plain.merge_environment_settings(url, {}, True, verify, None)
            got = ours.merge_environment_settings(url, {}, True, verify, None)
            assert got == expected
            got["proxies"]["https"] = "http://changed"  # a caller's change stays its own
    assert ours.merge_environment_settings(urls[2], {}, True, True, None)["proxies"]["https"] == (
        "http://proxy.internal:3128"
    )
    assert "https" not in ours.merge_environment_settings(urls[0], {}, True, True, None)["proxies"]
    assert ours.merge_environment_settings(urls[0], {}, True, True, None)["verify"] == "/etc/ssl/bundle.pem"
    assert len(reads) == 2 * len(urls) + 4  # requests: every call; ours: once per host and verify


def test_environment_settings_stay_bounded_under_redirects_to_new_hosts() -> None:
    """A Vault that sends every request to a new host cannot grow what a session keeps."""
    from injector.sources.vault_http import _SETTINGS_KEPT

    session = VaultSession(max_bytes=1000, max_depth=10)
    for n in range(200):
        session.merge_environment_settings(f"https://node{n}.vault.internal:8200/v1/x", {}, True, True, None)
        assert len(session._settings) <= _SETTINGS_KEPT
