"""``injector exec -- CMD``: render, start CMD with its secrets in the environment, keep both fresh.

Outside Kubernetes (compose, a VM) there is no init container and no shared volume to wait on, so
one process does it all, in consul-template's exec-mode order:

1. **Render once, failing fast** (the engine's start-up sequence, on the main thread): fetch every
   reference the templates and the ``env:`` map name and publish the files. Transient errors
   retry with backoff until ``timeout``; a permanent one (not found, denied, a template error)
   raises at once and the command is never started. The sidecar loop then runs on the same
   engine, so nothing is fetched (or issued: dynamic credentials) twice.
2. **Run the sidecar loop** on a worker thread. Its first render adopts what step 1 did (the same
   bytes: nothing is written, no notifier fires) and hands the rendered ``env:`` values to
   ``on_ready``.
3. **Start the child** with those values in its environment (never on its command line), then
   forward SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2 to it, each exactly once.
4. **Keep it current.** A changed ``env:`` value restarts the child (a process's environment
   cannot change under it); a changed file only fires its ``on_change`` notifiers, such as
   ``{signal: SIGHUP, child: true}``. Restarts run on their own thread, so a slow one (splay,
   ``kill_timeout``) never holds up the loop; changes that arrive during one are folded into it
   or, once the new environment is built, into one more (``EnvState``).
5. **End with the child.** When it exits by itself, or SIGTERM/SIGINT arrives: stop the child
   (it gets no second signal), then the sidecar (which revokes with ``--revoke-on-exit``, once
   the app no longer uses the credentials), and exit with the child's code (128 + N if signal N
   ended it). SIGTERM/SIGINT during step 1 abort it: exit 128 + N, the child never started.

The token stays in memory: exec mode writes nothing to ``state_dir`` (the child runs as the same
user and could read it), so a restarted ``injector exec`` logs in again.

Threads: the main thread runs step 1, starts and stops the child, and otherwise waits on one queue
fed by the signal handlers, the sidecar thread (ready, failed) and the child's supervisor
(exited). It is a ``SimpleQueue``, whose ``put`` is safe inside a signal handler, where
``Event.set`` could deadlock against the main thread's own wait. The restarter thread only calls
``Child.restart``; the sidecar thread only records env changes, never blocking on the child.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import FrameType
from typing import Literal

from injector.config.model import Config, TemplateConfig
from injector.engine import Engine
from injector.errors import InjectorError
from injector.modes.sidecar import Hooks, Sidecar
from injector.process.child import FORWARDED_SIGNALS, Child, install_signal_forwarding
from injector.process.spawn import signal_name

__all__ = ["ENV_PREFIX", "EnvState", "ExecMode", "env_templates"]

logger = logging.getLogger(__name__)

#: Destinations of the in-memory templates behind ``env:``; they are never published.
ENV_PREFIX = "$env/"

_Event = tuple[Literal["ready", "exited", "terminate", "ended"], BaseException | None]
_RELOAD_SIGNALS = tuple(signum for signum in FORWARDED_SIGNALS if signum not in (signal.SIGTERM, signal.SIGINT))
#: How long to wait for the sidecar thread to finish its shutdown (revocation included).
_SIDECAR_JOIN = 30.0


def env_templates(config: Config) -> list[TemplateConfig]:
    """Returns one in-memory template per ``env:`` entry (``NAME: reference`` or a template)."""
    out = []
    for name, value in config.env.items():
        text = value if ("{{" in value or "{%" in value) else "{{ secret(" + json.dumps(value) + ") }}"
        out.append(TemplateConfig(where=f"env.{name}", destination=f"{ENV_PREFIX}{name}", contents=text, mode=0o400))
    return out


def _env_values(memory: Mapping[str, str]) -> dict[str, str]:
    return {name[len(ENV_PREFIX) :]: value for name, value in memory.items() if name.startswith(ENV_PREFIX)}


class _Aborted(BaseException):
    """Raised by the SIGTERM/SIGINT handler during the first render: a BaseException, so that no
    ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _abort(signum: int, frame: FrameType | None) -> None:
    raise _Aborted(signum)


class EnvState:
    """The rendered ``env:`` values, and whether the running child has seen the latest ones.

    Shared by the sidecar's loop thread (``change``), the child's supervisor (``granted``, its
    ``env_factory``) and the restarter (``next_restart``). Every change bumps a version;
    ``granted()`` marks all of them served, so changes that land while a restart is on its way,
    before the new child's environment is built, are in it and cost no second restart.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._env: dict[str, str] = {}
        self._changed: set[str] = set()
        self._version = 0
        self._served = 0
        self._asked = 0
        self._closed = False

    def reset(self, env: Mapping[str, str]) -> None:
        """Sets the values of the first render (before any child has been started)."""
        with self._cond:
            self._env = dict(env)

    def change(self, env: Mapping[str, str]) -> None:
        """Records new values (never blocks for long: it runs on the loop thread)."""
        with self._cond:
            self._changed |= {name for name in env.keys() | self._env.keys() if env.get(name) != self._env.get(name)}
            self._env = dict(env)
            self._version += 1
            self._cond.notify_all()

    def granted(self) -> dict[str, str]:
        """The latest values, for a child about to start; they cover every change so far."""
        with self._cond:
            self._served = self._version
            self._changed.clear()
            return dict(self._env)

    def due(self) -> bool:
        """Whether a change is newer than the running child's environment and not asked for yet.

        A restart that did nothing (the child had ended) is not asked for again for the same
        change: only a newer one is due.
        """
        with self._cond:
            return self._due_locked()

    def _due_locked(self) -> bool:
        return self._version > max(self._served, self._asked)

    def next_restart(self) -> list[str] | None:
        """Blocks until a restart is due; returns the names of the changed variables (None once closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._due_locked())
            if self._closed:
                return None
            self._asked = self._version
            return sorted(self._changed)

    def close(self) -> None:
        """Wakes ``next_restart`` for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ExecMode:
    """One ``injector exec`` run: the sidecar loop plus the supervised child; see the module docstring.

    Args:
        config: the loaded config (``env:``, ``exec:``, templates, sources).
        argv: the user's command, verbatim.
        revoke_on_exit: revoke Vault leases and token after the child has stopped.
        timeout: how long transient errors may last during the first render before giving up.
        engine: an engine to use instead of building one from the config (tests: in-memory sources).
        base_env: the environment the child inherits from, before filtering (default: ours).
    """

    def __init__(
        self,
        config: Config,
        argv: Sequence[str],
        *,
        revoke_on_exit: bool = False,
        timeout: float = 120.0,
        engine: Engine | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        if config.state_dir is not None:
            logger.info("exec mode keeps its token in memory: state_dir %s is not used", config.state_dir)
            config = replace(config, state_dir=None)
        self.config = config
        self.timeout = timeout
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self.env = EnvState()
        self.child = Child(
            argv, env_factory=self.env.granted, config=config.exec, on_exit=self._child_exited, base_env=base_env
        )
        self.engine = engine or Engine(config)
        self.sidecar = Sidecar(
            config,
            engine=self.engine,
            started=True,
            revoke_on_exit=revoke_on_exit,
            hooks=Hooks(child_pid=lambda: self.child.pid, ready=self._ready, memory_changed=self._env_changed),
        )

    def run(self) -> int:
        """Runs until the child ends or SIGTERM/SIGINT; returns the child's exit code (128 + N when
        signal N arrived before the child was started).

        Must be called from the main thread (signal handlers are installed there).

        Raises:
            InjectorError: the first render failed for good, the command cannot be started, or the
                sidecar loop failed (the child is stopped first).
        """
        # Until the child runs, a reload signal is logged and dropped rather than ending injector
        # (its default action), and SIGTERM/SIGINT abort the first render at once: as PID 1 a
        # default SIGTERM would be ignored while it retries an unreachable backend.
        install_signal_forwarding(self.child, _RELOAD_SIGNALS, on_terminate=self._terminate)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _abort)
        try:
            self._init()  # 1.
            install_signal_forwarding(self.child, on_terminate=self._terminate)
        except _Aborted as exc:
            self.engine.close()
            logger.info("%s before the command started; exiting", signal_name(exc.signum))
            return 128 + exc.signum
        except BaseException:
            self.engine.close()
            raise
        loop = threading.Thread(target=self._run_sidecar, name="sidecar", daemon=True)
        loop.start()  # 2.
        restarter: threading.Thread | None = None
        failure: BaseException | None = None
        try:
            while True:
                kind, error = self._events.get()
                if kind == "ready" and restarter is None:
                    self.child.start()  # 3.
                    restarter = threading.Thread(target=self._restarter, name="restarter", daemon=True)
                    restarter.start()  # 4.
                elif kind == "ended":
                    # Only _shutdown stops the sidecar: ending before that is a failure.
                    failure = error or InjectorError("the sidecar loop stopped unexpectedly")
                    logger.error("the sidecar loop failed; stopping the child")
                    break
                elif kind in ("exited", "terminate"):
                    break
        finally:
            code = self._shutdown(loop, restarter)  # 5.
        if failure is not None:
            raise failure
        return code

    # --- 1. the first render -----------------------------------------------------------------------

    def _init(self) -> None:
        """Renders everything once and publishes the files: the engine's start-up sequence.

        The sidecar loop runs on this engine afterwards, so its first pass fetches nothing again
        and publishes nothing new: no ``on_change`` notifier fires for files the child has not
        read yet (it starts after them).
        """
        engine = self.engine
        started = time.monotonic()
        engine.sink.prepare()  # a missing or disk-backed output_dir fails before any fetch
        engine.compile()
        engine.compile(env_templates(self.config), in_memory=True)
        result = engine.start(deadline=started + self.timeout)
        logger.info(
            "rendered %d file(s) (%d changed) and %d environment variable(s) from %d reference(s) in %.0f ms",
            len(engine.files()),
            len(result.changed),
            len(self.config.env),
            len(engine.cache),
            (time.monotonic() - started) * 1000,
        )

    # --- 2. the sidecar thread and its callbacks -----------------------------------------------------

    def _run_sidecar(self) -> None:
        error: BaseException | None = None
        try:
            self.sidecar.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            error = exc
        self._events.put(("ended", error))

    def _ready(self, memory: Mapping[str, str]) -> None:
        self.env.reset(_env_values(memory))
        self._events.put(("ready", None))

    def _env_changed(self, memory: Mapping[str, str]) -> bool:
        """A changed ``env:`` value restarts the child (step 4)."""
        self.env.change(_env_values(memory))
        return True

    def _terminate(self) -> None:
        """SIGTERM/SIGINT (in the signal handler, after forwarding): only queue it."""
        self._events.put(("terminate", None))

    def _child_exited(self, code: int) -> None:
        self._events.put(("exited", None))

    # --- 4. restarts -------------------------------------------------------------------------------------

    def _restarter(self) -> None:
        """Restarts the child whenever its environment is out of date (``EnvState.next_restart``)."""
        while (names := self.env.next_restart()) is not None:
            try:
                self.child.restart(f"env {', '.join(names)} changed" if names else "env changed")
            except Exception:
                logger.exception("restarting the child failed; it keeps running with its old environment")

    # --- 5. shutdown -------------------------------------------------------------------------------------

    def _shutdown(self, loop: threading.Thread, restarter: threading.Thread | None) -> int:
        """Stops the child, then the restarter and the sidecar; returns the child's exit code."""
        self.env.close()
        code = self.child.stop()  # sends nothing to a child that already got SIGTERM/SIGINT
        if restarter is not None:
            restarter.join(timeout=5.0)
        self.sidecar.stop()
        loop.join(timeout=_SIDECAR_JOIN)
        if loop.is_alive():
            logger.warning("the sidecar loop did not stop within %.0fs; exiting anyway", _SIDECAR_JOIN)
        logger.info("exiting with the child's exit code %d", code)
        return code
