"""Reload notifications that fail, and bursts of changes, through a real sidecar process.

A failing notifier is reported (log and ``injector_notifications_total{result="error"}``), retried
with backoff a bounded number of times (the dispatcher's 6 attempts per change, then ``gave_up``),
and never stops the refresh loop. A burst of 100 changes costs a handful of renders and exactly one
notification per notifier.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sidecar import Harness, configmap_write, free_port, wait_for
from tests.reliability.support import metric_sum, start_sidecar, write_config

pytestmark = pytest.mark.slow

#: The dispatcher's attempts per notification (injector.notify.dispatch.Dispatcher's default).
MAX_NOTIFY_ATTEMPTS = 6
REFRESH = {
    "interval": "1s",
    "jitter": 0.0,
    "min_backoff": "200ms",
    "max_backoff": "1s",
    "wait": {"min": "50ms", "max": "500ms"},
}


class ReloadServer:
    """A loopback reload endpoint answering ``status`` and counting hits."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hits: list[float] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.hits.append(time.monotonic())
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/-/reload"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- failing notifiers -----------------------------------------------------------------------------


@dataclass
class NotifyRecord:
    labels: dict[str, str] = field(default_factory=dict)
    after_first: str = ""
    after_second: str = ""
    #: None while the process a planted pidfile names is still running (it dies of SIGHUP).
    victim_exit: int | None = None
    http_hits_after_first: int = 0
    file_after_second: str = ""
    log: str = ""


FAILING = [
    "pidfile-of-dead-app",
    "pidfile-of-another-process",
    "no-such-process",
    "http-500",
    "http-refused",
    "command-fails",
]
#: The reload helper app runs as the interpreter: its executable name is the interpreter's.
APP_NAME = Path(sys.executable).name


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyRecord]:
    """One sidecar, six templates on one ConfigMap value, each with a notifier that always fails."""
    tmp = tmp_path_factory.mktemp("notify")
    out = tmp / "out"
    from tests.fixtures.tmpfs import mount_tmpfs, unmount

    mount_tmpfs(out)
    cm = tmp / "cm"
    configmap_write(cm, {"v": "1"})
    pidfile = tmp / "app.pid"
    pidfile.write_text(f"{dead_pid()}\n")
    victim = subprocess.Popen(["sleep", "300"])  # SIGHUP would end it
    planted = tmp / "planted.pid"
    planted.write_text(f"{victim.pid}\n")
    server = ReloadServer(status=500)
    closed = f"http://127.0.0.1:{free_port()}/-/reload"
    notifiers: dict[str, dict[str, Any]] = {
        "pidfile-of-dead-app": {"signal": "SIGHUP", "pidfile": str(pidfile), "process": "app-7d1f"},
        "pidfile-of-another-process": {"signal": "SIGHUP", "pidfile": str(planted), "process": "app-7d1f"},
        "no-such-process": {"signal": "SIGHUP", "process": "no-such-app-7d1f"},
        "http-500": {"http": server.url, "method": "POST", "timeout": "2s"},
        "http-refused": {"http": closed, "method": "POST", "timeout": "2s"},
        "command-fails": {"command": ["/bin/sh", "-c", "echo reload refused >&2; exit 3"], "timeout": "5s"},
    }
    labels = {
        "pidfile-of-dead-app": f"signal SIGHUP → {pidfile}",
        "pidfile-of-another-process": f"signal SIGHUP → {planted}",
        "no-such-process": "signal SIGHUP → no-such-app-7d1f",
        "http-500": f"http POST {server.url}",
        "http-refused": f"http POST {closed}",
        "command-fails": "command /bin/sh",
    }
    config = write_config(
        tmp / "injector.yaml",
        {
            "output_dir": str(out),
            "refresh": REFRESH,
            "templates": [
                {"contents": "{{ secret('file:%s') }}" % (cm / "v"), "destination": name, "on_change": [notifier]}
                for name, notifier in notifiers.items()
            ],
        },
    )
    sidecar = start_sidecar(tmp, config, free_port())
    record = NotifyRecord(labels=labels)

    def metrics() -> str:
        return sidecar.get("/metrics")[1]

    try:
        sidecar.wait_ready()
        configmap_write(cm, {"v": "2"})
        wait_for(
            lambda: all(
                metric_sum(metrics(), "injector_notifications_total", notifier=label, result="gave_up") >= 1
                for label in labels.values()
            ),
            20,
            "every notifier to give up on the first change",
        )
        record.after_first = metrics()
        record.http_hits_after_first = len(server.hits)
        configmap_write(cm, {"v": "3"})
        wait_for(lambda: (out / "http-500").read_text() == "3", 10, "the second change rendered")
        wait_for(
            lambda: all(
                metric_sum(metrics(), "injector_notifications_total", notifier=label, result="error")
                > MAX_NOTIFY_ATTEMPTS
                for label in labels.values()
            ),
            10,
            "every notifier to try again after the second change",
        )
        record.after_second = metrics()
        record.file_after_second = (out / "http-500").read_text()
        record.log = sidecar.logs()
        record.victim_exit = victim.poll()
        yield record
    finally:
        sidecar.stop()
        victim.kill()
        victim.wait(5)
        server.stop()
        unmount(out)


@pytest.mark.parametrize("kind", FAILING)
class TestFailingNotifier:
    def test_errors_are_logged_and_counted(self, failing: NotifyRecord, kind: str) -> None:
        """Each failed attempt is a WARNING naming the notifier and a result="error" sample."""
        label = failing.labels[kind]
        assert metric_sum(failing.after_first, "injector_notifications_total", notifier=label, result="error") >= 1
        assert f"notify {label} failed (attempt 1 of {MAX_NOTIFY_ATTEMPTS})" in failing.log

    def test_retries_are_bounded_per_change(self, failing: NotifyRecord, kind: str) -> None:
        """One change leads to exactly max_attempts failed attempts, then one gave_up: no retry storm."""
        label = failing.labels[kind]
        errors = metric_sum(failing.after_first, "injector_notifications_total", notifier=label, result="error")
        gave_up = metric_sum(failing.after_first, "injector_notifications_total", notifier=label, result="gave_up")
        assert (errors, gave_up) == (MAX_NOTIFY_ATTEMPTS, 1)

    def test_never_stops_the_loop(self, failing: NotifyRecord, kind: str) -> None:
        """A later change still renders, and the notifier is tried again for it."""
        label = failing.labels[kind]
        assert failing.file_after_second == "3"
        assert (
            metric_sum(failing.after_second, "injector_notifications_total", notifier=label, result="error")
            > MAX_NOTIFY_ATTEMPTS
        )


def test_a_planted_pidfile_does_not_get_another_process_signalled(failing: NotifyRecord) -> None:
    """A pidfile naming a process that is not the app's name leaves that process running, and says why."""
    assert failing.victim_exit is None
    assert "names pid" in failing.log
    assert "is not named app-7d1f: not signalled" in failing.log


def test_failing_reload_endpoint_gets_one_request_per_attempt(failing: NotifyRecord) -> None:
    """The endpoint answering 500 saw exactly max_attempts requests for the first change."""
    assert failing.http_hits_after_first == MAX_NOTIFY_ATTEMPTS


# --- bursts ----------------------------------------------------------------------------------------

BURST = 100


def test_a_burst_of_100_changes_is_a_handful_of_renders_and_one_notification_each(
    harness: Harness, output_dir: Path
) -> None:
    """100 ConfigMap changes in about a second: renders ≪ 100, exactly one SIGHUP and one POST.

    Bound on renders: the watcher groups a burst of events for 50 ms (debounce_ms), and each group
    is one pass that renders each dirty template once: a ~1 s burst is at most ~20 passes; 25 leaves
    room for a slow machine. One render per change would be 100.
    """
    cm = harness.tmp_path / "cm"
    configmap_write(cm, {"n": "0"})
    pidfile = harness.tmp_path / "app-0.pid"
    server = ReloadServer(status=200)
    try:
        config = harness.config(
            {
                "output_dir": str(output_dir),
                "refresh": {**REFRESH, "wait": {"min": "400ms", "max": "5s"}},
                "templates": [
                    {
                        "contents": "{{ secret('file:%s') }}\n" % (cm / "n"),
                        "destination": "n",
                        "on_change": [
                            {"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME},
                            {"http": server.url, "method": "POST"},
                        ],
                    }
                ],
            }
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        app = harness.app(output_dir / "n")

        def renders() -> float:
            return metric_sum(sidecar.get("/metrics")[1], "injector_renders_total", template="n")

        before = renders()
        started = time.monotonic()
        for i in range(1, BURST + 1):
            configmap_write(cm, {"n": str(i)})
            time.sleep(0.008)  # pacing the burst over about a second
        burst_seconds = time.monotonic() - started
        wait_for(lambda: app.reloads() and server.hits, 10, "the burst's reload and POST")
        wait_for(lambda: (output_dir / "n").read_text() == f"{BURST}\n", 10, "the last value on disk")
        burst_renders = renders() - before
        # A later change is the barrier proving no second notification of the burst was pending.
        configmap_write(cm, {"n": "done"})
        wait_for(lambda: app.reloads()[-1:] == ["done"] and len(server.hits) >= 2, 10, "the barrier's notifications")
        print(f"{BURST} changes in {burst_seconds:.2f}s: {burst_renders:g} renders")
        assert burst_seconds < 3.0
        assert burst_renders <= 25, burst_renders
        assert app.reloads() == [str(BURST), "done"], app.events()
        assert len(server.hits) == 2
    finally:
        server.stop()
