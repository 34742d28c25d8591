"""A minimal ``injector exec``: runs a command under ``Child`` with signal forwarding (and, with
``--reap``, the PID-1 reaper), then exits with the child's code, as the CLI does.

Usage: ``child_supervise.py --ready FILE --report FILE [--reap] [--kill-timeout S] -- CMD...``.

FILE ``--ready`` gets ``{"pid", "child"}`` once the child runs; ``--report`` gets ``{"pid", "code",
"zombies"}`` at the end, where ``zombies`` lists every zombie in /proc (in a fresh pid namespace,
all of them are this process's). With ``--reap`` it first waits (up to 5 s) for the reaper to clear
them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from injector.config.model import ExecConfig
from injector.process.child import Child, install_signal_forwarding
from injector.process.spawn import reap_zombies_if_pid1


def zombies() -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                state = Path(f"/proc/{entry.name}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state == "Z":
                found.append(int(entry.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--reap", action="store_true")
    parser.add_argument("--kill-timeout", type=float, default=5.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    if args.reap:
        reap_zombies_if_pid1(grace=0.1, interval=0.5)
    wake = threading.Event()
    child = Child(
        args.command, env_factory=dict, config=ExecConfig(kill_timeout=args.kill_timeout), on_exit=lambda _: wake.set()
    )
    install_signal_forwarding(child, on_terminate=wake.set)
    child.start()
    args.ready.with_suffix(".tmp").write_text(json.dumps({"pid": os.getpid(), "child": child.pid}))
    args.ready.with_suffix(".tmp").rename(args.ready)
    deadline = time.monotonic() + 30.0
    while not wake.is_set() and time.monotonic() < deadline:
        wake.wait(0.1)
    code = child.stop()
    deadline = time.monotonic() + 15.0  # a polling deadline: generous for a loaded CI box
    while args.reap and zombies() and time.monotonic() < deadline:
        time.sleep(0.02)
    args.report.write_text(json.dumps({"pid": os.getpid(), "code": code, "zombies": zombies()}))
    sys.exit(code)


if __name__ == "__main__":
    main()
