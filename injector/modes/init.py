"""``injector init``: render everything once into the output directory, then exit.

It adopts a token and leases left in ``state_dir`` by an earlier run in the same pod, and leaves
its own there for the sidecar, so a pod holds one token and one set of dynamic credentials.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from injector.config.model import Config
from injector.engine import Engine

__all__ = ["InitResult", "run_init"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    files: int
    changed: frozenset[str]
    references: int
    elapsed: float


def run_init(config: Config, *, timeout: float = 120.0, engine: Engine | None = None) -> InitResult:
    """Renders every template once and publishes them (the start-up sequence, then exit).

    Transient errors are retried with backoff until ``timeout``; a permanent one raises at once.
    """
    started = time.monotonic()
    engine = engine or Engine(config)
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
