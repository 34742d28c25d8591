"""Two commits' small ``init``, started in turn: what a change to start-up is worth on a shared machine.

Usage: ``python bench/versus.py REV_A REV_B [--runs N] [--latency MS]``. Prints one line.

Table 5's Vault-only ``init`` (10 values, 2 templates; ``run.SMALL_INIT``) is a median of 7
starts, and the machine's speed moves between runs of the bench by more than many a change to
start-up is worth (bench/README.md). This starts the ``init`` of ``REV_A``'s ``injector/``, then
``REV_B``'s, then ``python -c pass``, ``N`` times in turn after one warm-up round, against the
same dev Vault answering after ``MS`` ms (default 2, as table 5), so that every round sees both
commits on the same machine. Each commit's code is extracted and byte-compiled as ``run.py --rev``
does. Prints the medians, each commit's over ``python -c pass``, and B minus A.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backends import Backends
from common import AWS_ENV, INJECTOR, PYTHON, child_env, median, scratch_space, snapshot_head
from procs import exit_on_sigterm
from run import SMALL_INIT


def wall(command: list[str], env: dict[str, str], out: Path, state: Path) -> float:
    """Wall time of one process, with ``out`` and ``state`` fresh and empty."""
    for folder in (out, state):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, env=env, timeout=120, check=True)
    return time.perf_counter() - started


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs=2, metavar="REV", help="the two commits (any git revision)")
    parser.add_argument("--runs", type=int, default=21, help="rounds measured (default 21)")
    parser.add_argument("--latency", type=float, default=2.0, help="the dev Vault's delay per request, ms")
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    root = Path(tempfile.mkdtemp(prefix="injector-versus-"))
    backends = Backends()
    try:
        codes = []
        for n, rev in enumerate(args.revs):
            folder = root / f"code{n}"
            codes.append((snapshot_head(folder, rev), folder))
        SMALL_INIT.seed(backends)
        backends.set_latency(args.latency / 1000)
        with scratch_space() as scratch:
            work = scratch.root / "versus"
            out, state = work / "out", work / "state"
            config = SMALL_INIT.config(
                backends, folder=work / "config", output_dir=out, tmpfs=scratch.tmpfs, state_dir=state
            )
            init = [INJECTOR, "init", "--config", str(config), "--output-dir", str(out)]
            envs = [child_env({"VAULT_TOKEN": backends.root_token, "PYTHONPATH": str(folder)}) for _, folder in codes]
            walls: list[list[float]] = [[], [], []]
            for n in range(args.runs + 1):
                round_ = [wall(init, env, out, state) for env in envs]
                round_.append(wall([PYTHON, "-c", "pass"], envs[0], out, state))
                if n:  # the first round warms the page cache
                    for kept, value in zip(walls, round_, strict=True):
                        kept.append(value)
    finally:
        backends.close()
        shutil.rmtree(root, ignore_errors=True)
    a, b, bare = (median(w) * 1000 for w in walls)
    (rev_a, _), (rev_b, _) = codes
    print(
        f"{args.runs} rounds at {args.latency:g} ms per request: {rev_a} {a:.1f} ms (+{a - bare:.1f}), "
        f"{rev_b} {b:.1f} ms (+{b - bare:.1f}), python -c pass {bare:.1f} ms; B - A: {b - a:+.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
