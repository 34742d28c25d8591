"""Orchestration: the engine that fetches, renders and publishes, and ``init`` (render once).

The engine is shared by ``init``, ``render --dry-run``, ``sidecar`` and ``exec``:

1. compile every template and collect the references it names statically (a literal
   ``secret("…")``, ``secrets.NAME``), so that all of them are fetched in ONE concurrent round;
2. fetch the base references not in the cache, grouped by backend, every backend at once (each
   one batches or fans out inside ``Source.fetch``); a reference is fetched once however many
   templates use it;
3. render each template against the cache; references only known at render time (built from
   variables) come back as ``missing`` and are fetched in another round;
4. hand every file to the sink, which publishes one atomic snapshot when any byte changed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from injector.backoff import Backoff
from injector.config.model import Config, TemplateConfig
from injector.errors import RenderError, SourceError, UnavailableError
from injector.handoff import load_state, save_state
from injector.redact import register_value
from injector.refs import Reference, Secret
from injector.sink import OutputFile, PublishResult, Sink
from injector.sources import Fetched, Source, build_source
from injector.template.render import CompiledTemplate, Renderer, RenderResult

__all__ = ["ENV_PREFIX", "Engine", "InitResult", "StopRequested", "env_templates", "run_init"]

logger = logging.getLogger(__name__)

#: Engine keys of the in-memory templates behind ``env:`` (exec mode); they are never published.
ENV_PREFIX = "$env/"

#: Rounds of "render, fetch what was missing" before a template is declared to be chasing its tail.
MAX_RENDER_PASSES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    files: int
    changed: frozenset[str]
    references: int
    attempts: int
    elapsed: float


def _size_of(value: object) -> int:
    """Bytes of a value: a string's UTF-8 length, or the sum over a mapping's keys and values."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return sum(_size_of(str(k)) + _size_of(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_size_of(v) for v in value)
    return len(str(value))


def env_templates(config: Config) -> list[TemplateConfig]:
    """Returns one in-memory template per ``env:`` entry (``NAME: reference`` or a template)."""
    out = []
    for name, value in config.env.items():
        text = value if ("{{" in value or "{%" in value) else "{{ secret(" + json.dumps(value) + ") }}"
        out.append(TemplateConfig(where=f"env.{name}", destination=f"{ENV_PREFIX}{name}", contents=text, mode=0o400))
    return out


class _LateError(UnavailableError):
    """A backend round cut short by the deadline; converge reports the reference's last real error."""


class StopRequested(Exception):
    """Raised out of ``Engine.converge`` when its ``stop`` event is set during a backoff wait."""


class Engine:
    """Templates, the value cache and the sources of one config; see the module docstring."""

    def __init__(self, config: Config, *, sources: Mapping[str, Source] | None = None) -> None:
        self.config = config
        self.renderer = Renderer(secrets=config.secrets, limits=config.limits)
        self.cache: dict[Reference, Fetched] = {}
        #: Permanent fetch errors (not found, denied): raised by ``lookup`` only if a render uses
        #: the reference, so a literal reference in a branch that never runs fails nothing.
        self.failures: dict[Reference, SourceError] = {}
        self.compiled: dict[str, CompiledTemplate] = {}
        #: destination → base references its last render used.
        self.used: dict[str, frozenset[Reference]] = {}
        #: destination → the last file that rendered well.
        self.outputs: dict[str, OutputFile] = {}
        self._sources: dict[str, Source] = dict(sources or {})
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fetch")
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        for source in self._sources.values():
            source.close()

    # --- templates ------------------------------------------------------------------------------

    def compile(self, templates: Iterable[TemplateConfig] | None = None) -> None:
        """Compiles the config's templates (or the given ones); a syntax error raises RenderError."""
        for template in self.config.templates if templates is None else templates:
            self.compiled[template.destination] = self.renderer.compile(template)

    def static_refs(self, destinations: Iterable[str] | None = None) -> set[Reference]:
        """Returns the base references the templates name literally."""
        names = self.compiled.keys() if destinations is None else destinations
        refs: set[Reference] = set()
        for name in names:
            refs |= self.renderer.static_refs(self.compiled[name])
        return refs

    # --- fetching -------------------------------------------------------------------------------

    def fetch(self, refs: Iterable[Reference], *, deadline: float | None = None) -> dict[Reference, SourceError]:
        """Fetches ``refs`` (base references) into the cache; returns the errors, per reference.

        Every backend is asked at once; each batches or fans out inside its own ``fetch``. With a
        ``deadline`` (``time.monotonic()`` scale), a backend still busy then (its client retrying
        inside one call) is reported unavailable instead of being waited for.
        """
        groups: dict[str, list[Reference]] = defaultdict(list)
        for ref in sorted(set(refs), key=str):
            groups[ref.scheme].append(ref)
        errors: dict[Reference, SourceError] = {}
        if not groups:
            return errors
        futures = {scheme: self._pool.submit(self._fetch_group, scheme, group) for scheme, group in groups.items()}
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
            except SourceError as exc:
                # A backend that cannot log in or be reached at all fails each of its refs.
                results = dict.fromkeys(groups[scheme], exc)
            for ref in groups[scheme]:
                result = results.get(ref) or UnavailableError(f"{ref}: the backend returned no result", ref=str(ref))
                if isinstance(result, Fetched):
                    result = self._check_size(ref, result)
                if isinstance(result, Fetched):
                    register_value(result.value.reveal())
                    self.cache[ref] = result
                    self.failures.pop(ref, None)
                else:
                    errors[ref] = result
        return errors

    def _check_size(self, ref: Reference, fetched: Fetched) -> Fetched | SourceError:
        """Refuses a value larger than ``limits.max_secret_bytes``, whatever backend it came from."""
        size = _size_of(fetched.value.reveal())
        limit = self.config.limits.max_secret_bytes
        if size <= limit:
            return fetched
        return SourceError(
            f"{ref}: the value is {size} bytes, more than limits.max_secret_bytes ({limit}); "
            "raise the limit if this is intended",
            ref=str(ref),
        )

    def _fetch_group(self, scheme: str, refs: list[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        started = time.monotonic()
        source = self.source(scheme)
        results = source.fetch(refs)
        elapsed = time.monotonic() - started
        failed = sum(1 for r in results.values() if isinstance(r, SourceError))
        logger.debug("fetched %d %s reference(s) in %.0f ms (%d failed)", len(refs), scheme, elapsed * 1000, failed)
        for hook in self.on_fetch:
            hook(scheme, elapsed, len(refs), failed)
        return results

    # --- rendering ------------------------------------------------------------------------------

    def lookup(self, ref: Reference) -> Secret:
        """The render lookup: the cached value, the reference's permanent error, or KeyError."""
        fetched = self.cache.get(ref)
        if fetched is not None:
            return fetched.value
        failure = self.failures.get(ref)
        if failure is not None:
            raise failure
        raise KeyError(ref)

    def render(self, destination: str) -> RenderResult:
        """Renders one template against the cache (``missing`` lists what is not fetched yet)."""
        result = self.renderer.render(self.compiled[destination], self.lookup)
        if not result.missing:
            self.used[destination] = result.refs
        return result

    def files(self) -> list[OutputFile]:
        """The files to publish: every output but the in-memory ``env:`` values."""
        return [f for name, f in self.outputs.items() if not name.startswith(ENV_PREFIX)]

    def env_values(self) -> dict[str, str]:
        """The rendered ``env:`` values (exec mode), by variable name."""
        return {
            name[len(ENV_PREFIX) :]: f.content.decode("utf-8", errors="replace")
            for name, f in self.outputs.items()
            if name.startswith(ENV_PREFIX)
        }

    def output_file(self, destination: str, result: RenderResult) -> OutputFile:
        template = self.compiled[destination].template
        return OutputFile(
            path=destination, content=result.content, mode=template.mode, uid=template.uid, gid=template.gid
        )

    def converge(
        self,
        destinations: Iterable[str],
        *,
        deadline: float,
        backoff: Backoff,
        stop: threading.Event | None = None,
    ) -> int:
        """Fetches and renders ``destinations`` until all render, retrying transient errors.

        Returns the number of fetch attempts. Permanent errors (not found, access denied, a
        template error) raise at once; transient ones are retried with backoff until ``deadline``
        (``time.monotonic()`` scale), then the last one is raised with how long it was tried.
        Setting ``stop`` (SIGTERM in the sidecar) ends a backoff wait at once: StopRequested.
        """
        names = list(destinations)
        wanted = self.static_refs(names)
        attempts, passes = 0, 0
        #: The last error each reference really got: a round cut by the deadline says less.
        seen: dict[Reference, SourceError] = {}
        while True:
            todo = {ref for ref in wanted if ref not in self.cache and ref not in self.failures}
            if todo:
                attempts += 1
                errors = self.fetch(todo, deadline=deadline)
                errors = {
                    ref: seen.get(ref, err) if isinstance(err, _LateError) else err for ref, err in errors.items()
                }
                seen.update(errors)
                transient = {ref: err for ref, err in errors.items() if err.retryable}
                self.failures.update({ref: err for ref, err in errors.items() if not err.retryable})
                if transient:
                    self._wait_or_give_up(transient, attempts, deadline, backoff, stop)
                    continue
            missing: set[Reference] = set()
            for name in names:
                result = self.render(name)
                if result.missing:
                    missing |= result.missing
                else:
                    self.outputs[name] = self.output_file(name, result)
            if not missing:
                return attempts
            passes += 1
            if passes > MAX_RENDER_PASSES:
                raise RenderError(
                    f"templates keep asking for new references after {MAX_RENDER_PASSES} rounds "
                    f"(last: {', '.join(sorted(map(str, missing))[:3])})"
                )
            wanted |= missing

    @staticmethod
    def _wait_or_give_up(
        errors: Mapping[Reference, SourceError],
        attempts: int,
        deadline: float,
        backoff: Backoff,
        stop: threading.Event | None,
    ) -> None:
        """Sleeps before the next attempt at transient ``errors``, or raises the first at the deadline."""
        first = sorted(errors.items(), key=lambda item: str(item[0]))[0][1]
        delay = backoff.next()
        remaining = deadline - time.monotonic()
        if delay >= remaining:
            raise type(first)(
                f"{first} (gave up after {attempts} attempt(s); {len(errors)} reference(s) unavailable)",
                ref=first.ref,
            )
        logger.warning("%d reference(s) unavailable (%s); retrying in %.1fs", len(errors), first, delay)
        if stop is None:
            time.sleep(delay)
        elif stop.wait(delay):
            raise StopRequested


def run_init(
    config: Config,
    *,
    timeout: float = 120.0,
    sources: Mapping[str, Source] | None = None,
) -> InitResult:
    """Renders everything once into the output directory (``injector init``).

    Adopts a token and leases left in ``state_dir`` by an earlier run in the same pod, and leaves
    its own there for the sidecar, so a pod holds one token and one set of dynamic credentials.
    """
    started = time.monotonic()
    deadline = started + timeout
    sink = Sink(config.output_dir, allow_non_tmpfs=config.allow_non_tmpfs)
    sink.prepare()
    engine = Engine(config, sources=sources)
    try:
        engine.compile()
        if config.state_dir is not None:
            load_state(config.state_dir, engine)
        backoff = Backoff(config.refresh.min_backoff, config.refresh.max_backoff)
        attempts = engine.converge(list(engine.compiled), deadline=deadline, backoff=backoff)
        result: PublishResult = sink.publish(engine.files())
        if config.state_dir is not None:
            save_state(config.state_dir, engine)
    finally:
        engine.close()
    elapsed = time.monotonic() - started
    logger.info(
        "init rendered %d file(s) from %d reference(s) in %.0f ms (%d changed)",
        len(engine.outputs),
        len(engine.cache),
        elapsed * 1000,
        len(result.changed),
    )
    return InitResult(
        files=len(engine.outputs),
        changed=result.changed,
        references=len(engine.cache),
        attempts=attempts,
        elapsed=elapsed,
    )
