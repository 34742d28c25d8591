"""How the injector imports its libraries: package initialisers and the standard library's unused
modules deferred (``injector/_imports.py``).

The urllib3 and requests parts are tested with the connections they change (``test_tls.py``,
``test_vault_http.py``); hvac's, with the Vault source built in a fresh process against the dev
Vault (``test_vault_client.py``); Jinja2's here, with templates rendered in a fresh process, and by
``injector init`` (``test_init_prepare.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from injector._imports import UNUSED_STDLIB, DeferredModule, defer_inits
from tests.fixtures.sidecar import Harness, wait_for
from tests.fixtures.vault import VaultServer


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A package of the test's own on ``sys.path``: its ``__init__`` imports a heavy submodule, counts
    its runs in ``runs.txt`` and defines ``VALUE``; ``light`` imports nothing of the package."""
    name = f"deferred_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text(
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as f:\n"
        "    f.write('x')\n"
        f"from {name} import heavy\n"
        "VALUE = heavy.WEIGHT + 1\n"
    )
    (folder / "heavy.py").write_text("WEIGHT = 41\n")
    (folder / "light.py").write_text("LIGHT = 'light'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def _runs(tmp_path: Path) -> int:
    runs = tmp_path / "runs.txt"
    return len(runs.read_text()) if runs.exists() else 0


def test_a_submodule_imports_without_the_package_init(package: str, tmp_path: Path) -> None:
    """With the package deferred, importing one submodule loads that file alone: the ``__init__``
    and what it imports stay unloaded."""
    defer_inits((package,))
    light = __import__(f"{package}.light", fromlist=["LIGHT"])
    assert light.LIGHT == "light"
    assert f"{package}.heavy" not in sys.modules
    assert _runs(tmp_path) == 0
    assert isinstance(sys.modules[package], DeferredModule)


def test_the_first_attribute_it_lacks_runs_the_init_once(package: str, tmp_path: Path) -> None:
    """The package's own names (``VALUE``) appear at the first ask, by running its ``__init__`` once;
    from then on it is a plain module."""
    defer_inits((package,))
    module = sys.modules[package]
    assert module.VALUE == 42
    assert module.VALUE == 42
    assert _runs(tmp_path) == 1
    assert type(module) is type(sys)
    with pytest.raises(AttributeError):
        _ = module.MISSING
    assert _runs(tmp_path) == 1


def test_import_statements_see_the_whole_package(package: str, tmp_path: Path) -> None:
    """``from PACKAGE import VALUE`` and ``import PACKAGE`` in any later code work as without the
    deferral: the statement runs the ``__init__``."""
    defer_inits((package,))
    namespace: dict[str, object] = {}
    exec(f"from {package} import VALUE, light", namespace)  # noqa: S102 - the statement under test
    assert namespace["VALUE"] == 42
    assert _runs(tmp_path) == 1


def test_a_failing_init_fails_again_at_the_next_ask(package: str, tmp_path: Path) -> None:
    """An ``__init__`` that raises leaves the package deferred: the next ask runs it again and gets
    the same error, not a half-made module."""
    (tmp_path / package / "__init__.py").write_text("raise RuntimeError('broken init')\n")
    defer_inits((package,))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken init"):
            _ = sys.modules[package].VALUE
    assert isinstance(sys.modules[package], DeferredModule)


def test_a_package_imported_already_is_left_as_it_is(package: str, tmp_path: Path) -> None:
    """A package the process imported already (its ``__init__`` ran) is not replaced."""
    module = __import__(package)
    defer_inits((package,))
    assert sys.modules[package] is module
    assert _runs(tmp_path) == 1


def test_other_threads_wait_for_the_init_to_end(package: str, tmp_path: Path) -> None:
    """Threads that ask at once all get the whole package, and the ``__init__`` runs once."""
    (tmp_path / package / "__init__.py").write_text(
        "import time\n"
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as f:\n"
        "    f.write('x')\n"
        "time.sleep(0.2)\n"
        "VALUE = 42\n"
    )
    defer_inits((package,))
    module = sys.modules[package]
    seen: list[object] = []
    ask: Callable[[], None] = lambda: seen.append(module.VALUE)  # noqa: E731
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == [42, 42, 42, 42]
    assert _runs(tmp_path) == 1


def test_templates_render_without_jinja2s_package_init() -> None:
    """In a fresh process, the template stage compiles and renders in the sandbox, a syntax error and
    an undefined name are still its own errors, and Jinja2's loaders and bytecode caches (with
    ``pickle``) stay unloaded; ``jinja2.Environment`` still works after, in the same process."""
    code = """
import json, sys
from injector.config.model import LimitsConfig, TemplateConfig
from injector.errors import RenderError
from injector.template.render import Renderer
renderer = Renderer(secrets={}, limits=LimitsConfig(), environ={})
def run(text):
    compiled = renderer.compile(TemplateConfig(where="templates[0]", destination="f", contents=text))
    return renderer.render(compiled, {}.__getitem__).content.decode()
rendered = run("{{ 'a' ~ ('b' | upper) }}")
errors = []
for text in ("{% if x }}", "{{ nothing_here.x }}"):
    try:
        run(text)
    except RenderError as exc:
        errors.append(str(exc).split(":")[0])
unloaded = sorted(name for name in ("jinja2.loaders", "jinja2.bccache", "pickle") if name not in sys.modules)
deferred = type(sys.modules["jinja2"]).__name__
import jinja2
plain = jinja2.Environment().from_string("{{ 1 + 1 }}").render()
print(json.dumps({"rendered": rendered, "errors": errors, "unloaded": unloaded, "deferred": deferred,
                  "plain": plain, "loaders": "jinja2.loaders" in sys.modules}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rendered"] == "aB"
    assert result["errors"] == ["templates[0] (f)", "templates[0] (f)"]
    assert result["unloaded"] == ["jinja2.bccache", "jinja2.loaders", "pickle"]
    assert result["deferred"] == "DeferredModule"
    assert result["plain"] == "2"
    assert result["loaders"]  # jinja2.Environment ran the package's own __init__


@pytest.fixture
def plain_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A module (not a package) of the test's own on ``sys.path``: counts its runs in ``runs.txt``
    and defines ``VALUE``."""
    name = f"deferred_module_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as f:\n    f.write('x')\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_plain_module_runs_at_its_first_name_not_at_import(plain_module: str, tmp_path: Path) -> None:
    """A deferred module: ``import`` runs nothing, nor does the import system's check for
    ``__path__`` (a plain module has none); ``from MODULE import VALUE`` runs its code once."""
    defer_inits((plain_module,))
    namespace: dict[str, Any] = {}
    exec(f"import {plain_module} as module", namespace)  # noqa: S102 - the statement under test
    module = namespace["module"]
    assert not hasattr(module, "__path__")
    assert _runs(tmp_path) == 0
    assert isinstance(module, DeferredModule)
    exec(f"from {plain_module} import VALUE", namespace)  # noqa: S102
    assert namespace["VALUE"] == 42
    assert module.VALUE == 42
    assert _runs(tmp_path) == 1
    assert type(module) is type(sys)


def test_what_cannot_be_deferred_is_left_alone() -> None:
    """In a fresh process: an extension module (loading it is creating it), a name that does not
    exist and one whose parent does not exist are skipped, and the names after them deferred."""
    code = """
import json, sys
from injector._imports import DeferredModule, defer_inits
defer_inits(("_bz2", "no_such_module", "no_such_package.child", "zipfile"))
print(json.dumps({"bz2": "_bz2" in sys.modules, "missing": "no_such_module" in sys.modules,
                  "zipfile": isinstance(sys.modules["zipfile"], DeferredModule)}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"bz2": False, "missing": False, "zipfile": True}


def test_the_unused_standard_library_stays_unrun_under_the_libraries_and_works_when_asked() -> None:
    """In a fresh process, as every ``injector`` command starts: the modules of ``UNUSED_STDLIB``
    are deferred, importing requests, hvac's adapter and botocore's session runs none of them,
    and each one then does its job at its first use (and is a plain module after)."""
    code = """
import json, sys, types, warnings
from injector._imports import UNUSED_STDLIB, DeferredModule, stdlib_without_unused_modules
stdlib_without_unused_modules()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import requests, hvac.adapters, botocore.session, botocore.parsers, http.server, tempfile
deferred = sorted(n for n in UNUSED_STDLIB if isinstance(sys.modules.get(n), DeferredModule))
compressors = sorted(n for n in ("_bz2", "_lzma") if n in sys.modules)
import io, zipfile, shutil, bz2, lzma, mimetypes, locale, configparser, email.header
import xml.etree.ElementTree as ET, xml.parsers.expat
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as z:
    z.writestr("a", "zipped")
works = {
    "zipfile": zipfile.ZipFile(io.BytesIO(buffer.getvalue())).read("a") == b"zipped",
    "shutil": shutil.which("sh") is not None,
    "bz2": bz2.decompress(bz2.compress(b"b")) == b"b",
    "lzma": lzma.decompress(lzma.compress(b"l")) == b"l",
    "mimetypes": mimetypes.guess_type("a.json")[0] == "application/json",
    "stringprep": "b\\u00fccher.example".encode("idna") == b"xn--bcher-kva.example",
    "locale": isinstance(locale.getlocale(), tuple),
    "email.header": email.header.decode_header("=?utf-8?q?caf=C3=A9?=") == [(b"caf\\xc3\\xa9", "utf-8")],
    "email.base64mime": email.header.Header("caf\\u00e9", "utf-8").encode() == "=?utf-8?b?Y2Fmw6k=?=",
    "email.quoprimime": email.header.Header("caf\\u00e9", "iso-8859-1").encode() == "=?iso-8859-1?q?caf=E9?=",
    "xml.etree.ElementPath": ET.fromstring("<a><b>1</b></a>").find("./b").text == "1",
    "xml.parsers.expat": xml.parsers.expat.ParserCreate() is not None,
    "configparser": configparser.RawConfigParser().read_string("[p]\\nk = v\\n") is None,
}
plain = sorted(n for n in UNUSED_STDLIB if type(sys.modules.get(n)) is types.ModuleType)
print(json.dumps({"deferred": deferred, "compressors": compressors, "works": works, "plain": plain}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["deferred"] == sorted(UNUSED_STDLIB)
    assert result["compressors"] == []
    assert result["works"] == dict.fromkeys(result["works"], True)
    assert set(result["works"]) | {"xml", "xml.etree", "xml.parsers"} == set(UNUSED_STDLIB)
    assert set(result["plain"]) >= set(result["works"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
@pytest.mark.vault
def test_a_sidecar_with_vault_and_secrets_manager_never_loads_the_compressors(
    harness: Harness,
    output_dir: Path,
    vault_server: VaultServer,
    kv2_mount: str,
    vault_admin: Any,
    aws_endpoint: str,
    sm_client: Any,
) -> None:
    """A real sidecar reading Vault and Secrets Manager, rendered, ready and refreshed: the bzip2
    and LZMA extension modules (loaded by ``bz2`` and ``lzma``, whose code the libraries' imports of
    ``shutil`` and ``zipfile`` would run) are not in the process."""
    vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"pw": "v1"}, mount_point=kv2_mount)
    sm_client.create_secret(Name="app/db", SecretString="s1")
    config = harness.config(
        {
            "output_dir": str(output_dir),
            "vault": {"address": vault_server.address, "auth": {"method": "token"}},
            "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
            "templates": [
                {
                    "contents": f"{{{{ secret('vault:{kv2_mount}/app#pw') }}}} {{{{ secret('aws-sm:app/db') }}}}",
                    "destination": "both",
                },
            ],
            "refresh": {"interval": "1s", "jitter": 0.0},
        }
    )
    sidecar = harness.sidecar(config, env={"VAULT_TOKEN": vault_server.root_token})
    sidecar.wait_ready()
    assert (output_dir / "both").read_text() == "v1 s1"
    sm_client.put_secret_value(SecretId="app/db", SecretString="s2")
    wait_for(lambda: (output_dir / "both").read_text() == "v1 s2", 15, "the refreshed render")
    maps = Path(f"/proc/{sidecar.proc.pid}/maps").read_text()
    assert [name for name in ("/_bz2.", "/_lzma.") if name in maps] == []
    assert sidecar.stop() == 0
