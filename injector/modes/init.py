"""``injector init``: render everything once into the output directory, then exit.

It adopts a token and leases left in ``state_dir`` by an earlier run in the same pod, and leaves
its own there for the sidecar, so a pod holds one token and one set of dynamic credentials.

``prepare`` runs first, before the template engine is imported: when the config's ``secrets:``
name Vault references, it builds the Vault source and starts its login (and the lookups of those
references' mounts) on a thread, so the round trips to Vault overlap importing Jinja2 and
compiling the templates instead of following them. A Kubernetes or JWT login makes Vault ask
another service, which is most of a small ``init``'s waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from injector.config.model import Config
from injector.errors import InjectorError
from injector.handoff import STATE_FILE

if TYPE_CHECKING:
    from injector.engine import Engine
    from injector.refs import Reference
    from injector.sources import Source
    from injector.sources.vault import VaultSource

__all__ = ["InitResult", "prepare", "run_init"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    files: int
    changed: frozenset[str]
    references: int
    elapsed: float


def prepare(config: Config) -> dict[str, Source]:
    """Builds the Vault source and starts its login on a thread; returns it for ``run_init``.

    Nothing is started (an empty mapping) when the config's ``secrets:`` name no Vault reference
    (the templates, not compiled yet, might not use Vault at all), or when ``state_dir`` holds an
    earlier run's state (its token is adopted, and no new login may race that), or when the source
    cannot be built (``run_init`` builds it again and reports why, where it always did). A login
    or lookup that fails here is only logged at debug level: the first fetch, which waits for this
    one, tries again and reports it as it always did.
    """
    refs = [ref for ref in config.secrets.values() if ref.scheme == "vault"]
    if not refs or config.vault is None:
        return {}
    if config.state_dir is not None and (config.state_dir / STATE_FILE).exists():
        return {}
    from injector.sources import build_source

    try:
        source = build_source("vault", config)
    except InjectorError:
        return {}
    from injector.sources.vault import VaultSource

    if isinstance(source, VaultSource):
        threading.Thread(target=_log_in, args=(source, refs), name="vault-login", daemon=True).start()
    return {"vault": source}


def _log_in(source: VaultSource, refs: list[Reference]) -> None:
    try:
        source.prepare(refs)
    except Exception as exc:  # noqa: BLE001 - the first fetch reports it; a thread must not print it
        logger.debug("the early Vault login did not complete (%s); the first fetch tries again", type(exc).__name__)


def run_init(
    config: Config,
    *,
    timeout: float = 120.0,
    engine: Engine | None = None,
    sources: Mapping[str, Source] | None = None,
) -> InitResult:
    """Renders every template once and publishes them (the start-up sequence, then exit).

    ``sources``: sources already built (``prepare``'s). Transient errors are retried with backoff
    until ``timeout``; a permanent one raises at once.
    """
    from injector.engine import Engine

    started = time.monotonic()
    engine = engine or Engine(config, sources=sources)
    try:
        engine.sink.prepare()  # a missing or disk-backed output_dir fails before any fetch
        engine.compile()
        result = engine.start(deadline=started + timeout)
    finally:
        engine.close()
    elapsed = time.monotonic() - started
    logger.info(
        "init rendered %d file(s) from %d reference(s) in %.0f ms (%d changed)",
        engine.rendered,
        len(engine.cache),
        elapsed * 1000,
        len(result.changed),
    )
    return InitResult(files=engine.rendered, changed=result.changed, references=len(engine.cache), elapsed=elapsed)
