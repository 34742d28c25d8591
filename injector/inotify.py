"""A minimal inotify reader (Linux, ctypes) that sleeps in the kernel until something changes.

watchfiles' loop wakes every ``step`` milliseconds to look for events, even when there are
none; for a sidecar that should cost ~0 CPU while idle (DESIGN §6) that is ~100 wakeups a second.
This reader blocks in ``select`` on the inotify descriptor and a wake pipe, so an idle watcher
costs nothing. ``watch.py`` uses it on Linux and falls back to watchfiles elsewhere.

Watches are on folders. When a watched folder itself goes away (a ConfigMap's old timestamped
folder, reached through a symlink), its watch is added again on the next event or timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import select
import struct
import sys
from collections.abc import Iterable

__all__ = ["Inotify", "available"]

_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library the interpreter is linked with (``dlopen(NULL)``), once per process.
    ``ctypes.util.find_library("c")`` would import subprocess and run ``ldconfig -p`` to find it
    again at every call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") else None


def available() -> bool:
    """True on Linux with inotify."""
    return _libc() is not None


class Inotify:
    """Watches folders; ``wait`` returns when one changed (or on timeout / ``wake``)."""

    def __init__(self, folders: Iterable[str]) -> None:
        libc = _libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        self._libc = libc
        fd = int(libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._folders = sorted(set(folders))
        self._watched: dict[int, str] = {}
        self.rewatch()

    def rewatch(self) -> None:
        """(Re)adds a watch for every folder that has none (after it was replaced or deleted)."""
        live = set(self._watched.values())
        for folder in self._folders:
            if folder in live:
                continue
            wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _MASK))
            if wd >= 0:
                self._watched[wd] = folder

    def wait(self, timeout: float | None) -> bool:
        """Blocks until an event (True), ``timeout`` seconds or ``wake()`` (False)."""
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
        if self._fd not in ready:
            return False
        self._drain()
        return True

    def wake(self) -> None:
        """Makes a blocked ``wait`` return (used to stop the watcher thread)."""
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & _IN_IGNORED:
                    self._watched.pop(wd, None)
        self.rewatch()
