"""``python -m injector.process.bytecode``: the image's bytecode, without docstrings, asserts or
column positions, for exactly the modules the injector runs.

Each run is a child process (the module restarts its interpreter with ``-X no_debug_ranges``), with
``PYTHONPYCACHEPREFIX`` or ``--into`` pointing at a temporary folder: nothing here rewrites the
bytecode of this machine's interpreter or virtualenv.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import struct
import subprocess
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import VaultServer

MODULE = '''"""The module's docstring."""


def checked(value):
    """The function's docstring."""
    assert value, "an assert"
    return (value
            + 1)
'''


def bytecode(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "injector.process.bytecode", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def load(pyc: Path, source: Path | None = None) -> types.CodeType:
    """The module code of ``pyc``, after checking that its header matches ``source``."""
    data = pyc.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    if source is not None:
        info = source.stat()
        assert struct.unpack("<II", data[8:16]) == (int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF)
    code = marshal.loads(data[16:])  # noqa: S302  # written by the step under test, in this test's folder
    assert isinstance(code, types.CodeType)
    return code


def codes(code: types.CodeType) -> list[types.CodeType]:
    """``code`` and every code object nested in it."""
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found += codes(const)
    return found


def has_columns(code: types.CodeType) -> bool:
    return any(position[2] is not None for inner in codes(code) for position in inner.co_positions())


def test_a_tree_is_compiled_without_docstrings_asserts_or_columns(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    source = tree / "pkg" / "mod.py"
    source.write_text(MODULE)
    (tree / "pkg" / "py2.py").write_text('print "Python 2"\n')
    prefix = tmp_path / "prefix"
    done = bytecode(str(tree), env={"PYTHONPYCACHEPREFIX": str(prefix)})
    assert done.returncode == 0, done.stderr
    assert "compiled 1 files" in done.stderr and "1 under the folders did not compile" in done.stderr
    pyc = prefix / source.parent.relative_to(source.anchor) / f"mod.{sys.implementation.cache_tag}.pyc"
    code = load(pyc, source)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102  # the test's own module, compiled by the step under test
    assert namespace.get("__doc__") is None
    assert namespace["checked"].__doc__ is None
    assert namespace["checked"](0) == 1  # the assert is gone
    assert not has_columns(code)
    assert [line for inner in codes(code) for _, _, line in inner.co_lines() if line is not None]  # lines stay
    assert not (tree / "pkg" / "__pycache__").exists()  # the prefix, not the tree


def test_the_standard_library_step_writes_only_what_the_injector_imports(tmp_path: Path) -> None:
    into = tmp_path / "into"
    done = bytecode("--standard-library", "--into", str(into))
    assert done.returncode == 0, done.stderr
    written = {path.relative_to(into) for path in into.rglob("*.pyc")}
    stdlib = Path(sysconfig.get_path("stdlib"))

    def at(module: str) -> Path:
        return Path(importlib.util.cache_from_source(str(stdlib / module))).relative_to(stdlib.anchor)

    assert at("json/__init__.py") in written  # the injector's state and the logs
    assert at("http/server.py") in written  # the health endpoints
    assert at("colorsys.py") not in written  # never imported
    assert not [path for path in written if {"site-packages", "dist-packages"} & set(path.parts)]
    json_code = load(into / at("json/__init__.py"), stdlib / "json/__init__.py")
    assert not [const for const in json_code.co_consts if isinstance(const, str) and const.startswith("JSON (Java")]
    assert not has_columns(json_code)


def test_imported_covers_the_injector_its_libraries_and_the_standard_library(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    done = bytecode("--imported", env={"PYTHONPYCACHEPREFIX": str(prefix)})
    assert done.returncode == 0, done.stderr
    names = {path.name for path in prefix.rglob("*.pyc")}
    for expected in ("engine", "bytecode", "session", "adapters", "sandbox", "decoder"):
        assert f"{expected}.{sys.implementation.cache_tag}.pyc" in names, expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "name a TREE, --imported or --standard-library"),
        (("--imported", "--standard-library"), "not allowed with argument"),
        (("/nonexistent/tree",), "not a folder: /nonexistent/tree"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], says: str) -> None:
    done = bytecode(*args)
    assert done.returncode == 2
    assert says in done.stderr


@pytest.mark.vault
@pytest.mark.aws
def test_every_module_an_init_imports_is_in_the_imported_set(
    tmp_path: Path,
    output_dir: Path,
    vault_server: VaultServer,
    vault_admin: Any,
    kv2_mount: str,
    aws_endpoint: str,
    sm_client: Any,
    ssm_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``init`` reading Vault, Secrets Manager and SSM imports nothing that the step leaves out
    (the libraries' lazy imports among them: the AWS session, hvac, what requests reads at its
    first request)."""
    vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": SENTINEL}, mount_point=kv2_mount)
    sm_client.create_secret(Name="app", SecretString="s")
    ssm_client.put_parameter(Name="/app/p", Value="p", Type="SecureString")
    vault: dict[str, Any] = {"address": vault_server.address, "auth": {"method": "token"}}
    if isinstance(vault_server.verify, str):
        vault["ca_cert"] = vault_server.verify
    config = tmp_path / "injector.yaml"
    contents = (
        f"{{{{ secret('vault:{kv2_mount}/app#k') }}}}{{{{ secret('aws-sm:app') }}}}{{{{ secret('aws-ssm:/app/p') }}}}"
    )
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(output_dir),
                "vault": vault,
                "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
                "templates": [{"contents": contents, "destination": "f"}],
            }
        )
    )
    monkeypatch.setenv("VAULT_TOKEN", vault_server.root_token)
    loaded = tmp_path / "modules"
    run_init = (  # init ends with os._exit (commands.exit_now): the list is written there
        "import os, sys\n"
        "def exit_now(code, _exit=os._exit):\n"
        f"    with open({str(loaded)!r}, 'w') as out: out.write(' '.join(k for k, v in sys.modules.items() if v))\n"
        "    _exit(code)\n"
        "os._exit = exit_now\n"
        f"sys.argv = ['injector', 'init', '--config', {str(config)!r}]\n"
        "from injector.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", run_init], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (output_dir / "f").read_text() == f"{SENTINEL}sp"
    init = set(loaded.read_text().split())
    listing = (
        "import sys; from injector.process.bytecode import imported_modules; imported_modules(); print(*sys.modules)"
    )
    listed = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, timeout=60, check=True)
    assert {"botocore.session", "hvac", "jinja2.sandbox"} <= init
    assert init - set(listed.stdout.split()) == set()


def test_a_module_whose_optional_dependency_is_missing_is_left_out() -> None:
    """Without the webhook extra (jsonpatch), the webhook's patch module is not compiled, and
    nothing fails: it could not run in that installation either."""
    script = (
        "import sys\n"
        "sys.modules['jsonpatch'] = None\n"  # None: "cannot be imported"
        "from injector.process.bytecode import imported_modules\n"
        "files = [str(path) for path in imported_modules()]\n"
        "print(any(f.endswith('injector/webhook/patch.py') for f in files),"
        " any(f.endswith('injector/engine.py') for f in files))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
