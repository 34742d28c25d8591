"""``file:PATH[#KEY]``: a file's text, or (with ``#KEY``) a key of a JSON or YAML file.

Typical use is a mounted Kubernetes Secret or ConfigMap volume. Relative paths resolve against the
config file's folder. The value is the text; ``Secret.select`` parses JSON when a key is asked for,
and YAML mappings are parsed here so ``#KEY`` works for both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from injector.errors import AccessDeniedError, NotFoundError, SourceError, UnavailableError
from injector.refs import Reference, Secret
from injector.sources import Fetched, SourceDefaults

__all__ = ["MAX_FILE_BYTES", "FileSource"]

#: A file: source larger than this is refused (a secret or config value, not a data set).
MAX_FILE_BYTES = 4 * 1024 * 1024


class FileSource(SourceDefaults):
    """Reads ``file:`` references relative to ``base_dir``."""

    scheme = "file"

    def __init__(self, *, base_dir: Path) -> None:
        self._base_dir = base_dir

    def path_of(self, ref: Reference) -> Path:
        """Returns the absolute path a ``file:`` reference reads (the watcher watches it)."""
        return self._base_dir / os.path.expanduser(ref.path)

    def watch_paths(self, refs: Sequence[Reference]) -> list[Path]:
        return [self.path_of(ref) for ref in refs if ref.scheme == self.scheme]

    def describe(self, ref: Reference) -> str:
        return f"file({self.path_of(ref)})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        out: dict[Reference, Fetched | SourceError] = {}
        for ref in refs:
            try:
                out[ref] = self._read(ref)
            except SourceError as exc:
                out[ref] = exc
        return out

    def _read(self, ref: Reference) -> Fetched:
        path = self.path_of(ref)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise SourceError(
                    f"{ref}: {path} is {size} bytes, more than the {MAX_FILE_BYTES} a file: reference reads",
                    ref=str(ref),
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{ref}: {path} does not exist", ref=str(ref)) from None
        except IsADirectoryError:
            raise SourceError(f"{ref}: {path} is a directory, not a file", ref=str(ref)) from None
        except PermissionError:
            raise AccessDeniedError(f"{ref}: permission denied reading {path}", ref=str(ref)) from None
        except OSError as exc:
            raise UnavailableError(f"{ref}: cannot read {path}: {exc.strerror}", ref=str(ref)) from None
        try:
            text: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data
        value: str | bytes | Mapping[str, Any] = text
        if isinstance(text, str) and path.suffix in (".yaml", ".yml"):
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            if isinstance(parsed, dict):
                value = parsed
        # No version: a content hash would be a hash of a secret. The cache compares values.
        return Fetched(value=Secret(value))

    def close(self) -> None:
        return None
