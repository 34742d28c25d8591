"""VaultSession over real HTTPS: one redirect at most, never https → http, bounded bodies."""

from __future__ import annotations

import gc
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
import requests

from injector.config.model import Config, LimitsConfig, VaultAuthConfig, VaultConfig
from injector.errors import SourceError
from injector.refs import parse_reference
from injector.sources._tls import SharedTLS
from injector.sources.vault import build_vault_source
from injector.sources.vault_http import VaultSession
from tests.fixtures.tls import Tls, make_tls

pytestmark = pytest.mark.vault

TOKEN = "hvs.redirect-test-token"


# --- a CA and HTTPS servers on 127.0.0.1 -------------------------------------------------------


@dataclass
class Seen:
    """What one server received: paths, whether a token came, and the bodies."""

    paths: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    #: ``Authorization`` headers, in the order the requests came.
    authorizations: list[str] = field(default_factory=list)


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
            if self.headers.get("Authorization"):
                seen.authorizations.append(self.headers["Authorization"])
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


def test_the_vault_source_loads_idnas_tables_only_for_a_host_that_needs_them(tmp_path: Path) -> None:
    """Built in a fresh process, the Vault source imports requests without running the ``idna``
    package's ``__init__`` (requests imports it only to alias it): neither its code nor its tables
    are loaded, and an ASCII address prepares without them. A host name that is not ASCII is
    encoded as before (IDNA 2008 with UTS 46), loading them then."""
    (tmp_path / "token").write_text(TOKEN)
    code = f"""
import sys
from pathlib import Path
from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.sources import build_source
auth = VaultAuthConfig(method="token", token_file=Path({str(tmp_path / "token")!r}))
config = Config(path=None, base_dir=Path("."), output_dir=Path("out"),
                vault=VaultConfig(address="http://127.0.0.1:9", auth=auth))
build_source("vault", config)
import requests
ascii_url = requests.Request("GET", "http://vault.internal:8200/v1/secret/data/a").prepare().url
print(ascii_url, sorted(m for m in sys.modules if m.startswith("idna.")))
idn_url = requests.Request("GET", "http://BÜCHER.example/v1/secret/data/a").prepare().url
print(idn_url, "idna.idnadata" in sys.modules, sys.modules["requests.packages.idna"] is sys.modules["idna"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "http://vault.internal:8200/v1/secret/data/a []",
        "http://xn--bcher-kva.example/v1/secret/data/a True True",
    ]


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


# --- TLS: one context per CA bundle -------------------------------------------------------------


def ok(path: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, b'{"data": {}}'


def vault_like(path: str) -> tuple[int, dict[str, str], bytes]:
    """Answers a token lookup, a KV v1 mount lookup and a read, as Vault would."""
    if "lookup-self" in path:
        body: dict[str, Any] = {"data": {"ttl": 0, "policies": ["root"], "accessor": "a"}}
    elif "sys/internal/ui/mounts" in path:
        body = {"data": {"path": "secret/", "type": "kv", "options": {"version": "1"}}}
    else:
        body = {"data": {"v": "x"}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_a_netrc_file_adds_no_credential_to_vault_requests(
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.netrc`` listing Vault's host makes requests send its password as Basic auth; the Vault
    source's login check, mount lookup and reads, and a redirect's target, get no Authorization."""
    target = serve(vault_like)
    server = serve(lambda path: redirect_to(target.url)(path) if "secret/app" in path else vault_like(path))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login pod password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert requests.get(server.url + "/v1/sys/health", timeout=5).status_code == 200
    assert server.seen.authorizations == ["Basic cG9kOm5ldHJjLXBhc3N3b3Jk"]  # requests' own behaviour
    source = build_vault_source(config_for(tmp_path, server.url, tmp_path / "unused-ca.pem"))
    try:
        ref = parse_reference("vault:secret/app#v")
        assert not isinstance(source.fetch([ref])[ref], Exception)
    finally:
        source.close()
    assert len(server.seen.paths) >= 3
    assert "/v1/secret/app" in target.seen.paths
    assert server.seen.authorizations == ["Basic cG9kOm5ldHJjLXBhc3N3b3Jk"]
    assert target.seen.authorizations == []


def tls_contexts_of(sessions: list[requests.Session]) -> list[ssl.SSLContext]:
    """The contexts of the TLS connections the sessions' https pools keep."""
    contexts = []
    for session in sessions:
        for pool in session.get_adapter("https://x").poolmanager.pools._container.values():
            contexts += [conn.sock.context for conn in list(pool.pool.queue) if conn is not None and conn.sock]
    return contexts


def client_sockets() -> list[ssl.SSLSocket]:
    """This process's connected client-side TLS sockets."""
    found = []
    for o in gc.get_objects():
        if isinstance(o, ssl.SSLSocket) and not o.server_side and o.fileno() != -1:
            try:
                o.getpeername()
            except OSError:
                continue
            found.append(o)
    return found


class TestSharedTls:
    def test_every_connection_of_every_session_shares_one_context(self, serve, tmp_path: Path):
        """Eight sessions, eight TLS connections at once, one SSLContext; requests' would be eight."""
        tls = make_tls(tmp_path / "tls")
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        server = serve(ok, tls)
        shared = SharedTLS()
        ours = [VaultSession(max_bytes=1000, max_depth=10, tls=shared) for _ in range(8)]
        plain = [requests.Session() for _ in range(8)]
        def get(session: requests.Session, barrier: threading.Barrier) -> None:
            barrier.wait()
            assert session.get(server.url + "/v1/sys/health", verify=str(tmp_path / "ca.pem")).status_code == 200

        for sessions in (ours, plain):
            barrier = threading.Barrier(len(sessions))
            threads = [threading.Thread(target=get, args=(s, barrier)) for s in sessions]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        mine, theirs = tls_contexts_of(ours), tls_contexts_of(plain)
        assert len(mine) == len(theirs) == 8
        assert len({id(c) for c in mine}) == 1
        assert mine[0] is shared.context(str(tmp_path / "ca.pem"), None)
        assert len({id(c) for c in theirs}) == 8  # what the shared context saves: 7 bundles
        for session in ours:  # and no new connection loads the bundle into it again
            for pool in session.get_adapter("https://x").poolmanager.pools._container.values():
                assert (pool.ca_certs, pool.ca_cert_dir, pool.cert_file) == (None, None, None)
                assert pool.conn_kw["ssl_context"] is mine[0]

    def test_the_source_shares_it_across_its_worker_threads(self, serve, tmp_path: Path):
        """A Vault source fetching 20 references over TLS at once keeps one context for all of them."""
        tls = make_tls(tmp_path / "tls")
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)

        def answer(path: str) -> tuple[int, dict[str, str], bytes]:
            if "lookup-self" in path:
                body = {"data": {"ttl": 0, "policies": ["root"], "accessor": "a"}}
            elif "sys/internal/ui/mounts" in path:
                body = {"data": {"path": "secret/", "type": "kv", "options": {"version": "1"}}}
            else:
                body = {"data": {"v": "x"}}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

        server = serve(answer, tls)
        source = build_vault_source(config_for(tmp_path, server.url, tmp_path / "ca.pem"))
        try:
            refs = [parse_reference(f"vault:secret/app{n}#v") for n in range(20)]
            results = source.fetch(refs)
            assert all(not isinstance(r, Exception) for r in results.values()), results
            port = int(server.url.rsplit(":", 1)[1])
            ours = [sock.context for sock in client_sockets() if sock.getpeername()[1] == port]
            assert len(ours) >= 2
            assert len({id(c) for c in ours}) == 1
        finally:
            source.close()

    def test_the_host_name_is_still_checked(self, serve, tmp_path: Path):
        """A certificate from the trusted CA but for another name is refused, as requests refuses it."""
        tls = make_tls(tmp_path / "tls", dns_name="vault.other.example")
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        server = serve(ok, tls)
        for session in (VaultSession(max_bytes=1000, max_depth=10), requests.Session()):
            with pytest.raises(requests.exceptions.SSLError, match=r"match|mismatch"):
                session.get(server.url + "/v1/sys/health", verify=str(tmp_path / "ca.pem"))

    def test_a_server_from_another_ca_is_refused(self, serve, tmp_path: Path):
        """Verification uses the given bundle only: a server signed by another CA fails the handshake."""
        server = serve(ok, make_tls(tmp_path / "tls"))
        (tmp_path / "other.pem").write_bytes(make_tls(tmp_path / "other").ca_pem)
        for verify in (str(tmp_path / "other.pem"), True):
            with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
                VaultSession(max_bytes=1000, max_depth=10).get(server.url + "/v1/sys/health", verify=verify)

    def test_a_missing_bundle_fails_as_requests_fails(self, serve, tmp_path: Path):
        """A CA bundle that does not exist gets requests' own error, word for word."""
        server = serve(ok, make_tls(tmp_path / "tls"))
        errors = []
        for session in (VaultSession(max_bytes=1000, max_depth=10), requests.Session()):
            with pytest.raises(OSError, match="CA certificate bundle") as caught:
                session.get(server.url + "/v1/sys/health", verify=str(tmp_path / "missing.pem"))
            errors.append((type(caught.value), str(caught.value)))
        assert errors[0] == errors[1]
        assert "Could not find a suitable TLS CA certificate bundle" in errors[0][1]
