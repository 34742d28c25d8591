"""``injector render --dry-run``: what ``init`` would change, and with ``--show`` each file's text,
in which no secret value (nor anything derived from one) can appear, by construction.

1. Every source is wrapped so that a reference whose fetch would *issue* something (the source says
   so: ``IssuingSource.issues``; Vault's ``database/creds``, ``aws/creds``, ``pki/issue`` …) is not
   fetched: templates see ``NOT_ISSUED`` for it (``injector.template.values.NotIssued``), and the
   dry run lists it. With ``issue=True`` it is fetched like the rest, and everything issued is
   revoked before the dry run returns (``IssuingSource.revoke_issued``: a lease, or a certificate
   without one by its serial, or by the certificate itself where Vault keeps no copy).
2. Everything is fetched and rendered as ``init`` does, and each file is compared with what
   ``output_dir`` holds: ``new``, ``would change`` or ``unchanged``, with its size and mode.
3. ``--show`` never prints the real render. Each template is rendered twice more, each time with
   every value replaced by a stand-in of the same shape (the same keys, types, lengths and line
   breaks; characters of the same class — lower, upper, digit, other — but none the value holds),
   the two stand-ins differing at every character. The first stand-in render is shown, and every
   span where the two differ — every span that depends on a value — is replaced by ``<redacted>``.
   What is shown is a function of the template, the non-secret ``env()`` settings, key names and the
   values' shapes only. A template that does not render with stand-ins (it parses a value with
   ``| int``, ``| fromjson`` …) is shown as hidden, with the reason.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from injector.backoff import Backoff
from injector.config.model import Config
from injector.engine import Engine
from injector.errors import InjectorError, OutputError, SourceError
from injector.redact import MASK, escape_controls, scrub
from injector.refs import Reference, Secret
from injector.sink import Sink
from injector.sources import SOURCES, Fetched, IssuingSource, Source, SourceDefaults, build_source
from injector.template.render import CompiledTemplate, Renderer
from injector.template.values import NotIssued

__all__ = ["preview", "stand_in"]

logger = logging.getLogger(__name__)

#: Stand-in characters per class and variant, in order of preference: the first one the value does
#: not hold is used. The two variants share none, so a stand-in never matches the other's.
_POOLS = (
    ("xqzj", "XQZJ", "7351", "._"),
    ("vkwy", "VKWY", "9826", "~-"),
)
#: A run shorter than this that two stand-in renders share between differing spans is masked too:
#: encodings of different stand-ins (base64, say) agree here and there by chance.
_MIN_KEPT = 3


def preview(
    config: Config,
    *,
    timeout: float,
    show: bool = False,
    mask: bool = True,
    issue: bool = False,
    sources: Mapping[str, Source] | None = None,
) -> list[str]:
    """Fetches and renders everything and returns lines saying what ``init`` would change.

    ``show`` adds each file's text, built from stand-ins (module docstring), unless ``mask`` is
    False (``--show-values``: the real text). ``issue`` also fetches references that issue
    something, and revokes their leases before returning. ``sources`` replaces the backends (tests).
    Nothing is written.
    """
    wrapped = {
        scheme: _DryRunSource(scheme, config, issue=issue, given=(sources or {}).get(scheme)) for scheme in SOURCES
    }
    engine = Engine(config, sources=wrapped)
    try:
        engine.compile()
        backoff = Backoff(config.refresh.min_backoff, config.refresh.max_backoff)
        engine.converge(deadline=time.monotonic() + timeout, backoff=backoff)
        lines = _report(config, engine, wrapped, show=show, mask=mask)
    finally:
        try:
            lines_revoked = [line for source in wrapped.values() for line in source.revoke_issued()]
        finally:
            engine.close()
    return lines + lines_revoked


def _report(
    config: Config, engine: Engine, wrapped: Mapping[str, _DryRunSource], *, show: bool, mask: bool
) -> list[str]:
    skipped = {ref for source in wrapped.values() for ref in source.skipped}
    lines = []
    if skipped:
        literal = engine.static_refs() | set(config.secrets.values())
        named = sorted(str(ref) for ref in skipped if ref in {r.base for r in literal})
        built = len(skipped) - len(named)
        more = f" and {built} built at render time" if built else ""
        lines.append(
            f"not issued (a dry run issues no credentials or certificates; --issue issues and revokes them): "
            f"{', '.join(named)}{more}"
        )
    files = engine.files()
    try:
        sink = Sink(config.output_dir, allow_non_tmpfs=True)
        current = sink.current() if config.output_dir.is_dir() else {}
        changed = sink.diff(files) if config.output_dir.is_dir() else frozenset(f.path for f in files)
    except OutputError:
        current, changed = {}, frozenset(f.path for f in files)
    for file in sorted(files, key=lambda f: f.path):
        state = "new" if file.path not in current else ("would change" if file.path in changed else "unchanged")
        if engine.used_refs_of(file.path) & skipped:
            state = "not issued"
        lines.append(f"{state:>12}  {file.path}  ({len(file.content)} bytes, mode {file.mode:04o})")
        if show:
            if mask:
                text = _shown(engine.renderer, engine.template(file.path), engine.cache.lookup)
            else:
                text = file.content.decode("utf-8", errors="replace")
            lines.extend("    " + escape_controls(line) for line in text.splitlines())
    return lines


# --- --show: stand-ins ----------------------------------------------------------------------------


def _shown(renderer: Renderer, compiled: CompiledTemplate, lookup: Callable[[Reference], Secret]) -> str:
    """The text of ``compiled`` rendered with stand-in 0, every span that differs with stand-in 1 masked."""
    texts = []
    for variant in (0, 1):

        def standin_lookup(ref: Reference, variant: int = variant) -> Secret:
            return Secret(stand_in(lookup(ref).reveal(), variant))

        try:
            result = renderer.render(compiled, standin_lookup)
        except InjectorError as exc:  # its message names stand-ins at most, never a value
            return f"<contents hidden: the template does not render with stand-in values: {exc}>"
        if result.missing:
            return "<contents hidden: the template builds references from values>"
        texts.append(result.content.decode("utf-8", errors="replace"))
    return _mask_differences(texts[0], texts[1])


def _mask_differences(first: str, second: str) -> str:
    """``first`` with every span that differs from ``second`` replaced by MASK."""
    a, b = first.splitlines(), second.splitlines()
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(a[i1:i2])
        elif tag == "replace" and i2 - i1 == j2 - j1:
            out.extend(_mask_line(x, y) for x, y in zip(a[i1:i2], b[j1:j2], strict=True))
        else:
            out.extend([MASK] * max(i2 - i1, 1))
    return "\n".join(out)


def _mask_line(first: str, second: str) -> str:
    """``first`` with the spans that differ from ``second`` masked, and short shared runs between
    them (chance agreements of two encodings) masked with them; punctuation-only runs are kept."""
    opcodes = difflib.SequenceMatcher(None, first, second, autojunk=False).get_opcodes()
    parts: list[str] = []
    for n, (tag, i1, i2, _, _) in enumerate(opcodes):
        text = first[i1:i2]
        inner = 0 < n < len(opcodes) - 1
        if tag == "equal" and not (inner and len(text) < _MIN_KEPT and any(c.isalnum() for c in text)):
            parts.append(text)
        elif not parts or parts[-1] != MASK:
            parts.append(MASK)
    return "".join(parts)


def stand_in(value: Any, variant: int) -> Any:
    """Returns a value of the same shape as ``value`` that shares no character class member with it.

    Strings keep their length and line breaks; every other character becomes a stand-in of its
    class (lower, upper, digit, other) that ``value`` does not contain; ``variant`` 0 and 1 differ at
    every such character. A JSON-object or JSON-array string keeps its structure and keys. Mapping
    keys, booleans, None and ``NotIssued`` are kept; numbers keep their digit count.
    """
    if isinstance(value, NotIssued) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lstrip().startswith(("{", "[")):
            try:
                parsed = json.loads(value)
            except ValueError:
                pass
            else:
                if isinstance(parsed, dict | list):
                    return json.dumps(stand_in(parsed, variant), ensure_ascii=False)
        return _stand_in_text(value, variant)
    if isinstance(value, bytes):
        try:
            return _stand_in_text(value.decode("utf-8"), variant).encode("utf-8")
        except UnicodeDecodeError:
            return bytes([0xFE + variant]) * len(value)  # never UTF-8, so still binary
    if isinstance(value, Mapping):
        return {key: stand_in(item, variant) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [stand_in(item, variant) for item in value]
    if isinstance(value, int):
        return (-1 if value < 0 else 1) * int(_stand_in_text(str(abs(value)), variant))
    if isinstance(value, float):
        try:
            return float(_stand_in_text(repr(value), variant))
        except ValueError:
            return 1.5 + variant
    return _stand_in_text(str(value), variant)


def _stand_in_text(text: str, variant: int) -> str:
    held = set(text.lower()) | set(text.upper())
    lower, upper, digit, other = (_pick(pool, held) for pool in _POOLS[variant])
    out = []
    for char in text:
        if char == "\n":
            out.append(char)
        elif "a" <= char <= "z":
            out.append(lower)
        elif "A" <= char <= "Z":
            out.append(upper)
        elif "0" <= char <= "9":
            out.append(digit)
        else:
            out.append(other)
    return "".join(out)


def _pick(pool: str, held: set[str]) -> str:
    return next((c for c in pool if c not in held), pool[0])


# --- sources that issue nothing unless asked ------------------------------------------------------


class _DryRunSource(SourceDefaults):
    """A source built on first use that skips references whose fetch would issue something (unless
    ``issue``), and remembers what it issued so that ``revoke_issued`` can revoke it."""

    def __init__(self, scheme: str, config: Config, *, issue: bool, given: Source | None = None) -> None:
        self.scheme = scheme
        self._config = config
        self._issue = issue
        self._source = given
        self.skipped: set[Reference] = set()
        self._issued: dict[Reference, Fetched] = {}

    def _real(self) -> Source:
        if self._source is None:
            self._source = build_source(self.scheme, self._config)
        return self._source

    def describe(self, ref: Reference) -> str:
        return self._real().describe(ref)

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        source = self._real()
        out: dict[Reference, Fetched | SourceError] = {}
        wanted, issuing = [], set()
        for ref in refs:
            try:
                issues = isinstance(source, IssuingSource) and source.issues(ref)
            except SourceError as exc:
                out[ref] = exc
                continue
            if issues and not self._issue:
                self.skipped.add(ref)
                out[ref] = Fetched(value=Secret(NotIssued()))
                logger.info("not issuing %s (a dry run; --issue issues and revokes it)", source.describe(ref))
                continue
            if issues:
                issuing.add(ref)
            wanted.append(ref)
        results = source.fetch(wanted) if wanted else {}
        for ref, result in results.items():
            if ref in issuing and isinstance(result, Fetched):
                self._issued[ref] = result
        out.update(results)
        return out

    def revoke_issued(self) -> list[str]:
        """Revokes every lease this dry run issued; returns one line per thing issued."""
        lines = []
        for ref, fetched in sorted(self._issued.items(), key=lambda item: str(item[0])):
            source = self._real()
            try:
                revoked = isinstance(source, IssuingSource) and source.revoke_issued(ref, fetched)
            except SourceError as exc:
                # Vault's error may quote what it refused (a serial): a field of the fetched value.
                lines.append(f"issued, NOT revoked: {ref}: {escape_controls(scrub(str(exc)))}")
                continue
            if revoked:
                lines.append(f"issued and revoked: {ref}")
            else:
                # not_after is on the monotonic clock; shown as wall time.
                end = None if fetched.not_after is None else fetched.not_after - time.monotonic() + time.time()
                until = f" (valid until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end))})" if end else ""
                lines.append(f"issued, with no lease or serial to revoke it by: {ref}{until}")
        self._issued.clear()
        return lines

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
