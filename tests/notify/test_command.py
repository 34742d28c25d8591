"""The command notifier against real commands: exit codes, output tails, the timeout's process-group kill."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from injector.config.model import CommandNotify
from injector.errors import NotifyError
from injector.notify.command import CommandNotifier
from tests.fixtures.sidecar import wait_for
from tests.notify.support import gone


class TestCommandNotifier:
    def test_exit_zero_is_success(self) -> None:
        """A command exiting 0 succeeds."""
        CommandNotifier(CommandNotify(argv=("/bin/sh", "-c", "echo reloaded"))).notify()

    def test_nonzero_exit_reports_code_and_stderr_tail(self) -> None:
        """A non-zero exit raises with the code and the last 5 lines of stderr."""
        script = "for i in 1 2 3 4 5 6 7 8; do echo line$i >&2; done; exit 3"
        with pytest.raises(NotifyError) as info:
            CommandNotifier(CommandNotify(argv=("/bin/sh", "-c", script))).notify()
        message = str(info.value)
        assert "command /bin/sh: exited with code 3" in message
        assert message.endswith("line4\nline5\nline6\nline7\nline8")
        assert "line3" not in message

    def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        """On timeout the command and its grandchildren are killed."""
        pidfile = tmp_path / "grandchild.pid"
        script = f"sleep 30 & echo $! > {pidfile}; wait"
        started = time.monotonic()
        with pytest.raises(NotifyError, match=r"still running after 0\.3s; killed its process group"):
            CommandNotifier(CommandNotify(argv=("/bin/sh", "-c", script), timeout=0.3)).notify()
        assert time.monotonic() - started < 10
        grandchild = int(pidfile.read_text())
        wait_for(lambda: gone(grandchild), what=f"grandchild {grandchild} gone")

    def test_missing_executable_raises(self, tmp_path: Path) -> None:
        """An argv[0] that does not exist raises naming it."""
        missing = str(tmp_path / "nope")
        with pytest.raises(NotifyError, match=f"cannot start {missing}"):
            CommandNotifier(CommandNotify(argv=(missing,))).notify()
