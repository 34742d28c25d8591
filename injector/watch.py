"""File watching: template sources and ``file:`` references, ConfigMap volumes included.

Kubernetes updates a ConfigMap or Secret volume by writing a new timestamped folder and renaming
a ``..data`` symlink over the old one; the files the app opens are symlinks through ``..data``, so
the file itself never gets a write event. We therefore watch each file's *folder* (not the file)
with inotify (watchfiles where inotify is missing) and, on any event there, report every watched
file of that folder whose content fingerprint (the resolved target's inode, size and mtime)
changed. The consumer re-reads and compares contents, so a spurious report costs a read, never a
needless render. On Linux the watcher sleeps in the kernel: an idle sidecar has no wakeups.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from injector import inotify

__all__ = ["Watcher"]

logger = logging.getLogger(__name__)

Fingerprint = tuple[int, int, int, int] | None


def _fingerprint(path: Path) -> Fingerprint:
    try:
        st = os.stat(path)  # follows ..data symlinks to the current file
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class Watcher:
    """Reports changed files to ``on_change`` from a background thread.

    Args:
        paths: files to watch (their folders are watched).
        on_change: called with the set of watched files that changed.
        debounce_ms / step_ms: watchfiles' grouping of a burst of events; small, because the
            file budget is 250 ms from a ConfigMap swap to the app's signal.
    """

    def __init__(
        self,
        paths: Iterable[Path],
        on_change: Callable[[set[Path]], None],
        *,
        debounce_ms: int = 50,
        step_ms: int = 10,
    ) -> None:
        self._paths = sorted({Path(os.path.abspath(p)) for p in paths})
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inotify: inotify.Inotify | None = None
        self._prints: dict[Path, Fingerprint] = {p: _fingerprint(p) for p in self._paths}
        self._lock = threading.Lock()

    @property
    def paths(self) -> list[Path]:
        return list(self._paths)

    def add(self, paths: Iterable[Path]) -> None:
        """Adds files before ``start()``, fingerprinting them now (before anyone reads them)."""
        for path in {Path(os.path.abspath(p)) for p in paths} - set(self._paths):
            self._paths.append(path)
            self._prints[path] = _fingerprint(path)
        self._paths.sort()

    def start(self) -> None:
        """Starts watching; returns once the kernel watches are in place (so no edit made after
        ``start()`` returns can be missed). Nothing happens when there is nothing to watch."""
        folders = self._folders()
        if not folders:
            return
        notify: Any
        if inotify.available():
            # Blocks in the kernel until something changes: no wakeups while idle.
            notify = inotify.Inotify(str(f) for f in folders)
            self._inotify = notify
            target = self._run_inotify
        else:
            # RustNotify is what watchfiles.watch() builds first; building it here, not in the
            # thread, closes the gap between "thread started" and "watches added".
            from watchfiles._rust_notify import RustNotify

            notify = RustNotify([str(f) for f in folders], False, False, 300, True, False)
            target = self._run_watchfiles
        self._thread = threading.Thread(target=target, args=(notify,), name="watch", daemon=True)
        self._thread.start()
        logger.info("watching %d file(s) in %d folder(s)", len(self._paths), len(folders))

    def _folders(self) -> list[Path]:
        """Each file's folder, and the folder holding any symlinked ancestor (a ConfigMap item
        nested under a symlink ``sub -> ..data/sub`` changes when ``..data`` is swapped above it)."""
        folders: set[Path] = set()
        for path in self._paths:
            if path.parent.is_dir():
                folders.add(path.parent)
            for ancestor in path.parents:
                if ancestor.is_symlink() and ancestor.parent.is_dir():
                    folders.add(ancestor.parent)
        return sorted(folders)

    def stop(self) -> None:
        self._stop.set()
        if self._inotify is not None:
            self._inotify.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self) -> set[Path]:
        """Returns the watched files whose fingerprint changed since the last check."""
        changed = set()
        with self._lock:
            for path in self._paths:
                current = _fingerprint(path)
                if current != self._prints.get(path):
                    self._prints[path] = current
                    changed.add(path)
        return changed

    def _report(self) -> None:
        changed = self.check()
        if changed:
            logger.debug("files changed: %s", ", ".join(map(str, sorted(changed))))
            self._on_change(changed)

    def _run_inotify(self, notify: inotify.Inotify) -> None:
        try:
            while not self._stop.is_set():
                if notify.wait(None):
                    # Gather a burst for at most debounce_ms, then report: a neighbour written
                    # every few ms must not postpone the report (a quiet-period debounce would).
                    until = time.monotonic() + self._debounce_ms / 1000
                    while (left := until - time.monotonic()) > 0 and notify.wait(min(left, self._step_ms / 1000)):
                        pass
                    self._report()
        except Exception:
            logger.exception("file watcher stopped; file changes are now seen only at refresh.interval")
        finally:
            notify.close()

    def _run_watchfiles(self, notify: Any) -> None:
        try:
            with notify:
                while not self._stop.is_set():
                    result = notify.watch(self._debounce_ms, self._step_ms, 1000, self._stop)
                    if result == "stop":
                        return
                    if result not in ("timeout", "signal"):
                        self._report()
        except Exception:
            logger.exception("file watcher stopped; file changes are now seen only at refresh.interval")
