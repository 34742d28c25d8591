"""Processes the benchmarks start: a real ``injector sidecar`` and the SIGHUP-recording app.

Every process gets a bounded lifetime: the sidecar is stopped with SIGTERM (then SIGKILL after
15 s) when its ``with`` block ends, also when the bench itself gets SIGTERM (``exit_on_sigterm``);
the app exits by itself when the bench dies. Logs go to files under the bench's scratch dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from common import BENCH, INJECTOR, PYTHON, child_env, free_port, http_status, wait_for


def exit_on_sigterm() -> None:
    """Makes SIGTERM end the bench as Ctrl-C does, through its ``with`` blocks, so that the
    sidecars and backends it started are stopped too (Python's default for SIGTERM is to die at
    once, which left a sidecar running with nobody to stop it)."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


class Sidecar:
    """``injector sidecar --config CONFIG --health-address 127.0.0.1:PORT`` with the given env.

    Long options, as deploy/ and the webhook write them: click handles a short option such as
    ``-c`` by first failing to match it as a long one, and the error it builds for that imports
    ``difflib`` (0.2 MiB, ~1 ms) into a process that would not otherwise import it.

    ``launcher``: what runs the ``injector`` arguments (default: the console script), e.g.
    ``[python, bench/heapshot.py, FIFO, DIR, "--"]``. ``env`` is added to the bench's own
    environment (``child_env``: its bytecode tree, its code on ``PYTHONPATH``), unless ``whole_env``:
    then it is the process's whole environment, for a sidecar that runs another installation (a
    root of ``bench/interpreter.py``), which must read its own bytecode.
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        env: dict[str, str],
        *args: str,
        launcher: list[str] | None = None,
        whole_env: bool = False,
    ) -> None:
        self.port = free_port()
        self.log = log
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(launcher or [INJECTOR]),
                    "sidecar",
                    "--config",
                    str(config),
                    "--health-address",
                    f"127.0.0.1:{self.port}",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env if whole_env else child_env(env),
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the sidecar exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Waits for /readyz; returns seconds since the process started."""
        wait_for(self.ready, timeout, "the sidecar's /readyz", step=0.01)
        return time.monotonic() - self.started

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class App:
    """``bench/app.py``: appends the monotonic time of every SIGHUP it gets to ``log``."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "app.log"
        self.pidfile = folder / "app.pid"
        self.log.touch()
        self.proc = subprocess.Popen([PYTHON, str(BENCH / "app.py"), str(self.log), str(self.pidfile)])
        wait_for(self.pidfile.exists, 15, "the app to write its pidfile", step=0.01)

    def signals(self) -> list[float]:
        """Monotonic times at which the handler ran, oldest first."""
        return [float(line) for line in self.log.read_text().split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def readlink(path: Path) -> str | None:
    """The target of the ``..data`` link (None while absent): it changes exactly when a snapshot is
    published, which is when the output files change."""
    try:
        return os.readlink(path)
    except OSError:
        return None
