"""The command notifier: an argv run with a timeout, in a process group of its own."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping

from injector.config.model import CommandNotify
from injector.errors import NotifyError

logger = logging.getLogger(__name__)


#: How many trailing lines of a failed command's stderr go into the error message.
STDERR_TAIL_LINES = 5


def _tail(data: bytes, lines: int = STDERR_TAIL_LINES) -> str:
    text = data.decode("utf-8", errors="replace").rstrip()
    kept = [line[:200] for line in text.splitlines()[-lines:]]
    return "\n".join(kept)


class CommandNotifier:
    """Runs an argv (never through a shell) and waits for it; exit 0 is success.

    The command gets ``environ`` (the sidecar passes its own environment without the Vault token,
    injector's settings, AWS keys and the variables behind ``env:`` references), reads /dev/null,
    and runs in a new session: on timeout its whole process group is killed, grandchildren
    included.
    """

    def __init__(self, config: CommandNotify, *, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._environ = dict(environ) if environ is not None else None

    def describe(self) -> str:
        return self._config.describe()

    def notify(self) -> None:
        argv, timeout = list(self._config.argv), self._config.timeout
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self._environ,
            )
        except OSError as exc:
            raise NotifyError(f"{self.describe()}: cannot start {argv[0]}: {exc.strerror}") from None
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                # Something left the group but holds our pipes: stop waiting for it.
                proc.kill()
                proc.wait(timeout=5)
            raise NotifyError(
                f"{self.describe()}: still running after {timeout:g}s; killed its process group"
            ) from None
        if proc.returncode != 0:
            tail = _tail(stderr) or _tail(stdout)
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0 and -proc.returncode in signal.valid_signals()
                else f"exited with code {proc.returncode}"
            )
            raise NotifyError(f"{self.describe()}: {how}" + (f"; last output:\n{tail}" if tail else ""))
        logger.info("%s exited 0", self.describe())


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        logger.warning("not allowed to kill process group %d of a timed-out command", pgid)
