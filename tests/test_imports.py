"""How the injector imports its libraries: package initialisers deferred (``injector/_imports.py``).

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

import pytest

from injector._imports import DeferredPackage, defer_package_inits


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
    defer_package_inits((package,))
    light = __import__(f"{package}.light", fromlist=["LIGHT"])
    assert light.LIGHT == "light"
    assert f"{package}.heavy" not in sys.modules
    assert _runs(tmp_path) == 0
    assert isinstance(sys.modules[package], DeferredPackage)


def test_the_first_attribute_it_lacks_runs_the_init_once(package: str, tmp_path: Path) -> None:
    """The package's own names (``VALUE``) appear at the first ask, by running its ``__init__`` once;
    from then on it is a plain module."""
    defer_package_inits((package,))
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
    defer_package_inits((package,))
    namespace: dict[str, object] = {}
    exec(f"from {package} import VALUE, light", namespace)  # noqa: S102 - the statement under test
    assert namespace["VALUE"] == 42
    assert _runs(tmp_path) == 1


def test_a_failing_init_fails_again_at_the_next_ask(package: str, tmp_path: Path) -> None:
    """An ``__init__`` that raises leaves the package deferred: the next ask runs it again and gets
    the same error, not a half-made module."""
    (tmp_path / package / "__init__.py").write_text("raise RuntimeError('broken init')\n")
    defer_package_inits((package,))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken init"):
            _ = sys.modules[package].VALUE
    assert isinstance(sys.modules[package], DeferredPackage)


def test_a_package_imported_already_is_left_as_it_is(package: str, tmp_path: Path) -> None:
    """A package the process imported already (its ``__init__`` ran) is not replaced."""
    module = __import__(package)
    defer_package_inits((package,))
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
    defer_package_inits((package,))
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
    assert result["deferred"] == "DeferredPackage"
    assert result["plain"] == "2"
    assert result["loaders"]  # jinja2.Environment ran the package's own __init__
