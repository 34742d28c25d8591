"""A child that leaves orphans behind: under PID 1 they become zombies unless PID 1 reaps them.

Usage: ``child_orphans.py --out FILE [--count N] [--exit CODE]``.

It forks ``N`` middle processes; each forks a leaf and exits at once, so the leaf is re-parented to
PID 1. The leaves exit after 0.1 s. Once every leaf has exited (it shows as a zombie or is gone), it
writes their pids to FILE as JSON and exits with CODE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--exit", type=int, default=0)
    args = parser.parse_args()
    leaves = []
    for _ in range(args.count):
        read_end, write_end = os.pipe()
        middle = os.fork()
        if middle == 0:
            leaf = os.fork()
            if leaf == 0:
                time.sleep(0.1)
                os._exit(0)
            os.write(write_end, str(leaf).encode())
            os._exit(0)
        os.close(write_end)
        leaves.append(int(os.read(read_end, 32)))
        os.close(read_end)
        os.waitpid(middle, 0)
    deadline = time.monotonic() + 5.0
    while any(_state(pid) not in ("Z", "") for pid in leaves) and time.monotonic() < deadline:
        time.sleep(0.01)
    args.out.write_text(json.dumps(leaves))
    sys.exit(args.exit)


if __name__ == "__main__":
    main()
