"""File watching: template sources and ``file:`` references, ConfigMap volumes included.

Kubernetes updates a ConfigMap or Secret volume by writing a new timestamped folder and renaming
a ``..data`` symlink over the old one; the files the app opens are symlinks through ``..data``, so
the file itself never gets a write event. We therefore watch each file's *folder* (not the file)
with watchfiles (inotify) and, on any event there, report every watched file of that folder whose
content fingerprint (the resolved target's inode, size and mtime) changed. The consumer re-reads
and compares contents, so a spurious report costs a read, never a needless render.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

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
        self._prints: dict[Path, Fingerprint] = {p: _fingerprint(p) for p in self._paths}

    @property
    def paths(self) -> list[Path]:
        return list(self._paths)

    def start(self) -> None:
        """Starts watching; returns at once. Nothing happens when there is nothing to watch."""
        folders = sorted({p.parent for p in self._paths if p.parent.is_dir()})
        if not folders:
            return
        self._thread = threading.Thread(target=self._run, args=(folders,), name="watch", daemon=True)
        self._thread.start()
        logger.info("watching %d file(s) in %d folder(s)", len(self._paths), len(folders))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self) -> set[Path]:
        """Returns the watched files whose fingerprint changed since the last check."""
        changed = set()
        for path in self._paths:
            current = _fingerprint(path)
            if current != self._prints.get(path):
                self._prints[path] = current
                changed.add(path)
        return changed

    def _run(self, folders: list[Path]) -> None:
        from watchfiles import watch

        try:
            for _events in watch(
                *folders,
                stop_event=self._stop,
                debounce=self._debounce_ms,
                step=self._step_ms,
                recursive=True,
                raise_interrupt=False,
                yield_on_timeout=False,
                rust_timeout=1000,
            ):
                changed = self.check()
                if changed:
                    logger.debug("files changed: %s", ", ".join(map(str, sorted(changed))))
                    self._on_change(changed)
        except Exception:
            logger.exception("file watcher stopped; file changes are now seen only at refresh.interval")
