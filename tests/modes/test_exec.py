"""`injector exec` as a real process supervising a real child (tests/helpers/exec_app.py, which
reports every start, its environment and the signals it receives): env values, filtering,
restarts, reload signals, forwarding, exit codes, PID 1, and the sentinel secret. EnvState, which
decides when a restart is due, is tested in-process first."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.modes.exec import EnvState
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.sidecar import configmap_write, free_port, wait_for

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
APP = str(HELPERS / "exec_app.py")
PY = sys.executable
FAST = {
    "interval": "1s",
    "jitter": 0.0,
    "wait": {"min": "50ms", "max": "500ms"},
    "min_backoff": "100ms",
    "max_backoff": "500ms",
}
UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc")


@dataclass
class ExecRun:
    """One `injector exec` process and the folder its child reports into."""

    proc: subprocess.Popen[bytes]
    log: Path
    out: Path

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def starts(self) -> list[tuple[int, float]]:
        """(pid, CLOCK_MONOTONIC) of every start of the child, in order."""
        path = self.out / "starts"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(int(pid), float(at)) for pid, at in (line.split() for line in lines)]

    def child(self, number: int = 1, timeout: float = 15.0) -> int:
        """Waits until the ``number``-th child has its signal handlers installed; returns its pid."""

        def ready() -> int | None:
            starts = self.starts()
            if len(starts) >= number and (self.out / f"{starts[number - 1][0]}.ready").exists():
                return starts[number - 1][0]
            if self.proc.poll() is not None:
                pytest.fail(f"injector exec exited with {self.proc.returncode}:\n{self.logs()}")
            return None

        pid: int = wait_for(ready, timeout, f"child #{number} to be ready")
        return pid

    def env(self, pid: int) -> dict[str, str | None]:
        env: dict[str, str | None] = json.loads((self.out / f"{pid}.env").read_text())
        return env

    def signals(self, pid: int) -> list[str]:
        path = self.out / f"{pid}.signals"
        return path.read_text().splitlines() if path.exists() else []

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"injector exec still running after {timeout}s:\n{self.logs()}")

    def stop(self) -> int:
        """SIGTERM, as docker stop does; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()


@dataclass
class ExecHarness:
    tmp_path: Path
    output_dir: Path
    runs: list[ExecRun] = field(default_factory=list)

    def source(self, **values: str) -> Path:
        """A ConfigMap-style folder ``cm`` holding ``values``; later calls update it the kubelet way."""
        folder = self.tmp_path / "cm"
        configmap_write(folder, values)
        return folder

    def start(
        self,
        config: Mapping[str, Any],
        *app_args: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        command: Sequence[str] | None = None,
    ) -> ExecRun:
        """Starts ``injector exec`` on ``config`` (merged over a fast, health-less base) running
        exec_app with ``app_args``, or ``command``."""
        number = len(self.runs)
        path = self.tmp_path / f"injector-{number}.yaml"
        base = {"output_dir": str(self.output_dir), "health": {"address": False}, "refresh": FAST}
        path.write_text(yaml.safe_dump({**base, **config}))
        out = self.tmp_path / f"app-{number}"
        out.mkdir()
        log = self.tmp_path / f"exec-{number}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("INJECTOR_", "VAULT_", "AWS_"))}
        full_env.update(env or {})
        argv = [*prefix, PY, "-m", "injector", "exec", "-c", str(path), *args, "--"]
        argv += command if command is not None else [PY, APP, "--out", str(out), *app_args]
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=full_env)
        run = ExecRun(proc=proc, log=log, out=out)
        self.runs.append(run)
        return run

    def close(self) -> None:
        for run in self.runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
                try:
                    run.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    run.proc.kill()
                    run.proc.wait()


@pytest.fixture
def ex(tmp_path: Path, output_dir: Path) -> Iterator[ExecHarness]:
    """Starts `injector exec` runs for a test and stops every one of them afterwards."""
    harness = ExecHarness(tmp_path, output_dir)
    try:
        yield harness
    finally:
        harness.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class TestEnvState:
    def test_changes_before_the_restarter_wakes_make_one_restart(self) -> None:
        """Several changes pending at once are one restart naming every changed variable."""
        state = EnvState()
        state.reset({"A": "1", "B": "1"})
        state.granted()
        state.change({"A": "2", "B": "1"})
        state.change({"A": "2", "B": "2"})
        assert state.next_restart() == ["A", "B"]
        assert state.granted() == {"A": "2", "B": "2"}
        assert not state.due()

    def test_a_change_during_a_restart_before_the_env_is_built_costs_no_second_restart(self) -> None:
        """A change landing between the restart's start and granted() is in the new environment."""
        state = EnvState()
        state.reset({"A": "1"})
        state.granted()
        state.change({"A": "2"})
        assert state.next_restart() == ["A"]
        state.change({"A": "3"})  # e.g. during the splay
        assert state.granted() == {"A": "3"}
        assert not state.due()

    def test_a_change_after_the_env_was_built_makes_one_more_restart(self) -> None:
        """A change landing after granted() (during the kill wait) is due as its own restart."""
        state = EnvState()
        state.reset({"A": "1", "B": "1"})
        state.granted()
        state.change({"A": "2", "B": "1"})
        assert state.next_restart() == ["A"]
        state.granted()
        state.change({"A": "2", "B": "2"})
        assert state.due()
        assert state.next_restart() == ["B"]

    def test_a_restart_that_did_nothing_is_not_asked_for_again(self) -> None:
        """Without a granted() (the child had ended), the same change is not due twice."""
        state = EnvState()
        state.reset({"A": "1"})
        state.granted()
        state.change({"A": "2"})
        assert state.next_restart() == ["A"]
        assert not state.due()

    def test_close_wakes_a_waiting_restarter(self) -> None:
        """next_restart() blocked with nothing due returns None once closed."""
        state = EnvState()
        result: list[list[str] | None] = []
        waiter = threading.Thread(target=lambda: result.append(state.next_restart()))
        waiter.start()
        state.close()
        waiter.join(timeout=5)
        assert result == [None]


@pytest.mark.slow
class TestEnvironment:
    def test_env_values_reach_the_child(self, ex: ExecHarness) -> None:
        """A reference and a template string in env: arrive rendered in the child's environment."""
        cm = ex.source(color="blue")
        run = ex.start(
            {"env": {"COLOR": f"file:{cm}/color", "GREETING": "hello {{ secret('file:" + f"{cm}/color" + "') }}!"}},
            "--env",
            "COLOR",
            "--env",
            "GREETING",
        )
        assert run.env(run.child()) == {"COLOR": "blue", "GREETING": "hello blue!"}

    def test_the_first_render_log_counts_files_and_variables_apart(self, ex: ExecHarness) -> None:
        """One file and two env: values are logged as 1 file and 2 environment variables."""
        cm = ex.source(color="blue")
        run = ex.start(
            {
                "env": {"A": f"file:{cm}/color", "B": f"file:{cm}/color"},
                "templates": [{"contents": "c={{ secret('file:" + f"{cm}/color" + "') }}", "destination": "c"}],
            }
        )
        run.child()
        logs = run.logs()
        assert "rendered 1 file(s) (1 changed) and 2 environment variable(s) from 1 reference(s)" in logs
        assert "first render done: 1 file(s) and 2 in-memory value(s) from 1 reference(s)" in logs

    def test_inherited_environment_is_filtered_by_allow_and_deny(self, ex: ExecHarness) -> None:
        """Only variables matching exec.env_allow and not exec.env_deny are inherited."""
        run = ex.start(
            {"exec": {"env_allow": ["KEEP_*", "DROP_*"], "env_deny": ["DROP_*"]}},
            "--env",
            "KEEP_ME",
            "--env",
            "DROP_ME",
            "--env",
            "OTHER",
            env={"KEEP_ME": "k", "DROP_ME": "d", "OTHER": "o"},
        )
        assert run.env(run.child()) == {"KEEP_ME": "k", "DROP_ME": None, "OTHER": None}

    def test_injectors_own_credentials_are_not_inherited(self, ex: ExecHarness) -> None:
        """VAULT_TOKEN, INJECTOR_* and AWS keys never reach the child, even with everything allowed."""
        run = ex.start(
            {"exec": {"env_allow": ["*"]}},
            *(
                arg
                for name in ("VAULT_TOKEN", "VAULT_ADDR", "INJECTOR_X", "AWS_SECRET_ACCESS_KEY")
                for arg in ("--env", name)
            ),
            env={"VAULT_TOKEN": "hvs.x", "VAULT_ADDR": "http://v", "INJECTOR_X": "1", "AWS_SECRET_ACCESS_KEY": "a"},
        )
        env = run.env(run.child())
        assert env == {"VAULT_TOKEN": None, "VAULT_ADDR": "http://v", "INJECTOR_X": None, "AWS_SECRET_ACCESS_KEY": None}


@pytest.mark.slow
class TestChanges:
    def test_an_env_change_restarts_the_child_with_the_new_value(self, ex: ExecHarness) -> None:
        """A changed env: value stops the child with one SIGTERM and starts a new one with the value."""
        cm = ex.source(color="blue")
        run = ex.start({"env": {"COLOR": f"file:{cm}/color"}}, "--env", "COLOR")
        first = run.child()
        ex.source(color="green")
        second = run.child(2)
        assert second != first
        assert run.env(second) == {"COLOR": "green"}
        assert run.signals(first) == ["SIGTERM"]
        assert not _alive(first)
        assert "env COLOR changed" in run.logs()

    def test_a_file_only_change_signals_the_child_without_a_restart(self, ex: ExecHarness) -> None:
        """A change that only affects a file sends the child its {signal: SIGHUP, child: true}."""
        cm = ex.source(color="blue", port="80")
        run = ex.start(
            {
                "env": {"COLOR": f"file:{cm}/color"},
                "templates": [
                    {
                        "contents": "port={{ secret('file:" + f"{cm}/port" + "') }}\n",
                        "destination": "app.conf",
                        "on_change": [{"signal": "SIGHUP", "child": True}],
                    }
                ],
            },
            "--env",
            "COLOR",
        )
        pid = run.child()
        assert (ex.output_dir / "app.conf").read_text() == "port=80\n"
        ex.source(color="blue", port="8080")
        wait_for(lambda: run.signals(pid) == ["SIGHUP"], 10, "the child's SIGHUP")
        assert (ex.output_dir / "app.conf").read_text() == "port=8080\n"
        assert run.stop() == 0
        assert [p for p, _ in run.starts()] == [pid]
        assert run.signals(pid) == ["SIGHUP", "SIGTERM"]

    def test_files_left_by_an_earlier_run_do_not_signal_the_new_child(self, ex: ExecHarness) -> None:
        """Files rendered before the child starts are never a reason to signal it; later changes are."""
        cm = ex.source(port="80")
        config = {
            "templates": [
                {
                    "contents": "port={{ secret('file:" + f"{cm}/port" + "') }}\n",
                    "destination": "app.conf",
                    "on_change": [{"signal": "SIGHUP", "child": True}],
                }
            ],
        }
        assert ex.start(config, "--exit", "0").wait() == 0  # leaves port=80 in output_dir
        ex.source(port="81")
        run = ex.start(config, "--read", str(ex.output_dir / "app.conf"))
        pid = run.child()
        assert (ex.output_dir / "app.conf").read_text() == "port=81\n"
        ex.source(port="82")  # the barrier: a real change, whose SIGHUP comes after any stale one
        wait_for(lambda: "SIGHUP port=82" in run.signals(pid), 10, "the SIGHUP for port=82")
        assert run.stop() == 0
        assert run.signals(pid) == ["SIGHUP port=82", "SIGTERM"]

    def test_a_crash_looping_child_backs_off_and_gives_up(self, ex: ExecHarness) -> None:
        """A child dying at once after an env change is retried 5 times, further apart each time, then
        injector exits with its code."""
        cm = ex.source(mode="ok")
        run = ex.start(
            {
                "env": {"MODE": f"file:{cm}/mode"},
                "exec": {"restart_min_backoff": "100ms", "restart_max_backoff": "800ms"},
            },
            "--env",
            "MODE",
            "--crash-if",
            "MODE=crash",
        )
        run.child()
        ex.source(mode="crash")
        assert run.wait() == 3
        starts = [at for _, at in run.starts()]
        assert len(starts) == 7, run.logs()  # the first child, the restart, 5 retries
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts[1:])]
        assert gaps[0] >= 0.05  # the first back-off is at least min/2
        assert gaps[0] < gaps[3]
        assert gaps[0] < gaps[4]
        assert "retry 5 of 5" in run.logs()


@pytest.mark.slow
class TestSignals:
    def test_hup_usr1_usr2_reach_the_child_exactly_once(self, ex: ExecHarness) -> None:
        """SIGHUP, SIGUSR1 and SIGUSR2 sent to injector are forwarded to the child once each."""
        run = ex.start({})
        pid = run.child()
        expected: list[str] = []
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            run.proc.send_signal(signum)
            expected.append(signum.name)
            wait_for(lambda: run.signals(pid) == expected, 10, f"the child's {signum.name}")
        assert run.stop() == 0
        assert run.signals(pid) == ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM"]

    def test_sigterm_stops_the_child_once_and_exits_with_its_code(self, ex: ExecHarness) -> None:
        """SIGTERM to injector reaches the child once; injector exits with the child's exit code."""
        run = ex.start({}, "--term-exit", "7")
        pid = run.child()
        assert run.stop() == 7
        assert run.signals(pid) == ["SIGTERM"]
        assert "SIGKILL" not in run.logs()


@pytest.mark.slow
class TestExitCodes:
    def test_the_childs_exit_code_is_injectors(self, ex: ExecHarness) -> None:
        """A child exiting 3 by itself makes injector exit 3."""
        run = ex.start({}, "--exit", "3")
        assert run.wait() == 3

    def test_a_child_killed_by_sigkill_gives_137(self, ex: ExecHarness) -> None:
        """A child killed by signal 9 makes injector exit 128 + 9."""
        run = ex.start({}, "--kill-self")
        assert run.wait() == 137

    @pytest.mark.parametrize(
        ("env", "code"),
        [({"X": "file:nonexistent/x"}, 13), ({"X": "{{ secret('file:/etc/hostname') | nosuchfilter }}"}, 16)],
        ids=["not-found", "template-error"],
    )
    def test_a_failed_first_render_exits_with_its_code_and_never_starts_the_child(
        self, ex: ExecHarness, env: dict[str, str], code: int
    ) -> None:
        """A permanent first-render failure exits with its error's code; the child never starts."""
        run = ex.start({"env": env})
        assert run.wait() == code
        assert run.starts() == []
        assert "injector: error:" in run.logs()

    def test_sigterm_during_a_retried_first_render_exits_at_once(self, ex: ExecHarness) -> None:
        """SIGTERM while an unreachable backend is retried exits 143 without starting the child."""
        run = ex.start(
            {
                "vault": {"address": f"http://127.0.0.1:{free_port()}", "auth": {"method": "token"}},
                "env": {"X": "vault:secret/app#x"},
            },
            args=["--timeout", "1m"],
            env={"VAULT_TOKEN": "root"},
        )
        wait_for(lambda: "retrying in" in run.logs(), 10, "a retried first render")
        assert run.stop() == 143
        assert run.starts() == []
        assert "SIGTERM before the command started" in run.logs()

    def test_a_command_that_cannot_run_exits_with_a_config_error(self, ex: ExecHarness) -> None:
        """A command that is not found is reported in one line, with exit code 11."""
        run = ex.start({}, command=["/nonexistent/app", "--flag"])
        assert run.wait() == 11
        assert "injector: error: exec: cannot start '/nonexistent/app'" in run.logs()

    def test_a_missing_command_is_a_usage_error(self, tmp_path: Path) -> None:
        """`injector exec -c FILE` without a command exits 2 and says what is missing."""
        proc = subprocess.run(
            [PY, "-m", "injector", "exec", "-c", str(tmp_path / "x.yaml")], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2
        assert "Missing argument '-- CMD [ARGS]...'" in proc.stderr


@pytest.mark.slow
@pytest.mark.root
class TestPid1:
    def test_as_pid1_it_reaps_orphans_and_keeps_the_exit_code(self, ex: ExecHarness) -> None:
        """As PID 1 of a PID namespace, injector reaps the child's orphans and exits with its code."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("needs root and unshare(1) for a PID namespace")
        run = ex.start({}, "--orphans", "3", "--exit", "5", prefix=UNSHARE)
        assert run.wait(timeout=20) == 5
        [(pid, _)] = run.starts()
        report = json.loads((run.out / f"{pid}.orphans").read_text())
        assert len(report["orphans"]) == 3
        assert report["zombies"] == []
        assert "running as PID 1" in run.logs()


@pytest.mark.slow
class TestServing:
    def test_health_address_flag_serves_readyz(self, ex: ExecHarness) -> None:
        """--health-address overrides health.address: false and serves /readyz while the child runs."""
        port = free_port()
        run = ex.start({}, args=["--health-address", f"127.0.0.1:{port}"])
        run.child()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200


@pytest.mark.slow
class TestSecrets:
    @pytest.mark.parametrize("log_format", ["text", "json"])
    def test_the_sentinel_reaches_only_the_childs_environment(self, ex: ExecHarness, log_format: str) -> None:
        """A secret env value is in the child's environment and nowhere else: not in injector's debug
        logs, its command line, or the child's command line, before or after a rotation."""
        cm = ex.source(password=SENTINEL)
        run = ex.start(
            {"env": {"DB_PASSWORD": f"file:{cm}/password"}},
            "--env",
            "DB_PASSWORD",
            args=["--log-level", "debug", "--log-format", log_format],
        )
        first = run.child()
        assert run.env(first) == {"DB_PASSWORD": SENTINEL}
        assert SENTINEL.encode() in Path(f"/proc/{first}/environ").read_bytes()
        assert SENTINEL.encode() not in Path(f"/proc/{first}/cmdline").read_bytes()
        assert SENTINEL.encode() not in Path(f"/proc/{run.proc.pid}/cmdline").read_bytes()
        ex.source(password=SENTINEL + "-rotated")
        second = run.child(2)
        assert run.env(second) == {"DB_PASSWORD": SENTINEL + "-rotated"}
        assert SENTINEL.encode() not in Path(f"/proc/{second}/cmdline").read_bytes()
        assert run.stop() == 0
        logs = run.logs()
        assert "env DB_PASSWORD changed" in logs
        assert "DEBUG" in logs or '"level": "debug"' in logs
        assert SENTINEL not in logs
