"""File watching: template sources and ``file:`` references, ConfigMap volumes included.

Kubernetes updates a ConfigMap or Secret volume by writing a new timestamped folder and renaming
a ``..data`` symlink over the old one; the files the app opens are symlinks through ``..data``, so
the file itself never gets a write event. We therefore watch each file's *folder* (not the file)
and, on any event there, report every watched file of that folder whose content fingerprint (the
resolved target's inode, size and mtime) changed. The consumer re-reads and compares contents, so a
spurious report costs a read, never a needless render.

Two ways to watch: on Linux, :mod:`injector.inotify`, which sleeps in the kernel (an idle sidecar
has no wakeups); elsewhere, when inotify cannot be set up (``fs.inotify.max_user_instances``
reached), or with ``portable=True``, watchfiles' public ``watch()`` in a thread, which wakes every
``step_ms`` to look for events and checks every fingerprint once a second besides.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from injector import inotify

__all__ = ["Watcher"]

logger = logging.getLogger(__name__)

Fingerprint = tuple[int, int, int, int] | None

#: The portable watcher's check of every fingerprint when no event came (milliseconds); it also
#: catches an edit made before watchfiles had its watches in place.
_PORTABLE_CHECK_MS = 1000


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
        debounce_ms / step_ms: the grouping of a burst of events (at most ``debounce_ms``, looked
            at every ``step_ms``); small, because the file budget is 250 ms from a ConfigMap swap
            to the app's signal.
        portable: use watchfiles even where inotify is available.
    """

    def __init__(
        self,
        paths: Iterable[Path],
        on_change: Callable[[set[Path]], None],
        *,
        debounce_ms: int = 50,
        step_ms: int = 10,
        portable: bool = False,
    ) -> None:
        self._paths = sorted({Path(os.path.abspath(p)) for p in paths})
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._portable = portable
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inotify: inotify.Inotify | None = None
        self._prints: dict[Path, Fingerprint] = {p: _fingerprint(p) for p in self._paths}
        self._lock = threading.Lock()

    def add(self, paths: Iterable[Path]) -> None:
        """Adds files before ``start()``, fingerprinting them now (before anyone reads them)."""
        for path in {Path(os.path.abspath(p)) for p in paths} - set(self._paths):
            self._paths.append(path)
            self._prints[path] = _fingerprint(path)
        self._paths.sort()

    def start(self) -> None:
        """Starts watching. With inotify, returns once the kernel watches are in place (so no edit
        made after ``start()`` returns can be missed); watchfiles adds its watches in its thread,
        and an edit made before they are in place is reported by its first fingerprint check,
        within a second. Nothing happens when there is nothing to watch."""
        folders = self._folders()
        if not folders:
            return
        notify = None
        if not self._portable and inotify.available():
            try:
                # Blocks in the kernel until something changes: no wakeups while idle.
                notify = inotify.Inotify(str(f) for f in folders)
            except OSError as exc:
                logger.warning("inotify unavailable (%s); watching files with watchfiles instead", exc)
        if notify is not None:
            self._inotify = notify
            self._thread = threading.Thread(target=self._run_inotify, args=(notify,), name="watch", daemon=True)
        else:
            self._thread = threading.Thread(target=self._run_watchfiles, args=(folders,), name="watch", daemon=True)
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
        except Exception as exc:  # noqa: BLE001 - the refresh interval still re-reads files
            logger.error(  # noqa: TRY400 - one line
                "file watcher stopped (%s: %s); file changes are now seen only at refresh.interval",
                type(exc).__name__,
                exc,
            )
        finally:
            notify.close()

    def _run_watchfiles(self, folders: list[Path]) -> None:
        import watchfiles

        # It logs every change it sees at INFO; the reports here are what matters.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        try:
            # Every event, unfiltered (watchfiles' default filter would drop names such as "x~");
            # a timeout yields an empty set, and every wake-up checks the fingerprints.
            for _changes in watchfiles.watch(
                *folders,
                watch_filter=None,
                debounce=self._debounce_ms,
                step=self._step_ms,
                stop_event=self._stop,
                rust_timeout=_PORTABLE_CHECK_MS,
                yield_on_timeout=True,
                recursive=False,
            ):
                self._report()
        except Exception as exc:  # noqa: BLE001 - the refresh interval still re-reads files
            logger.error(  # noqa: TRY400 - one line
                "file watcher stopped (%s: %s); file changes are now seen only at refresh.interval",
                type(exc).__name__,
                exc,
            )
