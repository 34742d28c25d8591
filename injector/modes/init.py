"""``injector init``: render everything once into the output directory, then exit.

It adopts a token and leases left in ``state_dir`` by an earlier run in the same pod, and leaves
its own there for the sidecar, so a pod holds one token and one set of dynamic credentials.

``prepare`` runs first, before the template engine is imported: when the config names Vault
references, it builds the Vault source and starts its login, the lookups of those references'
mounts and the reads of the KV values among them on a thread (``VaultSource.prepare_early``), so
the round trips to Vault overlap importing Jinja2 and compiling the templates instead of following
them. A Kubernetes or JWT login makes Vault ask another service, which is most of a small
``init``'s waiting. The references are those of ``secrets:`` and those a template writes as one
quoted literal, ``secret("vault:…")``, found in its text (Jinja2 is not loaded yet); a reference
the template builds at render time is looked up by the fetch, as before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from injector.config.model import Config
from injector.errors import ConfigError, InjectorError
from injector.handoff import STATE_FILE
from injector.refs import parse_reference

if TYPE_CHECKING:
    from injector.engine import Engine
    from injector.refs import Reference
    from injector.sources import Source

__all__ = ["InitResult", "prepare", "run_init", "template_vault_refs"]

logger = logging.getLogger(__name__)

#: ``secret("vault:…")`` with the reference as one quoted literal without escapes, as templates
#: write it; keyword parameters after it do not change the mount the reference is on.
_LITERAL_VAULT_REF = re.compile(r"""\bsecret\(\s*(["'])(vault:[^"'\\\n]+)\1""")


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    files: int
    changed: frozenset[str]
    references: int
    elapsed: float


def prepare(config: Config) -> dict[str, Source]:
    """Builds the Vault source and starts its login and early reads (``VaultSource.prepare_early``);
    returns it for ``run_init``.

    Nothing is started (an empty mapping) when neither the config's ``secrets:`` nor a template's
    text names a Vault reference (``template_vault_refs``), or when ``state_dir`` holds an
    earlier run's state (its token is adopted, and no new login may race that), or when the source
    cannot be built (``run_init`` builds it again and reports why, where it always did). A login or
    lookup that fails here is only logged at debug level: the first fetch, which waits for this
    one, tries again and reports it as it always did; a read that fails is that reference's error
    in the fetch's answer, as if the fetch had sent it.
    """
    if config.vault is None:
        return {}
    refs = [ref.base for ref in config.secrets.values() if ref.scheme == "vault"] + template_vault_refs(config)
    if not refs:
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
        source.prepare_early(refs)
    return {"vault": source}


def template_vault_refs(config: Config) -> list[Reference]:
    """The Vault references the templates write as ``secret("vault:…")`` with a quoted literal,
    read from their text without Jinja2 (module docstring). A hint for the early login only: text
    that is not a valid reference, or a template source that cannot be read, is left to the compile
    to report, and a literal inside a Jinja2 comment costs one mount lookup that was not needed."""
    refs: list[Reference] = []
    for template in config.templates:
        text = template.contents
        if text is None and template.source is not None:
            try:
                text = template.source.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        for match in _LITERAL_VAULT_REF.finditer(text or ""):
            try:
                refs.append(parse_reference(match.group(2)).base)
            except ConfigError:
                continue
    return refs


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
