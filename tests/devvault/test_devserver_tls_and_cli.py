"""The TLS listener and `python -m devvault`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import hvac
import requests
from cryptography import x509

from devvault import DevVault
from tests.fixtures.vault import VaultServer


def test_tls_listener_verifies_with_ca_pem(tmp_path: Path) -> None:
    """tls=True serves https with a certificate for 127.0.0.1 signed by vault.ca_pem."""
    with DevVault(tls=True).start() as vault:
        assert vault.address.startswith("https://127.0.0.1:")
        assert vault.ca_pem is not None
        x509.load_pem_x509_certificate(vault.ca_pem.encode())
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text(vault.ca_pem)
        c = hvac.Client(url=vault.address, token=vault.root_token, verify=str(ca_file))
        c.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
        assert c.is_authenticated()
        c.adapter.close()


def test_plain_listener_has_no_ca(vault: DevVault) -> None:
    """Without TLS ca_pem is None and the address is http."""
    assert vault.ca_pem is None and vault.address.startswith("http://")


def test_cli_serves_until_sigterm() -> None:
    """`python -m devvault --port 0` prints its address, serves, exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devvault", "--port", "0", "--root-token", "tok"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        address = line.strip().rsplit(" ", 1)[-1]
        assert address.startswith("http://127.0.0.1:")
        resp = requests.get(address + "/v1/auth/token/lookup-self",
                            headers={"X-Vault-Token": "tok"}, timeout=5)
        assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tls_vault_server_fixture(tls_vault_server: VaultServer) -> None:
    """The tls_vault_server fixture serves https verified by its CA file."""
    client = tls_vault_server.client(tls_vault_server.root_token)
    try:
        assert tls_vault_server.address.startswith("https://127.0.0.1:")
        assert client.is_authenticated()
    finally:
        client.adapter.close()
