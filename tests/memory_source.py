"""An in-memory source for in-process tests of the engine and the sidecar loop (never integration)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from injector.errors import NotFoundError, SourceError, UnavailableError
from injector.refs import Reference, Secret
from injector.sources import Fetched, SourceDefaults


class MemorySource(SourceDefaults):
    """Serves ``values`` (path → value) under ``scheme``; counts rounds; can fail or block on demand."""

    def __init__(self, values: Mapping[str, Any] | None = None, *, scheme: str = "vault") -> None:
        self.scheme = scheme
        self.values: dict[str, Any] = dict(values or {})
        self.rounds: list[list[str]] = []
        #: path → the error every fetch of it gets (until removed).
        self.errors: dict[str, SourceError] = {}
        #: Set to make fetch wait until it is cleared (a wedged backend).
        self.block = threading.Event()
        self.unblocked = threading.Event()
        self.unblocked.set()
        self.lock = threading.Lock()

    def describe(self, ref: Reference) -> str:
        return f"memory({ref.path})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        self.unblocked.wait(timeout=30)
        with self.lock:
            self.rounds.append(sorted(ref.path for ref in refs))
            out: dict[Reference, Fetched | SourceError] = {}
            for ref in refs:
                if ref.path in self.errors:
                    out[ref] = self.errors[ref.path]
                elif ref.path in self.values:
                    out[ref] = Fetched(value=Secret(self.values[ref.path]))
                else:
                    out[ref] = NotFoundError(f"{ref}: not found", ref=str(ref))
            return out

    def down(self, path: str) -> None:
        self.errors[path] = UnavailableError(f"{self.scheme}:{path}: backend down", ref=f"{self.scheme}:{path}")

    def close(self) -> None:
        pass
