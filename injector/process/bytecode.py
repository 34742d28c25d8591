"""The image's bytecode: the modules the injector runs, compiled without what it never reads.

``python -m injector.process.bytecode [--standard-library | --imported] [--into DIR] [TREE ...]``
writes ``.pyc`` files at optimization level 2 (no docstrings, no ``assert`` statements) and
without column positions (``-X no_debug_ranges``: a traceback keeps each file and line and loses
only the ``^^^`` under the expression), under the names Python reads at every optimization level
(``importlib.util.cache_from_source``). The interpreter loads them as it loads any ``.pyc``, with
no flag: a module's bytecode does not record how it was compiled, and its header still matches
its source. What they save is memory: every code object of every imported module stays in the
process for its whole life, docstrings and position tables included (bench/README.md).

What it compiles:

- each ``.py`` file under each ``TREE`` (the image's virtualenv);
- ``--imported``: every module the injector can import (``imported_modules``): its own, its
  libraries' and the standard library's;
- ``--standard-library``: only the standard library's among them (the image's base keeps the
  rest of the standard library as it ships).

``--into DIR`` writes each file under ``DIR`` at its own absolute path (the image's build stage
writes the standard library's there, and its last stage copies them over its own: the same
files, since both stages have one base). Without it the files go where the interpreter looks for
them, ``PYTHONPYCACHEPREFIX`` included (the bench keeps its own tree). A file under a ``TREE``
that does not compile (test data written for Python 2 in some libraries) is counted and left as
it was; one of the injector's imports that does not compile is an error (exit 1).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pkgutil
import py_compile
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Compiled", "compile_files", "debug_ranges_off", "imported_modules", "in_standard_library", "main"]

logger = logging.getLogger(__name__)

#: Imported by the injector inside functions (at a client's first build or first request), so
#: importing its modules does not load them: the AWS clients' session and hvac; or by its libraries
#: at their first use: requests' netrc reader, and the codec Jinja2's lexer decodes string
#: literals with.
_LOADED_LATER = ("botocore.session", "hvac", "netrc", "encodings.unicode_escape")
_NO_DEBUG_RANGES = "no_debug_ranges"


@dataclass(frozen=True, slots=True, kw_only=True)
class Compiled:
    """What ``compile_files`` did: the files written, their total size, the ones that failed."""

    files: int
    size: int
    failed: tuple[str, ...]


def imported_modules() -> list[Path]:
    """The source file of every module loaded by importing each of the injector's modules,
    ``_LOADED_LATER`` and the standard library's modules whose code runs at their first use
    (``injector._imports.UNUSED_STDLIB``): the modules an ``init``, a sidecar or the webhook can
    run (frozen and built-in modules, which have no source file, left out)."""
    import injector

    for module in pkgutil.walk_packages(injector.__path__, "injector."):
        try:
            importlib.import_module(module.name)  # ``injector.__main__`` too: it runs nothing on import
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "injector":
                raise
            # An optional dependency this installation lacks (the webhook extra's jsonpatch): the
            # module cannot run here either, so there is nothing of it to compile.
            logger.debug("%s not imported: %s is not installed", module.name, exc.name)
    from injector._imports import UNUSED_STDLIB

    for name in (*_LOADED_LATER, *UNUSED_STDLIB):
        importlib.import_module(name)
    files = set()
    for loaded in list(sys.modules.values()):
        spec = getattr(loaded, "__spec__", None)
        if spec is not None and spec.has_location and spec.origin and spec.origin.endswith(".py"):
            files.add(Path(spec.origin))
    return sorted(files)


def in_standard_library(path: Path) -> bool:
    """Whether ``path`` is one of the standard library's files (not a library installed beside it)."""
    stdlib = Path(sysconfig.get_path("stdlib")).resolve()
    resolved = path.resolve()
    return resolved.is_relative_to(stdlib) and not {"site-packages", "dist-packages"} & set(resolved.parts)


def compile_files(files: Iterable[Path], into: Path | None = None) -> Compiled:
    """Compiles each of ``files`` at optimization level 2 into the ``.pyc`` Python reads for it
    (under ``into`` at that file's absolute path, if given).

    Column positions are left out only if this interpreter runs with ``-X no_debug_ranges``
    (``debug_ranges_off``; run as a module, this one does)."""
    written = size = 0
    failed = []
    for source in files:
        target = importlib.util.cache_from_source(str(source))
        if into is not None:
            target = str(into / Path(os.path.abspath(target)).relative_to("/"))
        try:
            py_compile.compile(str(source), cfile=target, optimize=2, doraise=True)
        except py_compile.PyCompileError:
            failed.append(str(source))
            continue
        written += 1
        size += os.path.getsize(target)
    return Compiled(files=written, size=size, failed=tuple(failed))


def debug_ranges_off() -> bool:
    """Whether this interpreter leaves column positions out of what it compiles."""
    return _NO_DEBUG_RANGES in sys._xoptions or bool(os.environ.get("PYTHONNODEBUGRANGES"))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line above; prints what it wrote to standard error. Run as a module it restarts
    its interpreter with ``-X no_debug_ranges`` if needed: the compiler reads that flag."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m injector.process.bytecode",
        description="Compiles modules at optimization level 2 without column positions (module docstring).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--imported", action="store_true", help="every module the injector imports")
    which.add_argument(
        "--standard-library", action="store_true", help="the standard library's modules the injector imports"
    )
    parser.add_argument("--into", type=Path, metavar="DIR", help="write each file under DIR at its absolute path")
    parser.add_argument("trees", nargs="*", type=Path, metavar="TREE", help="compile every .py under TREE")
    args = parser.parse_args(argv)
    if not (args.imported or args.standard_library or args.trees):
        parser.error("name a TREE, --imported or --standard-library")
    missing = [str(tree) for tree in args.trees if not tree.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    imported: list[Path] = []
    if args.imported or args.standard_library:
        imported = imported_modules()
        if args.standard_library:
            imported = [path for path in imported if in_standard_library(path)]
    from_trees = sorted({path for tree in args.trees for path in tree.rglob("*.py")} - set(imported))
    done = compile_files(imported, args.into)
    more = compile_files(from_trees, args.into)
    print(
        f"compiled {done.files + more.files} files ({done.files} imported by the injector), "
        f"{(done.size + more.size) / 1e6:.1f} MB; {len(more.failed)} under the folders did not compile",
        file=sys.stderr,
    )
    if done.failed:
        print(f"error: modules the injector imports did not compile: {', '.join(done.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if not debug_ranges_off():
        again = [sys.executable, "-X", _NO_DEBUG_RANGES, "-m", "injector.process.bytecode", *sys.argv[1:]]
        os.execv(sys.executable, again)  # noqa: S606  # this interpreter again, no shell
    raise SystemExit(main())
