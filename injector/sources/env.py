"""``env:NAME``: an environment variable of the injector process, but never one of its own
credentials (``injector.credentials``: ``VAULT_TOKEN``, static AWS keys, ``INJECTOR_*`` …)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from injector.credentials import is_credential
from injector.errors import AccessDeniedError, NotFoundError, SourceError
from injector.refs import Reference, Secret
from injector.sources import Fetched, SourceDefaults

__all__ = ["EnvSource"]


class EnvSource(SourceDefaults):
    """Reads ``env:`` references from ``environ`` (the process environment by default)."""

    scheme = "env"
    #: A process's environment cannot change under it: read once, never polled.
    changes = False

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def variables(self, refs: Sequence[Reference]) -> set[str]:
        return {ref.path for ref in refs if ref.scheme == self.scheme}

    def describe(self, ref: Reference) -> str:
        return f"env({ref.path})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        out: dict[Reference, Fetched | SourceError] = {}
        for ref in refs:
            value = self._environ.get(ref.path)
            if is_credential(ref.path):
                out[ref] = AccessDeniedError(
                    f"{ref}: {ref.path} holds the injector's own credentials or settings, which templates "
                    "cannot read; put the value the app needs in a secret backend",
                    ref=str(ref),
                )
            elif value is None:
                out[ref] = NotFoundError(
                    f"{ref}: environment variable {ref.path} is not set in the injector's "
                    "container; set it, or use env(NAME, default) in the template",
                    ref=str(ref),
                )
            else:
                out[ref] = Fetched(value=Secret(value), version=None)
        return out

    def close(self) -> None:
        return None
