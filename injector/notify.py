"""Notifiers: tell the app its files changed, by signal, HTTP request or command.

Each notifier makes ONE attempt per :meth:`Notifier.notify` and raises :class:`NotifyError` with a
message naming the target, what failed and what to check. Coalescing bursts of changes and retrying
with backoff is the job of :class:`injector.coalesce.Dispatcher` (re-exported here).

Notifiers never see secret values: they get the config's target (process name, URL, argv) only.

Signal targets, in a pod (``shareProcessNamespace: true`` is needed for ``process:``):

* ``process: NAME`` signals every visible process whose executable name (``/proc/PID/comm``, or the
  basename of ``argv[0]``) is NAME, except ourselves and except processes whose parent also matches:
  nginx's master gets SIGHUP, its workers (children named nginx too) do not.
* ``pidfile: PATH`` signals the pid written in PATH.
* ``child: true`` (exec mode) signals the child injector started.

Commands run with the sidecar's own environment, unchanged (so anything in it, such as
``VAULT_TOKEN`` if you set one there, is visible to the command), stdin from /dev/null, in a new
session so that a timeout kills the whole process group.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from injector.coalesce import Dispatcher, NotifyMetrics
from injector.config import CommandNotify, HttpNotify, NotifyConfig, SignalNotify
from injector.errors import NotifyError

__all__ = [
    "CommandNotifier",
    "Dispatcher",
    "HttpNotifier",
    "Notifier",
    "NotifyMetrics",
    "SignalNotifier",
    "build_notifier",
    "find_processes",
]

logger = logging.getLogger(__name__)

#: How much of a failed HTTP response body goes into the error message.
MAX_BODY_CHARS = 200
#: How many trailing lines of a failed command's stderr go into the error message.
STDERR_TAIL_LINES = 5
_PROC = Path("/proc")


class Notifier(Protocol):
    """**Protocol:** one way to tell the app to reload."""

    def describe(self) -> str:
        """Returns a log-safe label: ``signal SIGHUP → nginx``, ``http POST http://…/-/reload``."""
        ...

    def notify(self) -> None:
        """Makes one attempt; raises :class:`NotifyError` saying what failed and what to check."""
        ...


# --- signal -------------------------------------------------------------------------------------


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


# --- http ---------------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """Returns ``url`` without credentials, query or fragment (tokens live there), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a garbled port: show none rather than fail while reporting
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A reload endpoint that redirects is misconfigured; following it would turn POST into GET.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpNotifier:
    """Sends one HTTP request (POST by default, no body); any 2xx status is success.

    Redirects are not followed and proxy environment variables are ignored: the target is the app
    in the same pod. Headers are sent but never logged (they may hold a token).
    """

    def __init__(self, config: HttpNotify) -> None:
        if urlsplit(config.url).scheme not in ("http", "https"):
            raise NotifyError(f"http {config.method} {_safe_url(config.url)}: expected an http:// or https:// URL")
        self._config = config
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._label = f"http {config.method} {_safe_url(config.url)}"

    def describe(self) -> str:
        return self._label

    def notify(self) -> None:
        config = self._config
        # The scheme is http or https: checked in __init__ (and by the config loader).
        request = urllib.request.Request(  # noqa: S310
            config.url, method=config.method, headers=dict(config.headers)
        )
        try:
            with self._opener.open(request, timeout=config.timeout) as response:
                status = response.status
                reason = response.reason
        except urllib.error.HTTPError as exc:
            body = _read_some(exc)
            raise NotifyError(
                f"{self.describe()}: the app answered {exc.code} {exc.reason}"
                + (f": {body}" if body else "")
                + "; check the reload endpoint, method and headers"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(why, TimeoutError):
                raise NotifyError(
                    f"{self.describe()}: no answer within {config.timeout:g}s; is the app up and the URL right?"
                ) from None
            raise NotifyError(f"{self.describe()}: request failed: {why}; is the app listening there?") from None
        if not 200 <= status < 300:
            raise NotifyError(f"{self.describe()}: the app answered {status} {reason}, expected a 2xx status")
        logger.info("%s answered %d", self.describe(), status)


def _read_some(exc: urllib.error.HTTPError) -> str:
    try:
        data = exc.read(MAX_BODY_CHARS * 4)
    except OSError:
        return ""
    finally:
        exc.close()
    text = " ".join(data.decode("utf-8", errors="replace").split())
    return text[:MAX_BODY_CHARS] + ("…" if len(text) > MAX_BODY_CHARS else "")


# --- command ------------------------------------------------------------------------------------


def _tail(data: bytes, lines: int = STDERR_TAIL_LINES) -> str:
    text = data.decode("utf-8", errors="replace").rstrip()
    kept = [line[:200] for line in text.splitlines()[-lines:]]
    return "\n".join(kept)


class CommandNotifier:
    """Runs an argv (never through a shell) and waits for it; exit 0 is success.

    The command gets ``environ`` (the sidecar passes its own environment without the Vault token,
    injector's settings, AWS keys and the variables behind ``env:`` references), reads /dev/null,
    and runs in a new session: on timeout its whole process group is killed, grandchildren
    included.
    """

    def __init__(self, config: CommandNotify, *, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._environ = dict(environ) if environ is not None else None

    def describe(self) -> str:
        return self._config.describe()

    def notify(self) -> None:
        argv, timeout = list(self._config.argv), self._config.timeout
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self._environ,
            )
        except OSError as exc:
            raise NotifyError(f"{self.describe()}: cannot start {argv[0]}: {exc.strerror}") from None
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                # Something left the group but holds our pipes: stop waiting for it.
                proc.kill()
                proc.wait(timeout=5)
            raise NotifyError(
                f"{self.describe()}: still running after {timeout:g}s; killed its process group"
            ) from None
        if proc.returncode != 0:
            tail = _tail(stderr) or _tail(stdout)
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0 and -proc.returncode in signal.valid_signals()
                else f"exited with code {proc.returncode}"
            )
            raise NotifyError(f"{self.describe()}: {how}" + (f"; last output:\n{tail}" if tail else ""))
        logger.info("%s exited 0", self.describe())


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        logger.warning("not allowed to kill process group %d of a timed-out command", pgid)


# --- factory ------------------------------------------------------------------------------------


def build_notifier(
    config: NotifyConfig,
    *,
    child: Callable[[], int | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Notifier:
    """Returns the notifier for one ``on_change`` entry; ``child`` gives exec mode's child pid,
    ``environ`` the environment of command notifiers (default: the sidecar's own)."""
    if isinstance(config, SignalNotify):
        return SignalNotifier(config, child=child)
    if isinstance(config, HttpNotify):
        return HttpNotifier(config)
    return CommandNotifier(config, environ=environ)
