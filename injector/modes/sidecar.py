"""``injector sidecar``: keep every file fresh, re-render only what changed, tell the app.

One loop thread owns the engine (cache, templates, outputs); everything else talks to it through
a queue: the file watcher, SIGTERM, and the timer of the next due reference. Each pass:

1. renew the leases that are due, and fetch every due reference in ONE round (batched per backend);
2. compare each new value with the cached one; only a changed value dirties the templates that
   used it; edited template sources are recompiled (a broken one keeps its last good output);
3. render the dirty templates; publish one snapshot if any byte changed (else nothing is written);
4. hand the notifiers of the changed files to the dispatcher, which coalesces bursts
   (``refresh.wait``) and retries failures with backoff, off the loop thread;
5. save the token and leases to ``state_dir``, so a restarted sidecar adopts them.

Failures never stop the loop: a failing reference keeps its last good value, retries with its own
backoff, and after ``max_stale`` makes ``/readyz`` fail until it recovers.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from injector.backoff import Backoff
from injector.config.model import Config, NotifyConfig, SignalNotify
from injector.engine import Engine, StopRequested, env_templates
from injector.errors import ConfigError, InjectorError, OutputError, SourceError
from injector.handoff import load_state, save_state
from injector.health import HealthServer
from injector.metrics import Registry, standard_metrics
from injector.notify import build_notifier
from injector.notify.dispatch import Dispatcher, NotifyMetrics
from injector.process.environment import child_environment
from injector.process.hygiene import release_memory
from injector.refs import Reference
from injector.schedule import Scheduler
from injector.sink import Sink
from injector.sources import Fetched, LeasedSource, Source, StatefulSource
from injector.sources.files import FileSource
from injector.units import format_duration
from injector.watch import Watcher

__all__ = ["Sidecar"]

logger = logging.getLogger(__name__)


class Sidecar:
    """The refresh loop of one config. ``run()`` blocks until ``stop()`` (or SIGTERM)."""

    def __init__(
        self,
        config: Config,
        *,
        sources: Mapping[str, Source] | None = None,
        revoke_on_exit: bool = False,
        child: Callable[[], int | None] | None = None,
        install_signals: bool = True,
        on_ready: Callable[[Mapping[str, str]], None] | None = None,
        on_env_change: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        """Args:
        child: the pid of exec mode's child, for ``{signal: …, child: true}`` notifiers.
        install_signals: stop on SIGTERM/SIGINT (exec mode forwards signals itself).
        on_ready: called once after the first render with the rendered ``env:`` values.
        on_env_change: called from the loop thread when a rendered ``env:`` value changed.
        """
        self.config = config
        self.engine = Engine(config, sources=sources)
        self.sink = Sink(config.output_dir, allow_non_tmpfs=config.allow_non_tmpfs)
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
        self._child = child
        self._on_ready = on_ready
        self._on_env_change = on_env_change
        self._env: dict[str, str] = {}
        #: Keys of ``{signal: …, child: true}`` notifiers (exec mode).
        self._child_keys: frozenset[str] = frozenset()
        self._install_signals = install_signals
        self._events: queue.Queue[tuple[str, object]] = queue.Queue()
        self._stop = threading.Event()
        self._render_errors: dict[str, str] = {}
        self._publish_backoff = Backoff(config.refresh.min_backoff, config.refresh.max_backoff)
        self._publish_due: float | None = None
        #: When publishing started failing (a full volume); /readyz fails after max_stale of it.
        self._publish_failing_since: float | None = None
        self._maintain_due: dict[str, float] = {}
        self._busy_since: float | None = None
        self._health: HealthServer | None = None
        self._watcher: Watcher | None = None
        self._newest: dict[str, float] = {}
        self.engine.on_fetch.append(self._observe_fetch)
        self.registry.before_render(self._update_gauges)

    # --- public ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the loop to finish (thread-safe; what SIGTERM does)."""
        self._stop.set()
        self._events.put(("stop", None))

    def run(self) -> int:
        """Runs until stopped; returns the exit code (0 after SIGTERM)."""
        if self._install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        self.sink.prepare()
        # Fingerprint watched files before reading them, so an edit during start-up is not lost.
        self._watcher = Watcher(
            [t.source for t in self.config.templates if t.source is not None],
            lambda changed: self._events.put(("files", changed)),
        )
        self.engine.compile()
        self.engine.compile(env_templates(self.config))
        self._watch_file_refs(self.engine.static_refs())
        self._register_notifiers()
        if self.config.health.address:
            self._health = HealthServer(
                self.config.health.address, live=self.live, ready=self.ready, registry=self.registry
            )
            self._health.start()
        self.dispatcher.start()
        try:
            if self.config.state_dir is not None:
                load_state(self.config.state_dir, self.engine)
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
        """/healthz: the loop is not wedged in one pass for longer than a fetch can take."""
        busy = self._busy_since
        limit = max(300.0, self.config.refresh.max_backoff * 2)
        if busy is not None and time.monotonic() - busy > limit:
            return False, f"the refresh loop has been busy for {format_duration(time.monotonic() - busy)}"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """/readyz: the first render is done and nothing is stale past ``max_stale``."""
        if not self.ready_event.is_set():
            return False, "waiting for the first render"
        failing = self._publish_failing_since
        if failing is not None and time.time() - failing > self.config.refresh.max_stale:
            return False, (
                f"publishing has failed for {format_duration(time.time() - failing)} "
                f"(max_stale {format_duration(self.config.refresh.max_stale)}); the previous files are in place"
            )
        stale = self.scheduler.stale()
        if stale:
            ref, age = stale[0]
            return False, (
                f"stale: {ref} last refreshed {format_duration(age)} ago "
                f"(max_stale {format_duration(self.config.refresh.max_stale)})"
                + (f" and {len(stale) - 1} more" if len(stale) > 1 else "")
            )
        return True, "ok"

    # --- set-up ---------------------------------------------------------------------------------

    def _command_environment(self) -> dict[str, str]:
        """What a command notifier inherits: the sidecar's environment without the Vault token,
        injector's settings, AWS keys, and every variable an ``env:`` reference reads."""
        secret_names = {ref.path for ref in self.engine.static_refs() if ref.scheme == "env"}
        secret_names |= {ref.path for ref in self.config.secrets.values() if ref.scheme == "env"}
        return child_environment(os.environ, {}, allow=(), deny=tuple(sorted(secret_names)))

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
                    if isinstance(notify, SignalNotify) and notify.child:
                        self._child_keys |= {f"notifier[{len(unique) - 1}]"}
                    self.dispatcher.register(
                        f"notifier[{len(unique) - 1}]", build_notifier(notify, child=self._child, environ=environ)
                    )
                keys.append(f"notifier[{unique.index(notify)}]")
            self._notifiers[template.destination] = keys

    def _first_render(self) -> bool:
        """Renders everything once (adopting init's files and state); retries until it works."""
        backoff = Backoff(self.config.refresh.min_backoff, self.config.refresh.max_backoff)
        while not self._stop.is_set():
            try:
                self.engine.converge(
                    list(self.engine.compiled), deadline=time.monotonic() + 3600, backoff=backoff, stop=self._stop
                )
                break
            except StopRequested:
                return False
            except SourceError as exc:
                # Unlike init, a sidecar waits for a missing secret to appear: forget the
                # permanent failures so the next attempt fetches them again.
                self.engine.failures.clear()
                delay = backoff.next()
                logger.warning("first render failed: %s; retrying in %.1fs", exc, delay)
                if self._stop.wait(delay):
                    return False
        else:
            return False
        for ref, fetched in self.engine.cache.items():
            self.scheduler.track(ref, fetched)
        for destination in self.engine.outputs:
            self._newest[destination] = time.time()
            self.metrics.renders.labels(template=destination).inc()
        # Only files that existed and changed are worth a reload: nobody has read a new one yet
        # (a native sidecar starts before the app), so init's output plus a restart stay silent.
        # exec mode starts its child after this render, so the child needs no signal for it.
        self._publish(notify_only=set() if self._child is not None else set(self.sink.current()))
        if self._watcher is not None:
            self._watcher.start()
            # Anything edited while the first render ran is handled by the first pass.
            early = self._watcher.check()
            if early:
                self._events.put(("files", early))
        release_memory()
        self.ready_event.set()
        self.metrics.ready.set(1)
        self._env = self.engine.env_values()
        if self._on_ready is not None:
            self._on_ready(dict(self._env))
        logger.info(
            "first render done: %d file(s) from %d reference(s)", len(self.engine.outputs), len(self.engine.cache)
        )
        return True

    def _watch_file_refs(self, refs: Iterable[Reference]) -> None:
        file_refs = [ref for ref in refs if ref.scheme == "file"]
        if file_refs and self._watcher is not None:
            file_source = self.engine.source("file")
            if isinstance(file_source, FileSource):
                self._watcher.add(file_source.path_of(ref) for ref in file_refs)

    # --- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            timeout = self._next_wakeup()
            try:
                kind, payload = self._events.get(timeout=timeout)
            except queue.Empty:
                kind, payload = "timer", None
            if kind == "stop":
                break
            self._busy_since = time.monotonic()
            try:
                self._pass(payload if kind == "files" else None)
            except InjectorError as exc:
                logger.error("refresh pass failed: %s", exc)  # noqa: TRY400 - one line, no traceback
            finally:
                self._busy_since = None

    def _next_wakeup(self) -> float | None:
        times = [t for t in (self.scheduler.next_due(), self._publish_due, *self._maintain_due.values()) if t]
        if not times:
            return None
        return max(0.0, min(times) - time.time())

    def _pass(self, changed_files: object) -> None:
        dirty: set[str] = set()
        env_restart = False
        self._maintain_sessions()
        if isinstance(changed_files, set):
            dirty |= self._files_changed(changed_files)
        due = self.scheduler.take_due()
        refetch = list(due.fetch)
        for ref in due.renew:
            if not self._renew(ref):
                refetch.append(ref)
        dirty |= self._refresh(refetch)
        if dirty:
            self._render(dirty)
            env = self.engine.env_values()
            if env != self._env:
                changed = sorted(name for name in env.keys() | self._env.keys() if env.get(name) != self._env.get(name))
                self._env = env
                logger.info("environment changed: %s", ", ".join(changed))
                if self._on_env_change is not None:
                    self._on_env_change(dict(env))
                    env_restart = True
        if dirty or (self._publish_due is not None and self._publish_due <= time.time()):
            # A child restarted for new environment reads fresh files as it starts; a signal now
            # could reach it before it installs its handlers.
            self._publish(skip=self._child_keys if env_restart else frozenset())
        self.metrics.ready.set(1 if self.ready()[0] else 0)
        if self.config.state_dir is not None and (due.renew or due.fetch or dirty):
            self._save_state()

    def _maintain_sessions(self) -> None:
        now = time.time()
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
        source = self.engine.source(ref.scheme)
        fetched = self.engine.cache.get(ref)
        if fetched is None or not isinstance(source, LeasedSource):
            return False
        try:
            renewed = source.renew(ref, fetched)
        except SourceError as exc:
            self.metrics.backend_errors.labels(source=ref.scheme, operation="renew", kind=type(exc).__name__).inc()
            logger.warning("renewing %s failed (%s); fetching a new one", ref, exc)
            return False
        self.engine.cache[ref] = renewed
        entry = self.scheduler.track(ref, renewed, renewed=True)
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
            if ref in errors:
                entry = self.scheduler.failed(ref)
                logger.warning(
                    "refreshing %s failed (%s); keeping the last good value, retry in %s",
                    ref,
                    errors[ref],
                    format_duration(max(0.0, entry.due - time.time())),
                )
                continue
            new = self.engine.cache[ref]
            self.scheduler.track(ref, new)
            old = before[ref]
            if old is None or old.value != new.value:
                changed.add(ref)
        if changed:
            logger.info("changed: %s", ", ".join(sorted(map(str, changed))))
        return {dest for dest, used in self.engine.used.items() if used & changed}

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
        file_source = self.engine.sources.get("file")
        if isinstance(file_source, FileSource):
            refs = [ref for ref in self.engine.cache if ref.scheme == "file" and file_source.path_of(ref) in paths]
            dirty |= self._refresh(refs)
        return dirty

    def _render(self, dirty: set[str]) -> None:
        for destination in sorted(dirty):
            try:
                for _ in range(4):
                    result = self.engine.render(destination)
                    if not result.missing:
                        break
                    errors = self.engine.fetch(result.missing)
                    for ref, fetched in ((r, self.engine.cache.get(r)) for r in result.missing):
                        if fetched is not None:
                            self.scheduler.track(ref, fetched)
                    if errors:
                        raise next(iter(errors.values()))
                else:
                    raise ConfigError(f"{destination}: references keep changing while rendering")
            except InjectorError as exc:
                self._template_failed(destination, exc)
                continue
            self.engine.outputs[destination] = self.engine.output_file(destination, result)
            self._render_errors.pop(destination, None)
            self._newest[destination] = time.time()
            self.metrics.renders.labels(template=destination).inc()
        used: set[Reference] = set().union(*self.engine.used.values()) if self.engine.used else set()
        self.scheduler.forget([ref for ref in self.scheduler.entries if ref not in used])

    def _template_failed(self, destination: str, exc: InjectorError) -> None:
        self._render_errors[destination] = str(exc)
        self.metrics.render_errors.labels(template=destination).inc()
        logger.error("template %s failed, keeping its last good output: %s", destination, exc)

    def _publish(self, *, notify_only: set[str] | None = None, skip: frozenset[str] = frozenset()) -> None:
        try:
            result = self.sink.publish(self.engine.files())
        except OutputError as exc:
            self.metrics.publish_errors.inc()
            if self._publish_failing_since is None:
                self._publish_failing_since = time.time()
            delay = self._publish_backoff.next()
            self._publish_due = time.time() + delay
            logger.error(  # noqa: TRY400 - one line, no traceback
                "publishing failed, the previous files stay in place; retry in %.1fs: %s", delay, exc
            )
            return
        self._publish_due = None
        self._publish_failing_since = None
        self._publish_backoff.reset()
        self.metrics.last_render.set(time.time())
        if result.changed:
            notify = result.changed if notify_only is None else result.changed & notify_only
            keys = {key for dest in notify for key in self._notifiers.get(dest, [])} - skip
            logger.info("published %s (%d file(s) changed)", result.snapshot, len(result.changed))
            if keys:
                self.dispatcher.changed(sorted(keys))

    def _update_gauges(self) -> None:
        """Data age of a template: time since the least recently confirmed of its references was
        last fetched or renewed successfully; it grows while any of its backends is failing."""
        now = time.time()
        entries = self.scheduler.entries
        for destination, used in self.engine.used.items():
            confirmed = [entries[ref].last_success for ref in used if ref in entries and ref.scheme != "env"]
            oldest = min(confirmed, default=self._newest.get(destination, now))
            self.metrics.data_age.labels(template=destination).set(max(0.0, now - oldest))
        self.metrics.ready.set(1 if self.ready()[0] else 0)

    def _observe_fetch(self, scheme: str, seconds: float, count: int, failed: int) -> None:
        self.metrics.fetch_duration.labels(source=scheme).observe(seconds)
        if failed:
            self.metrics.backend_errors.labels(source=scheme, operation="fetch", kind="error").inc(failed)

    def _save_state(self) -> None:
        if self.config.state_dir is None:
            return
        try:
            save_state(self.config.state_dir, self.engine)
        except OutputError as exc:
            logger.warning("could not save state to %s: %s", self.config.state_dir, exc)

    # --- shutdown -------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.dispatcher.stop()
        if self.revoke_on_exit:
            self._revoke()
        elif self.config.state_dir is not None and self.ready_event.is_set():
            self._save_state()
        if self._health is not None:
            self._health.stop()
        self.engine.close()
        logger.info("sidecar stopped")

    def _revoke(self) -> None:
        for ref, fetched in list(self.engine.cache.items()):
            if fetched.lease is None:
                continue
            leased = self.engine.source(ref.scheme)
            if not isinstance(leased, LeasedSource):
                continue
            try:
                leased.revoke(ref, fetched)
                logger.info("revoked the lease of %s", ref)
            except SourceError as exc:
                logger.warning("revoking %s failed: %s", ref, exc)
        for scheme, source in self.engine.sources.items():
            if isinstance(source, StatefulSource):
                try:
                    source.revoke_session()
                    logger.info("revoked the %s session", scheme)
                except SourceError as exc:
                    logger.warning("revoking the %s session failed: %s", scheme, exc)
