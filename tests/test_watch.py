"""The file watcher: ConfigMap swaps (flat and nested), plain edits, and no wakeups while idle."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from injector import inotify, watch
from injector.watch import Watcher
from tests.fixtures.sidecar import configmap_write, wait_for


class Collector:
    def __init__(self) -> None:
        self.seen: list[set[Path]] = []
        self.lock = threading.Lock()

    def __call__(self, changed: set[Path]) -> None:
        with self.lock:
            self.seen.append(set(changed))

    def all(self) -> set[Path]:
        with self.lock:
            return set().union(*self.seen) if self.seen else set()


@pytest.fixture
def collector() -> Collector:
    return Collector()


#: Both ways of watching: inotify (where the kernel has it) and watchfiles' public API.
WAYS = [
    pytest.param(False, id="inotify", marks=pytest.mark.skipif(not inotify.available(), reason="Linux only")),
    pytest.param(True, id="watchfiles"),
]


def started(paths: list[Path], collector: Collector, *, portable: bool = False) -> Watcher:
    watcher = Watcher(paths, collector, debounce_ms=20, portable=portable)
    watcher.start()
    assert (watcher._inotify is None) == (portable or not inotify.available())
    return watcher


@pytest.mark.parametrize("portable", WAYS)
class TestBothWays:
    def test_plain_edit_is_reported(self, tmp_path: Path, collector: Collector, portable: bool) -> None:
        """Rewriting a watched file reports it."""
        path = tmp_path / "app.j2"
        path.write_text("a")
        watcher = started([path], collector, portable=portable)
        try:
            path.write_text("bb")
            wait_for(lambda: path in collector.all(), 5, "the edit")
        finally:
            watcher.stop()

    def test_configmap_swap_is_reported(self, tmp_path: Path, collector: Collector, portable: bool) -> None:
        """A kubelet-style ..data swap reports the file behind it, though the file got no write."""
        cm = tmp_path / "cm"
        configmap_write(cm, {"color": "blue", "size": "1"})
        watcher = started([cm / "color"], collector, portable=portable)
        try:
            configmap_write(cm, {"color": "red", "size": "1"})
            wait_for(lambda: cm / "color" in collector.all(), 5, "the swap")
        finally:
            watcher.stop()

    def test_nested_item_under_a_symlinked_folder(self, tmp_path: Path, collector: Collector, portable: bool) -> None:
        """An item at sub/x (sub -> ..data/sub) is seen when ..data is swapped above it, twice."""
        cm = tmp_path / "cm"
        cm.mkdir()

        def publish(text: str) -> None:
            stamp = f"..{time.monotonic_ns()}"
            (cm / stamp / "sub").mkdir(parents=True)
            (cm / stamp / "sub" / "x").write_text(text)
            old = os.readlink(cm / "..data") if (cm / "..data").is_symlink() else None
            (cm / "..data_tmp").symlink_to(stamp)
            os.replace(cm / "..data_tmp", cm / "..data")
            if not (cm / "sub").is_symlink():
                (cm / "sub").symlink_to("..data/sub")
            if old:
                (cm / old / "sub" / "x").unlink()
                (cm / old / "sub").rmdir()
                (cm / old).rmdir()

        publish("1")
        watcher = started([cm / "sub" / "x"], collector, portable=portable)
        try:
            for text in ("2", "3"):
                collector.seen.clear()
                publish(text)
                wait_for(lambda: cm / "sub" / "x" in collector.all(), 5, f"swap to {text}")
        finally:
            watcher.stop()

    def test_stop_ends_the_thread(self, tmp_path: Path, collector: Collector, portable: bool) -> None:
        """stop() returns promptly and the thread is gone."""
        path = tmp_path / "f"
        path.write_text("x")
        watcher = started([path], collector, portable=portable)
        watcher.stop()
        assert watcher._thread is not None
        assert not watcher._thread.is_alive()


class TestWatcher:
    def test_watchfiles_events_report_an_edit(
        self, tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On the portable path an edit is reported by watchfiles' events, not by the periodic check."""
        monkeypatch.setattr(watch, "_PORTABLE_CHECK_MS", 60_000)
        path = tmp_path / "f"
        path.write_text("x")
        watcher = started([path], collector, portable=True)
        try:
            # Edits until one is seen: the first ones may come before watchfiles' watches exist.
            deadline = time.monotonic() + 5
            n = 0
            while path not in collector.all():
                assert time.monotonic() < deadline, "watchfiles never reported the edits"
                n += 1
                path.write_text("y" * n)
                time.sleep(0.05)
        finally:
            watcher.stop()

    def test_same_bytes_rewritten_in_place_are_still_reported_once_per_burst(
        self, tmp_path: Path, collector: Collector
    ) -> None:
        """A burst of writes inside the debounce window is one report (the consumer compares bytes)."""
        path = tmp_path / "f"
        path.write_text("x")
        watcher = Watcher([path], collector, debounce_ms=200)
        watcher.start()
        try:
            for i in range(5):
                path.write_text("y" * (i + 2))
            wait_for(lambda: collector.seen, 5, "a report")
            time.sleep(0.4)  # an observation window: no second report for the same burst
            assert len(collector.seen) == 1
        finally:
            watcher.stop()

    @pytest.mark.skipif(not inotify.available(), reason="inotify is Linux-only")
    def test_idle_watcher_does_not_wake_up(self, tmp_path: Path, collector: Collector) -> None:
        """An idle watcher thread sleeps in the kernel: at most a couple of context switches a second."""
        path = tmp_path / "f"
        path.write_text("x")
        watcher = started([path], collector)
        try:
            assert watcher._thread is not None
            status = Path(f"/proc/self/task/{watcher._thread.native_id}/status")

            def switches() -> int:
                line = next(ln for ln in status.read_text().splitlines() if ln.startswith("voluntary_ctxt_switches"))
                return int(line.split()[1])

            before = switches()
            time.sleep(1.0)  # an observation window: count wakeups while nothing happens
            assert switches() - before <= 2
        finally:
            watcher.stop()

    @pytest.mark.skipif(not inotify.available(), reason="inotify is Linux-only")
    def test_inotify_failure_falls_back_to_watchfiles(
        self, tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When inotify cannot be set up (instances exhausted), watchfiles watches and sees an edit."""

        def exhausted(folders: object) -> inotify.Inotify:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(inotify, "Inotify", exhausted)
        path = tmp_path / "f"
        path.write_text("x")
        watcher = Watcher([path], collector, debounce_ms=20)
        watcher.start()
        try:
            assert watcher._inotify is None
            path.write_text("yy")
            wait_for(lambda: path in collector.all(), 5, "the edit")
        finally:
            watcher.stop()


def test_a_busy_neighbour_does_not_postpone_the_report(tmp_path: Path, collector: Collector) -> None:
    """A file written every 10 ms beside the watched one does not delay the watched file's report."""
    watched, noisy = tmp_path / "watched", tmp_path / "noisy"
    watched.write_text("1")
    noisy.write_text("0")
    watcher = Watcher([watched], collector, debounce_ms=50)
    watcher.start()
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            noisy.write_text(str(n))
            time.sleep(0.01)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        time.sleep(0.1)
        watched.write_text("22")
        wait_for(lambda: watched in collector.all(), 1.0, "the watched file's report despite the churn")
    finally:
        stop.set()
        thread.join()
        watcher.stop()
