"""Benchmark 2: backend requests per refresh cycle of a running sidecar, against the ideal.

How: a real ``injector sidecar`` with the 100-secret config and ``refresh.interval: 1s`` (default
jitter), backends at 2 ms. The requests are counted server side: the dev Vault's ``request_log``
and the AWS middleware's log (by ``X-Amz-Target``). The first render (start → /readyz) is counted
on its own; then, for each of ``cycles`` cycles, the counters are reset, the bench waits for the
burst of requests to start and for 300 ms of quiet after it, and keeps that burst's counts.

The ideal for one cycle: one GET per distinct KV path, ceil(secrets/20) BatchGetSecretValue,
ceil(parameters/10) GetParameters, and nothing else (no mount lookups, no token lookups: neither
is due in a cycle). PASS when every measured cycle equals it exactly.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from backends import Backends
from common import Scratch, wait_for
from dataset import Dataset
from procs import Sidecar

QUIET = 0.3


@dataclass
class CallsResult:
    ideal: dict[str, int]
    first_render: Counter[str] = field(default_factory=Counter)
    cycles: list[Counter[str]] = field(default_factory=list)
    cycle_spans: list[float] = field(default_factory=list)

    @property
    def ideal_total(self) -> int:
        return sum(self.ideal.values())

    def matches(self, cycle: Counter[str]) -> bool:
        return dict(cycle) == self.ideal

    @property
    def passed(self) -> bool:
        return bool(self.cycles) and all(self.matches(c) for c in self.cycles)


def one_burst(backends: Backends, timeout: float) -> tuple[Counter[str], float]:
    """Waits for requests to start, then for ``QUIET`` seconds without one; returns the burst's
    counts and its length (first arrival to the last count change seen)."""
    wait_for(lambda: backends.total_requests() > 0, timeout, "a refresh cycle to start", step=0.002)
    started = time.monotonic()
    last_count, last_change = backends.total_requests(), started
    deadline = started + 30
    while time.monotonic() < deadline:
        time.sleep(0.005)
        count = backends.total_requests()
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= QUIET:
            break
    return backends.calls(), last_change - started


def count_cycles(
    backends: Backends, sidecar: Sidecar, cycles: int, interval: float
) -> tuple[list[Counter[str]], list[float]]:
    """Counts ``cycles`` refresh cycles of a ready sidecar."""
    counted: list[Counter[str]] = []
    spans: list[float] = []
    for _ in range(cycles):
        backends.reset_counts()
        calls, span = one_burst(backends, timeout=interval * 3 + 5)
        counted.append(calls)
        spans.append(span)
        if sidecar.proc.poll() is not None:
            raise RuntimeError(f"the sidecar exited:\n{sidecar.logs()[-3000:]}")
    return counted, spans


def run(backends: Backends, dataset: Dataset, scratch: Scratch, *, cycles: int, latency: float) -> CallsResult:
    work = scratch.root / "calls"
    out = work / "out"
    out.mkdir(parents=True)
    config = dataset.config(
        backends,
        folder=work / "config",
        output_dir=out,
        tmpfs=scratch.tmpfs,
        extra={"refresh": {"interval": "1s"}},
    )
    backends.set_latency(latency)
    backends.reset_counts()
    result = CallsResult(ideal=dataset.ideal_calls())
    with Sidecar(config, work / "sidecar.log", {"VAULT_TOKEN": backends.root_token}) as sidecar:
        sidecar.wait_ready()
        result.first_render = backends.calls()
        result.cycles, result.cycle_spans = count_cycles(backends, sidecar, cycles, 1.0)
    backends.set_latency(0.0)
    return result
