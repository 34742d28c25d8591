"""The engine: THE fetch/render loop and the start-up sequence, shared by every mode.

``init``, ``render --dry-run``, ``sidecar`` and ``exec`` all go through these methods; none has a
loop of its own. The render loop (``render``):

1. render each template against the cache; references only known at render time (built from
   variables) come back as ``missing``;
2. fetch every missing reference in ONE round (all backends at once, each batching or fanning out
   inside ``Source.fetch``) and render the templates that missed something again;
3. stop after ``MAX_RENDER_PASSES`` rounds: a template still asking for new references is chasing
   its tail (``RenderError``). A template that fails keeps its last good output; its error is
   returned, per destination.

``converge`` wraps it for start-up: fetch every literal reference first (``static_refs``, so a
template of literals costs one round), then render, retrying transient errors with backoff until
a deadline. The start-up sequence (``start``) is written once: prepare the output directory →
compile → adopt the handoff → converge → publish → save the handoff.

Templates are either published (files in the output directory) or in memory (``compile(…,
in_memory=True)``): exec mode's ``env:`` values, which only that mode reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from injector.backoff import Backoff
from injector.cache import Cache
from injector.config.model import Config, TemplateConfig
from injector.errors import InjectorError, RenderError, SourceError, UnavailableError
from injector.handoff import Handoff
from injector.handoff import load as load_handoff
from injector.handoff import save as save_handoff
from injector.process.hygiene import resume_collector
from injector.refs import Reference
from injector.sink import OutputFile, PublishResult, Sink
from injector.sources import Fetched, LeasedSource, Source, StatefulSource, build_source
from injector.template.render import CompiledTemplate, Renderer, RenderResult

__all__ = ["MAX_RENDER_PASSES", "Engine", "StopRequested"]

logger = logging.getLogger(__name__)

#: Rounds of "render, fetch what was missing" before a template is declared to be chasing its tail.
MAX_RENDER_PASSES = 8
#: At most this many threads fetch at once, and only during a round: an idle engine has none.
MAX_FETCH_THREADS = 8
#: An issued value closer than this to its end is not adopted from the handoff: a fresh one is fetched.
ADOPT_MARGIN = 30.0


class _LateError(UnavailableError):
    """A backend round cut short by the deadline; converge reports the reference's last real error."""


class StopRequested(Exception):
    """Raised out of ``Engine.converge`` when its ``stop`` event is set during a backoff wait."""


class Engine:
    """Templates, the value cache, the sources and the sink of one config; see the module docstring."""

    def __init__(self, config: Config, *, sources: Mapping[str, Source] | None = None) -> None:
        self.config = config
        self.renderer = Renderer(secrets=config.secrets, limits=config.limits)
        self.cache = Cache(max_bytes=config.limits.max_secret_bytes)
        self.sink = Sink(config.output_dir, allow_non_tmpfs=config.allow_non_tmpfs)
        self._compiled: dict[str, CompiledTemplate] = {}
        self._in_memory: set[str] = set()
        #: destination → base references its last good render used.
        self._used: dict[str, frozenset[Reference]] = {}
        #: destination → the last output that rendered well.
        self._outputs: dict[str, OutputFile] = {}
        self._sources: dict[str, Source] = dict(sources or {})
        #: Called after each backend round: (scheme, seconds, number of refs, errors).
        self.on_fetch: list[Callable[[str, float, int, int], None]] = []

    # --- sources --------------------------------------------------------------------------------

    def source(self, scheme: str) -> Source:
        """Returns the source for ``scheme``, building it (and importing its client) on first use."""
        if scheme not in self._sources:
            self._sources[scheme] = build_source(scheme, self.config)
        return self._sources[scheme]

    @property
    def sources(self) -> Mapping[str, Source]:
        return self._sources

    def close(self) -> None:
        for source in self._sources.values():
            source.close()

    # --- templates ------------------------------------------------------------------------------

    def compile(self, templates: Iterable[TemplateConfig] | None = None, *, in_memory: bool = False) -> None:
        """Compiles the config's templates (or the given ones); a syntax error raises RenderError."""
        for template in self.config.templates if templates is None else templates:
            self._compiled[template.destination] = self.renderer.compile(template)
            if in_memory:
                self._in_memory.add(template.destination)

    def template(self, destination: str) -> CompiledTemplate:
        """The compiled template of ``destination``."""
        return self._compiled[destination]

    @property
    def destinations(self) -> list[str]:
        return list(self._compiled)

    def static_refs(self, destinations: Iterable[str] | None = None) -> set[Reference]:
        """Returns the base references the templates name literally."""
        names = self._compiled.keys() if destinations is None else destinations
        refs: set[Reference] = set()
        for name in names:
            refs |= self.renderer.static_refs(self._compiled[name])
        return refs

    def used_refs(self) -> set[Reference]:
        """The base references the last good renders used."""
        return set().union(*self._used.values()) if self._used else set()

    def used_refs_of(self, destination: str) -> frozenset[Reference]:
        """The base references the last good render of ``destination`` used."""
        return self._used.get(destination, frozenset())

    def users_of(self, refs: Iterable[Reference]) -> set[str]:
        """The destinations whose last good render used any of ``refs``."""
        wanted = set(refs)
        return {dest for dest, used in self._used.items() if used & wanted}

    # --- fetching -------------------------------------------------------------------------------

    def fetch(self, refs: Iterable[Reference], *, deadline: float | None = None) -> dict[Reference, SourceError]:
        """Fetches ``refs`` (base references) into the cache; returns the errors, per reference.

        Every backend is asked at once, each on its own thread of a pool that lives for this round
        only; each batches or fans out inside its own ``fetch``. With a ``deadline``
        (``time.monotonic()`` scale), a backend still busy then (its client retrying inside one
        call) is reported unavailable instead of being waited for.
        """
        groups: dict[str, list[Reference]] = defaultdict(list)
        for ref in sorted(set(refs), key=str):
            groups[ref.scheme].append(ref)
        errors: dict[Reference, SourceError] = {}
        if not groups:
            return errors
        if len(groups) == 1 and deadline is None:
            ((scheme, group),) = groups.items()
            self._collect(scheme, group, self._guarded_group(scheme, group), errors)
            return errors
        pool = ThreadPoolExecutor(max_workers=min(MAX_FETCH_THREADS, len(groups)), thread_name_prefix="fetch")
        try:
            futures = {scheme: pool.submit(self._guarded_group, scheme, group) for scheme, group in groups.items()}
            for scheme, future in futures.items():
                try:
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    results = future.result(timeout=timeout)
                except FutureTimeout:
                    results = {
                        ref: _LateError(
                            f"{ref}: timed out: {scheme} gave no answer before the deadline (its client was retrying)",
                            ref=str(ref),
                        )
                        for ref in groups[scheme]
                    }
                self._collect(scheme, groups[scheme], results, errors)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return errors

    def _collect(
        self,
        scheme: str,
        refs: list[Reference],
        results: Mapping[Reference, Fetched | SourceError],
        errors: dict[Reference, SourceError],
    ) -> None:
        for ref in refs:
            result = results.get(ref) or UnavailableError(f"{ref}: the backend returned no result", ref=str(ref))
            if isinstance(result, Fetched):
                refused = self.cache.store(ref, result)
                if refused is None:
                    continue
                result = refused
            errors[ref] = result
            if not result.retryable:
                self.cache.fail(ref, result)

    def _guarded_group(self, scheme: str, refs: list[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        """One backend's round; a backend that cannot log in or be reached fails each of its refs."""
        try:
            return self._fetch_group(scheme, refs)
        except SourceError as exc:
            return dict.fromkeys(refs, exc)
        except RecursionError:
            # A value nested too deeply for the parser: that backend's references fail, nothing else.
            error = SourceError(f"{scheme}: a value is nested too deeply to read", ref=None)
            return dict.fromkeys(refs, error)

    def _fetch_group(self, scheme: str, refs: list[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        started = time.monotonic()
        results = self.source(scheme).fetch(refs)
        elapsed = time.monotonic() - started
        failed = sum(1 for r in results.values() if isinstance(r, SourceError))
        logger.debug("fetched %d %s reference(s) in %.0f ms (%d failed)", len(refs), scheme, elapsed * 1000, failed)
        for hook in self.on_fetch:
            hook(scheme, elapsed, len(refs), failed)
        return results

    # --- rendering ------------------------------------------------------------------------------

    def render(self, destinations: Iterable[str]) -> dict[str, InjectorError]:
        """THE render loop (module docstring): renders ``destinations``, fetching what they miss.

        Each destination that renders lands in the outputs; the others keep their last good
        output and come back in the returned mapping with their error.
        """
        pending = sorted(set(destinations))
        errors: dict[str, InjectorError] = {}
        for _ in range(MAX_RENDER_PASSES + 1):
            missing: dict[str, frozenset[Reference]] = {}
            for name in pending:  # 1.
                try:
                    result = self._render_one(name)
                except InjectorError as exc:
                    errors[name] = exc
                    continue
                if result.missing:
                    missing[name] = result.missing
                else:
                    self._keep(name, result)
                    errors.pop(name, None)
            if not missing:
                return errors
            failed = self.fetch(set().union(*missing.values()))  # 2.
            pending = []
            for name, refs in sorted(missing.items()):
                error = next((failed[ref] for ref in sorted(refs, key=str) if ref in failed), None)
                if error is not None and error.retryable:
                    errors[name] = error
                else:
                    pending.append(name)  # a permanent error is raised by the render that uses it
        for name in pending:  # 3.
            errors[name] = RenderError(
                f"{name}: the template keeps asking for new references after {MAX_RENDER_PASSES} rounds"
            )
        return errors

    def _render_one(self, destination: str) -> RenderResult:
        return self.renderer.render(self._compiled[destination], self.cache.lookup)

    def _keep(self, destination: str, result: RenderResult) -> None:
        template = self._compiled[destination].template
        self._used[destination] = result.refs
        self._outputs[destination] = OutputFile(
            path=destination, content=result.content, mode=template.mode, uid=template.uid, gid=template.gid
        )

    def files(self) -> list[OutputFile]:
        """The files to publish: every output but the in-memory ones."""
        return [f for name, f in self._outputs.items() if name not in self._in_memory]

    def memory_values(self) -> dict[str, str]:
        """The rendered in-memory templates, by destination."""
        return {
            name: f.content.decode("utf-8", errors="replace")
            for name, f in self._outputs.items()
            if name in self._in_memory
        }

    @property
    def rendered(self) -> int:
        """How many templates have a good output."""
        return len(self._outputs)

    def forget_unused(self) -> None:
        """Drops cached values no template uses any more."""
        self.cache.keep_only(self.used_refs())

    # --- start-up -------------------------------------------------------------------------------

    def converge(
        self,
        destinations: Iterable[str] | None = None,
        *,
        deadline: float,
        backoff: Backoff,
        stop: threading.Event | None = None,
    ) -> None:
        """Fetches and renders ``destinations`` (default: all) until all render.

        Permanent errors (not found, access denied, a template error) raise at once; transient ones
        are retried with backoff until ``deadline`` (``time.monotonic()`` scale), then the last one
        is raised with how long it was tried. Setting ``stop`` ends a backoff wait at once:
        StopRequested.
        """
        names = self.destinations if destinations is None else list(destinations)
        wanted = self.static_refs(names)
        attempts = 0
        #: The last error each reference really got: a round cut by the deadline says less.
        seen: dict[Reference, SourceError] = {}
        while True:
            todo = {ref for ref in wanted if not self.cache.settled(ref)}
            if todo:
                attempts += 1
                errors = self.fetch(todo, deadline=deadline)
                errors = {ref: seen.get(ref, e) if isinstance(e, _LateError) else e for ref, e in errors.items()}
                seen.update(errors)
                transient = {ref: e for ref, e in errors.items() if e.retryable}
                if transient:
                    _wait_or_give_up(list(transient.values()), attempts, deadline, backoff, stop)
                    continue
            failed = self.render(names)
            if not failed:
                return
            transient_render = [e for _, e in sorted(failed.items()) if isinstance(e, SourceError) and e.retryable]
            if len(transient_render) < len(failed):
                raise next(e for _, e in sorted(failed.items()) if e not in transient_render)
            attempts += 1
            _wait_or_give_up(transient_render, attempts, deadline, backoff, stop)

    def start(
        self,
        *,
        deadline: float,
        stop: threading.Event | None = None,
        patient: bool = False,
    ) -> PublishResult:
        """The start-up sequence of every mode: adopt the handoff → converge → publish → save.

        The templates are compiled and the sink prepared by the caller first (a mode may watch
        files before they are read). ``patient`` (the sidecar): a permanent error is retried too,
        since a missing secret may yet appear; otherwise it raises at once (init, exec).
        """
        resume_collector()  # start-up is over: from here on, failures and retries make garbage
        self.adopt_state()
        backoff = Backoff(self.config.refresh.min_backoff, self.config.refresh.max_backoff)
        while True:
            try:
                self.converge(deadline=deadline, backoff=backoff, stop=stop)
                break
            except SourceError as exc:
                if not patient or (stop is not None and stop.is_set()):
                    raise
                # Unlike init, a sidecar waits for a missing secret to appear: forget the
                # permanent failures so the next attempt fetches them again.
                self.cache.forgive()
                delay = backoff.next()
                logger.warning("first render failed: %s; retrying in %.1fs", exc, delay)
                if stop is not None and stop.wait(delay):
                    raise StopRequested from None
                if stop is None:
                    time.sleep(delay)
        result = self.sink.publish(self.files())
        self.save_state()
        return result

    # --- the handoff ----------------------------------------------------------------------------

    def handoff(self) -> Handoff:
        """What the next run (the sidecar after init, a restarted sidecar) should adopt."""
        return Handoff(
            sessions={
                scheme: source.save_state()
                for scheme, source in self._sources.items()
                if isinstance(source, StatefulSource)
            },
            issued=self.cache.issued(),
        )

    def adopt(self, state: Handoff) -> bool:
        """Adopts sessions (only for sources the templates use) and issued values still valid."""
        used = {ref.scheme for ref in self.static_refs()}
        adopted = False
        for scheme, session in state.sessions.items():
            if scheme in used:
                source = self.source(scheme)
                if isinstance(source, StatefulSource) and source.restore_state(session):
                    logger.info("adopted the %s session", scheme)
                    adopted = True
        now = time.monotonic()
        kept = 0
        for ref, fetched in state.issued.items():
            end = fetched.lease.expires_at if fetched.lease is not None else fetched.not_after
            fresh = ref.scheme in used and end is not None and end - now > ADOPT_MARGIN
            if fresh and self.cache.store(ref, fetched) is None:
                kept += 1
        if kept:
            logger.info("adopted %d issued value(s) still valid", kept)
        return adopted or kept > 0

    def adopt_state(self) -> None:
        """Adopts what an earlier run left in ``state_dir``, when there is one."""
        if self.config.state_dir is not None:
            state = load_handoff(self.config.state_dir)
            if state is not None:
                self.adopt(state)

    def save_state(self) -> None:
        """Leaves the handoff in ``state_dir``, when there is one."""
        if self.config.state_dir is not None:
            save_handoff(self.config.state_dir, self.handoff())

    # --- leases ---------------------------------------------------------------------------------

    def renew(self, ref: Reference) -> Fetched | None:
        """Renews the lease of ``ref`` in place; None means fetch it again instead (raises SourceError)."""
        fetched = self.cache.get(ref)
        source = self.source(ref.scheme)
        if fetched is None or fetched.lease is None or not isinstance(source, LeasedSource):
            return None
        renewed = source.renew(ref, fetched)
        self.cache.store(ref, renewed)
        return renewed

    def revoke_all(self) -> None:
        """Revokes every lease and session (``--revoke-on-exit``); failures are logged, not raised."""
        for ref, fetched in self.cache.items():
            source = self.source(ref.scheme)
            if fetched.lease is None or not isinstance(source, LeasedSource):
                continue
            try:
                source.revoke(ref, fetched)
                logger.info("revoked the lease of %s", ref)
            except SourceError as exc:
                logger.warning("revoking %s failed: %s", ref, exc)
        for scheme, session in self._sources.items():
            if isinstance(session, StatefulSource):
                try:
                    session.revoke_session()
                    logger.info("revoked the %s session", scheme)
                except SourceError as exc:
                    logger.warning("revoking the %s session failed: %s", scheme, exc)


def _wait_or_give_up(
    errors: list[SourceError],
    attempts: int,
    deadline: float,
    backoff: Backoff,
    stop: threading.Event | None,
) -> None:
    """Sleeps before the next attempt at transient ``errors``, or raises the first at the deadline."""
    first = sorted(errors, key=lambda e: (e.ref or "", str(e)))[0]
    delay = backoff.next()
    remaining = deadline - time.monotonic()
    if delay >= remaining:
        raise type(first)(
            f"{first} (gave up after {attempts} attempt(s); {len(errors)} reference(s) unavailable)", ref=first.ref
        )
    logger.warning("%d reference(s) unavailable (%s); retrying in %.1fs", len(errors), first, delay)
    if stop is None:
        time.sleep(delay)
    elif stop.wait(delay):
        raise StopRequested
