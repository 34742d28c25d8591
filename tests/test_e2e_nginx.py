"""The real app story: nginx serves TLS with a certificate from Vault's PKI that injector keeps fresh.

`injector init` renders the certificate, key and nginx snippet of templates/README.md (the starter
templates as shipped) into a real tmpfs (a plain folder when not root); nginx starts on them;
`injector sidecar` re-issues the short-lived certificate, publishes certificate and key as one
snapshot and sends nginx's master SIGHUP by pid file (other nginx instances on this machine are
none of its business). A fresh TLS connection then sees a new certificate that verifies against the
PKI's CA, and nginx's error log shows that every reload succeeded (a certificate published without
its key would fail one).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.fixtures.sidecar import Harness, free_port, wait_for
from tests.fixtures.tmpfs import mount_tmpfs, unmount
from tests.fixtures.vault import VaultServer, dev_only, unique

pytestmark = [pytest.mark.slow, pytest.mark.vault]

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
HOSTNAME = "localhost"
#: Short enough that the sidecar re-issues during the test (at about 2/3 of it, ~4 s).
CERT_TTL = 6.0


@dataclass
class Served:
    """nginx on 127.0.0.1:``port``, the sidecar keeping its certificate fresh, and their traces."""

    port: int
    ca_file: Path
    nginx: subprocess.Popen[bytes]
    nginx_pidfile: Path
    error_log: Path
    vault: VaultServer
    pki: str
    #: Serial numbers of the certificate `injector init` wrote and of the one nginx first served.
    init_serial: int
    first_served: int

    def served_certificate(self) -> x509.Certificate:
        return served_certificate(self.port, self.ca_file)

    def error_lines(self) -> list[str]:
        return [line for line in self._log().splitlines() if re.search(r"\[(emerg|alert|crit)\]|cannot load", line)]

    def reloads(self) -> int:
        return self._log().count("signal 1 (SIGHUP) received")

    def _log(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""


def served_certificate(port: int, ca_file: Path) -> x509.Certificate:
    """The leaf of a FRESH TLS connection to nginx; the handshake verifies it against ``ca_file``."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def file_serial(out: Path) -> int:
    return x509.load_pem_x509_certificate((out / "tls" / "tls.crt").read_bytes()).serial_number


def nginx_conf(prefix: Path, out: Path, port: int, pidfile: Path, error_log: Path) -> str:
    """A minimal nginx.conf: loopback only, and everything it writes inside ``prefix``."""
    return textwrap.dedent(f"""\
        worker_processes 1;
        pid {pidfile};
        error_log {error_log} notice;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {prefix}/client_body;
            proxy_temp_path {prefix}/proxy;
            fastcgi_temp_path {prefix}/fastcgi;
            uwsgi_temp_path {prefix}/uwsgi;
            scgi_temp_path {prefix}/scgi;
            server {{
                listen 127.0.0.1:{port} ssl;
                server_name {HOSTNAME};
                # Rendered from templates/nginx-tls.conf.j2: ssl_certificate, ssl_certificate_key
                # and the certificate's serial (so the snippet changes with every rotation).
                include {out}/nginx/tls.conf;
                location / {{ return 200 "hello\\n"; }}
            }}
        }}
        """)


def injector_config(
    vault: VaultServer, pki: str, volume: Path, token_file: Path, pidfile: Path, *, tmpfs: bool
) -> dict[str, Any]:
    """templates/README.md's nginx config, with a short TTL and a pid file instead of a name."""
    reload_nginx = [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": "nginx"}]
    vault_config: dict[str, Any] = {
        "address": vault.address,
        "auth": {"method": "token", "token_file": str(token_file)},
    }
    if isinstance(vault.verify, str):
        vault_config["ca_cert"] = vault.verify
    return {
        "output_dir": str(volume / "out"),
        "state_dir": str(volume / "state"),
        # As a normal user there is no tmpfs to mount: the same story on an ordinary folder.
        "allow_non_tmpfs": not tmpfs,
        "vault": vault_config,
        "secrets": {"tls": f"vault:{pki}/issue/web?common_name={HOSTNAME}&ttl={CERT_TTL:g}s"},
        "templates": [
            {"source": str(ROOT / "templates/tls-fullchain.pem.j2"), "destination": "tls/tls.crt", "mode": "0444"},
            {"contents": "{{ secrets.tls.private_key }}\n", "destination": "tls/tls.key", "mode": "0400"},
            {
                "source": str(ROOT / "templates/nginx-tls.conf.j2"),
                "destination": "nginx/tls.conf",
                "mode": "0444",
                "on_change": reload_nginx,
            },
        ],
        "refresh": {"wait": {"min": "100ms", "max": "1s"}, "min_backoff": "200ms", "max_backoff": "2s"},
    }


@pytest.fixture(scope="module")
def served(fresh_vault_server: VaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`injector init`, nginx on its files, then `injector sidecar`: serving (shared by the module).

    A dev Vault of its own: TLS checks certificates against the wall clock, and other tests move
    the shared dev server's clock forward.
    """
    vault_server = fresh_vault_server
    if NGINX is None:
        pytest.skip("nginx is not installed (`make test` installs Debian's nginx-light)")
    tmp = tmp_path_factory.mktemp("e2e-nginx")
    admin = vault_server.client(vault_server.root_token)
    pki = unique("pki")
    admin.sys.enable_secrets_engine("pki", path=pki, config={"max_lease_ttl": "87600h"})
    harness = Harness(tmp)
    volume, prefix = tmp / "volume", tmp / "nginx"
    tmpfs = os.geteuid() == 0
    if tmpfs:
        mount_tmpfs(volume)
    else:
        volume.mkdir()
    nginx: subprocess.Popen[bytes] | None = None
    try:
        root = admin.write_data(f"{pki}/root/generate/internal", data={"common_name": "e2e CA", "ttl": "87600h"})
        admin.write_data(f"{pki}/roles/web", data={"allowed_domains": HOSTNAME, "allow_bare_domains": True})
        ca_file = tmp / "ca.pem"
        ca_file.write_text(root["data"]["certificate"])
        (volume / "out").mkdir()
        (volume / "state").mkdir(mode=0o700)
        token_file = tmp / "token"
        token_file.write_text(vault_server.root_token)
        token_file.chmod(0o600)
        prefix.mkdir()
        pidfile, error_log, port = prefix / "nginx.pid", prefix / "error.log", free_port()
        config = harness.config(injector_config(vault_server, pki, volume, token_file, pidfile, tmpfs=tmpfs))
        # Where nginx finds the files: templates/nginx-tls.conf.j2 reads TLS_DIR.
        env = {"PATH": os.environ.get("PATH", ""), "TLS_DIR": str(volume / "out" / "tls")}

        init = subprocess.run(
            [sys.executable, "-m", "injector", "init", "-c", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert init.returncode == 0, f"injector init failed:\n{init.stderr}"

        (prefix / "nginx.conf").write_text(nginx_conf(prefix, volume / "out", port, pidfile, error_log))
        with (prefix / "stderr.log").open("wb") as stderr:
            nginx = subprocess.Popen(
                [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        init_serial = file_serial(volume / "out")

        def first_certificate() -> int | None:
            if nginx is not None and nginx.poll() is not None:
                pytest.fail(f"nginx exited with {nginx.returncode}: {(prefix / 'stderr.log').read_text()}")
            try:
                return served_certificate(port, ca_file).serial_number
            except OSError:
                return None

        first_served = wait_for(first_certificate, 10, "nginx to serve TLS")
        harness.sidecar(config, env=env).wait_ready()
        served = Served(
            port=port,
            ca_file=ca_file,
            nginx=nginx,
            nginx_pidfile=pidfile,
            error_log=error_log,
            vault=vault_server,
            pki=pki,
            init_serial=init_serial,
            first_served=first_served,
        )
        yield served
    finally:
        harness.close()
        if nginx is not None and nginx.poll() is None:
            nginx.terminate()
            nginx.wait(timeout=10)
        if tmpfs:
            unmount(volume)
        admin.sys.disable_secrets_engine(pki)
        admin.adapter.close()


def test_nginx_serves_the_certificate_init_rendered(served: Served) -> None:
    """nginx, started on `injector init`'s files, serves that certificate, valid for localhost."""
    assert served.first_served == served.init_serial


def test_rotated_certificate_is_served_after_sighup(served: Served) -> None:
    """A re-issued certificate reaches a fresh, verified TLS connection; nginx reloaded in place."""
    before = served.served_certificate()

    def newer() -> x509.Certificate | None:
        # Later than the one served before, not just another one: during a reload an old worker
        # may still answer a connection or two.
        cert = served.served_certificate()
        return cert if cert.not_valid_before_utc > before.not_valid_before_utc else None

    rotated = wait_for(newer, 3 * CERT_TTL, "nginx to serve a new certificate")
    assert rotated.serial_number != before.serial_number
    assert int(served.nginx_pidfile.read_text()) == served.nginx.pid, "nginx restarted instead of reloading"
    assert served.nginx.poll() is None


def test_nginx_never_failed_to_reload(served: Served) -> None:
    """Every SIGHUP found a certificate with its matching key: no emerg/alert/crit in nginx's error log."""
    wait_for(lambda: served.reloads() >= 1, 3 * CERT_TTL, "nginx to reload")
    assert served.error_lines() == []


@dev_only("counts the dev server's requests")
def test_certificate_is_reissued_at_two_thirds_of_its_ttl(served: Served) -> None:
    """nginx reloads about every 4 s for a 6 s certificate (2/3 of it), not on every pass of the loop."""
    assert served.vault.dev is not None
    dev, path = served.vault.dev, f"{served.pki}/issue/web"

    def next_reload() -> tuple[float, int]:
        before = served.reloads()
        wait_for(lambda: served.reloads() > before, 3 * CERT_TTL, "nginx to reload")
        return time.monotonic(), dev.request_count(path)

    (first, issued_first), (second, issued_second) = next_reload(), next_reload()
    # 2/3 of the TTL less the scheduler's 5 % jitter, less refresh.wait.max for a late first reload,
    # less 0.25 s for the first reload's render, SIGHUP and nginx log line, and this loop's polling
    # (2.78 s was seen against 2.8). A re-issue well before 2/3 of the TTL still fails.
    expected = CERT_TTL * 2 / 3 * 0.95 - 1.0 - 0.25
    assert second - first >= expected, (
        f"two reloads {second - first:.2f}s apart ({issued_second - issued_first} certificate(s) issued "
        f"in between); a {CERT_TTL:g}s certificate is due again after ~{CERT_TTL * 2 / 3:.1f}s"
    )
