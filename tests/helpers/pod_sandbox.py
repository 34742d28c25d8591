"""PID 1 of a simulated pod: mounts the pod's volumes, then holds its namespaces open.

tests/test_pod_simulation.py runs it as

    unshare --mount --pid --fork --mount-proc --kill-child PYTHON pod_sandbox.py PLAN.json

and then starts each container with ``nsenter --target PID --mount --pid``, the way a container
runtime starts containers in the namespaces of a pod's pause process. PLAN.json:

    {"lifetime": 120, "mounts": [
        {"kind": "tmpfs", "target": "/run/secrets/app", "options": "size=16m,mode=0755"},
        {"kind": "overlay", "target": "/etc", "scratch": "/tmp/.../scratch"},
        {"kind": "bind", "source": "/tmp/.../config", "target": "/etc/injector", "readonly": true}]}

``tmpfs`` is a fresh tmpfs (an emptyDir with ``medium: Memory``); ``overlay`` makes a host folder
writable copy-on-write, the changes kept in a tmpfs mounted at ``scratch`` (a container's own
root filesystem, so that mount points such as /etc/injector are not created on the host);
``bind`` shows a host file or folder (a ConfigMap, a projected volume).

Steps:

1. make every mount of the new namespace private: nothing done here reaches the host;
2. open every bind source first, so that a later mount over a parent (/tmp) cannot hide it;
3. mount in the plan's order, creating mount points only inside the tmpfs and overlay
   filesystems mounted here (never on the host's filesystems);
4. print ``ready`` and wait until stdin closes or ``lifetime`` seconds pass. Exiting as PID 1 of
   the pod's PID namespace makes the kernel kill every process of the pod.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    if _libc.mount(raw(source), raw(target), raw(fstype), ctypes.c_ulong(flags), raw(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def _mount_point(target: Path, *, is_file: bool, owned: set[int]) -> None:
    """Creates ``target`` (folder or empty file) if missing, inside a filesystem mounted here."""
    if target.exists():
        return
    ancestor = next(p for p in target.parents if p.exists())
    if ancestor.stat().st_dev not in owned:
        raise SystemExit(
            f"pod_sandbox: would create {target} on the host's filesystem ({ancestor} is not on a "
            "tmpfs or overlay mounted by this plan): mount one over a parent first"
        )
    if is_file:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    else:
        target.mkdir(parents=True)


def set_up(mounts: list[dict[str, Any]]) -> None:
    # 1. Private: the host never sees these mounts.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # 2. Bind sources, opened before anything covers their paths.
    sources = {i: os.open(m["source"], os.O_PATH) for i, m in enumerate(mounts) if m["kind"] == "bind"}
    owned: set[int] = set()
    # 3. Mounts, in order.
    for i, spec in enumerate(mounts):
        target = Path(spec["target"])
        if spec["kind"] == "tmpfs":
            _mount_point(target, is_file=False, owned=owned)
            _mount("tmpfs", str(target), "tmpfs", 0, spec.get("options", "mode=0755"))
            owned.add(target.stat().st_dev)
        elif spec["kind"] == "overlay":
            scratch = Path(spec["scratch"])
            _mount("tmpfs", str(scratch), "tmpfs", 0, "mode=0700")
            (scratch / "upper").mkdir()
            (scratch / "work").mkdir()
            options = f"lowerdir={target},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
            _mount("overlay", str(target), "overlay", 0, options)
            owned.add(target.stat().st_dev)
        elif spec["kind"] == "bind":
            fd = sources[i]
            _mount_point(target, is_file=not Path(f"/proc/self/fd/{fd}").is_dir(), owned=owned)
            _mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND | MS_REC)
            if spec.get("readonly"):
                _mount(None, str(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            os.close(fd)
        else:
            raise SystemExit(f"pod_sandbox: unknown mount kind {spec['kind']!r}")


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    set_up(plan["mounts"])
    # As PID 1, reap the orphans of the pod (nginx's workers when their master is gone, say).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    # 4. Hold the namespaces until the test closes stdin, or the lifetime ends.
    deadline = time.monotonic() + float(plan.get("lifetime", 120))
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sys.stdin], [], [], left)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            return


if __name__ == "__main__":
    main()
