"""Runs a command and records its peak resident memory: ``maxrss.py OUT_FILE CMD ARGS…``.

The test process cannot measure this itself: a child's ``ru_maxrss`` includes the memory of the
process that forked it (the kernel records the parent's high-water mark at exec), and pytest is
large. Forked from this small process instead, the command's figure is its own. Writes the peak in
KiB to OUT_FILE and exits with the command's exit code (128 + N when a signal N ended it).
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    proc = subprocess.Popen(argv)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped above
    with open(out, "w") as fh:
        fh.write(str(rusage.ru_maxrss))
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
