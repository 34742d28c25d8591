"""The import floor: the RSS of a bare interpreter that imports what a sidecar imported, nothing else.

Usage: ``python bench/floor.py MODULES.json`` (a heap snapshot of ``bench/heapshot.py``, which lists
``modules`` and ``blocked``). Makes the ``blocked`` names unimportable, as the sidecar did, then
imports each module in ``modules`` (sorted by name, so packages come before their submodules; a
module that fails to import on its own is skipped and counted), then prints JSON:
``{"rss_kib": …, "python_kib": …, "imported": …, "skipped": …}``, where ``python_kib`` is the RSS
before the first import. No value, template or client exists in this process: an idle sidecar's
RSS minus this figure is what its data, threads and heap fragmentation cost.
"""

from __future__ import annotations

import importlib
import json
import sys

from libfloor import rss_kib  # imports only sys and time: nothing that would count in the floor


def main(path: str) -> None:
    with open(path) as f:
        snapshot = json.load(f)
    modules = [m for m in snapshot["modules"] if m not in ("__main__", "heapshot") and "heapshot" not in m]
    for name in snapshot.get("blocked", []):
        sys.modules[name] = None  # type: ignore[assignment]  # None: "cannot be imported"
    before = rss_kib()
    imported = skipped = 0
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:  # some modules cannot be imported alone: counted, not fatal
            skipped += 1
    print(json.dumps({"rss_kib": rss_kib(), "python_kib": before, "imported": imported, "skipped": skipped}))


if __name__ == "__main__":
    main(sys.argv[1])
