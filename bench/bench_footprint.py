"""Benchmark 4: what a sidecar costs, idle with 100 secrets, and busy with 1,000.

Idle: a real ``injector sidecar`` with the 100-secret config (templates read from files, so the
file watcher runs, as with a ConfigMap of templates), ``refresh.interval: 1h`` and ``splay: false``
so nothing is due (with splay, the default, the first poll after start falls at a random point of
the hour, inside the measured minute about one run in sixty), /healthz served. After /readyz and a
settling pause, the bench reads ``/proc/PID`` at the start and the end of ``idle_seconds`` and once
a second between: VmRSS (max of the samples), VmHWM, CPU
(utime + stime, all threads, from ``/proc/PID/stat``) and context switches summed over every thread
(``/proc/PID/task/*/status``; each voluntary switch is a thread going to sleep, i.e. one wakeup).

The same idle measure for three single-backend configs of 100 values (Vault only: 50 KV paths;
Secrets Manager only; SSM only), ``settle`` 10 s after /readyz, sampled for 10 s.

Holders (``holders``): the same idle sidecar again, under ``bench/heapshot.py`` (tracemalloc), 10 s
after /readyz: the Python heap by package and by allocation site, and the modules it imported; then
``bench/floor.py`` imports those modules in a bare interpreter: the RSS that the imports alone
cost. The plain run's ``/proc/PID/smaps`` says how the RSS splits between anonymous memory and
the files mapped (the interpreter, extension modules, system libraries). Below both lies the
libraries' floor: ``bench/libfloor.py --no-yaml`` (3 runs, medians) imports only Jinja2's sandbox and
the backends' clients (hvac, botocore) the config needs, then builds those clients the plain way
(a sidecar reads its config's YAML in a child process and imports no PyYAML).

Busy: the 1,000-secret config (200 KV paths, 300 secrets, 300 parameters, 200 templates) with
``refresh.interval: 8s``, no jitter, backends at 2 ms. Measured: start → /readyz (first render,
process start included); one cycle with nothing changed (requests counted against the ideal, and
the burst's length server side); then every value is changed in the backends and the next cycle is
timed from its first request to the new snapshot (fetch 1,000, render 200 templates, publish), with
the CPU it used; VmHWM (peak RSS) at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends import Backends
from bench_calls import one_burst
from common import (
    BENCH,
    PYTHON,
    LibraryFloor,
    Scratch,
    child_env,
    context_switches,
    cpu_seconds,
    dataset_backends,
    kib,
    library_floor,
    memory_map,
    proc_status,
    wait_for,
)
from dataset import Dataset
from procs import Sidecar, readlink


@dataclass
class Idle:
    seconds: float
    #: "mixed", "Vault only" …
    label: str = "mixed"
    values: int = 0
    rss_kib: int = 0
    hwm_kib: int = 0
    cpu: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    threads: int = 0
    #: resident KiB by kind of mapping (common.memory_map) at the end.
    mapped: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu / self.seconds

    @property
    def wakeups_per_second(self) -> float:
        return self.voluntary / self.seconds


@dataclass
class Busy:
    size: int
    templates: int
    ready: float = 0.0
    ideal: dict[str, int] = field(default_factory=dict)
    unchanged_calls: Counter[str] = field(default_factory=Counter)
    unchanged_span: float = 0.0
    full_cycle: float = 0.0
    full_cycle_cpu: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0


@dataclass
class Holders:
    """Where the idle sidecar's memory is: the Python heap, and the import floor."""

    label: str
    heap: dict[str, Any] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    #: the libraries the config needs, imported (a floor), and with plain clients (``libfloor.py``).
    libraries: LibraryFloor | None = None
    with_clients: LibraryFloor | None = None


def _idle_config(backends: Backends, dataset: Dataset, scratch: Scratch, name: str) -> Path:
    work = scratch.root / name
    out = work / "out"
    out.mkdir(parents=True)
    return dataset.config(
        backends,
        folder=work / "config",
        output_dir=out,
        tmpfs=scratch.tmpfs,
        extra={"refresh": {"interval": "1h", "splay": False}},  # the first poll at 1 h, not at random
    )


def idle(
    backends: Backends,
    dataset: Dataset,
    scratch: Scratch,
    *,
    seconds: float,
    settle: float = 5.0,
    label: str = "mixed",
) -> Idle:
    name = f"idle-{dataset.prefix}" + ("-tls" if backends.ca_bundle else "")
    work = scratch.root / name
    config = _idle_config(backends, dataset, scratch, name)
    result = Idle(seconds=seconds, label=label, values=dataset.size)
    with Sidecar(config, work / "sidecar.log", backends.client_env()) as sidecar:
        sidecar.wait_ready()
        time.sleep(settle)
        pid = sidecar.pid
        cpu0, (vol0, invol0, _) = cpu_seconds(pid), context_switches(pid)
        started = time.monotonic()
        rss = 0
        while time.monotonic() - started < seconds:
            rss = max(rss, kib(proc_status(pid)["VmRSS"]))
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - started))))
        result.seconds = time.monotonic() - started
        cpu1, (vol1, invol1, threads) = cpu_seconds(pid), context_switches(pid)
        status = proc_status(pid)
        result.rss_kib = max(rss, kib(status["VmRSS"]))
        result.hwm_kib = kib(status["VmHWM"])
        result.cpu = cpu1 - cpu0
        result.voluntary, result.involuntary, result.threads = vol1 - vol0, invol1 - invol0, threads
        result.mapped = memory_map(pid)
    return result


def holders(backends: Backends, dataset: Dataset, scratch: Scratch, *, label: str, settle: float = 10.0) -> Holders:
    """The idle sidecar under tracemalloc, and the RSS of its imports alone (module docstring)."""
    name = f"holders-{dataset.prefix}"
    config = _idle_config(backends, dataset, scratch, name)
    result = Holders(label=label)
    with tempfile.TemporaryDirectory(prefix="injector-heap-") as tmp:
        heap = Path(tmp)
        os.mkfifo(heap / "fifo")
        launcher = [PYTHON, str(BENCH / "heapshot.py"), str(heap / "fifo"), str(heap), "--"]
        env = backends.client_env()
        with Sidecar(config, scratch.root / name / "sidecar.log", env, launcher=launcher) as sidecar:
            sidecar.wait_ready()
            time.sleep(settle)
            with open(heap / "fifo", "w") as fifo:
                fifo.write("idle\n")
            wait_for(lambda: (heap / "idle.json").exists(), 120, "the heap snapshot", step=0.05)
        result.heap = json.loads((heap / "idle.json").read_text())
        floor = subprocess.run(
            [PYTHON, str(BENCH / "floor.py"), str(heap / "idle.json")],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=120,
            check=True,
        )
        result.floor = json.loads(floor.stdout)
    kinds = dataset_backends(dataset.vault_paths, dataset.sm, dataset.ssm)
    where = {"vault": backends.vault_address, "aws": backends.aws_url}
    # A sidecar reads its config's YAML in a child process: its floor has no PyYAML.
    result.libraries = library_floor(kinds, clients=False, runs=3, with_yaml=False, **where)
    result.with_clients = library_floor(kinds, clients=True, runs=3, with_yaml=False, **where)
    return result


def busy(backends: Backends, dataset: Dataset, scratch: Scratch, *, latency: float) -> Busy:
    work = scratch.root / "busy"
    out = work / "out"
    out.mkdir(parents=True)
    interval = 8.0
    config = dataset.config(
        backends,
        folder=work / "config",
        output_dir=out,
        tmpfs=scratch.tmpfs,
        extra={"refresh": {"interval": f"{interval:g}s", "jitter": 0}},
    )
    result = Busy(size=dataset.size, templates=dataset.templates, ideal=dataset.ideal_calls())
    backends.set_latency(latency)
    with Sidecar(config, work / "sidecar.log", backends.client_env()) as sidecar:
        result.ready = sidecar.wait_ready()
        # 1. a cycle with nothing changed
        backends.reset_counts()
        result.unchanged_calls, result.unchanged_span = one_burst(backends, timeout=interval + 5)
        # 2. change every value (between cycles: seeding takes a few seconds of the 8)
        backends.set_latency(0.0)
        seeding = time.monotonic()
        dataset.seed(backends, generation=1)
        if time.monotonic() - seeding > interval * 0.8:
            raise RuntimeError("seeding took most of a cycle: the full-cycle timing would be unreliable")
        backends.set_latency(latency)
        link = readlink(out / "..data")
        backends.reset_counts()
        # 3. the next cycle, from its first request to the new snapshot
        wait_for(lambda: backends.total_requests() > 0, interval + 5, "the next cycle", step=0.001)
        started, cpu0 = time.monotonic(), cpu_seconds(sidecar.pid)
        wait_for(lambda: readlink(out / "..data") != link, 60, "the full cycle's snapshot", step=0.001)
        result.full_cycle = time.monotonic() - started
        result.full_cycle_cpu = cpu_seconds(sidecar.pid) - cpu0
        status = proc_status(sidecar.pid)
        result.rss_kib, result.hwm_kib = kib(status["VmRSS"]), kib(status["VmHWM"])
    backends.set_latency(0.0)
    return result
