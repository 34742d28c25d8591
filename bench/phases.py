"""Where ``injector init`` spends its time, phase by phase: the evidence behind benchmark 1's ratio.

Usage: ``python bench/phases.py [--profile] CONFIG`` (the output folder must exist and be empty).
Prints JSON.

It does what ``runner.run_init`` does, with the same public pieces (``Engine``, ``Sink``), one
phase after the other with a stopwatch (wall and this process's CPU) around each:

1. ``import injector.commands`` (what the console script imports to read a pod's command line:
   logging set-up, no click, after deferring the standard library's unused modules as the console
   script does first) and the runner (jinja2, yaml …);
2. load the config, compile the templates;
3. import the Vault source (hvac, requests, loaded as the Vault source's factory loads them) and
   botocore;
4. build the three sources (hvac client; two botocore clients); with ``--profile``, the two
   botocore clients are built under cProfile, whose top cumulative entries are reported (that run's
   times include the profiler's overhead: the bench profiles its warm-up run only);
5. fetch every reference (all backends at once, as ``Engine.fetch`` always does), render, publish.

Phases 1 to 4 run without the cyclic garbage collector, and the fetch with it, as in ``init``
(``injector/process/hygiene.py``).

The only difference from a real init is that the sources are built before the fetch instead of
inside its worker threads; under the GIL that changes the order, not the amount of work.
"""

from __future__ import annotations

import time

STARTED_WALL, STARTED_CPU = time.perf_counter(), time.process_time()

import gc  # noqa: E402 - built in

gc.disable()  # as ``injector init`` starts up

import cProfile  # noqa: E402 - the stopwatch starts before any import
import json  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


class Stopwatch:
    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []
        self._wall, self._cpu = STARTED_WALL, STARTED_CPU

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases.append((name, wall - self._wall, cpu - self._cpu))
        self._wall, self._cpu = wall, cpu


def top_cumulative(profile: cProfile.Profile, n: int) -> list[tuple[str, float]]:
    """The ``n`` largest cumulative times, skipping import machinery and our own frames."""
    stats = pstats.Stats(profile)
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(raw.items(), key=lambda item: -item[1][3])
    out: list[tuple[str, float]] = []
    for (file, line, func), entry in ranked:
        if file.startswith("<frozen") or file == "~" or "bench/phases.py" in file or "injector/" in file:
            continue
        short = file.split("site-packages/")[-1]
        out.append((f"{short}:{line}({func})", entry[3]))
        if len(out) == n:
            break
    return out


def main(config_path: str, profiled: bool) -> None:
    watch = Stopwatch()
    from injector import _imports

    # As the console script begins (injector/__main__.py), where the measured code has it.
    getattr(_imports, "stdlib_without_unused_modules", lambda: None)()
    import injector.commands  # what the console script imports first for `init --config FILE`

    watch.lap("import injector.commands")
    from injector.config.load import load_config
    from injector.engine import Engine
    from injector.sink import Sink

    watch.lap("import the runner (jinja2, yaml …)")
    config = load_config(config_path)
    sink = Sink(config.output_dir, allow_non_tmpfs=config.allow_non_tmpfs)
    sink.prepare()
    engine = Engine(config)
    engine.compile()
    refs = engine.static_refs()
    watch.lap(f"load config, compile {len(engine.destinations)} templates")
    from injector import _imports

    _imports.urllib3_without_http2_opt_in()
    _imports.requests_without_charset_detection()
    _imports.hvac_without_its_catalogue()
    import injector.sources.vault  # noqa: F401

    watch.lap("import hvac, requests")
    import botocore.config
    import botocore.session  # noqa: F401

    watch.lap("import botocore")
    engine.source("vault")
    watch.lap("build the Vault source (hvac client)")
    profile = cProfile.Profile()
    if profiled:
        profile.enable()
    engine.source("aws-sm")
    engine.source("aws-ssm")
    profile.disable()
    watch.lap("build the 2 AWS sources (botocore clients)")
    from injector.process.hygiene import resume_collector

    resume_collector()  # as ``Engine.start`` does
    errors = engine.fetch(refs)
    if errors:
        raise SystemExit(f"fetch failed: {next(iter(errors.values()))}")
    watch.lap(f"fetch {len(refs)} references (all backends at once)")
    failed = engine.render(engine.destinations)
    if failed:
        raise SystemExit(f"render failed: {next(iter(failed.values()))}")
    outputs = engine.files()
    watch.lap(f"render {len(outputs)} templates")
    sink.publish(outputs)
    watch.lap("publish the snapshot")
    engine.close()
    print(
        json.dumps(
            {
                "phases": watch.phases,
                "aws_clients_top": top_cumulative(profile, 8) if profiled else [],
                "total_wall": time.perf_counter() - STARTED_WALL,
                "total_cpu": time.process_time() - STARTED_CPU,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[-1], "--profile" in sys.argv[1:-1])
