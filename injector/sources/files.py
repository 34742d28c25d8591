"""``file:PATH[#KEY]``: a file's text, or (with ``#KEY``) a key of a JSON or YAML file.

Typical use is a mounted Kubernetes Secret or ConfigMap volume. Relative paths resolve against the
config file's folder. The value is the text; ``Secret.select`` parses JSON when a key is asked for,
and YAML mappings are parsed here so ``#KEY`` works for both.

Where a reference may read (the app sharing the pod may write where injector reads):

1. only inside the operator's ``file_roots`` (default: the config's folder and the folders of the
   templates' sources), never inside ``state_dir`` (the token);
2. the path is opened one component at a time from the root's directory with ``O_NOFOLLOW``; a
   symlink met on the way is resolved by hand and must stay beneath the same root (as
   ``openat2(RESOLVE_BENEATH)``: Kubernetes volumes' ``..data`` links work, a link planted to
   ``/proc/1/environ`` or the state dir does not), so swapping a component for a symlink between a
   check and the open cannot redirect the read;
3. the opened file must be a regular file of at most ``limits.max_secret_bytes`` bytes (fstat of
   the open descriptor, so a FIFO cannot block), and its JSON or YAML nests at most
   ``limits.max_depth`` levels before anything parses it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from injector.errors import AccessDeniedError, NotFoundError, SourceError, UnavailableError
from injector.refs import Reference, Secret
from injector.sources import Fetched, SourceDefaults
from injector.sources._limits import ValueLimits

__all__ = ["MAX_FILE_BYTES", "FileSource"]

#: The default size bound (limits.max_secret_bytes): a secret or config value, not a data set.
MAX_FILE_BYTES = 1024 * 1024
#: Symlinks followed while resolving one reference, as the kernel's MAXSYMLINKS.
_MAX_LINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class _Refused(Exception):
    """The path leaves its root or enters the state dir; the text says which."""


class FileSource(SourceDefaults):
    """Reads ``file:`` references relative to ``base_dir``, inside ``roots`` only.

    Args:
        base_dir: where relative references resolve (the config file's folder).
        roots: the folders references may read beneath (``file_roots``); default ``(base_dir,)``.
        state_dir: never readable, even when a root contains it.
        max_bytes, max_depth: ``limits.max_secret_bytes`` and ``limits.max_depth``.
    """

    scheme = "file"

    def __init__(
        self,
        *,
        base_dir: Path,
        roots: Sequence[Path] | None = None,
        state_dir: Path | None = None,
        max_bytes: int = MAX_FILE_BYTES,
        max_depth: int = 64,
    ) -> None:
        self._base_dir = base_dir
        self._roots = tuple(Path(os.path.normpath(root)) for root in (roots or (base_dir,)))
        self._state_dir = state_dir
        self._limits = ValueLimits(max_bytes=max_bytes, max_depth=max_depth)

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    def path_of(self, ref: Reference) -> Path:
        """Returns the absolute path a ``file:`` reference reads (the watcher watches it)."""
        return Path(os.path.normpath(self._base_dir / os.path.expanduser(ref.path)))

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

    def close(self) -> None:
        return None

    # --- opening beneath a root ---------------------------------------------------------------

    def _root_of(self, ref: Reference, path: Path) -> tuple[Path, list[str]]:
        """Returns the longest root ``path`` is under and the components below it."""
        best: Path | None = None
        for root in self._roots:
            if (path == root or root in path.parents) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        if best is None:
            roots = ", ".join(str(r) for r in self._roots)
            raise AccessDeniedError(
                f"{ref}: {path} is outside the file roots ({roots}); add its folder to file_roots in the config",
                ref=str(ref),
            )
        return best, list(path.relative_to(best).parts)

    def _state_id(self) -> tuple[int, int] | None:
        if self._state_dir is None:
            return None
        try:
            st = os.stat(self._state_dir)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _open(self, ref: Reference, root: Path, parts: list[str]) -> int:
        """Opens ``root/parts`` for reading without leaving ``root``; returns the descriptor.

        Steps: (1) open the root directory; (2) for each component, ``lstat`` it relative to the
        current directory: a symlink's target is spliced into the remaining components (absolute
        targets only when they point beneath the root again); ``..`` pops a level and may not pop
        the root; (3) directories are opened with ``O_NOFOLLOW``, and so is the final file, so a
        component swapped for a symlink after step 2 fails the open instead of being followed.
        """
        state = self._state_id()
        stack = [os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)]  # (1) the operator's root may be a link
        try:
            opened = os.fstat(stack[0])
            if state is not None and (opened.st_dev, opened.st_ino) == state:
                raise _Refused("it is inside state_dir, which holds injector's own token")
            pending = list(parts)
            links = 0
            while pending:
                name = pending.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise _Refused(f"it leaves the file root {root} through '..'")
                    os.close(stack.pop())
                    continue
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)  # (2)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        absolute = Path(os.path.normpath(target))
                        if absolute != root and root not in absolute.parents:
                            raise _Refused(f"a symlink on the way points out of the file root {root}")
                        while len(stack) > 1:
                            os.close(stack.pop())
                        target = str(absolute.relative_to(root))
                    pending[:0] = target.split("/")
                    continue
                if pending:  # (3) a directory on the way
                    fd = os.open(name, _DIR_FLAGS, dir_fd=stack[-1])
                    stack.append(fd)
                    opened = os.fstat(fd)
                    if state is not None and (opened.st_dev, opened.st_ino) == state:
                        raise _Refused("it is inside state_dir, which holds injector's own token")
                    continue
                return os.open(name, _FILE_FLAGS, dir_fd=stack[-1])
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        finally:
            for fd in stack:
                os.close(fd)

    # --- reading ------------------------------------------------------------------------------

    def _read(self, ref: Reference) -> Fetched:
        path = self.path_of(ref)
        root, parts = self._root_of(ref, path)
        if self._state_dir is not None and (path == self._state_dir or self._state_dir in path.parents):
            raise AccessDeniedError(f"{ref}: {path} is inside state_dir, which is never readable", ref=str(ref))
        try:
            fd = self._open(ref, root, parts)
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
                if not stat.S_ISREG(st.st_mode):
                    raise SourceError(f"{ref}: {path} is not a regular file", ref=str(ref))
                if st.st_size > self._limits.max_bytes:
                    raise self._limits.too_large(str(ref), st.st_size, ref=str(ref))
                with os.fdopen(os.dup(fd), "rb") as stream:
                    data = stream.read(self._limits.max_bytes + 1)
            finally:
                os.close(fd)
        except _Refused as exc:
            raise AccessDeniedError(f"{ref}: {path} is refused: {exc}", ref=str(ref)) from None
        except FileNotFoundError:
            raise NotFoundError(f"{ref}: {path} does not exist", ref=str(ref)) from None
        except IsADirectoryError:
            raise SourceError(f"{ref}: {path} is a directory, not a file", ref=str(ref)) from None
        except PermissionError:
            raise AccessDeniedError(f"{ref}: permission denied reading {path}", ref=str(ref)) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AccessDeniedError(
                    f"{ref}: {path} changed while it was opened, or has too many symlinks; refused", ref=str(ref)
                ) from None
            raise UnavailableError(f"{ref}: cannot read {path}: {exc.strerror}", ref=str(ref)) from None
        if len(data) > self._limits.max_bytes:
            raise self._limits.too_large(str(ref), f"more than {self._limits.max_bytes}", ref=str(ref))
        return Fetched(value=Secret(self._value(ref, path, data)))

    def _value(self, ref: Reference, path: Path, data: bytes) -> str | bytes | Mapping[str, Any]:
        try:
            text: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data
        self._limits.check_text(str(ref), text, ref=str(ref))
        value: str | bytes | Mapping[str, Any] = text
        if isinstance(text, str) and path.suffix in (".yaml", ".yml"):
            # Imported here: a sidecar that reads no YAML file never loads PyYAML (config.document).
            import yaml

            from injector.config.document import load_yaml

            try:
                parsed = load_yaml(text, max_depth=self._limits.max_depth, max_nodes=max(1, len(text)))
            except ValueError as exc:
                raise SourceError(f"{ref}: {exc}", ref=str(ref)) from None
            except (yaml.YAMLError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                value = parsed
        # No version: a content hash would be a hash of a secret. The cache compares values.
        return value
