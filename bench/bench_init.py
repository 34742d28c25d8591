"""Benchmark 1: ``injector init`` against a sequential hvac/boto3 script, 100 secrets, 10 templates.

How: for each injected backend delay (2 ms, 20 ms per request, Vault and AWS alike), run the real
CLI (``injector init -c … --output-dir …``, a subprocess, output on a fresh tmpfs folder each run)
and ``baseline.py`` (a subprocess too) alternately, ``runs`` times each after one unmeasured warm-up
of each, and take the median wall time of each; the ratio is injector / baseline. Both times are
whole processes: interpreter start, imports, client set-up, fetching, writing.

Also recorded per run: the requests each made (server side) and each one's own idea of its work
time (the injector's "rendered … in X" line; the baseline's time after its imports), which
separates fetching from start-up. The first pair's files are compared byte for byte.

Over TLS (``over_tls``): the same ``injector init`` against both backends serving https, with
certifi's bundle (plus the bench's CAs) as the trust, what a pod trusting the public CAs loads.

The floor: ``bench/libfloor.py vault secretsmanager ssm --clients``, ``runs`` times, median wall
time: a process that imports Jinja2, PyYAML, hvac and botocore and builds the three clients, and
sends no request. Its wall time over the baseline's is the lowest ratio an ``init`` built on these
libraries could reach with requests that cost nothing.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from backends import Backends
from common import BENCH, INJECTOR, PYTHON, LibraryFloor, Scratch, child_env, library_floor, median
from dataset import Dataset

from injector.units import parse_duration

_WORK = re.compile(r" in (\S+) \(\d+ changed\)")


@dataclass
class InitRun:
    wall: float
    #: utime + stime of the process (RUSAGE_CHILDREN before/after: the bench runs nothing else meanwhile).
    cpu: float
    work: float
    calls: int


@dataclass
class InitResult:
    latency: float
    injector: list[InitRun] = field(default_factory=list)
    baseline: list[InitRun] = field(default_factory=list)
    #: ``libfloor.py vault secretsmanager ssm --clients``: the libraries imported, the clients built,
    #: no request sent (the same for every latency).
    floor: LibraryFloor | None = None

    def wall(self, who: str) -> float:
        return median([r.wall for r in getattr(self, who)])

    def cpu(self, who: str) -> float:
        return median([r.cpu for r in getattr(self, who)])

    def work(self, who: str) -> float:
        return median([r.work for r in getattr(self, who)])

    def calls(self, who: str) -> int:
        return int(median([r.calls for r in getattr(self, who)]))

    @property
    def ratio(self) -> float:
        return self.wall("injector") / self.wall("baseline")


def break_even(results: list[InitResult], target: float = 0.5) -> float | None:
    """The per-request delay at which the ratio would reach ``target``, from a straight line
    through the two measured latencies for each side (both are close to linear in the delay)."""
    if len(results) < 2:
        return None
    low, high = results[0], results[-1]
    span = high.latency - low.latency
    slope_i = (high.wall("injector") - low.wall("injector")) / span
    slope_b = (high.wall("baseline") - low.wall("baseline")) / span
    base_i = low.wall("injector") - slope_i * low.latency
    base_b = low.wall("baseline") - slope_b * low.latency
    denominator = slope_i - target * slope_b
    if denominator >= 0:
        return None
    return (target * base_b - base_i) / denominator


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith("..")}


def run_injector(config: Path, out: Path, state: Path, backends: Backends) -> InitRun:
    _fresh(out)
    _fresh(state)
    backends.reset_counts()
    env = child_env(backends.client_env())
    cpu0 = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [INJECTOR, "init", "--config", str(config), "--output-dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"injector init failed ({proc.returncode}): {proc.stderr[-2000:]}")
    found = _WORK.search(proc.stderr)
    work = parse_duration(found.group(1)) if found else float("nan")
    return InitRun(wall=wall, cpu=cpu, work=work, calls=backends.total_requests())


def run_baseline(plan: Path, out: Path, backends: Backends) -> InitRun:
    _fresh(out)
    backends.reset_counts()
    cpu0 = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, str(BENCH / "baseline.py"), str(plan)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"baseline failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return InitRun(wall=wall, cpu=cpu, work=float(report["work_s"]), calls=backends.total_requests())


def run(
    backends: Backends, dataset: Dataset, scratch: Scratch, *, latencies: list[float], runs: int
) -> list[InitResult]:
    """Runs benchmark 1 at each latency; returns one ``InitResult`` per latency."""
    work = scratch.root / "init"
    out_injector, out_baseline, state = work / "out-injector", work / "out-baseline", work / "state"
    config = dataset.config(
        backends, folder=work / "config", output_dir=out_injector, tmpfs=scratch.tmpfs, state_dir=state
    )
    plan = dataset.write_plan(backends, out_baseline, work / "plan.json")
    results = []
    floor = library_floor(
        ("vault", "secretsmanager", "ssm"),
        clients=True,
        runs=runs,
        vault=backends.vault_address,
        aws=backends.aws_url,
        paused=True,
    )
    for latency in latencies:
        backends.set_latency(latency)
        result = InitResult(latency=latency, floor=floor)
        # Warm-up (page cache, .pyc files, moto's lazily built backends), and the output check.
        run_injector(config, out_injector, state, backends)
        run_baseline(plan, out_baseline, backends)
        mine, theirs = _read_tree(out_injector), _read_tree(out_baseline)
        if mine != theirs:
            raise RuntimeError("injector and baseline outputs differ: the comparison would be unfair")
        for _ in range(runs):
            result.injector.append(run_injector(config, out_injector, state, backends))
            result.baseline.append(run_baseline(plan, out_baseline, backends))
        results.append(result)
    backends.set_latency(0.0)
    return results


def over_tls(backends: Backends, dataset: Dataset, scratch: Scratch, *, latency: float, runs: int) -> InitResult:
    """``injector init`` alone against ``backends`` (over TLS), ``runs`` times after a warm-up."""
    work = scratch.root / "init-tls"
    out, state = work / "out", work / "state"
    config = dataset.config(backends, folder=work / "config", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state)
    backends.set_latency(latency)
    result = InitResult(latency=latency)
    run_injector(config, out, state, backends)
    result.injector = [run_injector(config, out, state, backends) for _ in range(runs)]
    backends.set_latency(0.0)
    return result


@dataclass
class Phases:
    """Median wall and CPU per phase of ``phases.py`` runs, and the top of the AWS client profile."""

    runs: int = 0
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    total_wall: float = 0.0
    total_cpu: float = 0.0
    aws_clients_top: list[tuple[str, float]] = field(default_factory=list)


def phases(backends: Backends, dataset: Dataset, scratch: Scratch, *, latency: float, runs: int) -> Phases:
    """Runs ``phases.py`` ``runs`` times on the 100-secret config, after a warm-up run that profiles
    building the AWS clients (its times are not used)."""
    work = scratch.root / "phases"
    out = work / "out"
    config = dataset.config(backends, folder=work / "config", output_dir=out, tmpfs=scratch.tmpfs)
    backends.set_latency(latency)
    reports = []
    for n in range(runs + 1):
        _fresh(out)
        proc = subprocess.run(
            [PYTHON, str(BENCH / "phases.py"), *([] if n else ["--profile"]), str(config)],
            capture_output=True,
            text=True,
            env=child_env({"VAULT_TOKEN": backends.root_token}),
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"phases.py failed ({proc.returncode}): {proc.stderr[-2000:]}")
        reports.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    backends.set_latency(0.0)
    kept = reports[1:]
    names = [name for name, _, _ in kept[0]["phases"]]
    return Phases(
        runs=len(kept),
        phases=[
            (name, median([r["phases"][i][1] for r in kept]), median([r["phases"][i][2] for r in kept]))
            for i, name in enumerate(names)
        ],
        total_wall=median([r["total_wall"] for r in kept]),
        total_cpu=median([r["total_cpu"] for r in kept]),
        aws_clients_top=[(name, float(seconds)) for name, seconds in reports[0]["aws_clients_top"]],
    )
