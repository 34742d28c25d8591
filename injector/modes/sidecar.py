"""``injector sidecar``: keep every file fresh, re-render only what changed, tell the app.

One loop thread owns the engine (cache, templates, outputs); everything else talks to it through
a queue: the file watcher, signals, and the timer of the next due reference. Each pass:

1. renew the leases that are due, and fetch every due reference in ONE round (batched per backend);
2. compare each new value with the cached one; only a changed value dirties the templates that
   used it; edited template sources are recompiled (a broken one keeps its last good output);
3. render the dirty templates (``Engine.render``, the one render loop); publish one snapshot if any
   byte changed (else nothing is written);
4. hand the notifiers of the changed files to the dispatcher, which coalesces bursts
   (``refresh.wait``) and retries failures with backoff, off the loop thread;
5. save the token and leases to ``state_dir``, so a restarted sidecar adopts them.

Failures never stop the loop: a failing reference keeps its last good value, retries with its own
backoff, and after ``max_stale`` makes ``/readyz`` fail until it recovers. Every time is on the
monotonic clock (a wall-clock step moves nothing); ``/healthz`` fails when the loop is wedged: busy
in one pass for too long, or asleep well past the time it meant to wake.

Signals (when run on the main thread): SIGTERM, SIGINT and SIGQUIT stop it (exit 0); SIGHUP
refreshes every reference now; SIGUSR1 logs a one-line status; SIGUSR2 is logged and ignored. None
of them kills the process outright.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from injector.backoff import Backoff
from injector.config.model import Config, NotifyConfig, SignalNotify
from injector.engine import Engine, StopRequested
from injector.errors import InjectorError, OutputError, SourceError
from injector.health import HealthServer
from injector.metrics import Registry, standard_metrics
from injector.notify import build_notifier
from injector.notify.dispatch import Dispatcher, NotifyMetrics
from injector.process.environment import child_environment
from injector.process.hygiene import release_memory
from injector.refs import Reference
from injector.schedule import Scheduler
from injector.sources import Fetched, StatefulSource
from injector.units import format_duration
from injector.watch import Watcher

__all__ = ["Hooks", "Sidecar"]

logger = logging.getLogger(__name__)

#: How long the first render may keep retrying before the sidecar gives up (it is restarted).
FIRST_RENDER_TIMEOUT = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """How a mode built on the sidecar loop (``exec``) joins it; the sidecar itself needs none."""

    #: The pid that ``{signal: …, child: true}`` notifiers signal.
    child_pid: Callable[[], int | None] | None = None
    #: Called once after the first render with the in-memory values (exec's ``env:``).
    ready: Callable[[Mapping[str, str]], None] | None = None
    #: Called from the loop thread when in-memory values changed. True means their consumer
    #: restarts (and reads the new files as it starts): ``child`` notifiers are skipped this pass.
    memory_changed: Callable[[Mapping[str, str]], bool] | None = None


class Sidecar:
    """The refresh loop of one config. ``run()`` blocks until ``stop()`` (or a stopping signal).

    ``engine``: a prepared engine (exec mode passes one that has already started: ``started``).
    """

    def __init__(
        self,
        config: Config,
        *,
        engine: Engine | None = None,
        started: bool = False,
        hooks: Hooks | None = None,
        revoke_on_exit: bool = False,
    ) -> None:
        self.config = config
        self.engine = engine or Engine(config)
        self.hooks = hooks or Hooks()
        self._started = started
        self.scheduler = Scheduler(config.refresh)
        self.registry = Registry()
        self.metrics = standard_metrics(self.registry, sources=lambda: self.engine.sources)
        self.dispatcher = Dispatcher(
            config.refresh.wait,
            min_backoff=config.refresh.min_backoff,
            max_backoff=config.refresh.max_backoff,
            metrics=NotifyMetrics(notifications=self.metrics.notifications),
        )
        self.revoke_on_exit = revoke_on_exit
        self.ready_event = threading.Event()
        #: destination → notifier keys; identical notifier configs share a key, so they fire once.
        self._notifiers: dict[str, list[str]] = {}
        #: Keys of ``{signal: …, child: true}`` notifiers (exec mode).
        self._child_keys: frozenset[str] = frozenset()
        self._memory: dict[str, str] = {}
        self._events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._render_errors: dict[str, str] = {}
        self._publish_backoff = Backoff(config.refresh.min_backoff, config.refresh.max_backoff)
        self._publish_due: float | None = None
        #: When publishing started failing (a full volume); /readyz fails after max_stale of it.
        self._publish_failing_since: float | None = None
        self._maintain_due: dict[str, float] = {}
        self._busy_since: float | None = None
        #: When the loop, asleep, meant to wake up (None: until an event).
        self._wake_at: float | None = None
        self._health: HealthServer | None = None
        self._watcher: Watcher | None = None
        #: destination → when its output was last rendered (monotonic).
        self._newest: dict[str, float] = {}
        self.engine.on_fetch.append(self._observe_fetch)
        self.registry.before_render(self._update_gauges)

    # --- public ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the loop to finish (thread-safe, and safe in a signal handler)."""
        self._stop.set()
        self._events.put(("stop", None))

    def run(self) -> int:
        """Runs until stopped; returns the exit code (0 after SIGTERM)."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        self.engine.sink.prepare()
        # Fingerprint watched files before reading them, so an edit during start-up is not lost.
        self._watcher = Watcher(
            [t.source for t in self.config.templates if t.source is not None],
            lambda changed: self._events.put(("files", changed)),
        )
        if not self._started:
            self.engine.compile()
        self._watch_sources(self.engine.static_refs())
        self._register_notifiers()
        if self.config.health.address:
            self._health = HealthServer(
                self.config.health.address, live=self.live, ready=self.ready, registry=self.registry
            )
            self._health.start()
        self.dispatcher.start()
        try:
            if not self._first_render():
                return 0
            self._loop()
        finally:
            self._shutdown()
        return 0

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health is not None else None

    def live(self) -> tuple[bool, str]:
        """/healthz: the loop is neither wedged in one pass nor asleep long past its wake-up time."""
        now = time.monotonic()
        busy = self._busy_since
        limit = max(self.config.health.watchdog, self.config.refresh.max_backoff * 2)
        if busy is not None and now - busy > limit:
            return False, (
                f"the refresh loop has been busy for {format_duration(now - busy)} (health.watchdog "
                f"{format_duration(limit)})"
            )
        wake = self._wake_at
        if busy is None and wake is not None and now - wake > self.config.health.watchdog:
            return False, f"the refresh loop is {format_duration(now - wake)} late waking up"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """/readyz: the first render is done and nothing is stale past ``max_stale``."""
        if not self.ready_event.is_set():
            return False, "waiting for the first render"
        failing = self._publish_failing_since
        max_stale = self.config.refresh.max_stale
        if failing is not None and time.monotonic() - failing > max_stale:
            return False, (
                f"publishing has failed for {format_duration(time.monotonic() - failing)} "
                f"(max_stale {format_duration(max_stale)}); the previous files are in place"
            )
        stale = self.scheduler.stale()
        if stale:
            ref, age = stale[0]
            return False, (
                f"stale: {ref} last refreshed {format_duration(age)} ago (max_stale {format_duration(max_stale)})"
                + (f" and {len(stale) - 1} more" if len(stale) > 1 else "")
            )
        return True, "ok"

    # --- set-up ---------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda *_: self._events.put(("refresh", None)))
        signal.signal(signal.SIGUSR1, lambda *_: self._events.put(("status", None)))
        signal.signal(signal.SIGUSR2, lambda *_: self._events.put(("ignored", "SIGUSR2")))

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def _command_environment(self) -> dict[str, str]:
        """What a command notifier inherits: the sidecar's environment without the Vault token,
        injector's settings, AWS keys, and every variable a reference reads."""
        refs = sorted(self.engine.static_refs() | set(self.config.secrets.values()), key=str)
        names: set[str] = set()
        for scheme in {ref.scheme for ref in refs}:
            names |= self.engine.source(scheme).variables([r for r in refs if r.scheme == scheme])
        return child_environment(os.environ, {}, allow=(), deny=tuple(sorted(names)))

    def _register_notifiers(self) -> None:
        # Equal notifier configs share one key, so a SIGHUP covering several files fires once.
        # Keys are indexes, not reprs: an HTTP notifier's headers may hold a token.
        environ = self._command_environment()
        unique: list[NotifyConfig] = []
        for template in self.config.templates:
            keys = []
            for notify in template.on_change:
                if notify not in unique:
                    unique.append(notify)
                    key = f"notifier[{len(unique) - 1}]"
                    if isinstance(notify, SignalNotify) and notify.child:
                        self._child_keys |= {key}
                    self.dispatcher.register(key, build_notifier(notify, child=self.hooks.child_pid, environ=environ))
                keys.append(f"notifier[{unique.index(notify)}]")
            self._notifiers[template.destination] = keys

    def _first_render(self) -> bool:
        """Renders everything once (adopting init's files and state); retries until it works."""
        deadline = time.monotonic() + FIRST_RENDER_TIMEOUT
        # Only files that existed and changed are worth a reload: nobody has read a new one yet
        # (a native sidecar starts before the app), so init's output plus a restart stay silent.
        existing = set(self.engine.sink.current())
        try:
            if self._started:
                # exec mode rendered already; values of watched files are read again now that the
                # watcher has fingerprints, so an edit made meanwhile is not missed.
                self.engine.cache.drop(r for r in self.engine.static_refs() if self._watched(r))
                backoff = Backoff(self.config.refresh.min_backoff, self.config.refresh.max_backoff)
                self.engine.converge(deadline=deadline, backoff=backoff, stop=self._stop)
            else:
                self.engine.start(deadline=deadline, stop=self._stop, patient=True)
        except StopRequested:
            return False
        for ref, fetched in self.engine.cache.items():
            self._track(ref, fetched)
        now = time.monotonic()
        for destination in self.engine.destinations:
            self._newest[destination] = now
            self.metrics.renders.labels(template=destination).inc()
        self._publish(notify_only=set() if self._started else existing)
        if self._watcher is not None:
            self._watcher.start()
            # Anything edited while the first render ran is handled by the first pass.
            early = self._watcher.check()
            if early:
                self._events.put(("files", early))
        release_memory()
        self.ready_event.set()
        self.metrics.ready.set(1)
        self._memory = self.engine.memory_values()
        if self.hooks.ready is not None:
            self.hooks.ready(dict(self._memory))
        logger.info(
            "first render done: %d file(s)%s from %d reference(s)",
            len(self.engine.files()),
            f" and {len(self._memory)} in-memory value(s)" if self._memory else "",
            len(self.engine.cache),
        )
        return True

    def _paths_of(self, ref: Reference) -> list[Path]:
        return self.engine.source(ref.scheme).watch_paths([ref])

    def _watched(self, ref: Reference) -> bool:
        return bool(self._paths_of(ref))

    def _watch_sources(self, refs: Iterable[Reference]) -> None:
        if self._watcher is None:
            return
        by_scheme: dict[str, list[Reference]] = {}
        for ref in refs:
            by_scheme.setdefault(ref.scheme, []).append(ref)
        for scheme, group in by_scheme.items():
            paths = self.engine.source(scheme).watch_paths(group)
            if paths:
                self._watcher.add(paths)

    def _track(self, ref: Reference, fetched: Fetched, *, renewed: bool = False) -> None:
        self.scheduler.track(ref, fetched, renewed=renewed, polled=self.engine.source(ref.scheme).changes)

    # --- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            timeout = self._next_wakeup()
            self._wake_at = None if timeout is None else time.monotonic() + timeout
            try:
                kind, payload = self._events.get(timeout=timeout)
            except queue.Empty:
                kind, payload = "timer", None
            self._wake_at = None
            if kind == "stop":
                break
            if kind == "status":
                logger.info("status: %s; ready: %s", self.live()[1], self.ready()[1])
                continue
            if kind == "ignored":
                logger.info("%s received: ignored", payload)
                continue
            self._busy_since = time.monotonic()
            try:
                self._pass(payload if kind == "files" else None, refresh_all=kind == "refresh")
            except InjectorError as exc:
                logger.error("refresh pass failed: %s", exc)  # noqa: TRY400 - one line, no traceback
            finally:
                self._busy_since = None

    def _next_wakeup(self) -> float | None:
        times = [t for t in (self.scheduler.next_due(), self._publish_due, *self._maintain_due.values()) if t]
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _pass(self, changed_files: object, *, refresh_all: bool = False) -> None:
        dirty: set[str] = set()
        self._maintain_sessions()
        if isinstance(changed_files, set):
            dirty |= self._files_changed(changed_files)
        due = self.scheduler.take_due()
        refetch = list(due.fetch)
        for ref in due.renew:
            if not self._renew(ref):
                refetch.append(ref)
        if refresh_all:
            logger.info("SIGHUP: refreshing every reference now")
            refetch = sorted({ref for ref, _ in self.engine.cache.items()} | set(refetch), key=str)
        dirty |= self._refresh(refetch)
        restarting = False
        if dirty:
            self._render(dirty)
            restarting = self._memory_check()
        if dirty or (self._publish_due is not None and self._publish_due <= time.monotonic()):
            # A consumer restarted for new in-memory values reads fresh files as it starts; a
            # signal now could reach it before it installs its handlers.
            self._publish(skip=self._child_keys if restarting else frozenset())
        self.metrics.ready.set(1 if self.ready()[0] else 0)
        if due.renew or due.fetch or dirty:
            self._save_state()

    def _memory_check(self) -> bool:
        """Hands changed in-memory values to the hook; True when their consumer restarts."""
        memory = self.engine.memory_values()
        if memory == self._memory:
            return False
        names = memory.keys() | self._memory.keys()
        changed = sorted(name for name in names if memory.get(name) != self._memory.get(name))
        self._memory = memory
        logger.info("in-memory values changed: %s", ", ".join(changed))
        return self.hooks.memory_changed is not None and self.hooks.memory_changed(dict(memory))

    def _maintain_sessions(self) -> None:
        now = time.monotonic()
        for scheme, source in self.engine.sources.items():
            if isinstance(source, StatefulSource) and self._maintain_due.get(scheme, 0) <= now:
                try:
                    next_due = source.maintain()
                except SourceError as exc:
                    logger.warning("%s session upkeep failed: %s", scheme, exc)
                    next_due = now + self.config.refresh.min_backoff * 5
                if next_due is None:
                    self._maintain_due.pop(scheme, None)
                else:
                    self._maintain_due[scheme] = next_due

    def _renew(self, ref: Reference) -> bool:
        """Renews the lease of ``ref`` in place; False means fetch it again instead."""
        try:
            renewed = self.engine.renew(ref)
        except SourceError as exc:
            self.metrics.backend_errors.labels(source=ref.scheme, operation="renew", kind=type(exc).__name__).inc()
            logger.warning("renewing %s failed (%s); fetching a new one", ref, exc)
            return False
        if renewed is None:
            return False
        self._track(ref, renewed, renewed=True)
        entry = self.scheduler.entries[ref]
        logger.info(
            "renewed %s for %s (next: %s)",
            ref,
            format_duration(renewed.lease.duration if renewed.lease else 0),
            entry.action,
        )
        return True

    def _refresh(self, refs: Iterable[Reference]) -> set[str]:
        """Fetches ``refs`` in one round; returns the templates whose data changed."""
        refs = list(refs)
        if not refs:
            return set()
        before: dict[Reference, Fetched | None] = {ref: self.engine.cache.get(ref) for ref in refs}
        errors = self.engine.fetch(refs)
        changed: set[Reference] = set()
        for ref in refs:
            new = self.engine.cache.get(ref)
            if ref in errors or new is None:
                entry = self.scheduler.failed(ref)
                logger.warning(
                    "refreshing %s failed (%s); keeping the last good value, retry in %s",
                    ref,
                    errors.get(ref),
                    format_duration(max(0.0, entry.due - time.monotonic())),
                )
                continue
            self._track(ref, new)
            old = before[ref]
            if old is None or old.value != new.value:
                changed.add(ref)
        if changed:
            logger.info("changed: %s", ", ".join(sorted(map(str, changed))))
        return self.engine.users_of(changed)

    def _files_changed(self, paths: set[Path]) -> set[str]:
        dirty: set[str] = set()
        for template in self.config.templates:
            if template.source is not None and template.source in paths:
                try:
                    self.engine.compile([template])
                    self._render_errors.pop(template.destination, None)
                    dirty.add(template.destination)
                    logger.info("template %s changed: recompiled", template.source)
                except InjectorError as exc:
                    self._template_failed(template.destination, exc)
        watched = [ref for ref, _ in self.engine.cache.items() if paths & set(self._paths_of(ref))]
        dirty |= self._refresh(watched)
        return dirty

    def _render(self, dirty: set[str]) -> None:
        errors = self.engine.render(dirty)
        now = time.monotonic()
        for destination in sorted(dirty):
            error = errors.get(destination)
            if error is not None:
                self._template_failed(destination, error)
                continue
            self._render_errors.pop(destination, None)
            self._newest[destination] = now
            self.metrics.renders.labels(template=destination).inc()
        # References first seen in this render (built from other values) join the schedule;
        # those no template uses any more leave it and the cache.
        used = self.engine.used_refs()
        for ref in used - set(self.scheduler.entries):
            fetched = self.engine.cache.get(ref)
            if fetched is not None:
                self._track(ref, fetched)
        self._watch_sources(used)
        self.scheduler.forget([ref for ref in self.scheduler.entries if ref not in used])
        self.engine.forget_unused()

    def _template_failed(self, destination: str, exc: InjectorError) -> None:
        self._render_errors[destination] = str(exc)
        self.metrics.render_errors.labels(template=destination).inc()
        logger.error("template %s failed, keeping its last good output: %s", destination, exc)

    def _publish(self, *, notify_only: set[str] | None = None, skip: frozenset[str] = frozenset()) -> None:
        try:
            result = self.engine.sink.publish(self.engine.files())
        except OutputError as exc:
            self.metrics.publish_errors.inc()
            now = time.monotonic()
            if self._publish_failing_since is None:
                self._publish_failing_since = now
            delay = self._publish_backoff.next()
            self._publish_due = now + delay
            logger.error(  # noqa: TRY400 - one line, no traceback
                "publishing failed, the previous files stay in place; retry in %.1fs: %s", delay, exc
            )
            return
        self._publish_due = None
        self._publish_failing_since = None
        self._publish_backoff.reset()
        self.metrics.last_render.set(time.time())  # a timestamp for people and dashboards
        if result.changed:
            notify = result.changed if notify_only is None else result.changed & notify_only
            keys = {key for dest in notify for key in self._notifiers.get(dest, [])} - skip
            logger.info("published %s (%d file(s) changed)", result.snapshot, len(result.changed))
            if keys:
                self.dispatcher.changed(sorted(keys))

    def _update_gauges(self) -> None:
        """Data age of a template: time since the least recently confirmed of its references was
        last fetched or renewed successfully; it grows while any of its backends is failing."""
        now = time.monotonic()
        entries = self.scheduler.entries
        for destination in self.engine.destinations:
            used = self.engine.used_refs_of(destination)
            confirmed = [
                entries[ref].last_success
                for ref in used
                if ref in entries and self.engine.source(ref.scheme).changes
            ]
            oldest = min(confirmed, default=self._newest.get(destination, now))
            self.metrics.data_age.labels(template=destination).set(max(0.0, now - oldest))
        self.metrics.ready.set(1 if self.ready()[0] else 0)

    def _observe_fetch(self, scheme: str, seconds: float, count: int, failed: int) -> None:
        self.metrics.fetch_duration.labels(source=scheme).observe(seconds)
        if failed:
            self.metrics.backend_errors.labels(source=scheme, operation="fetch", kind="error").inc(failed)

    def _save_state(self) -> None:
        try:
            self.engine.save_state()
        except OutputError as exc:
            logger.warning("could not save state to %s: %s", self.config.state_dir, exc)

    # --- shutdown -------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.dispatcher.stop()
        if self.revoke_on_exit:
            self.engine.revoke_all()
        elif self.ready_event.is_set():
            self._save_state()
        if self._health is not None:
            self._health.stop()
        self.engine.close()
        logger.info("sidecar stopped")
