"""The client the Vault source is built with: hvac's adapter and four auth methods (``vault_client.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hvac
import pytest
import requests

from injector.sources.vault_client import Client
from tests.fixtures.vault import VaultServer

pytestmark = pytest.mark.vault

#: hvac's modules a process loads for the Vault source: the adapter, the exceptions, four auth
#: methods and what they import; the deferred packages themselves (``hvac``, ``hvac.api``,
#: ``hvac.api.auth_methods``) are registered without their ``__init__``.
LOADED = [
    "hvac",
    "hvac.adapters",
    "hvac.api",
    "hvac.api.auth_methods",
    "hvac.api.auth_methods.approle",
    "hvac.api.auth_methods.jwt",
    "hvac.api.auth_methods.kubernetes",
    "hvac.api.auth_methods.token",
    "hvac.api.vault_api_base",
    "hvac.constants",
    "hvac.constants.approle",
    "hvac.constants.client",
    "hvac.exceptions",
    "hvac.utils",
]


def test_a_fresh_process_loads_hvacs_adapter_and_four_auth_methods_only(
    tmp_path: Path, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
) -> None:
    """Built in a fresh process, the Vault source logs in and reads a KV value with 14 of hvac's
    modules loaded (no ``hvac.v1``, no secrets engine's class); ``hvac.Client`` still works after,
    in the same process, with every API class."""
    vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"user": "u1"}, mount_point=kv2_mount)
    (tmp_path / "token").write_text(vault_server.root_token)
    ca = vault_server.verify if isinstance(vault_server.verify, str) else None
    code = f"""
import json, sys
from pathlib import Path
from injector.config.model import Config, VaultAuthConfig, VaultConfig
from injector.refs import parse_reference
from injector.sources import build_source
auth = VaultAuthConfig(method="token", token_file=Path({str(tmp_path / "token")!r}))
vault = VaultConfig(address={vault_server.address!r}, auth=auth, ca_cert=None if {ca!r} is None else Path({ca!r}))
source = build_source("vault", Config(path=None, base_dir=Path("."), output_dir=Path("out"), vault=vault))
ref = parse_reference("vault:{kv2_mount}/app#user").base
fetched = source.fetch([ref])[ref]
loaded = sorted(name for name in sys.modules if name == "hvac" or name.startswith("hvac."))
import hvac
client = hvac.Client(url={vault_server.address!r}, token=Path({str(tmp_path / "token")!r}).read_text(),
                     verify={vault_server.verify!r})
read = client.secrets.kv.v2.read_secret_version(path="app", mount_point={kv2_mount!r}, raise_on_deleted_version=True)
every = len([name for name in sys.modules if name.startswith("hvac.")])
print(json.dumps({{"user": fetched.value.reveal()["user"], "loaded": loaded, "after": read["data"]["data"]["user"],
                   "all": every}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["user"] == "u1"
    assert result["loaded"] == LOADED
    assert result["after"] == "u1"
    assert result["all"] > 60  # hvac.Client imported the whole catalogue when asked for it


def test_the_client_holds_the_token_on_its_adapter(vault_server: VaultServer) -> None:
    """``token`` is the adapter's (sent as ``X-Vault-Token`` by every request and by the auth method
    objects, which share the adapter); ``url`` is the adapter's base address."""
    client = Client(
        url=vault_server.address,
        verify=vault_server.verify,
        cert=None,
        timeout=10,
        namespace=None,
        session=requests.Session(),
        allow_redirects=False,
    )
    assert client.token == ""
    client.token = vault_server.root_token
    assert client.adapter.token == vault_server.root_token
    assert client.url == vault_server.address
    for method in (client.auth.token, client.auth.kubernetes, client.auth.approle, client.auth.jwt):
        assert method._adapter is client.adapter
    assert client.auth.token.lookup_self()["data"]["id"] == vault_server.root_token
