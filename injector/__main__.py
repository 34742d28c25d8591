"""The ``injector`` console script and ``python -m injector``.

The command lines a pod runs (``injector init|sidecar --config FILE ...``) start without importing
click: ``injector.commands.parse`` reads them, and hands anything else to click (``injector.cli``).
``init``'s start-up runs without the cyclic garbage collector (``injector.process.hygiene``),
which the engine turns back on when it begins to fetch: a pod waits for that start, and the
collector's passes over what the imports build were about 9 ms of it. A sidecar's start-up keeps
the collector: nobody waits for it, and without it the sidecar holds 0.2–0.3 MiB more for its
whole life (bench/README.md).

Before anything else, every command defers the standard library's modules that the libraries
import for what the injector seldom or never does (``injector._imports.UNUSED_STDLIB``): loaded,
not run, until something asks one of them for a name.
"""

import os
import sys

from injector._imports import stdlib_without_unused_modules
from injector.process.hygiene import pause_collector, resume_collector


def main() -> None:
    if sys.argv[1:2] == ["init"]:
        pause_collector()
    stdlib_without_unused_modules()
    try:
        from injector.commands import parse, run_parsed

        parsed = parse(sys.argv[1:], os.environ)
        if parsed is None:
            resume_collector()
            from injector.cli import main as click_main

            click_main()
        else:
            run_parsed(parsed)
    finally:
        resume_collector()


if __name__ == "__main__":
    main()
