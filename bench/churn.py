"""Churn: does a sidecar that keeps changing things keep its size? ``python bench/churn.py``.

A real ``injector sidecar`` (Vault only, ``refresh.interval: 1s``) renders 20 Vault KV values
(20 paths under ``secret/churn``, one key each) into 4 templates, and a fifth template from a
``file:`` source in a ConfigMap-style folder (watched; updated as kubelet does, ``..data`` swap).
Every template notifies ``bench/app.py`` with SIGHUP. Every 0.5 s the bench writes 5 of the KV
values (a new value each time, taking the paths in turn) and the file. So each second brings 10
new Vault values and 2 file changes, i.e. many new snapshots and notifications, for ``seconds``.

Sampled every ``step`` seconds from ``/proc/PID``: VmRSS, CPU (utime+stime of all threads),
threads and open file descriptors; the CPU per change is the CPU of a sampling window over the
KV and file writes made in it. Growth is RSS at the end minus RSS after ``warmup`` seconds; the
slope over the second half says whether it is still growing.

With ``--tracemalloc`` a second sidecar runs the same churn under ``bench/heapshot.py``: heap
snapshots after the warm-up and at the end, and the allocation sites that grew between them (the
structures that grow with history). Its RSS is not reported (tracemalloc has costs of its own).

Writes its section of bench/README.md (between the churn markers) unless ``--no-write``. By
default the code measured is ``injector/`` as committed at HEAD, like ``run.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
import hvac
import yaml
from bench_propagation import APP_NAME, configmap_write
from common import BENCH, PYTHON, cpu_seconds, kib, loadavg, open_fds, proc_status, scratch_space, wait_for
from procs import App, Sidecar, exit_on_sigterm
from report import mib, write_section

from devvault import DevVault

START = "<!-- churn:start (written by bench/churn.py; edit outside the markers) -->"
END = "<!-- churn:end -->"
PATHS = 20
PER_TICK = 5
TICK = 0.5
GROWTH_BUDGET_MIB = 2.0
#: Connections the Vault source may keep open between rounds (``limits.max_concurrency``, default):
#: a round with more requests in flight than any before opens one more, up to this many.
POOL = 16


@dataclass
class Sample:
    at: float
    rss_kib: int
    cpu: float
    threads: int
    fds: int
    changes: int


@dataclass
class Churn:
    seconds: float
    warmup: float
    samples: list[Sample] = field(default_factory=list)
    heap: dict[str, Any] = field(default_factory=dict)

    def at(self, t: float) -> Sample:
        return min(self.samples, key=lambda s: abs(s.at - t))

    @property
    def growth_kib(self) -> int:
        return self.samples[-1].rss_kib - self.at(self.warmup).rss_kib

    def slope_mib_per_min(self) -> float:
        """RSS growth over the second half of the run, in MiB a minute."""
        mid, end = self.at(self.seconds / 2), self.samples[-1]
        return (end.rss_kib - mid.rss_kib) / 1024 / max(1e-9, (end.at - mid.at) / 60)

    def at_rest(self, start: float, end: float) -> Sample:
        """The fewest threads and fds (and least RSS) of the samples taken in [start, end): a sample
        taken during a round also counts its fetch threads and their sockets, which then go away."""
        window = [s for s in self.samples if start <= s.at < end] or self.samples[-1:]
        return Sample(
            at=start,
            rss_kib=min(s.rss_kib for s in window),
            cpu=window[-1].cpu,
            threads=min(s.threads for s in window),
            fds=min(s.fds for s in window),
            changes=window[-1].changes,
        )

    def cpu_per_change(self, first: Sample, last: Sample) -> float:
        return (last.cpu - first.cpu) / max(1, last.changes - first.changes)


def config(work: Path, vault: DevVault, configmap: Path, pidfile: Path, tmpfs: bool) -> Path:
    notify = [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}]
    templates: list[dict[str, Any]] = [
        {
            "contents": "".join(
                f'V{i:02d}={{{{ secret("vault:secret/churn/v-{i:02d}#value") }}}}\n' for i in range(t, PATHS, 4)
            ),
            "destination": f"vault-{t}.env",
            "on_change": notify,
        }
        for t in range(4)
    ]
    templates.append(
        {
            "contents": f'VALUE={{{{ secret("file:{configmap / "value"}") }}}}\n',
            "destination": "file.conf",
            "on_change": notify,
        }
    )
    raw = {
        "output_dir": str(work / "out"),
        "vault": {"address": vault.address, "auth": {"method": "token"}},
        "templates": templates,
        # The ConfigMap-style folder is not beside the config: file: references read only under file_roots.
        "file_roots": [str(configmap)],
        "refresh": {"interval": "1s", "jitter": 0},
        "health": {"address": False},
        **({} if tmpfs else {"allow_non_tmpfs": True}),
    }
    path = work / "injector.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def churn_once(
    vault: DevVault,
    configmap: Path,
    *,
    seconds: float,
    warmup: float,
    step: float,
    tmpfs_root: Path,
    tmpfs: bool,
    heapshot: Path | None = None,
) -> Churn:
    """One sidecar under churn for ``seconds``; with ``heapshot`` (a folder), under tracemalloc."""
    client = hvac.Client(url=vault.address, token=vault.root_token, timeout=10)
    work = Path(tempfile.mkdtemp(dir=tmpfs_root))
    (work / "out").mkdir()
    for i in range(PATHS):
        client.secrets.kv.v2.create_or_update_secret(
            path=f"churn/v-{i:02d}", secret={"value": "start"}, mount_point="secret"
        )
    configmap_write(configmap, "value", "start\n")
    result = Churn(seconds=seconds, warmup=warmup)
    launcher = None
    if heapshot is not None:
        fifo = heapshot / "fifo"
        os.mkfifo(fifo)
        launcher = [PYTHON, str(BENCH / "heapshot.py"), str(fifo), str(heapshot), "--"]
    with (
        App(work) as app,
        Sidecar(
            config(work, vault, configmap, app.pidfile, tmpfs),
            work / "sidecar.log",
            {"VAULT_TOKEN": vault.root_token},
            launcher=launcher,
        ) as sidecar,
    ):
        sidecar.wait_ready()
        pid = sidecar.pid
        started = time.monotonic()
        changes = ticks = 0
        next_sample = 0.0
        snapped = False
        while True:
            now = time.monotonic() - started
            if now >= next_sample:
                status = proc_status(pid)
                result.samples.append(
                    Sample(
                        at=now,
                        rss_kib=kib(status["VmRSS"]),
                        cpu=cpu_seconds(pid),
                        threads=int(status["Threads"]),
                        fds=open_fds(pid),
                        changes=changes,
                    )
                )
                next_sample += step
            if heapshot is not None and not snapped and now >= warmup:
                _snapshot(heapshot, "warm")
                snapped = True
            if now >= seconds:
                break
            for k in range(PER_TICK):
                i = (ticks * PER_TICK + k) % PATHS
                client.secrets.kv.v2.create_or_update_secret(
                    path=f"churn/v-{i:02d}", secret={"value": f"t{ticks}-{i}"}, mount_point="secret"
                )
            configmap_write(configmap, "value", f"t{ticks}\n")
            changes += PER_TICK + 1
            ticks += 1
            time.sleep(max(0.0, started + ticks * TICK - time.monotonic()))
        if heapshot is not None:
            _snapshot(heapshot, "end")
            result.heap = json.loads((heapshot / "end.json").read_text())
            result.heap["warm_traced"] = json.loads((heapshot / "warm.json").read_text())["traced"]
        if sidecar.proc.poll() is not None:
            raise RuntimeError(f"the sidecar died:\n{sidecar.logs()[-3000:]}")
    return result


def _snapshot(folder: Path, name: str) -> None:
    with open(folder / "fifo", "w") as fifo:
        fifo.write(name + "\n")
    wait_for(lambda: (folder / f"{name}.json").exists(), 120, f"the heap snapshot {name}", step=0.05)


def section(plain: Churn, traced: Churn | None, *, date: str, code: str, command: str) -> str:
    first, last = plain.at(plain.warmup), plain.samples[-1]
    mid = plain.at(plain.seconds / 2)
    early = plain.at_rest(plain.warmup, plain.seconds / 2)
    late = plain.at_rest(plain.seconds / 2, plain.seconds + 1)
    growth = plain.growth_kib / 1024
    lines = [
        START,
        "",
        f"Run of {date}, command `{command}`; code measured: {code}. {plain.seconds:.0f} s of churn: every "
        f"{TICK:g} s, {PER_TICK} of {PATHS} Vault KV values and one `file:` source change (interval 1 s).",
        "",
        "| measure | value | budget | result |",
        "|---|---|---|---|",
        f"| RSS growth after a {plain.warmup:.0f} s warm-up | {mib(first.rss_kib)} → {mib(last.rss_kib)}: "
        f"**{growth:+.1f} MiB**; second half {plain.slope_mib_per_min():+.2f} MiB/min | "
        f"≤ {GROWTH_BUDGET_MIB:g} MiB, flat "
        f"| {'PASS' if growth <= GROWTH_BUDGET_MIB else '**MISS**'} |",
        f"| CPU per change, first half / second half | {plain.cpu_per_change(first, mid) * 1000:.1f} ms / "
        f"{plain.cpu_per_change(mid, last) * 1000:.1f} ms | flat | "
        f"{'PASS' if plain.cpu_per_change(mid, last) <= 1.2 * plain.cpu_per_change(first, mid) else '**MISS**'} |",
        f"| threads, open fds at rest (fewest in the first half after the warm-up → in the second half) | "
        f"{early.threads} → {late.threads}, {early.fds} → {late.fds} | threads flat; fds within the Vault "
        f"connection pool (+{POOL}) | "
        f"{'PASS' if late.threads <= early.threads and late.fds <= early.fds + POOL else '**MISS**'} |",
        "",
        "| t | VmRSS | CPU | changes | threads | fds |",
        "|---|---|---|---|---|---|",
    ]
    every = max(1, len(plain.samples) // 12)
    for sample in plain.samples[::every] + ([last] if (len(plain.samples) - 1) % every else []):
        lines.append(
            f"| {sample.at:.0f} s | {mib(sample.rss_kib)} | {sample.cpu:.2f} s | {sample.changes} | {sample.threads} "
            f"| {sample.fds} |"
        )
    if traced is not None and traced.heap:
        heap = traced.heap
        lines += [
            "",
            "Under tracemalloc (a second run, same churn): Python heap "
            f"{heap['warm_traced'] / 1048576:.2f} MiB after the warm-up, {heap['traced'] / 1048576:.2f} MiB at the end."
            " Allocation sites that grew most in between:",
            "",
            "| site | grew | blocks |",
            "|---|---|---|",
            *[
                f"| `{site}` | {size / 1024:+.1f} KiB | {count:+d} |"
                for site, size, count in [g for g in heap.get("grown_since_first", []) if "heapshot" not in g[0]][:12]
            ],
        ]
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--step", type=float, default=5.0, help="sampling period, seconds")
    parser.add_argument("--tracemalloc", action="store_true", help="a second run under tracemalloc: what grew")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worktree", action="store_true", help="measure the working tree, not HEAD")
    parser.add_argument("--commit", default="HEAD", help="measure this commit (default HEAD)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="injector-churn-code-") as code_dir:
        os.chdir(code_dir)
        if args.worktree:
            code = "the working tree"
        else:
            commit = common.snapshot_head(Path(code_dir), args.commit)
            common.CODE_PATH = Path(code_dir)
            code = f"commit {commit}"
        print(f"churn for {args.seconds:.0f} s (load {loadavg()})", flush=True)
        vault = DevVault().start()
        try:
            with scratch_space() as scratch:
                configmap = scratch.root / "configmap"
                configmap.mkdir()
                kw: dict[str, Any] = dict(
                    seconds=args.seconds,
                    warmup=args.warmup,
                    step=args.step,
                    tmpfs_root=scratch.root,
                    tmpfs=scratch.tmpfs,
                )
                plain = churn_once(vault, configmap, **kw)
                traced = None
                if args.tracemalloc:
                    with tempfile.TemporaryDirectory(prefix="injector-heap-") as heap:
                        traced = churn_once(vault, configmap, heapshot=Path(heap), **kw)
        finally:
            vault.stop()
    command = "python bench/churn.py" + (" --tracemalloc" if args.tracemalloc else "")
    if args.commit != "HEAD":
        command += f" --commit {args.commit}"
    if args.seconds != 240.0:
        command += f" --seconds {args.seconds:g}"
    text = section(plain, traced, date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), code=code, command=command)
    print(text)
    if not args.no_write:
        write_section(BENCH / "README.md", text, START, END)
        print(f"written to {BENCH / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
