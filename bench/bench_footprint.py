"""Benchmark 4: what a sidecar costs, idle with 100 secrets, and busy with 1,000.

Idle: a real ``injector sidecar`` with the 100-secret config (templates read from files, so the
file watcher runs, as with a ConfigMap of templates), ``refresh.interval: 1h`` so nothing is due,
/healthz served. After /readyz and a settling pause, the bench reads ``/proc/PID`` at the start and
the end of ``idle_seconds`` and once a second between: VmRSS (max of the samples), VmHWM, CPU
(utime + stime, all threads, from ``/proc/PID/stat``) and context switches summed over every thread
(``/proc/PID/task/*/status``; each voluntary switch is a thread going to sleep, i.e. one wakeup).

Busy: the 1,000-secret config (200 KV paths, 300 secrets, 300 parameters, 200 templates) with
``refresh.interval: 8s``, no jitter, backends at 2 ms. Measured: start → /readyz (first render,
process start included); one cycle with nothing changed (requests counted against the ideal, and
the burst's length server side); then every value is changed in the backends and the next cycle is
timed from its first request to the new snapshot (fetch 1,000, render 200 templates, publish), with
the CPU it used; VmHWM (peak RSS) at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from backends import Backends
from bench_calls import one_burst
from common import Scratch, context_switches, cpu_seconds, kib, proc_status, wait_for
from dataset import Dataset
from procs import Sidecar, readlink


@dataclass
class Idle:
    seconds: float
    rss_kib: int = 0
    hwm_kib: int = 0
    cpu: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    threads: int = 0

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


def idle(backends: Backends, dataset: Dataset, scratch: Scratch, *, seconds: float, settle: float = 5.0) -> Idle:
    work = scratch.root / "idle"
    out = work / "out"
    out.mkdir(parents=True)
    config = dataset.config(
        backends, folder=work / "config", output_dir=out, tmpfs=scratch.tmpfs, extra={"refresh": {"interval": "1h"}}
    )
    result = Idle(seconds=seconds)
    with Sidecar(config, work / "sidecar.log", {"VAULT_TOKEN": backends.root_token}) as sidecar:
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
    with Sidecar(config, work / "sidecar.log", {"VAULT_TOKEN": backends.root_token}) as sidecar:
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
