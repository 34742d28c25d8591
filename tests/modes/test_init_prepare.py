"""``init``'s early Vault login (``modes.init.prepare``): it runs while the templates compile, it
never races the token of an earlier run, and a failed one is reported once, by the fetch, as before.

Runs against the dev server, or unchanged against a real Vault when VAULT_ADDR/VAULT_TOKEN are set
(the request counts need the dev server and say so).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import hvac
import pytest

from injector.config.load import parse_config
from injector.config.model import Config
from injector.engine import Engine
from injector.errors import AuthError
from injector.modes.init import prepare, run_init
from injector.sources.vault_auth import VaultAuthenticator
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import VaultServer, dev_only

pytestmark = pytest.mark.vault

#: How long a test waits for the other thread before it fails.
PATIENCE = 10.0


@pytest.fixture
def token(vault_server: VaultServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VAULT_TOKEN", vault_server.root_token)
    return vault_server.root_token


def make_config(
    tmp_path: Path, output_dir: Path, server: VaultServer, mount: str, *, secrets: bool = True, **extra: Any
) -> Config:
    vault: dict[str, Any] = {"address": server.address, "auth": {"method": "token"}, "timeout": "5s"}
    if isinstance(server.verify, str):
        vault["ca_cert"] = server.verify
    ref = f"vault:{mount}/prepared#password"
    raw: dict[str, Any] = {
        "output_dir": str(output_dir),
        "vault": vault,
        "refresh": {"min_backoff": "100ms", "max_backoff": "300ms"},
        **extra,
    }
    if secrets:
        raw["secrets"] = {"password": ref}
        raw["templates"] = [{"contents": "{{ secrets.password }}", "destination": "password"}]
    else:
        raw["templates"] = [{"contents": f"{{{{ secret('{ref}') }}}}", "destination": "password"}]
    return parse_config(raw, base_dir=tmp_path, environ={})


@pytest.fixture
def stored(vault_admin: hvac.Client, kv2_mount: str) -> str:
    vault_admin.secrets.kv.v2.create_or_update_secret(
        path="prepared", secret={"password": SENTINEL}, mount_point=kv2_mount
    )
    return kv2_mount


def test_the_login_runs_while_the_templates_compile(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    stored: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The login has begun, on a thread of its own, while the main thread is compiling the templates;
    the files are rendered as without it."""
    config = make_config(tmp_path, output_dir, vault_server, stored)
    begun, compiled = threading.Event(), threading.Event()
    ensure, compile_ = VaultAuthenticator.ensure, Engine.compile

    def ensure_on_its_thread(self: VaultAuthenticator) -> None:
        if threading.current_thread() is not threading.main_thread():
            begun.set()
            compiled.wait(PATIENCE)  # keeps the login going until the compile has seen it
        ensure(self)

    seen: list[bool] = []

    def compile_seeing_the_login(self: Engine, *args: Any, **kwargs: Any) -> None:
        seen.append(begun.wait(PATIENCE))
        compile_(self, *args, **kwargs)
        compiled.set()

    monkeypatch.setattr(VaultAuthenticator, "ensure", ensure_on_its_thread)
    monkeypatch.setattr(Engine, "compile", compile_seeing_the_login)
    result = run_init(config, timeout=30, sources=prepare(config))
    assert seen == [True]
    assert result.files == 1
    assert (output_dir / "password").read_text() == SENTINEL


@dev_only("counts the server's requests")
def test_one_login_and_one_mount_lookup_in_all(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """The fetch uses the early login and mount lookup: init sends each once, as it did without it."""
    dev = vault_server.dev
    assert dev is not None
    config = make_config(tmp_path, output_dir, vault_server, stored)
    dev.reset_counts()
    run_init(config, timeout=30, sources=prepare(config))
    assert dev.request_count("auth/token/lookup-self") == 1
    assert dev.request_count("sys/internal/ui/mounts/") == 1
    assert (output_dir / "password").read_text() == SENTINEL


def test_nothing_starts_without_vault_secrets(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """Vault used only from a template (not compiled yet when prepare runs): no early login."""
    config = make_config(tmp_path, output_dir, vault_server, stored, secrets=False)
    assert prepare(config) == {}
    run_init(config, timeout=30, sources={})
    assert (output_dir / "password").read_text() == SENTINEL


def test_an_earlier_runs_state_is_adopted_not_raced(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """With an earlier run's state in state_dir, prepare starts nothing: its token is adopted."""
    state = tmp_path / "state"
    config = make_config(tmp_path, output_dir, vault_server, stored, state_dir=str(state))
    run_init(config, timeout=30, sources=prepare(config))  # leaves state.json for the next run
    assert (state / "state.json").exists()
    assert prepare(config) == {}


def test_a_refused_token_is_one_auth_error(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early login fails quietly; the fetch logs in again and raises what init always raised."""
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-a-token")
    config = make_config(tmp_path, output_dir, vault_server, stored)
    with pytest.raises(AuthError, match="refused by Vault") as caught:
        run_init(config, timeout=30, sources=prepare(config))
    assert "hvs.not-a-token" not in str(caught.value)
    assert not (output_dir / "password").exists()


def test_the_command_starts_the_login_before_importing_the_template_engine(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """``injector init`` imports hvac's adapter (to log in) before Jinja2, so the login's round trips
    overlap importing the template engine (``-X importtime`` lists modules as they finish importing)."""
    import subprocess
    import sys

    import yaml

    config = make_config(tmp_path, output_dir, vault_server, stored)
    path = tmp_path / "injector.yaml"
    vault: dict[str, Any] = {"address": vault_server.address, "auth": {"method": "token"}}
    if isinstance(vault_server.verify, str):
        vault["ca_cert"] = vault_server.verify
    path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(output_dir),
                "vault": vault,
                "secrets": {"password": str(config.secrets["password"])},
                "templates": [{"contents": "{{ secrets.password }}", "destination": "password"}],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "injector", "init", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    first_jinja2 = next(i for i, name in enumerate(imported) if name.split(".")[0] == "jinja2")
    assert imported.index("hvac.adapters") < first_jinja2
    # Jinja2's package __init__ never ran: neither its loaders nor its bytecode caches were imported.
    assert not {"jinja2", "jinja2.loaders", "jinja2.bccache", "pickle"} & set(imported)
    assert (output_dir / "password").read_text() == SENTINEL


def test_a_source_that_cannot_be_built_is_reported_where_it_always_was(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    stored: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prepare swallows a build error (nothing started); run_init builds the source again and raises
    that error, once, as init did before the early login existed."""
    import injector.engine
    import injector.sources
    from injector.errors import ConfigError

    def refuse(scheme: str, config: Config) -> None:
        raise ConfigError(f"vault: cannot build the {scheme} source")

    config = make_config(tmp_path, output_dir, vault_server, stored)
    monkeypatch.setattr(injector.sources, "build_source", refuse)
    monkeypatch.setattr(injector.engine, "build_source", refuse)
    assert prepare(config) == {}
    with pytest.raises(ConfigError, match="cannot build the vault source"):
        run_init(config, timeout=30, sources={})
    assert not (output_dir / "password").exists()
