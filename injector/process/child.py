"""``injector exec``: the supervised child process (consul-template's ``child/``).

Rules, exactly:

1. **The child's own exit ends injector.** When the child exits by itself, ``on_exit(code)`` is
   called once and injector exits with ``code`` (128 + N if signal N killed it), as consul-template
   does. A crashing app is not silently restarted.
2. **Except right after a restart we caused.** A child started by ``restart()`` (an environment
   change), or by a retry of rule 2, that exits by itself within ``quick_exit`` seconds (1 s) of its
   start is started again, with a fresh environment, after a ``Backoff(restart_min_backoff,
   restart_max_backoff)`` delay: new secrets can take a moment to work (a database password
   propagating), and the next refresh may bring a fixed value. After ``max_quick_restarts`` (5)
   such retries in a row, the last exit code is final (rule 1). The back-off count starts over once
   a child has run for ``quick_exit`` seconds. A child that a forwarded SIGTERM/SIGINT ended is
   never retried: injector is stopping too.
3. **A child that lived longer exits for good.** A change-restarted child that exits by itself
   after ``quick_exit`` seconds ends injector (rule 1): that is a crash, not a start-up failure.
4. **Stopping is final.** After ``stop()`` nothing is started again, whatever is pending.

Process group: the child is spawned in a **process group of its own** (same session, so it keeps
the terminal for output). A terminal's Ctrl-C (sent to the foreground group) or a ``kill -- -PGID``
therefore reaches injector only, and injector forwards it: the child gets every signal exactly
once. Forwarded and reload signals and ``kill_signal`` go to the child's pid only (as tini does); the
SIGKILL after ``kill_timeout`` goes to its whole group, so no grandchild holding old secrets lives
on. Trade-off: a child that reads from an interactive terminal is in a background group and would
get SIGTTIN; exec mode is for services, not interactive programs.

Secrets reach the child through its environment only (never its command line), and logs carry
pids, program names and reasons, never environment values.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from injector.backoff import Backoff
from injector.config.model import ExecConfig
from injector.errors import ConfigError
from injector.process.environment import child_environment
from injector.process.spawn import Process, exit_code, reap_zombies_if_pid1, signal_name, spawn

__all__ = [
    "FORWARDED_SIGNALS",
    "Child",
    "exit_code",
    "install_signal_forwarding",
    "reap_zombies_if_pid1",
]

logger = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_TERMINATING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


@dataclass(slots=True, eq=False)
class _Run:
    """One start of the child: the process and what the supervisor knows about it."""

    process: Process
    started: float
    #: Started by restart() or a retry: a quick death is retried (rule 2).
    probation: bool
    #: We are stopping or replacing it: its exit is not "by itself".
    expected: bool = False
    #: A terminating signal already went to it (forwarded SIGTERM/SIGINT, or kill_signal).
    terminating: bool = False

    @property
    def running(self) -> bool:
        return self.process.returncode is None


class Child:
    """The process ``injector exec`` runs and supervises.

    Args:
        argv: the command; ``argv[0]`` is looked up on the child's own ``PATH``.
        env_factory: returns the granted variables (the rendered ``env:`` map), called at every
            start; the child's environment is ``child_environment(base_env, env_factory(), ...)``.
        config: kill signal and timeout, splay, restart back-off, env allow/deny globs.
        on_exit: called once, with the exit code, when the child exits by itself for good (rules 1
            to 3); never for ``stop()``. It runs on a supervisor thread: keep it short (set an
            Event) and thread-safe.
        base_env: the environment the child inherits from (default: ours, read at construction).
        quick_exit: a change-restarted child dying sooner than this is retried (rule 2).
        max_quick_restarts: how many such retries in a row before the exit is final.
        clock: monotonic seconds, for measuring how long a child lived.
        rng: returns a float in [0, 1) for the splay.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env_factory: Callable[[], Mapping[str, str]],
        config: ExecConfig,
        on_exit: Callable[[int], None] | None = None,
        base_env: Mapping[str, str] | None = None,
        quick_exit: float = 1.0,
        max_quick_restarts: int = 5,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not argv:
            raise ConfigError("exec: no command given; usage: injector exec --config FILE -- CMD [ARGS...]")
        self._argv = tuple(argv)
        self._env_factory = env_factory
        self._config = config
        self._on_exit = on_exit
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._quick_exit = quick_exit
        self._max_quick_restarts = max_quick_restarts
        self._clock = clock
        self._rng = rng
        self._backoff = Backoff(config.restart_min_backoff, config.restart_max_backoff)
        # _cond guards the state below; _op serialises restart() and stop(). Signal handlers take
        # neither (they could interrupt the main thread while it holds one): see signal().
        self._cond = threading.Condition(threading.Lock())
        self._op = threading.Lock()
        self._run: _Run | None = None
        self._started = False
        self._stopping = False
        self._final: int | None = None
        #: Bumped by every restart() and every spawn: a pending start of an older one gives up.
        self._generation = 0
        self._quick_deaths = 0

    @property
    def program(self) -> str:
        """The command's name, the label of this child in logs."""
        return os.path.basename(self._argv[0])

    @property
    def pid(self) -> int | None:
        """The running child's pid, or None between runs and after the end."""
        run = self._run
        return run.process.pid if run is not None and run.running else None

    @property
    def returncode(self) -> int | None:
        """The final exit code, once the child has exited for good or ``stop()`` has returned."""
        return self._final

    def start(self) -> None:
        """Starts the child with ``env_factory()``'s variables.

        Raises:
            ConfigError: the command cannot be run (not found, not executable).
            RuntimeError: called twice.
        """
        with self._cond:
            if self._started:
                raise RuntimeError("Child.start() called twice")
            self._started = True
        granted = self._env_factory()
        with self._cond:
            if self._stopping:
                return
            try:
                self._spawn_locked(granted, probation=False)
            except OSError as exc:
                raise ConfigError(
                    f"exec: cannot start {self._argv[0]!r}: {exc.strerror or exc}; check the command "
                    "and the PATH it is looked up on"
                ) from None

    def signal(self, signum: int) -> bool:
        """Sends ``signum`` to the child; returns False, after logging, when no child is running.

        Safe in a signal handler: it takes no lock of the supervisor, only the process's reentrant
        one, which is held for nothing but signalling and reaping.
        """
        run = self._run
        if run is None or not run.process.send(signum):
            logger.info("no child running; %s not delivered", signal_name(signum))
            return False
        if signum in _TERMINATING or signum == self._config.kill_signal:
            run.terminating = True
        return True

    def restart(self, reason: str) -> None:
        """Replaces the child because its environment changed.

        1. wait a random splay in [0, ``splay``) (stop() cuts it short);
        2. build the new environment (if ``env_factory`` raises, the old child keeps running and
           the exception propagates);
        3. send ``kill_signal``, wait up to ``kill_timeout``, then SIGKILL its process group;
        4. start the new child; it is on probation (rule 2).

        Does nothing once the child has exited for good or stop() was called. During a back-off
        wait (rule 2) it starts the child without waiting the rest of the delay; a quick death still
        counts towards ``max_quick_restarts``. A command that can no longer be run ends the child
        with 127 (not found) or 126, reported through ``on_exit``.

        Raises:
            RuntimeError: called before start().
        """
        with self._op:
            with self._cond:
                if not self._started:
                    raise RuntimeError("Child.restart() called before start()")
                if self._closed():
                    logger.debug("not restarting child (%s): it is stopping or has exited", reason)
                    return
                self._generation += 1  # cancels a pending retry
                run = self._run
                if run is not None and run.running and self._clock() - run.started >= self._quick_exit:
                    self._backoff.reset()  # rule 2: the running child proved stable
                    self._quick_deaths = 0
                delay = self._config.splay * self._rng() if self._config.splay > 0 else 0.0
                if delay > 0:  # 1.
                    logger.info("restarting child (%s) in %.2fs (splay)", reason, delay)
                    if self._cond.wait_for(lambda: self._stopping, timeout=delay):
                        return
            granted = self._env_factory()  # 2.
            with self._cond:
                if self._closed():
                    return
                run = self._run
                if run is not None and run.running:
                    run.expected = True
                else:
                    run = None
            if run is not None:  # 3.
                logger.info("restarting child pid %d: %s", run.process.pid, reason)
                run.terminating = True
                run.process.terminate(self._config.kill_signal, self._config.kill_timeout)
            else:
                logger.info("starting child again: %s", reason)
            self._start_again(granted, None)  # 4.

    def stop(self, signum: int | None = None, timeout: float | None = None) -> int:
        """Stops the child for good and returns its exit code (rule 4).

        Args:
            signum: the signal to send first; default ``kill_signal``, or none at all when the
                child already got a terminating signal (a forwarded SIGTERM/SIGINT), so that it
                gets exactly one.
            timeout: how long to wait before SIGKILL; default ``kill_timeout``.

        Returns the child's exit code (0 if none was ever started).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()  # cuts a splay or back-off wait short
        with self._op:  # lets a restart in progress finish its kill step
            run = self._run  # final: nothing spawns once _stopping is set
            if run is not None and run.running:
                run.expected = True
                first: int | None = signum
                if first is None and not run.terminating:
                    first = self._config.kill_signal
                run.terminating = True
                run.process.terminate(first, self._config.kill_timeout if timeout is None else timeout)
            with self._cond:
                if self._final is None:
                    last = run.process.returncode if run is not None else 0
                    # None: the child never reported back after SIGKILL (stuck in the kernel).
                    self._final = 128 + signal.SIGKILL if last is None else last
                self._cond.notify_all()
                return self._final

    def wait(self, timeout: float | None = None) -> int | None:
        """Waits until the child has exited for good (rules 1 to 3) or been stopped.

        Returns its exit code, or None if ``timeout`` seconds passed first (None: no limit).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._final is not None, timeout=timeout)
            return self._final

    # --- internals -------------------------------------------------------------------------------

    def _closed(self) -> bool:
        """Whether nothing may be started any more (caller holds _cond)."""
        return self._stopping or self._final is not None

    def _spawn_locked(self, granted: Mapping[str, str], *, probation: bool) -> None:
        """Spawns a child (caller holds _cond); raises OSError if it cannot be run."""
        env = child_environment(self._base_env, granted, allow=self._config.env_allow, deny=self._config.env_deny)
        path = self._argv[0]
        if "/" not in path:
            found = shutil.which(path, path=env.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "command not found on PATH", path)
            path = found
        # The process may end at once, but _exited needs _cond, which we hold: it will find the run.
        process = spawn(path, self._argv, env, on_exit=self._exited)
        run = _Run(process=process, started=self._clock(), probation=probation)
        self._run = run
        self._generation += 1  # a retry scheduled before this spawn must not spawn a second child
        self._cond.notify_all()
        logger.info("started child pid %d (%s)", run.process.pid, self.program)

    def _start_again(self, granted: Mapping[str, str], generation: int | None) -> None:
        """Starts a probation child; a spawn failure is final.

        Nothing is started when stopping, when a child already runs (started meanwhile, with an
        environment at least as fresh), or, for a retry (``generation`` given), when a restart or a
        spawn happened since the retry was scheduled.
        """
        with self._cond:
            running = self._run is not None and self._run.running
            if self._closed() or running or (generation is not None and generation != self._generation):
                logger.debug("not starting the child again: stopping, already running or superseded")
                return
            try:
                self._spawn_locked(granted, probation=True)
            except OSError as exc:
                code = 127 if exc.errno == errno.ENOENT else 126
                logger.error(  # noqa: TRY400 - the message says it all; a traceback adds nothing
                    "cannot start %s again: %s; exiting with %d", self._argv[0], exc.strerror, code
                )
                self._final = code
                self._cond.notify_all()
            else:
                return
        self._report_exit(code)

    def _exited(self, process: Process, code: int) -> None:
        """Applies rules 1 to 3 when a process ends (on its watcher thread)."""
        with self._cond:
            self._cond.notify_all()
            run = self._run
            if run is None or run.process is not process or run.expected or self._closed():
                logger.info("child pid %d exited with %d", process.pid, code)
                return
            lived = self._clock() - run.started
            # A child that a forwarded SIGTERM/SIGINT ended is done, however young (injector stops).
            retry = (
                run.probation
                and not run.terminating
                and lived < self._quick_exit
                and self._quick_deaths < self._max_quick_restarts
            )
            if retry:
                self._quick_deaths += 1
                attempt, delay, generation = self._quick_deaths, self._backoff.next(), self._generation
            else:
                self._final = code
                self._cond.notify_all()
        if not retry:
            log = logger.info if code == 0 else logger.error
            log("child pid %d exited by itself with %d after %.1fs; injector exits with it", process.pid, code, lived)
            self._report_exit(code)
            return
        logger.warning(
            "child pid %d exited with %d %.2fs after a restart; starting it again in %.2fs (retry %d of %d)",
            process.pid,
            code,
            lived,
            delay,
            attempt,
            self._max_quick_restarts,
        )
        self._retry(delay, generation, code)

    def _retry(self, delay: float, generation: int, code: int) -> None:
        with self._cond:
            if self._cond.wait_for(lambda: self._stopping or generation != self._generation, timeout=delay):
                logger.debug("retry of the child cancelled: stopping, or superseded by a newer start")
                return
        try:
            granted = self._env_factory()
        except Exception as exc:  # noqa: BLE001 - any failure of the lead's factory ends the child
            logger.error("cannot build the environment to start the child again: %s", exc)  # noqa: TRY400
            with self._cond:
                if self._closed() or generation != self._generation:
                    return
                self._final = code
                self._cond.notify_all()
            self._report_exit(code)
            return
        self._start_again(granted, generation)

    def _report_exit(self, code: int) -> None:
        if self._on_exit is None:
            return
        try:
            self._on_exit(code)
        except Exception:
            logger.exception("on_exit callback failed")


def install_signal_forwarding(
    child: Child,
    signals: Sequence[int] = FORWARDED_SIGNALS,
    *,
    on_terminate: Callable[[], None],
) -> None:
    """Forwards ``signals`` received by injector to the child, each exactly once.

    SIGTERM and SIGINT also mean "we are stopping": ``on_terminate`` is called after forwarding. It
    runs inside the signal handler, so it must only set a flag or an Event; the caller's loop then
    calls ``child.stop()``, which sends nothing more to a child that already got the signal.
    Must be called from the main thread (Python installs signal handlers there only).
    """

    def forward(signum: int, frame: FrameType | None) -> None:
        child.signal(signum)
        if signum in (signal.SIGTERM, signal.SIGINT):
            on_terminate()

    for signum in signals:
        signal.signal(signum, forward)
