"""One TLS context per CA bundle (sources/_tls.py), shared by the Vault sessions and the AWS clients."""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from injector.sources._aws import build_client
from injector.sources._tls import _KEPT, SHARED_TLS, SharedTLS
from injector.sources.aws_secretsmanager import SecretsManagerClient
from injector.sources.aws_ssm import SsmClient
from injector.sources.vault_http import VaultSession
from tests.fixtures.tls import Tls, make_tls

pytestmark = pytest.mark.aws


class _AwsError(BaseHTTPRequestHandler):
    """Answers every call as AWS answers a missing secret (a JSON error, the connection kept)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"__type": "ResourceNotFoundException", "message": "not here"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


@pytest.fixture
def tls_server() -> Iterator[Callable[[Tls], str]]:
    """Starts HTTPS servers on 127.0.0.1 with a given certificate; returns their URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(tls: Tls) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _AwsError)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"https://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def pool_contexts(client: Any) -> list[ssl.SSLContext]:
    """The contexts of the TLS connections a botocore client's pools keep."""
    pools = client._endpoint.http_session._manager.pools
    keys = pools.keys()  # a RecentlyUsedContainer cannot be iterated
    return [conn.sock.context for key in keys for conn in list(pools[key].pool.queue) if conn and conn.sock]


def call(client: Any) -> None:
    """One call that AWS (or the server above) answers with an error: the connection is made and kept."""
    if hasattr(client, "get_secret_value"):
        with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFoundException"):
            client.get_secret_value(SecretId="app")
    else:
        with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFoundException"):
            client.get_parameters(Names=["app"], WithDecryption=True)


class TestAwsClients:
    def test_both_clients_and_vault_share_the_bundles_context(
        self, aws_config: Any, tls_server: Callable[[Tls], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Secrets Manager, SSM and a Vault session over TLS with one bundle: one context, loaded once."""
        tls = make_tls(tmp_path / "tls")
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(tls.ca_pem)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
        url = tls_server(tls)
        config = aws_config(aws={"endpoint_url": url})
        sm, _ = build_client("secretsmanager", config, SecretsManagerClient)
        ssm, _ = build_client("ssm", config, SsmClient)
        for client in (sm, ssm, sm, ssm):
            call(client)
        vault = VaultSession(max_bytes=10_000, max_depth=10)
        vault.get(url + "/v1/sys/health", verify=str(bundle))
        shared = SHARED_TLS.context(str(bundle), None)
        assert shared is not None
        contexts = pool_contexts(sm) + pool_contexts(ssm)
        assert len(contexts) >= 2
        assert all(context is shared for context in contexts)
        for pools in (sm._endpoint.http_session._manager.pools, ssm._endpoint.http_session._manager.pools):
            for key in pools.keys():  # noqa: SIM118 - a RecentlyUsedContainer cannot be iterated
                assert pools[key].ca_certs is None  # a new connection loads nothing into it
        adapter = vault.get_adapter(url)
        vault_pool = next(iter(adapter.poolmanager.pools._container.values()))
        assert vault_pool.conn_kw["ssl_context"] is shared

    def test_the_host_name_is_still_checked(
        self, aws_config: Any, tls_server: Callable[[Tls], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A certificate of the trusted CA for another name fails the call, as botocore fails it."""
        tls = make_tls(tmp_path / "tls", dns_name="secretsmanager.other.example")
        (tmp_path / "bundle.pem").write_bytes(tls.ca_pem)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
        config = aws_config(aws={"endpoint_url": tls_server(tls), "max_attempts": 1})
        sm, _ = build_client("secretsmanager", config, SecretsManagerClient)
        with pytest.raises(botocore.exceptions.SSLError, match=r"match|mismatch"):
            sm.get_secret_value(SecretId="app")

    def test_a_server_of_another_ca_is_refused(
        self, aws_config: Any, tls_server: Callable[[Tls], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The bundle given is the only trust: a server signed by another CA fails verification."""
        url = tls_server(make_tls(tmp_path / "tls"))
        (tmp_path / "other.pem").write_bytes(make_tls(tmp_path / "other").ca_pem)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "other.pem"))
        ssm, _ = build_client("ssm", aws_config(aws={"endpoint_url": url, "max_attempts": 1}), SsmClient)
        with pytest.raises(botocore.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            ssm.get_parameters(Names=["app"], WithDecryption=True)

    def test_plain_http_clients_are_left_as_botocore_made_them(self, aws_config: Any) -> None:
        """Against an http endpoint the session stays botocore's until a TLS call would need it."""
        sm, _ = build_client("secretsmanager", aws_config(), SecretsManagerClient)
        call(sm)
        assert type(sm._endpoint.http_session).__name__ == "URLLib3Session"
        assert pool_contexts(sm) == []


class TestSharedTls:
    def test_one_context_per_bundle(self, tmp_path: Path) -> None:
        """The same bundle gives the same context; another bundle, another one."""
        shared = SharedTLS()
        for name in ("a", "b"):
            (tmp_path / f"{name}.pem").write_bytes(make_tls(tmp_path / name).ca_pem)
        a = shared.context(str(tmp_path / "a.pem"), None)
        assert a is not None and a is shared.context(str(tmp_path / "a.pem"), None)
        assert shared.context(str(tmp_path / "b.pem"), None) not in (None, a)
        assert a.verify_mode == ssl.CERT_REQUIRED
        assert a.cert_store_stats()["x509_ca"] == 1

    def test_a_rotated_client_certificate_gets_a_new_context(self, tmp_path: Path) -> None:
        """Rewriting the key pair on disk changes the context the next request gets."""
        shared = SharedTLS()
        first = make_tls(tmp_path / "one")
        (tmp_path / "ca.pem").write_bytes(first.ca_pem)
        cert = (str(first.cert_file), str(first.key_file))
        before = shared.context(str(tmp_path / "ca.pem"), cert)
        assert before is not None and before is shared.context(str(tmp_path / "ca.pem"), cert)
        second = make_tls(tmp_path / "two")
        os.replace(second.cert_file, first.cert_file)
        os.replace(second.key_file, first.key_file)
        assert shared.context(str(tmp_path / "ca.pem"), cert) not in (None, before)

    def test_what_cannot_be_loaded_gets_no_context(self, tmp_path: Path) -> None:
        """A missing or broken bundle or certificate gets None (the client then fails as it always does)."""
        shared = SharedTLS()
        (tmp_path / "junk.pem").write_text("not a certificate")
        (tmp_path / "ca.pem").write_bytes(make_tls(tmp_path / "tls").ca_pem)
        assert shared.context(str(tmp_path / "missing.pem"), None) is None
        assert shared.context(str(tmp_path / "junk.pem"), None) is None
        assert shared.context(str(tmp_path / "ca.pem"), str(tmp_path / "missing.pem")) is None

    def test_kept_contexts_stay_bounded(self, tmp_path: Path) -> None:
        """However many bundles are asked for, a handful of contexts is kept."""
        shared = SharedTLS()
        ca = make_tls(tmp_path / "tls").ca_pem
        for n in range(20):
            (tmp_path / f"ca{n}.pem").write_bytes(ca)
            assert shared.context(str(tmp_path / f"ca{n}.pem"), None) is not None
            assert len(shared._contexts) <= _KEPT


class TestUrllib3WithoutItsHttp2OptIn:
    """The sources load urllib3 without running ``urllib3/http2/__init__.py`` (the HTTP/2 opt-in and
    its import of importlib.metadata); HTTPS connections, which consult ``urllib3.http2.probe``,
    work as before."""

    def test_a_fresh_process_skips_the_opt_in_and_still_speaks_https(
        self, tmp_path: Path, tls_server: Callable[[Tls], str]
    ) -> None:
        import subprocess
        import sys

        tls = make_tls(tmp_path / "tls")
        url = tls_server(tls)
        (tmp_path / "ca.pem").write_bytes(tls.ca_pem)
        (tmp_path / "token").write_text("s.unused")
        code = f"""
import sys
from pathlib import Path
from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.sources import build_source
auth = VaultAuthConfig(method="token", token_file=Path({str(tmp_path / "token")!r}))
config = Config(path=None, base_dir=Path("."), output_dir=Path("out"),
                vault=VaultConfig(address="http://127.0.0.1:9", auth=auth))
build_source("vault", config)
import requests, urllib3.connection
status = requests.get({url!r}, verify={str(tmp_path / "ca.pem")!r}, timeout=10).status_code
print(status, "importlib.metadata" in sys.modules, Path(urllib3.connection.http2_probe.__file__).name,
      hasattr(sys.modules["urllib3.http2"], "inject_into_urllib3"))
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["400", "False", "probe.py", "False"]

    def test_a_process_that_imported_urllib3_is_left_as_it_is(self) -> None:
        import sys

        import urllib3.connection  # noqa: F401

        from injector._imports import urllib3_without_http2_opt_in

        before = sys.modules["urllib3.http2"]
        urllib3_without_http2_opt_in()
        assert sys.modules["urllib3.http2"] is before
