"""How the sources import their libraries: package initialisers deferred (``injector/sources/_imports.py``).

The urllib3 and requests parts are tested with the connections they change (``test_tls.py``,
``test_vault_http.py``); hvac's, with the Vault source built in a fresh process against the dev
Vault (``test_vault_client.py``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from injector.sources._imports import DeferredPackage, defer_package_inits


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
