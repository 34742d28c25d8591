"""Runs the ``injector`` CLI with tracemalloc on, and takes heap snapshots when the bench asks.

Usage: ``python bench/heapshot.py FIFO OUTDIR -- sidecar -c CONFIG …`` (``--`` then the ``injector``
arguments). tracemalloc starts before ``injector`` is imported, so every Python allocation of the
process is traced; its Python module (which imports ``pickle``) is imported only at the first
snapshot, after the module list is read, so the list holds what the injector imported and no
module of this script's own. A daemon thread blocks reading lines from the named pipe FIFO (no polling, so
no wakeups of its own); each line is a snapshot name: it runs a full ``gc.collect()``, takes a
snapshot, writes ``OUTDIR/NAME.json`` and keeps it in memory, so a later snapshot can be compared
with an earlier one. What the JSON holds:

- ``traced``: bytes Python holds, as tracemalloc counts them;
- ``by_package``: bytes by top-level package of the allocating file (the code objects of imported
  modules are allocated by the import system: they show up as ``(module code: imports)``);
- ``top_lines``: the 25 largest allocation sites (file:line);
- ``grown_since_first``: the 25 sites that grew the most since the first snapshot;
- ``modules``: every module imported by then (``bench/floor.py`` imports the same in a bare
  interpreter: what the imports alone cost); ``blocked``: the names the process made unimportable
  (``sys.modules[name] is None``), which the floor blocks too; ``deferred``: those of ``modules``
  registered but not run (``injector._imports.DeferredModule``), which the floor defers too.

tracemalloc costs memory and CPU of its own: use it to find holders, never for the RSS figures.
"""

from __future__ import annotations

import _tracemalloc  # tracing starts here; ``tracemalloc`` itself is imported at the first snapshot
import gc
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tracemalloc

IMPORTS = "(module code: imports)"
#: The class of a module whose code ``injector._imports`` deferred and nothing has run yet (its
#: earlier name too, for older commits).
DEFERRED = ("DeferredModule", "DeferredPackage")


def package_of(filename: str) -> str:
    """The top-level package of a source file, or a label for the import machinery."""
    if filename.startswith("<frozen importlib"):
        return IMPORTS
    if filename.startswith("<"):
        return filename
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    parts = Path(filename).parts
    if "injector" in parts:
        return "injector"
    if "devvault" in parts:
        return "devvault"
    # the standard library: its module or package name
    return f"stdlib:{Path(filename).parent.name if Path(filename).parent.name != 'python3.11' else Path(filename).stem}"


def short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[1]
    if "/injector/" in filename:
        return "injector/" + filename.rsplit("/injector/", 1)[1]
    return filename


def describe(
    snapshot: tracemalloc.Snapshot, first: tracemalloc.Snapshot | None, modules: dict[str, list[str]]
) -> dict[str, Any]:
    import tracemalloc

    packages: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        name = package_of(stat.traceback[0].filename)
        packages[name] = packages.get(name, 0) + stat.size
    out: dict[str, Any] = {
        "traced": tracemalloc.get_traced_memory()[0],
        "by_package": sorted(packages.items(), key=lambda kv: -kv[1])[:25],
        **modules,
        "top_lines": [
            (f"{short(s.traceback[0].filename)}:{s.traceback[0].lineno}", s.size, s.count)
            for s in snapshot.statistics("lineno")[:25]
        ],
    }
    if first is not None:
        out["grown_since_first"] = [
            (f"{short(d.traceback[0].filename)}:{d.traceback[0].lineno}", d.size_diff, d.count_diff)
            for d in snapshot.compare_to(first, "lineno")[:25]
            if d.size_diff > 0
        ]
    return out


def imported(own: set[str]) -> dict[str, list[str]]:
    """The modules the process imported (``modules``) and made unimportable (``blocked``), but
    ``own``: the modules that importing ``tracemalloc`` here added."""
    present = {name: module for name, module in sys.modules.items() if name not in own}
    deferred = {name for name, module in present.items() if type(module).__name__ in DEFERRED}
    return {
        "modules": sorted(name for name, module in present.items() if module is not None),
        "blocked": sorted(name for name, module in present.items() if module is None),
        "deferred": sorted(deferred),
    }


def serve(fifo: str, outdir: Path) -> None:
    first: tracemalloc.Snapshot | None = None
    own: set[str] | None = None
    while True:
        with open(fifo) as requests:  # blocks until the bench opens it for writing
            for line in requests:
                name = line.strip()
                if not name:
                    continue
                if own is None:
                    modules = imported(set())
                    before = set(sys.modules)
                    import tracemalloc

                    own = set(sys.modules) - before
                else:
                    modules = imported(own)
                gc.collect()
                snapshot = tracemalloc.take_snapshot()
                report = describe(snapshot, first, modules)
                first = first or snapshot
                tmp = outdir / f"{name}.json.tmp"
                tmp.write_text(json.dumps(report))
                os.replace(tmp, outdir / f"{name}.json")


def main() -> None:
    fifo, outdir, sep, *args = sys.argv[1:]
    if sep != "--":
        raise SystemExit(__doc__)
    _tracemalloc.start(1)
    threading.Thread(target=serve, args=(fifo, Path(outdir)), name="heapshot", daemon=True).start()
    from injector.__main__ import main as injector_main

    sys.argv = ["injector", *args]
    injector_main()


if __name__ == "__main__":
    main()
