"""The processes injector owns (spawn, signal, reap) and the orphans it inherits as PID 1.

``Process`` is one child we spawned. It is signalled only while it has not been reaped, under the
same lock its reaping takes, so a signal never reaches a pid the kernel could have reused; a thread
per process waits for it, so its exit is known at once and never left a zombie.

In a container whose entrypoint is ``injector exec``, injector is PID 1: every process orphaned in
the container (a daemonising script, a ``sh -c "a & b"`` whose parent died) is re-parented to it
and stays a zombie until injector waits for it. Only PID 1 has this duty, so the reaper starts only
when ``os.getpid() == 1``. The hard part is not stealing an exit status somebody else waits for:

* **Owned pids** (every ``Process``) are never reaped by the reaper; should the fallback reaper
  below take one's status anyway, it is handed over to the ``Process`` (the *handoff*).
* **Other children of ours** (``subprocess`` runs of the command notifier) are reaped by their
  ``Popen`` within milliseconds of exiting. The reaper leaves a zombie alone until it has seen it on
  two scans at least ``grace`` apart, so those keep their real status.
* **Orphans** are zombies whose parent is us and that nobody waits for: they outlive the grace and
  are reaped.

Zombies are found by scanning ``/proc`` (``ppid == us`` and state ``Z``). Where ``/proc`` does not
show our own pid namespace the reaper degrades to ``waitpid(-1, WNOHANG)``, which can take a
``Popen``'s status (it then sees exit 0) but still hands owned pids' statuses over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

__all__ = ["Process", "exit_code", "reap_zombies_if_pid1", "signal_name", "spawn"]

logger = logging.getLogger(__name__)

#: The status reported when a status was lost (somebody else reaped the pid and did not hand it
#: over, e.g. a library set SIGCHLD to SIG_IGN). 255 says "unknown failure".
LOST_STATUS = 255 << 8
#: Reset to their default action in a spawned process: Python ignores SIGPIPE/SIGXFSZ, and an
#: ignored signal stays ignored across exec.
_RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
    signal.SIGALRM,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
#: How long to wait for the kernel to report a SIGKILLed process before giving up on it.
REAP_TIMEOUT = 5.0

_lock = threading.Lock()
_owned: set[int] = set()
#: pid -> raw wait status, for owned pids the fallback reaper took. Filled and emptied under _lock.
_handoff: dict[int, int] = {}
_reaper: threading.Thread | None = None
_wake = threading.Event()


def exit_code(status: int) -> int:
    """Returns the shell-style exit code for a wait status: the code, or 128 + N for signal N.

    ``status`` is a raw ``os.waitpid`` status. A negative number is taken as a ``subprocess``
    returncode for a signalled child (``-9`` → 137); a non-negative returncode already is an exit
    code and must not be passed here.
    """
    if status < 0:
        return 128 - status
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def signal_name(signum: int) -> str:
    """Returns ``SIGTERM`` for 15, ``signal 34`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Process:
    """A process we spawned in a process group of its own; see ``spawn``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: Exit code (128 + N for signal N), set the moment it is reaped; None while it runs.
        self.returncode: int | None = None
        self.exited = threading.Event()
        # Reentrant: send() may run in a signal handler that interrupted send() on the same thread.
        self._lock = threading.RLock()

    def send(self, signum: int, *, group: bool = False) -> bool:
        """Sends ``signum`` to the process (or its whole group); False if it has already ended."""
        with self._lock:
            if self.returncode is not None:
                return False
            try:
                if group:
                    os.killpg(self.pid, signum)  # pgid == pid, reserved while the leader is unreaped
                else:
                    os.kill(self.pid, signum)
            except ProcessLookupError:
                return False
        logger.debug("sent %s to pid %d%s", signal_name(signum), self.pid, " and its group" if group else "")
        return True

    def terminate(self, signum: int | None, timeout: float) -> None:
        """Sends ``signum`` (if any), waits up to ``timeout``, then SIGKILLs the process group."""
        if signum is not None:
            self.send(signum)
        if self.exited.wait(timeout):
            return
        logger.warning(
            "pid %d still running %.1fs after %s; sending SIGKILL to its process group",
            self.pid,
            timeout,
            signal_name(signum) if signum is not None else "its stop signal",
        )
        self.send(signal.SIGKILL, group=True)
        if not self.exited.wait(REAP_TIMEOUT):
            logger.error("pid %d did not exit %.0fs after SIGKILL", self.pid, REAP_TIMEOUT)

    def _watch(self, on_exit: Callable[[Process, int], None]) -> None:
        # 1. Wait for the exit but leave the zombie, so the pid stays ours until step 2. ECHILD: the
        #    fallback reaper already took it, and step 2 finds the status in the handoff table.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        # 2. Reap it (immediate: it is a zombie) while send() is held off.
        with self._lock:
            code = self.returncode = exit_code(_reap_owned(self.pid))
        with _lock:
            _owned.discard(self.pid)
        self.exited.set()
        try:
            on_exit(self, code)
        except Exception:
            logger.exception("exit handler of pid %d failed", self.pid)


def spawn(
    path: str, argv: Sequence[str], env: Mapping[str, str], *, on_exit: Callable[[Process, int], None]
) -> Process:
    """Starts ``path`` in a new process group, with signal dispositions and mask reset.

    ``on_exit(process, exit_code)`` is called on the process's watcher thread once it is reaped.

    Raises:
        OSError: the program could not be executed (glibc reports exec failures to the caller).
    """
    pid = os.posix_spawn(path, list(argv), dict(env), setpgroup=0, setsigmask=(), setsigdef=_RESET_SIGNALS)
    with _lock:
        # Only after the spawn returns, but a zombie waits out the reaper's grace: never stolen.
        _owned.add(pid)
    process = Process(pid)
    threading.Thread(target=process._watch, args=(on_exit,), name=f"pid-{pid}", daemon=True).start()
    return process


def _reap_owned(pid: int) -> int:
    """Reaps an owned, exited ``pid``; returns its raw status, from the handoff if already taken."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        # The fallback reaper stores the status under _lock in the same step as it reaps, so once
        # we hold _lock the status is there, or it was lost to someone else entirely.
        with _lock:
            handed = _handoff.pop(pid, None)
    if handed is None:
        logger.warning("exit status of pid %d was taken by another waiter; reporting 255", pid)
        return LOST_STATUS
    return handed


def reap_zombies_if_pid1(*, interval: float = 30.0, grace: float = 1.0) -> bool:
    """Starts the orphan reaper if this process is PID 1; returns whether it runs (idempotent).

    Args:
        interval: the longest time between scans when no SIGCHLD wakes the reaper earlier.
        grace: how long a zombie that is not ours to reap is left to its own waiter first.

    Call it from the main thread so a SIGCHLD handler wakes the reaper at once; from another thread
    it still works, by polling every ``interval``.
    """
    global _reaper
    if os.getpid() != 1:
        return False
    with _lock:
        if _reaper is not None:
            return True
        use_proc = _proc_is_ours()
        if not use_proc:
            logger.warning(
                "/proc does not show this pid namespace; reaping with waitpid(-1), "
                "which can hide the exit status of notifier commands"
            )
        _reaper = threading.Thread(target=_run, args=(interval, grace, use_proc), name="zombie-reaper", daemon=True)
        _wake.set()  # a first scan at once, for zombies already there
        _reaper.start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, _on_sigchld)
    logger.info("running as PID 1: reaping orphaned processes")
    return True


def _on_sigchld(signum: int, frame: FrameType | None) -> None:
    _wake.set()


def _run(interval: float, grace: float, use_proc: bool) -> None:
    seen: dict[int, float] = {}
    while True:
        _wake.wait(grace if seen else interval)
        _wake.clear()
        try:
            if use_proc:
                seen = _reap_scan(seen, time.monotonic(), grace)
            else:
                _reap_fallback()
        except OSError as exc:  # never let the reaper die: zombies would pile up
            logger.warning("zombie reaper: %s", exc)


def _reap_scan(seen: dict[int, float], now: float, grace: float) -> dict[int, float]:
    """Reaps the zombie children that are not owned and were first seen ``grace`` ago or more.

    Returns the zombies still waiting out their grace, with when each was first seen.
    """
    with _lock:
        owned = set(_owned)
    waiting: dict[int, float] = {}
    for pid in _zombie_children():
        if pid in owned:
            continue
        first = seen.get(pid, now)
        if now - first < grace:
            waiting[pid] = first
            continue
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # its own waiter was faster
        if reaped:
            logger.debug("reaped orphaned pid %d (exit %d)", pid, exit_code(status))
    return waiting


def _reap_fallback() -> None:
    """Reaps every exited child with ``waitpid(-1)``; an owned pid's status goes to the handoff."""
    while True:
        with _lock:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # no children at all
            if pid == 0:
                return
            if pid in _owned:
                _handoff[pid] = status
                continue
        logger.debug("reaped orphaned pid %d (exit %d)", pid, exit_code(status))


def _zombie_children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        state, ppid = _stat(entry.name)
        if state == "Z" and ppid == me:
            found.append(int(entry.name))
    return found


def _stat(pid: str) -> tuple[str, int]:
    """Returns (state, ppid) from /proc/PID/stat, or ("", 0) if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", 0
    # The command name is in parentheses and may itself contain ") ": split at the last one.
    fields = text.rpartition(")")[2].split()
    return (fields[0], int(fields[1])) if len(fields) > 1 else ("", 0)


def _proc_is_ours() -> bool:
    try:
        return int(Path("/proc/self/stat").read_text(encoding="utf-8").split()[0]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False
