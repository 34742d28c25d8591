"""The package's shape: no import cycle among injector's modules, leaves that import nothing of
ours, and modules small enough to read (the README's "How it works" lists them)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "injector"

#: Modules that import nothing of injector's (DESIGN's leaves).
LEAVES = ("injector.errors", "injector.units", "injector.backoff", "injector.redact")
#: A module's size cap, and the modules allowed past it, each with the reason.
MAX_LINES = 420
LARGER = {
    "injector.config.load": "the per-section parsers of one schema; split by section it would scatter one grammar",
    "injector.sources.vault_auth": "one class per auth method behind one Protocol; the token lifecycle is shared",
    "injector.sources.vault": "mount detection, KV v1/v2, leases and PKI of one backend, each a short method",
    "injector.template.render": "compile, static references, render and error description of one renderer",
    "injector.modes.sidecar": "the loop and its probes; each step of a pass is one method",
    "injector.engine": "the render loop, start-up, handoff and leases: the one place modes meet",
    "injector.sink": "the numbered snapshot-swap algorithm, which reads best in one place",
    "injector.modes.manifests": "pod-spec path resolution (mounts, subPath, projected volumes) of validate",
    "injector.cli": "one click command per mode, with its options and help",
    "injector.sources._aws": "the one AWS boundary: client construction, error mapping, call counting",
}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The injector modules ``path`` imports at any level (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    package = module_name(path).split(".")[: -1 if path.name != "__init__.py" else None]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    me = module_name(path)
    return {m for m in found if m in known and m != me and not me.startswith(m + ".")}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, known) for name, path in files.items()}


def test_no_import_cycle() -> None:
    """The import graph of injector's modules has no cycle (a cycle marks a wrong boundary)."""
    try:
        tuple(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check above fails on a graph with a cycle (so it can fail)."""
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_ours(leaf: str) -> None:
    """The leaf modules depend on no other injector module."""
    assert graph()[leaf] == set()


def test_modules_stay_readable() -> None:
    """Every module is at most MAX_LINES lines, but for the listed ones (with their reason)."""
    too_long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES and module_name(p) not in LARGER
    }
    assert not too_long, f"split these by concern, or say why in LARGER: {too_long}"
