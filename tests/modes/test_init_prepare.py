"""``init``'s start-up. Its early Vault login (``modes.init.prepare``) runs while the templates
compile, never races the token of an earlier run, and a failed one is reported once, by the fetch,
as before; and the command starts up without the cyclic garbage collector, which runs again once
the fetch begins.

Runs against the dev server, or unchanged against a real Vault when VAULT_ADDR/VAULT_TOKEN are set
(the request counts need the dev server and say so).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import hvac
import pytest

from injector.config.load import parse_config
from injector.config.model import Config
from injector.engine import Engine
from injector.errors import AuthError, NotFoundError
from injector.modes.init import prepare, run_init, template_vault_refs
from injector.refs import parse_reference
from injector.sources import build_source
from injector.sources.vault_auth import VaultAuthenticator
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import PkiMount, VaultServer, dev_only

pytestmark = pytest.mark.vault

#: How long a test waits for the other thread before it fails.
PATIENCE = 10.0


@pytest.fixture
def token(vault_server: VaultServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VAULT_TOKEN", vault_server.root_token)
    return vault_server.root_token


def make_config(
    tmp_path: Path,
    output_dir: Path,
    server: VaultServer,
    mount: str,
    *,
    secrets: bool = True,
    template: str = "",
    **extra: Any,
) -> Config:
    """A config with one Vault value: declared under ``secrets:``, or (``secrets=False``) written in
    the template, as ``secret('vault:…')``, or as ``template`` (``{ref}`` stands for the reference);
    ``source=True`` in ``extra`` writes the template to a file."""
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
    source = raw.pop("source", False)
    if secrets:
        raw["secrets"] = {"password": ref}
        text = "{{ secrets.password }}"
    else:
        text = (template or "{{{{ secret('{ref}') }}}}").format(ref=ref)
    if source:
        (tmp_path / "password.tmpl").write_text(text)
        raw["templates"] = [{"source": "password.tmpl", "destination": "password"}]
    else:
        raw["templates"] = [{"contents": text, "destination": "password"}]
    return parse_config(raw, base_dir=tmp_path, environ={})


#: How a config names its Vault value: under ``secrets:``, in the template's text, in a template file.
NAMED = {
    "secrets": {},
    "template": {"secrets": False},
    "template file": {"secrets": False, "source": True},
}


@pytest.fixture
def stored(vault_admin: hvac.Client, kv2_mount: str) -> str:
    vault_admin.secrets.kv.v2.create_or_update_secret(
        path="prepared", secret={"password": SENTINEL}, mount_point=kv2_mount
    )
    return kv2_mount


@pytest.mark.parametrize("named", NAMED)
def test_the_login_runs_while_the_templates_compile(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    stored: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    named: str,
) -> None:
    """The login has begun, on a thread of its own, while the main thread is compiling the templates;
    the files are rendered as without it. The same whether the reference is declared under
    ``secrets:`` or written in the template (read from its text, Jinja2 not loaded yet)."""
    config = make_config(tmp_path, output_dir, vault_server, stored, **NAMED[named])
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
@pytest.mark.parametrize("named", NAMED)
def test_one_login_and_one_mount_lookup_in_all(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str, named: str
) -> None:
    """The fetch uses the early login and mount lookup: init sends each once, as it did without it."""
    dev = vault_server.dev
    assert dev is not None
    config = make_config(tmp_path, output_dir, vault_server, stored, **NAMED[named])
    dev.reset_counts()
    sources = prepare(config)
    assert set(sources) == {"vault"}  # the early login started
    run_init(config, timeout=30, sources=sources)
    assert dev.request_count("auth/token/lookup-self") == 1
    assert dev.request_count("sys/internal/ui/mounts/") == 1
    assert (output_dir / "password").read_text() == SENTINEL


@dev_only("counts the server's requests")
@pytest.mark.parametrize("named", NAMED)
def test_the_kv_value_is_read_before_the_templates_compile(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    stored: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    named: str,
) -> None:
    """The early thread reads the KV value too: it reaches Vault before the templates compile, and
    the fetch takes it instead of reading it again."""
    dev = vault_server.dev
    assert dev is not None
    config = make_config(tmp_path, output_dir, vault_server, stored, **NAMED[named])
    read = f"{stored}/data/prepared"
    compile_ = Engine.compile
    seen: list[int] = []

    def compile_after_the_read(self: Engine, *args: Any, **kwargs: Any) -> None:
        deadline = time.monotonic() + PATIENCE  # the compile waits (boundedly) for the early read
        while not dev.request_count(read) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(dev.request_count(read))
        compile_(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "compile", compile_after_the_read)
    dev.reset_counts()
    run_init(config, timeout=30, sources=prepare(config))
    assert seen == [1]
    assert dev.request_count(read) == 1
    assert (output_dir / "password").read_text() == SENTINEL


@dev_only("counts the server's requests")
def test_nothing_is_issued_early(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    stored: str,
    token: str,
    pki_mount: PkiMount,
    lease_role: str,
) -> None:
    """A certificate or a lease is created by the fetch only: references that the templates do not
    render (here inside a Jinja2 comment, which the early scan still sees) are looked up, never
    issued."""
    dev = vault_server.dev
    assert dev is not None
    issue = f"{pki_mount.mount}/issue/{pki_mount.role}"
    template = (
        f"{{{{# secret('vault:{issue}?common_name=web.local') secret('vault:{lease_role}') #}}}}"
        "{{{{ secret('{ref}') }}}}"
    )
    config = make_config(tmp_path, output_dir, vault_server, stored, secrets=False, template=template)
    assert len(template_vault_refs(config)) == 3
    dev.reset_counts()
    run_init(config, timeout=30, sources=prepare(config))
    assert (output_dir / "password").read_text() == SENTINEL
    assert dev.request_count(issue) == 0
    assert dev.request_count(lease_role) == 0
    assert dev.request_count(f"sys/internal/ui/mounts/{pki_mount.mount}") == 1


@dev_only("counts the server's requests")
def test_early_values_the_fetch_does_not_name_are_dropped(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str, vault_admin: hvac.Client
) -> None:
    """The first fetch takes what it names of the early reads; the rest is forgotten, so a later
    fetch reads Vault again and never gets a value read before it."""
    dev = vault_server.dev
    assert dev is not None
    vault_admin.secrets.kv.v2.create_or_update_secret(path="other", secret={"v": "1"}, mount_point=stored)
    config = make_config(tmp_path, output_dir, vault_server, stored)
    source = build_source("vault", config)
    prepared, other = (parse_reference(f"vault:{stored}/{name}") for name in ("prepared", "other"))
    try:
        dev.reset_counts()
        source.prepare([prepared, other])
        assert dev.request_count(f"{stored}/data/") == 2
        vault_admin.secrets.kv.v2.create_or_update_secret(path="other", secret={"v": "2"}, mount_point=stored)
        dev.reset_counts()
        first = source.fetch([prepared])[prepared]
        assert not isinstance(first, Exception) and first.value.reveal() == {"password": SENTINEL}
        assert dev.request_count(f"{stored}/data/") == 0
        later = source.fetch([other])[other]
        assert not isinstance(later, Exception) and later.value.reveal() == {"v": "2"}
        assert dev.request_count(f"{stored}/data/other") == 1
    finally:
        source.close()


def test_a_failed_early_read_is_reported_by_the_fetch(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """A KV path that does not exist: the early read's 404 is the fetch's answer for it, and init
    raises the NotFoundError naming the reference that it raised without the early read, having
    asked Vault once."""
    missing = "{{{{ secret('vault:" + stored + "/missing#password') }}}}"
    config = make_config(tmp_path, output_dir, vault_server, stored, secrets=False, template=missing)
    dev = vault_server.dev
    if dev is not None:
        dev.reset_counts()
    with pytest.raises(NotFoundError, match=f"vault:{stored}/missing"):
        run_init(config, timeout=30, sources=prepare(config))
    assert not (output_dir / "password").exists()
    if dev is not None:
        assert dev.request_count(f"{stored}/data/missing") == 1


def test_nothing_starts_without_a_vault_reference_in_sight(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """A reference the template builds at render time cannot be read from its text: no early login,
    and the fetch logs in as it always did."""
    built = "{{% set ref = '{ref}' %}}{{{{ secret(ref) }}}}"
    config = make_config(tmp_path, output_dir, vault_server, stored, secrets=False, template=built)
    assert prepare(config) == {}
    run_init(config, timeout=30, sources={})
    assert (output_dir / "password").read_text() == SENTINEL


def test_the_references_read_from_a_templates_text(tmp_path: Path) -> None:
    """Quoted literals in ``secret(…)`` calls, as their base references; anything else is left to the
    compile: a built reference, another scheme, an invalid reference, an unreadable source."""
    text = (
        "{{ secret('vault:kv/app#password') }} {{ secret(\"vault:kv/app#user\") }}"
        "{{ secret( 'vault:pki/issue/web' , common_name='web.local') }}"
        "{{ secret('vault:' ~ name) }} {{ secret('aws-sm:prod/api#key') }} {{ mysecret('vault:kv/x') }}"
        "{{ secret('vault:') }} {{ secret('vault:kv/a\\'b') }}"
    )
    (tmp_path / "unreadable.tmpl").mkdir()
    raw = {
        "output_dir": str(tmp_path / "out"),
        "vault": {"address": "http://127.0.0.1:1"},
        "templates": [
            {"contents": text, "destination": "a"},
            {"source": "unreadable.tmpl", "destination": "b"},
        ],
    }
    config = parse_config(raw, base_dir=tmp_path, environ={})
    assert [str(ref) for ref in template_vault_refs(config)] == ["vault:kv/app", "vault:kv/app", "vault:pki/issue/web"]


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


def write_command_config(tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str) -> Path:
    """The config file of an ``injector init --config FILE`` run: one Vault value under ``secrets:``."""
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
    return path


def test_the_command_starts_the_login_before_importing_the_template_engine(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """``injector init`` imports hvac's adapter (to log in) before Jinja2, so the login's round trips
    overlap importing the template engine (``-X importtime`` lists modules as they finish importing)."""
    import subprocess
    import sys

    path = write_command_config(tmp_path, output_dir, vault_server, stored)
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
    # A token login loads none of the code of the cert, aws and wrapped-secret-ID logins.
    assert "injector.sources.vault_methods" not in imported
    assert (output_dir / "password").read_text() == SENTINEL


#: ``injector``'s console script with a note on standard error at each pass of the cyclic garbage
#: collector, saying how many objects were frozen then (``gc.freeze``: the end of start-up). The
#: threshold is lowered so that any stretch with the collector on sees passes.
COLLECTIONS = """
import gc, sys
from injector.__main__ import main
gc.set_threshold(50)
gc.callbacks.append(
    lambda phase, info: phase == "start" and sys.stderr.write(f"collection frozen={gc.get_freeze_count()}\\n")
)
main()
"""


def test_init_starts_up_without_the_collector_and_fetches_with_it(
    tmp_path: Path, output_dir: Path, vault_server: VaultServer, stored: str, token: str
) -> None:
    """``injector init`` runs no garbage collection until the engine starts to fetch (imports,
    config, templates), and the collector runs from then on, over what is new only."""
    import subprocess
    import sys

    path = write_command_config(tmp_path, output_dir, vault_server, stored)
    done = subprocess.run(
        [sys.executable, "-c", COLLECTIONS, "init", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frozen = [int(line.split("=")[1]) for line in done.stderr.splitlines() if line.startswith("collection frozen=")]
    assert frozen, "the collector never ran once the fetch began"
    assert min(frozen) > 1000, "a collection ran during start-up, before the engine froze what start-up built"
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
