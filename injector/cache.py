"""The value cache: one entry per base reference, and the one place values enter the process.

``Cache`` owns what is known of each reference: its last good ``Fetched`` value (with lease, TTL,
version) or the permanent error its last fetch got (not found, access denied, over a limit). Every
other module asks it through methods; none holds a dict of values of its own. What ``store`` does
to every value, whatever backend it came from:

1. check its size against ``limits.max_secret_bytes`` (an over-limit value is that reference's
   error, never stored);
2. register it for log scrubbing (``injector.redact``), before anything could print it;
3. keep it, and clear the reference's permanent error; the value it replaces is handed back to
   the scrubber as retired (``forget_value``), so the registry holds what is live, not history.

A permanent error is raised by ``lookup`` only when a render uses the reference, so a literal
reference in a branch that never runs fails nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from injector.errors import SourceError
from injector.redact import forget_value, register_value
from injector.refs import Reference, Secret
from injector.sources import Fetched

__all__ = ["Cache", "size_of"]


def size_of(value: object) -> int:
    """Bytes of a value: a string's UTF-8 length, or the sum over a mapping's keys and values."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return sum(size_of(str(k)) + size_of(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(size_of(v) for v in value)
    return len(str(value))


class Cache:
    """Values and permanent failures by base reference; see the module docstring."""

    __slots__ = ("_entries", "_failures", "_max_bytes")

    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: dict[Reference, Fetched] = {}
        self._failures: dict[Reference, SourceError] = {}

    # --- writing --------------------------------------------------------------------------------

    def store(self, ref: Reference, fetched: Fetched) -> SourceError | None:
        """Keeps ``fetched`` as the value of ``ref``; returns the error instead if it is over the limit."""
        size = size_of(fetched.value.reveal())  # 1.
        if size > self._max_bytes:
            return SourceError(
                f"{ref}: the value is {size} bytes, more than limits.max_secret_bytes ({self._max_bytes}); "
                "raise the limit if this is intended",
                ref=str(ref),
            )
        register_value(fetched.value.reveal())  # 2.
        old = self._entries.get(ref)
        self._entries[ref] = fetched  # 3.
        self._failures.pop(ref, None)
        if old is not None:
            forget_value(old.value.reveal())
        return None

    def fail(self, ref: Reference, error: SourceError) -> None:
        """Records a permanent error of ``ref`` (its last good value, if any, stays)."""
        self._failures[ref] = error

    def forgive(self) -> None:
        """Forgets every permanent error, so the next round fetches those references again."""
        self._failures.clear()

    def drop(self, refs: Iterable[Reference]) -> None:
        """Forgets the values (and errors) of ``refs``: the next render fetches them again."""
        for ref in refs:
            old = self._entries.pop(ref, None)
            if old is not None:
                forget_value(old.value.reveal())
            self._failures.pop(ref, None)

    def keep_only(self, refs: Iterable[Reference]) -> None:
        """Forgets every entry not in ``refs`` (references no template uses any more)."""
        live = set(refs)
        self.drop([ref for ref in self._entries if ref not in live])
        for ref in [ref for ref in self._failures if ref not in live]:
            del self._failures[ref]

    # --- reading --------------------------------------------------------------------------------

    def get(self, ref: Reference) -> Fetched | None:
        return self._entries.get(ref)

    def lookup(self, ref: Reference) -> Secret:
        """The render lookup: the cached value, the reference's permanent error, or KeyError."""
        fetched = self._entries.get(ref)
        if fetched is not None:
            return fetched.value
        failure = self._failures.get(ref)
        if failure is not None:
            raise failure
        raise KeyError(ref)

    def settled(self, ref: Reference) -> bool:
        """Whether ``ref`` has a value or a permanent error (nothing left to fetch)."""
        return ref in self._entries or ref in self._failures

    def items(self) -> Iterator[tuple[Reference, Fetched]]:
        return iter(list(self._entries.items()))

    def issued(self) -> dict[Reference, Fetched]:
        """The values a backend issued for us (a lease or an end of validity): the handoff keeps these."""
        return {
            ref: fetched
            for ref, fetched in self._entries.items()
            if fetched.lease is not None or fetched.not_after is not None
        }

    def __contains__(self, ref: object) -> bool:
        return ref in self._entries

    def __len__(self) -> int:
        return len(self._entries)
