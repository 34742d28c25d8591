"""The import floor: the RSS of a bare interpreter that imports what a sidecar imported, nothing else.

Usage: ``python bench/floor.py MODULES.json`` (a heap snapshot of ``bench/heapshot.py``, which lists
``modules``, ``blocked`` and ``deferred``). Makes the ``blocked`` names unimportable and defers what
the sidecar deferred, as the sidecar did, then imports the modules in ``modules`` one group at a
time (``groups``): first the libraries the config needs, as ``bench/libfloor.py`` imports them, then
the rest of the libraries' modules, the standard library's modules beyond theirs, and the injector's
own, in the order data flows through it. A module that fails to import on its own is skipped and
counted. Prints JSON:
``{"rss_kib": …, "python_kib": …, "imported": …, "skipped": …, "steps": [[label, rss_kib, count,
names], …]}``, where ``python_kib`` is the RSS before the first import, each step's ``rss_kib`` is
the RSS once its group is imported, and ``count`` and ``names`` the modules it added (a module's
own imports included). Single modules are not given a size: the RSS grows in steps of whole
memory pools, so one import can pay for the pool that the next ones fill. No value, template or
client exists in this process: an idle sidecar's RSS minus the final figure is what its data,
threads and heap fragmentation cost.

The first group to import a module pays for it: ``ssl``, say, counts with whichever group brings it
in first. The order is fixed, so runs and configs compare.
"""

from __future__ import annotations

import importlib
import json
import sys

from libfloor import injector_module, rss_kib  # sys, os, time: nothing the floor counts

#: The libraries the design names, each as ``libfloor.py`` imports it: (label, its root modules).
#: ``P.*`` stands for every module under ``P`` that the sidecar imported: hvac's packages are
#: imported without their initialisers, so their modules are named one by one.
LIBRARIES = (
    ("Jinja2's sandbox (and PyYAML, if the sidecar imported it)", ("jinja2.sandbox", "yaml")),
    ("hvac, with requests and urllib3", ("hvac.*",)),
    ("botocore", ("botocore.session",)),
)
#: The injector's modules by where they sit in the data flow: (label, module name prefixes).
INJECTOR = (
    ("the injector: command line, config, references", ("injector.commands", "injector.config", "injector.refs")),
    ("the injector: sources", ("injector.sources", "injector.credentials", "injector.cache")),
    ("the injector: templates", ("injector.template",)),
    ("the injector: engine and files", ("injector.engine", "injector.sink", "injector.dirfd", "injector.handoff")),
    ("the injector: sidecar loop, health, metrics, notify", ("injector",)),
)
OTHERS = "the libraries' other modules"
STANDARD = "the standard library beyond the libraries'"


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _present(roots: tuple[str, ...], present: set[str]) -> list[str]:
    """``roots`` that the sidecar imported, each ``P.*`` as ``P`` and its submodules, sorted."""
    out: list[str] = []
    for root in roots:
        if root.endswith(".*"):
            out += sorted(m for m in present if _in(m, (root[:-2],)))
        elif root in present:
            out.append(root)
    return out


def groups(modules: list[str]) -> list[tuple[str, list[str]]]:
    """``modules`` by step, in order: ``LIBRARIES``, ``OTHERS``, ``STANDARD``, ``INJECTOR``; each
    group sorted by name, so packages come before their submodules. A library's group holds its
    root modules only when the sidecar imported them."""
    present = set(modules)
    out = [(label, _present(roots, present)) for label, roots in LIBRARIES]
    ours, theirs, standard = [], [], []
    for name in sorted(present):
        if _in(name, ("injector",)):
            ours.append(name)
        elif name.partition(".")[0] in sys.stdlib_module_names:
            standard.append(name)
        else:
            theirs.append(name)
    out += [(OTHERS, theirs), (STANDARD, standard)]
    for label, prefixes in INJECTOR:
        out.append((label, [m for m in ours if _in(m, prefixes)]))
        ours = [m for m in ours if not _in(m, prefixes)]
    return out


def main(path: str) -> None:
    with open(path) as f:
        snapshot = json.load(f)
    # heapshot.py's own modules are not the sidecar's: it and tracemalloc (no injector module imports it)
    modules = [
        m for m in snapshot["modules"] if m not in ("__main__", "tracemalloc", "_tracemalloc") and "heapshot" not in m
    ]
    for name in snapshot.get("blocked", []):
        sys.modules[name] = None  # type: ignore[assignment]  # None: "cannot be imported"
    before = rss_kib()
    loaded = set(sys.modules)  # what the first group adds is counted from here, as its RSS is
    import warnings  # after the interpreter's figure: every config's libraries import it anyway

    # As the injector's sources load the libraries, with the injector's own functions:
    lean = injector_module("_imports")
    unused_stdlib = getattr(lean, "UNUSED_STDLIB", {})
    if any(name in unused_stdlib for name in snapshot.get("deferred", [])):
        lean.stdlib_without_unused_modules()  # first, as every injector process does
    if "jinja2.loaders" not in modules:
        lean.jinja2_without_its_loaders()  # the sidecar's templates did not run Jinja2's __init__
    if "html.entities" not in modules:
        lean.http_server_without_html_entities()  # nor its health server the html package's
    if "urllib3.http2" in modules:
        lean.urllib3_without_http2_opt_in()  # before urllib3
    if "idna" in modules and "idna.core" not in modules:
        lean.requests_without_idna()  # before requests: the sidecar's requests did not run idna's __init__
    imported = skipped = 0
    steps: list[tuple[str, int, int, list[str]]] = []
    for label, names in groups(modules):
        if "hvac" in names and "hvac.v1" not in modules:
            lean.hvac_without_its_catalogue()  # hvac's package initialisers did not run in the sidecar
        if "botocore.session" in names and "jmespath.parser" not in modules:
            lean.botocore_without_jmespath()  # nor JMESPath's
        for name in names:
            if name in sys.modules:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # requests warns that it has no charset detector
                    importlib.import_module(name)
                imported += 1
            except Exception:  # some modules cannot be imported alone: counted, not fatal
                skipped += 1
        added = sorted(name for name, module in sys.modules.items() if module is not None and name not in loaded)
        steps.append((label, rss_kib(), len(added), added))
        loaded = set(sys.modules)
    result = {"rss_kib": rss_kib(), "python_kib": before, "imported": imported, "skipped": skipped, "steps": steps}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
