"""A real sidecar process and the signals a pod or an operator sends it: none kills it outright."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.fixtures.sidecar import Harness, SidecarProcess, wait_for

pytestmark = pytest.mark.slow


def start(harness: Harness, output_dir: Path) -> tuple[SidecarProcess, Path]:
    source = harness.tmp_path / "value"
    source.write_text("one")
    config = harness.config(
        {
            "output_dir": str(output_dir),
            "refresh": {"interval": "1h", "min_backoff": "100ms", "max_backoff": "1s"},
            "templates": [{"contents": "v={{ secret('file:" + str(source) + "') }}", "destination": "v"}],
        }
    )
    sidecar = harness.sidecar(config)
    sidecar.wait_ready()
    return sidecar, source


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2])
def test_reload_and_user_signals_do_not_kill_it(harness: Harness, output_dir: Path, signum: int) -> None:
    """SIGHUP, SIGUSR1 and SIGUSR2 are handled: the sidecar stays up and ready."""
    sidecar, _ = start(harness, output_dir)
    sidecar.proc.send_signal(signum)
    time.sleep(0.5)
    assert sidecar.proc.poll() is None, sidecar.logs()
    assert sidecar.get("/readyz")[0] == 200


def test_sighup_refreshes_every_reference_now(harness: Harness, output_dir: Path) -> None:
    """SIGHUP starts a refresh round of every reference at once, not waiting for the (hour-long) interval."""
    sidecar, _ = start(harness, output_dir)
    sidecar.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: refreshing every reference now" in sidecar.logs(), 10, "the refresh round")


def test_sigquit_stops_it_cleanly(harness: Harness, output_dir: Path) -> None:
    """SIGQUIT stops the sidecar like SIGTERM: exit 0, files left in place."""
    sidecar, _ = start(harness, output_dir)
    sidecar.proc.send_signal(signal.SIGQUIT)
    assert sidecar.proc.wait(timeout=15) == 0
    assert (output_dir / "v").read_text() == "v=one"
