"""Benchmark 5: start-up. ``injector --version``, ``injector init`` without AWS, and import costs.

How: ``injector --version`` (the console script, a subprocess) ``runs`` times, median wall time.
``injector init`` on a Vault-only config (the 40 Vault values of the 100-secret set, 10
templates, backends at 2 ms) ``runs`` times, median wall time; then ``python -X importtime -m
injector init`` on that config, ``import_runs`` times, which must show no ``boto3`` / ``botocore``
line (a config without AWS never imports them). Import costs are summed per
top-level package (the self time of all its modules) and given as medians over the runs, with
the 10 largest single modules.

A smaller Vault-only ``init`` (``small``: 10 values over 2 templates, 2 ms) against ``python -c
pass`` with the same interpreter, alternating, ``runs`` times each: the difference of the medians
is what ``init`` adds to starting Python (budget 150 ms). In the same alternation, the same values
declared under ``secrets:`` and named by the templates (``secrets.var``), as deploy/ and the
webhook write configs. Either way ``init`` starts the Vault login and the KV reads before it
loads the template engine (it finds the templates' ``secret("vault:…")`` literals in their text).
Both again with 20 ms per request (``SLOW``), where the round trips are long enough to show how
much of them the start-up hides.
Then ``bench/libfloor.py vault --clients`` ``runs`` times: the same difference for a process that
only imports Jinja2, PyYAML and hvac and builds an hvac client, which no ``init`` can beat.

For comparison, the same with the full config (with AWS), but through ``bench/phases.py`` (which
does init's work in sequence): a real init imports hvac and botocore in two worker threads at once,
and ``-X importtime`` measures wall time, so each import there would be charged for the other
thread's work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from backends import Backends
from common import BENCH, INJECTOR, PYTHON, LibraryFloor, Scratch, child_env, library_floor, median
from dataset import Dataset

#: The slower per-request delay of the small init's second pass (table 1's second latency too).
SLOW = 0.020
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


@dataclass
class Imports:
    """Import cost per top-level package, in seconds (median over runs), and the total."""

    per_package: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    modules: set[str] = field(default_factory=set)
    #: the largest single modules by self time (median over runs).
    top_modules: list[tuple[str, float]] = field(default_factory=list)

    def top(self, n: int) -> list[tuple[str, float]]:
        return sorted(self.per_package.items(), key=lambda kv: -kv[1])[:n]


@dataclass
class Startup:
    version_wall: float = 0.0
    init_no_aws_wall: float = 0.0
    #: the 10-value Vault-only init, and ``python -c pass``, median wall times.
    small_values: int = 0
    small_init_wall: float = 0.0
    #: the same values declared under ``secrets:`` (the early login), median wall time.
    small_named_wall: float = 0.0
    #: both again at ``SLOW`` per request: (inline, named) median wall times.
    small_slow: tuple[float, float] = (0.0, 0.0)
    python_wall: float = 0.0
    #: ``libfloor.py vault --clients``: Python, Jinja2, PyYAML and hvac imported, a client built.
    small_floor: LibraryFloor | None = None
    no_aws: Imports = field(default_factory=Imports)
    with_aws: Imports = field(default_factory=Imports)

    @property
    def boto3_absent(self) -> bool:
        return not any(m.split(".")[0] in ("boto3", "botocore") for m in self.no_aws.modules)


def parse_importtime(text: str) -> dict[str, float]:
    """Self time (seconds) of every module named in ``-X importtime`` output."""
    modules: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        found = _LINE.match(line)
        if found is not None:
            modules[found.group(4)] += int(found.group(1)) / 1e6
    return dict(modules)


def per_package(modules: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, seconds in modules.items():
        out[name.split(".")[0]] += seconds
    return dict(out)


def _fresh(*folders: Path) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)


def _imports(command: list[str], out: Path, state: Path, env: dict[str, str], runs: int) -> Imports:
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        _fresh(out, state)
        proc = subprocess.run(
            [PYTHON, "-X", "importtime", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:3])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        samples.append(parse_importtime(proc.stderr))
    names = {name for sample in samples for name in sample}
    modules = {name: median([sample.get(name, 0.0) for sample in samples]) for name in names}
    packages = [per_package(sample) for sample in samples]
    return Imports(
        per_package={name: median([p.get(name, 0.0) for p in packages]) for name in {n for p in packages for n in p}},
        total=median([sum(sample.values()) for sample in samples]),
        modules=set(names),
        top_modules=sorted(modules.items(), key=lambda kv: -kv[1])[:10],
    )


def _init_wall(config: Path, out: Path, state: Path, env: dict[str, str]) -> float:
    """Wall time of one ``injector init`` of ``config`` into a fresh ``out``."""
    _fresh(out, state)
    started = time.perf_counter()
    subprocess.run(
        [INJECTOR, "init", "--config", str(config), "--output-dir", str(out)],
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    return time.perf_counter() - started


def run(
    backends: Backends,
    dataset: Dataset,
    scratch: Scratch,
    *,
    runs: int,
    import_runs: int,
    latency: float,
    small: Dataset | None = None,
) -> Startup:
    work = scratch.root / "startup"
    out, state = work / "out", work / "state"
    vault_only = Dataset(
        prefix=dataset.prefix, vault_paths=dataset.vault_paths, sm=0, ssm=0, templates=dataset.templates
    )
    no_aws = vault_only.config(backends, folder=work / "no-aws", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state)
    with_aws = dataset.config(backends, folder=work / "aws", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state)
    env = child_env({"VAULT_TOKEN": backends.root_token})
    backends.set_latency(latency)
    result = Startup()
    subprocess.run([INJECTOR, "--version"], capture_output=True, env=env, timeout=60, check=True)  # warm-up
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([INJECTOR, "--version"], capture_output=True, env=env, timeout=60, check=True)
        walls.append(time.perf_counter() - started)
    result.version_wall = median(walls)
    walls = []
    for _ in range(runs + 1):
        _fresh(out, state)
        started = time.perf_counter()
        proc = subprocess.run(
            [INJECTOR, "init", "--config", str(no_aws), "--output-dir", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        walls.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"injector init failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result.init_no_aws_wall = median(walls[1:])
    if small is not None:
        small_config = small.config(
            backends, folder=work / "small", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state
        )
        named_config = small.config(
            backends, folder=work / "small-named", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state, named=True
        )
        result.small_values = small.size
        configs = (small_config, named_config)
        inits, named, pythons = [], [], []
        for n in range(runs + 1):
            walls = [_init_wall(config, out, state, env) for config in configs]
            started = time.perf_counter()
            subprocess.run([PYTHON, "-c", "pass"], capture_output=True, env=env, timeout=60, check=True)
            if n:  # the first round warms the page cache
                inits.append(walls[0])
                named.append(walls[1])
                pythons.append(time.perf_counter() - started)
        result.small_init_wall, result.small_named_wall = median(inits), median(named)
        result.python_wall = median(pythons)
        backends.set_latency(SLOW)
        slow: list[list[float]] = [[], []]
        for n in range(runs + 1):
            walls = [_init_wall(config, out, state, env) for config in configs]
            if n:
                slow[0].append(walls[0])
                slow[1].append(walls[1])
        result.small_slow = (median(slow[0]), median(slow[1]))
        backends.set_latency(latency)
        result.small_floor = library_floor(
            ("vault",), clients=True, runs=runs, vault=backends.vault_address, paused=True
        )
    init = ["-m", "injector", "init", "--config", str(no_aws), "--output-dir", str(out)]
    result.no_aws = _imports(init, out, state, env, import_runs)
    result.with_aws = _imports([str(BENCH / "phases.py"), str(with_aws)], out, state, env, import_runs)
    backends.set_latency(0.0)
    return result
