"""Signal notifiers: ``process: NAME``, ``pidfile: PATH`` (with ``process: NAME``) and exec mode's ``child: true``.

The app shares the pod: it may start processes with any name and write any pid into its pidfile.
So a process is signalled only when, read from /proc at the moment of signalling:

* its executable name (``/proc/PID/comm``, or the basename of ``argv[0]``) is the ``process:`` name;
* it runs as the expected user: its real, effective and saved UIDs are all ``user:`` (default: the
  injector's own effective UID; ``user: any`` lifts the check).

``process: NAME`` signals every such process whose parent is not a match too (nginx's master, not
its workers). A process it may not signal (another user's, or EPERM) is skipped with a log line, and
the others still get the signal; only when none got it is that an error. ``pidfile: PATH`` signals
the pid in PATH only if that process passes both checks, else raises an error naming the pidfile.

The check and the signal go through a pidfd (``pidfd_open``, read /proc, ``pidfd_send_signal``): a
pid that is reused between the check and the signal belongs to a process the pidfd does not
refer to, so the signal cannot reach it. Kernels without pidfds (before 5.3) fall back to ``kill``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from injector.config.model import SignalNotify
from injector.errors import NotifyError

logger = logging.getLogger(__name__)

_PROC = Path("/proc")
#: A pidfile is a number and a newline; reading more than this is never needed.
_PIDFILE_MAX = 64
#: How many skipped processes an error message lists.
_SHOWN = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """What /proc says about one process: enough to decide whether to signal it, and to log whom."""

    pid: int
    ppid: int
    comm: str
    names: frozenset[str]
    #: real, effective and saved UID.
    uids: tuple[int, int, int]

    def label(self) -> str:
        """``pid 7 (nginx, uid 101)``; the three UIDs when they differ."""
        uid = str(self.uids[0]) if len(set(self.uids)) == 1 else "/".join(map(str, self.uids))
        return f"pid {self.pid} ({self.comm}, uid {uid})"


def read_process(pid: int, *, proc: Path = _PROC) -> ProcessInfo | None:
    """Returns what /proc says about ``pid``, or None if it is gone, a zombie or a kernel thread."""
    base = proc / str(pid)
    try:
        stat_line = (base / "stat").read_text(errors="replace")
        comm = (base / "comm").read_text(errors="replace").rstrip("\n")
        cmdline = (base / "cmdline").read_bytes()
        status = (base / "status").read_text(errors="replace")
    except OSError:
        return None
    # stat is "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so split after the last ")".
    fields = stat_line.rpartition(")")[2].split()
    uid_line = next((line.split()[1:4] for line in status.splitlines() if line.startswith("Uid:")), [])
    if len(fields) < 2 or fields[0] in ("Z", "X") or not cmdline or len(uid_line) != 3:
        return None
    names = {comm}
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    if argv0:
        names.add(os.path.basename(argv0))
    uids = (int(uid_line[0]), int(uid_line[1]), int(uid_line[2]))
    return ProcessInfo(pid=pid, ppid=int(fields[1]), comm=comm, names=frozenset(names), uids=uids)


def matches(info: ProcessInfo, name: str) -> bool:
    """True when ``name`` is the process's comm or argv[0] basename."""
    # The kernel truncates comm to 15 bytes (TASK_COMM_LEN - 1).
    return name in info.names or (len(name) > 15 and name[:15] in info.names)


def find_processes(name: str, *, proc: Path = _PROC) -> list[ProcessInfo]:
    """Returns, by pid, the visible processes named ``name`` that are not ourselves and whose parent
    is not named ``name`` too (so nginx's master, not its workers), whoever runs them."""
    name = os.path.basename(name)
    me = os.getpid()
    found: dict[int, ProcessInfo] = {}
    for pid in _iter_pids(proc):
        # Ourselves excluded first, so that in exec mode a same-named child still counts as a master.
        info = read_process(pid, proc=proc) if pid != me else None
        if info is not None and matches(info, name):
            found[pid] = info
    return [info for pid, info in sorted(found.items()) if info.ppid not in found]


def _iter_pids(proc: Path) -> Iterator[int]:
    try:
        entries = os.listdir(proc)
    except OSError as exc:
        raise NotifyError(f"cannot list processes in {proc}: {exc.strerror}") from exc
    for entry in entries:
        if entry.isdigit():
            yield int(entry)


class _Refused(Exception):
    """The process at the pid is not one we may signal; the message says why."""


class SignalNotifier:
    """Sends a signal to the processes found by name, to the pid in a pidfile, or to exec mode's child."""

    def __init__(self, config: SignalNotify, *, child: Callable[[], int | None] | None = None) -> None:
        self._config = config
        self._child = child
        self._signame = signal.Signals(config.signal).name

    def describe(self) -> str:
        return self._config.describe()

    def notify(self) -> None:
        config = self._config
        if config.pidfile is not None:
            self._signal_pidfile(config.pidfile, os.path.basename(config.process or ""))
        elif config.process is not None:
            self._signal_by_name(config.process)
        else:
            self._signal_child()

    # --- the checks ---------------------------------------------------------------------------------

    def _expected_uid(self) -> int | None:
        user = self._config.user
        if user == "any":
            return None
        return os.geteuid() if user is None else user

    def _check(self, info: ProcessInfo | None, name: str) -> ProcessInfo:
        """Returns ``info`` if it is a process named ``name`` of the expected user; raises _Refused."""
        if info is None:
            raise ProcessLookupError
        if not matches(info, name):
            raise _Refused(f"{info.label()} is not named {name}")
        uid = self._expected_uid()
        if uid is not None and set(info.uids) != {uid}:
            raise _Refused(f"{info.label()} does not run as uid {uid}")
        return info

    def _send_checked(self, pid: int, name: str) -> ProcessInfo:
        """Signals ``pid`` if it is a process named ``name`` of the expected user, checked through a pidfd.

        Raises:
            _Refused: the process is not one to signal.
            ProcessLookupError: it is gone.
            PermissionError: the kernel refused the signal.
        """
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise ProcessLookupError from None
            if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                raise
            # No pidfds here: check, then kill (a pid reused in between would get the signal).
            info = self._check(read_process(pid), name)
            os.kill(pid, self._config.signal)
            return info
        try:
            info = self._check(read_process(pid), name)
            signal.pidfd_send_signal(pidfd, self._config.signal)
        finally:
            os.close(pidfd)
        return info

    # --- the targets --------------------------------------------------------------------------------

    def _signal_by_name(self, name: str) -> None:
        candidates = find_processes(name)
        if not candidates:
            raise NotifyError(
                f"{self.describe()}: no process named {name} is visible: enable shareProcessNamespace "
                f"in the pod spec, and check the app runs as an executable named {name} (its "
                "/proc/PID/comm or argv[0]); for an interpreted app, use pidfile: instead"
            )
        sent, skipped = 0, []
        for candidate in candidates:
            try:
                info = self._send_checked(candidate.pid, name)
            except ProcessLookupError:
                logger.debug("%s exited before %s reached it", candidate.label(), self._signame)
                continue
            except _Refused as exc:
                logger.debug("not signalling %s: %s", candidate.label(), exc)
                skipped.append(str(exc))
                continue
            except PermissionError:
                logger.warning("%s: not allowed to signal %s; skipped it", self.describe(), candidate.label())
                skipped.append(f"{candidate.label()} may not be signalled")
                continue
            logger.info("sent %s to %s", self._signame, info.label())
            sent += 1
        if sent:
            return
        if not skipped:
            raise NotifyError(f"{self.describe()}: every process named {name} exited before it was signalled")
        uid = self._expected_uid()
        shown = "; ".join(skipped[:_SHOWN]) + (f"; and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else "")
        raise NotifyError(
            f"{self.describe()}: signalled no process: {shown}. Set user: to the app's UID"
            + ("" if uid is None else f" (expected uid {uid})")
            + "; to signal another user's process the sidecar needs that UID or the CAP_KILL capability"
        )

    def _signal_pidfile(self, path: Path, name: str) -> None:
        pid = self._read_pidfile(path)
        try:
            info = self._send_checked(pid, name)
        except ProcessLookupError:
            raise NotifyError(f"{self.describe()}: no process with pid {pid} (pidfile {path} is stale)") from None
        except _Refused as exc:
            raise NotifyError(
                f"{self.describe()}: pidfile {path} names {exc}: not signalled (the app can write its "
                f"pidfile, so only a process named {name} of the expected user is signalled; see user:)"
            ) from None
        except PermissionError:
            raise NotifyError(
                f"{self.describe()}: not allowed to signal pid {pid} from pidfile {path}: the sidecar must run "
                "as the same UID as the app, or have the CAP_KILL capability"
            ) from None
        logger.info("sent %s to %s from pidfile %s", self._signame, info.label(), path)

    def _signal_child(self) -> None:
        pid = self._child() if self._child is not None else None
        if pid is None:
            raise NotifyError(f"{self.describe()}: no child process is running to signal")
        try:
            os.kill(pid, self._config.signal)
        except ProcessLookupError:
            raise NotifyError(f"{self.describe()}: the child (pid {pid}) has exited") from None
        except PermissionError:
            raise NotifyError(
                f"{self.describe()}: not allowed to signal the child (pid {pid}): the sidecar must run as the "
                "same UID as the app, or have the CAP_KILL capability"
            ) from None
        logger.info("sent %s to the child (pid %d)", self._signame, pid)

    def _read_pidfile(self, path: Path) -> int:
        """Returns the pid in ``path``; never shows what else the file holds (it may be a planted link)."""
        try:
            # O_NONBLOCK: a FIFO planted as the pidfile must not hang the notifier.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:
            raise NotifyError(f"{self.describe()}: pidfile {path} does not exist; is the app running?") from None
        except OSError as exc:
            raise NotifyError(f"{self.describe()}: cannot read pidfile {path}: {exc.strerror}") from None
        with contextlib.closing(os.fdopen(fd, "rb")) as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotifyError(f"{self.describe()}: pidfile {path} is not a regular file")
            text = fh.read(_PIDFILE_MAX).decode("ascii", errors="replace").strip()
        if not text.isdigit() or int(text) <= 0:
            raise NotifyError(f"{self.describe()}: pidfile {path} does not hold a pid (a positive number)")
        pid = int(text)
        if pid == os.getpid():
            raise NotifyError(f"{self.describe()}: pidfile {path} names injector itself (pid {pid})")
        return pid
