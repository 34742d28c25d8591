"""Signal notifiers: ``process: NAME``, ``pidfile: PATH`` and exec mode's ``child: true``."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from injector.config.model import SignalNotify
from injector.errors import NotifyError

logger = logging.getLogger(__name__)


#: How much of a failed HTTP response body goes into the error message.
MAX_BODY_CHARS = 200
#: How many trailing lines of a failed command's stderr go into the error message.
STDERR_TAIL_LINES = 5
_PROC = Path("/proc")



@dataclass(frozen=True, slots=True, kw_only=True)
class _Proc:
    pid: int
    ppid: int
    names: frozenset[str]


def _read_proc(pid: int, proc: Path) -> _Proc | None:
    """Returns a process's pid, parent and names, or None if it is gone, a zombie or a kernel thread."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text(errors="replace")
        comm = (base / "comm").read_text(errors="replace").rstrip("\n")
        cmdline = (base / "cmdline").read_bytes()
    except OSError:
        return None
    # stat is "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so split after the last ")".
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 2 or fields[0] in ("Z", "X") or not cmdline:
        return None
    names = {comm}
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    if argv0:
        names.add(os.path.basename(argv0))
    return _Proc(pid=pid, ppid=int(fields[1]), names=frozenset(names))


def _matches(proc: _Proc, name: str) -> bool:
    # The kernel truncates comm to 15 bytes (TASK_COMM_LEN - 1).
    return name in proc.names or (len(name) > 15 and name[:15] in proc.names)


def find_processes(name: str, *, proc: Path = _PROC) -> list[int]:
    """Returns the pids to signal for executable ``name``: every visible match that is not ourselves
    and whose parent is not a match too (so nginx's master, not its workers)."""
    name = os.path.basename(name)
    me = os.getpid()
    found: dict[int, _Proc] = {}
    for pid in _iter_pids(proc):
        # Ourselves excluded first, so that in exec mode a same-named child still counts as a master.
        info = _read_proc(pid, proc) if pid != me else None
        if info is not None and _matches(info, name):
            found[pid] = info
    return sorted(pid for pid, info in found.items() if info.ppid not in found)


def _iter_pids(proc: Path) -> Iterator[int]:
    try:
        entries = os.listdir(proc)
    except OSError as exc:
        raise NotifyError(f"cannot list processes in {proc}: {exc.strerror}") from exc
    for entry in entries:
        if entry.isdigit():
            yield int(entry)


class SignalNotifier:
    """Sends a signal to a process found by name, by pidfile, or to exec mode's child."""

    def __init__(self, config: SignalNotify, *, child: Callable[[], int | None] | None = None) -> None:
        self._config = config
        self._child = child
        self._signame = signal.Signals(config.signal).name

    def describe(self) -> str:
        return self._config.describe()

    def notify(self) -> None:
        config = self._config
        if config.process is not None:
            self._signal_by_name(config.process)
        elif config.pidfile is not None:
            self._send(self._read_pidfile(config.pidfile), f"pid from {config.pidfile}")
        else:
            pid = self._child() if self._child is not None else None
            if pid is None:
                raise NotifyError(f"{self.describe()}: no child process is running to signal")
            self._send(pid, "the child process")

    def _signal_by_name(self, name: str) -> None:
        pids = find_processes(name)
        if not pids:
            raise NotifyError(
                f"{self.describe()}: no process named {name} is visible: enable shareProcessNamespace "
                f"in the pod spec, and check the app runs as an executable named {name} (its "
                "/proc/PID/comm or argv[0]); for an interpreted app, use pidfile: instead"
            )
        sent = 0
        for pid in pids:
            try:
                self._send(pid, f"process {name}")
            except ProcessLookupError:
                logger.debug("process %s (pid %d) exited before %s reached it", name, pid, self._signame)
                continue
            sent += 1
        if not sent:
            raise NotifyError(f"{self.describe()}: every process named {name} exited before it was signalled")

    def _read_pidfile(self, path: Path) -> int:
        try:
            text = path.read_text(errors="replace").strip()
        except FileNotFoundError:
            raise NotifyError(f"{self.describe()}: pidfile {path} does not exist; is the app running?") from None
        except OSError as exc:
            raise NotifyError(f"{self.describe()}: cannot read pidfile {path}: {exc.strerror}") from None
        if not text.isdigit() or int(text) <= 0:
            shown = text[:40] + ("…" if len(text) > 40 else "")
            raise NotifyError(f"{self.describe()}: pidfile {path} does not hold a pid (it holds {shown!r})")
        pid = int(text)
        if pid == os.getpid():
            raise NotifyError(f"{self.describe()}: pidfile {path} names injector itself (pid {pid})")
        return pid

    def _send(self, pid: int, what: str) -> None:
        """Signals ``pid``; ProcessLookupError is mapped for pidfile and child, re-raised for names."""
        try:
            os.kill(pid, self._config.signal)
        except ProcessLookupError:
            if self._config.process is not None:
                raise
            where = f"pidfile {self._config.pidfile}" if self._config.pidfile else "the child"
            raise NotifyError(f"{self.describe()}: no process with pid {pid} ({where} is stale)") from None
        except PermissionError:
            raise NotifyError(
                f"{self.describe()}: not allowed to signal {what} (pid {pid}): the sidecar must run as the "
                "same UID as the app, or have the CAP_KILL capability"
            ) from None
        logger.info("sent %s to %s (pid %d)", self._signame, what, pid)
