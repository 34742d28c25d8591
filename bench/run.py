"""``make bench``: every benchmark in one run, the table printed and written to bench/README.md.

Starts the dev Vault and moto (behind the delay middleware) on 127.0.0.1, seeds a 100-secret and a
1,000-secret data set, mounts a tmpfs for all output (when root), then runs, in this order:
start-up (5), init against the baseline (1) and its phase breakdown, requests per cycle (2),
propagation (3), footprint (4: idle mixed, idle per backend, idle over TLS, where the memory is, 1,000
values).
The churn run is separate and longer: ``bench/churn.py``. Each benchmark module's docstring says
what it measures and how.

Usage: ``python bench/run.py [--quick] [--no-write] [--worktree | --rev REV]``. ``--quick`` shrinks
every repetition count (for working on the bench itself; its numbers are not the benchmark's) and
implies ``--no-write``. By default the code measured is ``injector/`` as committed at HEAD (or at
``--rev``), extracted to a temp dir and put first on the children's PYTHONPATH: others edit the
working tree while the bench runs. ``--worktree`` measures the working tree instead.

``make bench`` rewrites the results section of bench/README.md, a tracked file: commit it or
``git checkout bench/README.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_calls
import bench_footprint
import bench_init
import bench_propagation
import bench_startup
import common
import report
from backends import Backends
from common import AWS_ENV, BENCH, code_fingerprint, loadavg, machine, scratch_space
from dataset import Dataset
from procs import exit_on_sigterm

#: 40 Vault values (20 KV paths), 30 secrets, 30 parameters over 10 templates.
SMALL = Dataset(prefix="bench100", vault_paths=20, sm=30, ssm=30, templates=10)
#: 400 Vault values (200 KV paths), 300 secrets, 300 parameters over 200 templates.
LARGE = Dataset(prefix="bench1000", vault_paths=200, sm=300, ssm=300, templates=200)
#: 100 values of one backend each, over 10 templates: the idle rows per backend.
SINGLE = {
    "Vault only": Dataset(prefix="vault100", vault_paths=50, sm=0, ssm=0, templates=10),
    "Secrets Manager only": Dataset(prefix="sm100", vault_paths=0, sm=100, ssm=0, templates=10),
    "SSM only": Dataset(prefix="param100", vault_paths=0, sm=0, ssm=100, templates=10),
}
#: 10 Vault values (5 KV paths of the Vault-only set) over 2 templates: the small init.
SMALL_INIT = Dataset(prefix="vault100", vault_paths=5, sm=0, ssm=0, templates=2)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small repetition counts; does not write README")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="measure the working tree's injector/ instead of a snapshot of the commit at HEAD",
    )
    parser.add_argument(
        "--rev",
        default="HEAD",
        help="measure injector/ as committed at REV (its console script must be injector.__main__:main)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="injector-bench-code-") as code_dir:
        # `python -m …` and `python -c …` put the current directory first on sys.path: in the
        # repository that would be the working tree's injector/, whatever PYTHONPATH says.
        os.chdir(code_dir)
        if args.worktree:
            root, code = common.REPO, "the working tree (editable install)"
            common.byte_compile(root / "injector")
        else:
            root = Path(code_dir)
            commit = common.snapshot_head(root, args.rev)
            common.CODE_PATH = root
            code = f"commit {commit} (`git archive {args.rev} injector`; uncommitted edits are not measured)"
        return run(args, root, code)


def run(args: argparse.Namespace, root: Path, code: str) -> int:
    """Runs every benchmark against the ``injector`` package under ``root``."""
    quick = args.quick
    logging.basicConfig(level=logging.WARNING)
    # The seeding clients in this process use the same dummy settings as the processes we start.
    os.environ.update(AWS_ENV)
    started = time.monotonic()
    results = report.Results(
        command="make bench" if not quick else "python bench/run.py --quick",
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        code=code,
    )
    first_print = code_fingerprint(root)
    where = subprocess.run(
        [common.PYTHON, "-c", "import injector; print(injector.__file__)"],
        capture_output=True,
        text=True,
        env=common.child_env(),
        check=True,
    ).stdout.strip()
    if not Path(where).is_relative_to(root):
        raise RuntimeError(f"the processes would import injector from {where}, not from {root}")

    def step(name: str) -> None:
        results.load.append((name, loadavg()))
        print(f"[{time.monotonic() - started:5.0f}s] {name} (load {loadavg()})", flush=True)

    backends = Backends()
    try:
        step("seeding the backends")
        SMALL.seed(backends)
        LARGE.seed(backends)
        for single in SINGLE.values():
            single.seed(backends)
        with scratch_space() as scratch:
            if not scratch.tmpfs:
                print("not root or no mount permission: output goes to a plain temp dir (allow_non_tmpfs)")
            step("5. start-up")
            results.startup = bench_startup.run(
                backends,
                SMALL,
                scratch,
                runs=3 if quick else 7,
                import_runs=1 if quick else 3,
                latency=0.002,
                small=SMALL_INIT,
            )
            step("1. init vs baseline")
            results.init = bench_init.run(backends, SMALL, scratch, latencies=[0.002, 0.020], runs=2 if quick else 7)
            step("1b. init phases")
            results.phases = bench_init.phases(backends, SMALL, scratch, latency=0.002, runs=1 if quick else 3)
            step("2. requests per cycle")
            results.calls = bench_calls.run(backends, SMALL, scratch, cycles=2 if quick else 3, latency=0.002)
            step("3. propagation, polled")
            results.polled = bench_propagation.polled(
                backends, SMALL, scratch, changes=5 if quick else 30, latency=0.002
            )
            step("3. propagation, files")
            results.files = bench_propagation.files(scratch, changes=5 if quick else 30)
            step("4. footprint, idle")
            results.idle = bench_footprint.idle(backends, SMALL, scratch, seconds=10 if quick else 60)
            step("4. footprint, idle per backend")
            for label, single in SINGLE.items():
                results.idle_single.append(
                    bench_footprint.idle(backends, single, scratch, seconds=10, settle=10, label=label)
                )
            step("1, 4. init and idle over TLS")
            tls = Backends(tls=True)
            try:
                for dataset in (SMALL, SINGLE["Vault only"]):
                    dataset.seed(tls)
                for label, dataset in (("mixed", SMALL), ("Vault only", SINGLE["Vault only"])):
                    results.idle_single.append(
                        bench_footprint.idle(tls, dataset, scratch, seconds=10, settle=10, label=f"{label}, over TLS")
                    )
                results.init_tls = bench_init.over_tls(tls, SMALL, scratch, latency=0.002, runs=2 if quick else 7)
            finally:
                tls.close()
            step("4. footprint, where the memory is")
            results.holders = [bench_footprint.holders(backends, SMALL, scratch, label="mixed")]
            results.holders += [
                bench_footprint.holders(backends, single, scratch, label=label) for label, single in SINGLE.items()
            ]
            step("4. footprint, 1,000 secrets")
            results.busy = bench_footprint.busy(backends, LARGE, scratch, latency=0.002)
    finally:
        backends.close()
    results.runtime = time.monotonic() - started
    results.fingerprints = (first_print, code_fingerprint(root))
    if results.fingerprints[0] != results.fingerprints[1]:
        print("WARNING: injector/ changed while the bench ran; the numbers mix two versions", file=sys.stderr)
    step("done")
    print()
    print(report.table(results))
    print()
    print(report.details(results))
    if not (quick or args.no_write):
        report.write_readme(BENCH / "README.md", report.block(results))
        print(f"written to {BENCH / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
