"""injector.child and injector.reaper: the exec child, with real processes.

Helper scripts: tests/helpers/child_app.py (reports env and signals), child_orphans.py (leaves
orphans behind), child_supervise.py (a minimal ``injector exec``, for signals and PID 1).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from injector.config.model import ExecConfig
from injector.errors import ConfigError
from injector.process import spawn as reaper
from injector.process.child import Child
from injector.process.environment import child_environment
from injector.process.spawn import exit_code
from tests.fixtures.sentinel import SENTINEL

ROOT = Path(__file__).resolve().parent.parent.parent
HELPERS = Path(__file__).resolve().parent.parent / "helpers"
APP = str(HELPERS / "child_app.py")
ORPHANS = str(HELPERS / "child_orphans.py")
SUPERVISE = str(HELPERS / "child_supervise.py")
PY = sys.executable
#: A child that exits 3 at once when MODE=crash, 4 after 0.4 s when MODE=late, else runs.
MODAL = ["/bin/sh", "-c", 'case "$MODE" in crash) exit 3;; late) sleep 0.4; exit 4;; esac; exec sleep 30']


def poll(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Returns the first truthy value of ``predicate()``, polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def ready(out: Path, pid: int | None) -> dict[str, str | None]:
    """Waits until child_app ``pid`` has its handlers installed; returns the env it saw."""
    assert pid is not None
    poll(lambda: (out / f"{pid}.ready").exists(), what=f"child_app {pid} ready")
    env: dict[str, str | None] = json.loads((out / f"{pid}.env").read_text())
    return env


def signals(out: Path, pid: int) -> list[tuple[str, float]]:
    path = out / f"{pid}.signals"
    if not path.exists():
        return []
    return [(name, float(at)) for name, at in (line.split() for line in path.read_text().splitlines())]


def names(out: Path, pid: int) -> list[str]:
    return [name for name, _ in signals(out, pid)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children() -> list[int]:
    """The pids whose parent is this test process."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == os.getpid():
                found.append(int(entry.name))
    return found


def config(**overrides: Any) -> ExecConfig:
    values: dict[str, Any] = {"kill_timeout": 3.0, "restart_min_backoff": 0.1, "restart_max_backoff": 1.0}
    return ExecConfig(**(values | overrides))


@pytest.fixture
def make_child() -> Iterator[Callable[..., Child]]:
    """Builds Children and stops every one of them (SIGKILL) after the test."""
    made: list[Child] = []

    def make(argv: list[str], *, env_factory: Callable[[], Mapping[str, str]] = dict, **kwargs: Any) -> Child:
        kwargs.setdefault("config", config())
        child = Child(argv, env_factory=env_factory, **kwargs)
        made.append(child)
        return child

    yield make
    for child in made:
        child.stop(signal.SIGKILL, 1.0)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path


# --- child_environment ----------------------------------------------------------------------------


class TestChildEnvironment:
    def test_allow_globs_keep_only_matching_names(self) -> None:
        """A non-empty allow list keeps only the inherited names that match one of its globs."""
        base = {"APP_A": "1", "APP_B": "2", "HOME": "/root", "PATH": "/bin"}
        assert child_environment(base, {}, allow=["APP_*", "PATH"], deny=[]) == {
            "APP_A": "1",
            "APP_B": "2",
            "PATH": "/bin",
        }

    def test_deny_globs_drop_matching_names_even_if_allowed(self) -> None:
        """Deny globs remove inherited names, and win over allow."""
        base = {"APP_A": "1", "APP_DEBUG": "x", "HOME": "/root"}
        assert child_environment(base, {}, allow=["APP_*"], deny=["*_DEBUG"]) == {"APP_A": "1"}

    def test_granted_values_win_and_are_never_filtered(self) -> None:
        """Granted variables override inherited ones and pass even when denied or a control name."""
        base = {"DB_PASSWORD": "inherited", "HOME": "/root"}
        granted = {"DB_PASSWORD": "granted", "VAULT_TOKEN": "app-token", "SKIP_ME": "g"}
        env = child_environment(base, granted, allow=["HOME"], deny=["SKIP_*"])
        assert env == {"HOME": "/root", "DB_PASSWORD": "granted", "VAULT_TOKEN": "app-token", "SKIP_ME": "g"}

    def test_control_variables_are_stripped(self) -> None:
        """VAULT_TOKEN, INJECTOR_* and static AWS credentials are not inherited, even with allow "*"."""
        base = {
            "VAULT_TOKEN": "t",
            "INJECTOR_CONFIG": "/etc/i.yaml",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_SESSION_TOKEN": "st",
            "AWS_REGION": "eu-west-1",
            "VAULT_ADDR": "https://vault:8200",
        }
        assert child_environment(base, {}, allow=["*"], deny=[]) == {
            "AWS_REGION": "eu-west-1",
            "VAULT_ADDR": "https://vault:8200",
        }

    def test_aws_credentials_pass_when_allowed_by_exact_name(self) -> None:
        """Static AWS credentials pass only when allow names them exactly; VAULT_TOKEN never does."""
        base = {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "VAULT_TOKEN": "t"}
        allow = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN"]
        assert child_environment(base, {}, allow=allow, deny=[]) == {
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
        assert child_environment(base, {}, allow=["AWS_*"], deny=[]) == {}

    def test_is_pure(self) -> None:
        """The inputs are left unchanged and the result is a new dict."""
        base = {"A": "1", "VAULT_TOKEN": "t"}
        granted = {"B": "2"}
        env = child_environment(base, granted, allow=[], deny=[])
        env["C"] = "3"
        assert base == {"A": "1", "VAULT_TOKEN": "t"}
        assert granted == {"B": "2"}
        assert child_environment(base, granted, allow=[], deny=[]) == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("status", "code"),
    [(3 << 8, 3), (0, 0), (signal.SIGKILL, 137), (signal.SIGTERM, 143), (-9, 137)],
    ids=["exit-3", "exit-0", "sigkill", "sigterm", "popen-returncode"],
)
def test_exit_code(status: int, code: int) -> None:
    """Wait statuses become exit codes, 128 + N for a child killed by signal N."""
    assert exit_code(status) == code


# --- Child, in process ----------------------------------------------------------------------------


class TestChild:
    def test_granted_env_reaches_the_child_without_control_variables(self, make_child, out) -> None:
        """The started child sees the granted values and inherits no control variable."""
        child = make_child(
            [PY, APP, "--out", str(out), "--env", "APP_SECRET", "--env", "VAULT_TOKEN", "--env", "KEEP"],
            env_factory=lambda: {"APP_SECRET": "v1"},
            base_env={**os.environ, "VAULT_TOKEN": "injector-token", "KEEP": "yes"},
        )
        child.start()
        assert ready(out, child.pid) == {"APP_SECRET": "v1", "VAULT_TOKEN": None, "KEEP": "yes"}

    def test_restart_sends_kill_signal_then_starts_with_the_new_env(self, make_child, out) -> None:
        """restart() SIGTERMs the old child and the new one sees the new value."""
        granted = {"APP_SECRET": "v1"}
        child = make_child([PY, APP, "--out", str(out), "--env", "APP_SECRET"], env_factory=lambda: dict(granted))
        child.start()
        old = child.pid
        assert ready(out, old)["APP_SECRET"] == "v1"
        granted["APP_SECRET"] = "v2"
        child.restart("APP_SECRET changed")
        new = child.pid
        assert new is not None
        assert new != old
        assert ready(out, new)["APP_SECRET"] == "v2"
        assert names(out, old) == ["SIGTERM"]
        assert not alive(old)

    def test_kill_timeout_escalates_to_sigkill(self, make_child, out) -> None:
        """A child ignoring SIGTERM gets SIGKILL after kill_timeout; stop() returns 137."""
        child = make_child([PY, APP, "--out", str(out), "--ignore-term"], config=config(kill_timeout=0.3))
        child.start()
        pid = child.pid
        assert pid is not None
        ready(out, pid)
        started = time.monotonic()
        assert child.stop() == 137
        assert time.monotonic() - started >= 0.3
        assert names(out, pid) == ["SIGTERM"]

    def test_splay_delays_the_kill(self, make_child, out) -> None:
        """restart() waits splay × random() before signalling the old child."""
        child = make_child([PY, APP, "--out", str(out)], config=config(splay=0.4), rng=lambda: 0.5)
        child.start()
        old = child.pid
        assert old is not None
        ready(out, old)
        called = time.monotonic()
        child.restart("splay test")
        [(name, at)] = signals(out, old)
        assert name == "SIGTERM"
        assert 0.2 <= at - called < 2.0

    def test_exit_by_itself_ends_with_its_code(self, make_child, out) -> None:
        """A child exiting by itself (exit 3) is not restarted; on_exit and wait() get 3."""
        calls: list[int] = []
        exits: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            return {}

        child = make_child([PY, APP, "--out", str(out), "--exit", "3"], env_factory=env, on_exit=exits.append)
        child.start()
        assert child.wait(5) == 3
        assert poll(lambda: exits, what="on_exit") == [3]
        assert len(calls) == 1
        assert child.pid is None

    def test_killed_by_signal_gives_128_plus_signal(self, make_child, out) -> None:
        """A child killed by SIGKILL ends with 137."""
        exits: list[int] = []
        child = make_child([PY, APP, "--out", str(out), "--kill-self"], on_exit=exits.append)
        child.start()
        assert child.wait(5) == 137
        assert poll(lambda: exits, what="on_exit") == [137]

    def test_quick_deaths_after_a_restart_back_off_and_are_bounded(self, make_child) -> None:
        """A child dying at once after each change-restart is retried with growing delays, 3 times."""
        granted = {"MODE": "ok"}
        starts: list[float] = []
        exits: list[int] = []

        def env() -> dict[str, str]:
            starts.append(time.monotonic())
            return dict(granted)

        child = make_child(MODAL, env_factory=env, on_exit=exits.append, max_quick_restarts=3)
        child.start()
        granted["MODE"] = "crash"
        child.restart("MODE changed")
        assert child.wait(10) == 3
        assert poll(lambda: exits, what="on_exit") == [3]
        assert len(starts) == 1 + 1 + 3  # start, restart, three retries
        gaps = [b - a for a, b in itertools.pairwise(starts[1:])]
        # Backoff(0.1, 1.0) draws from [d/2, d] with d = 0.1, 0.2, 0.4: each gap is at least d/2.
        for gap, floor in zip(gaps, (0.05, 0.1, 0.2), strict=True):
            assert gap >= floor
        assert gaps[2] > gaps[0]

    def test_child_that_lived_past_quick_exit_is_not_retried(self, make_child) -> None:
        """A change-restarted child exiting by itself after quick_exit ends the supervision."""
        granted = {"MODE": "ok"}
        calls: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            return dict(granted)

        child = make_child(MODAL, env_factory=env, quick_exit=0.2)
        child.start()
        granted["MODE"] = "late"
        child.restart("MODE changed")
        assert child.wait(5) == 4
        assert len(calls) == 2

    def test_young_child_ended_by_forwarded_sigterm_is_not_retried(self, make_child, out) -> None:
        """A change-restarted child that a forwarded SIGTERM ends at once is final, not a quick death."""
        calls: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            return {}

        child = make_child([PY, APP, "--out", str(out)], env_factory=env, quick_exit=30.0)
        child.start()
        child.restart("changed")
        pid = child.pid
        assert pid is not None
        ready(out, pid)
        assert child.signal(signal.SIGTERM) is True
        assert child.wait(5) == 0
        assert len(calls) == 2

    def test_restart_supersedes_a_retry_scheduled_during_its_splay(self, make_child, caplog) -> None:
        """A quick death during a restart's splay schedules a retry that the restart cancels: one child."""
        caplog.set_level(logging.DEBUG, logger="injector.process.child")
        granted = {"MODE": "ok"}
        calls: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            return dict(granted)

        child = make_child(
            MODAL,
            env_factory=env,
            config=config(splay=1.0, restart_min_backoff=2.0, restart_max_backoff=2.0),
            quick_exit=5.0,
            rng=iter([0.0, 0.99]).__next__,  # no splay, then ~1 s: the child dies during it
        )
        child.start()
        granted["MODE"] = "late"  # dies 0.4 s after the next start: a quick death
        child.restart("MODE late")
        granted["MODE"] = "ok"
        child.restart("MODE ok")
        poll(lambda: "retry of the child cancelled" in caplog.text, what="the retry to be cancelled")
        assert len(calls) == 3
        assert child.pid is not None
        assert [pid for pid in _children() if alive(pid)] == [child.pid]

    def test_stop_during_backoff_starts_nothing_more(self, make_child) -> None:
        """stop() during a back-off wait returns at once with the last exit code; no retry follows."""
        granted = {"MODE": "ok"}
        calls: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            return dict(granted)

        child = make_child(MODAL, env_factory=env, config=config(restart_min_backoff=10, restart_max_backoff=10))
        child.start()
        granted["MODE"] = "crash"
        child.restart("MODE changed")
        poll(lambda: child.pid is None, what="the restarted child to die")
        started = time.monotonic()
        assert child.stop() == 3
        assert time.monotonic() - started < 1.0
        assert len(calls) == 2
        assert child.wait(0) == 3

    def test_restart_keeps_the_old_child_when_env_factory_fails(self, make_child, out) -> None:
        """If the new environment cannot be built, restart() raises and the old child runs on."""
        calls: list[int] = []

        def env() -> dict[str, str]:
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("render failed")
            return {}

        child = make_child([PY, APP, "--out", str(out)], env_factory=env)
        child.start()
        pid = child.pid
        assert pid is not None
        ready(out, pid)
        with pytest.raises(RuntimeError, match="render failed"):
            child.restart("changed")
        assert child.pid == pid
        assert alive(pid)
        assert names(out, pid) == []

    def test_restart_of_a_vanished_command_ends_with_127(self, make_child, tmp_path) -> None:
        """A command that no longer exists at restart ends the child with 127 via on_exit."""
        script = tmp_path / "app.sh"
        script.write_text("#!/bin/sh\nexec sleep 30\n")
        script.chmod(0o755)
        exits: list[int] = []
        child = make_child([str(script)], on_exit=exits.append)
        child.start()
        script.unlink()
        child.restart("changed")
        assert child.wait(5) == 127
        assert exits == [127]

    def test_missing_command_is_a_config_error(self, make_child) -> None:
        """start() with a command not on PATH raises ConfigError naming it."""
        child = make_child(["no-such-command-injector-test"])
        with pytest.raises(ConfigError, match="no-such-command-injector-test"):
            child.start()

    def test_signal_without_a_child_returns_false(self, make_child) -> None:
        """signal() before start (or between runs) reports False instead of raising."""
        child = make_child(["/bin/true"])
        assert child.signal(signal.SIGHUP) is False

    def test_logs_name_pids_and_reasons_never_values(self, make_child, out, caplog) -> None:
        """Start, restart and stop log pids and the reason; no env value reaches logs or argv."""
        caplog.set_level(logging.DEBUG, logger="injector")
        child = make_child(
            [PY, APP, "--out", str(out), "--env", "APP_SECRET"],
            env_factory=lambda: {"APP_SECRET": SENTINEL},
            base_env={**os.environ, "INHERITED": SENTINEL + "-inherited"},
        )
        child.start()
        old = child.pid
        assert old is not None
        assert ready(out, old)["APP_SECRET"] == SENTINEL
        assert SENTINEL not in Path(f"/proc/{old}/cmdline").read_bytes().decode()
        child.restart("APP_SECRET changed")
        child.stop()
        assert f"pid {old}" in caplog.text
        assert "APP_SECRET changed" in caplog.text
        assert SENTINEL not in caplog.text


# --- reaper, in process ---------------------------------------------------------------------------


def _zombie(argv: list[str]) -> int:
    pid = os.posix_spawn(argv[0], argv, {})
    poll(lambda: reaper._stat(str(pid))[0] == "Z", what=f"pid {pid} to become a zombie")
    return pid


class TestReaper:
    def test_scan_reaps_orphans_after_grace_but_never_owned_pids(self) -> None:
        """A zombie nobody owns is reaped once seen for `grace`; an owned zombie is left alone."""
        orphan, owned = _zombie(["/bin/true"]), _zombie(["/bin/true"])
        with reaper._lock:
            reaper._owned.add(owned)
        try:
            waiting = reaper._reap_scan({}, now=100.0, grace=1.0)
            assert orphan in waiting
            assert reaper._stat(str(orphan))[0] == "Z"
            assert reaper._reap_scan(waiting, now=101.0, grace=1.0) == {}
            assert reaper._stat(str(orphan)) == ("", 0)
            assert reaper._stat(str(owned))[0] == "Z"
        finally:
            with reaper._lock:
                reaper._owned.discard(owned)
            os.waitpid(owned, 0)

    def test_fallback_reaper_hands_an_owned_status_to_its_waiter(self) -> None:
        """When waitpid(-1) takes an owned child's status, its owner still gets it."""
        pid = _zombie(["/bin/sh", "-c", "exit 5"])
        with reaper._lock:
            reaper._owned.add(pid)
        try:
            reaper._reap_fallback()
            assert reaper._stat(str(pid)) == ("", 0)
            assert exit_code(reaper._reap_owned(pid)) == 5
        finally:
            with reaper._lock:
                reaper._owned.discard(pid)


# --- a supervising process: signal forwarding, exit codes, PID 1 ----------------------------------


def _supervise(
    out: Path, command: list[str], *, prefix: tuple[str, ...] = (), reap: bool = False, new_session: bool = False
) -> subprocess.Popen[bytes]:
    argv = [*prefix, PY, SUPERVISE, "--ready", str(out / "ready.json"), "--report", str(out / "report.json")]
    argv += ["--reap"] if reap else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*argv, "--", *command], env=env, cwd=ROOT, start_new_session=new_session)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TestSupervisor:
    def test_forwarded_signals_reach_the_child_exactly_once(self, out) -> None:
        """SIGHUP, SIGUSR1, SIGUSR2 then SIGTERM sent to injector each reach the child once."""
        proc = _supervise(out, [PY, APP, "--out", str(out), "--term-delay", "0.3"])
        try:
            started = poll(lambda: (out / "ready.json").exists() and json.loads((out / "ready.json").read_text()))
            pid = started["child"]
            ready(out, pid)
            for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                proc.send_signal(sig)
                poll(lambda sig=sig: signal.Signals(sig).name in names(out, pid), what=signal.Signals(sig).name)
            proc.send_signal(signal.SIGTERM)
        finally:
            code = _finish(proc)
        assert code == 0
        assert names(out, pid) == ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM"]

    def test_ctrl_c_to_the_process_group_reaches_the_child_once(self, out) -> None:
        """SIGINT sent to injector's whole process group (a terminal's Ctrl-C) reaches the child once."""
        proc = _supervise(out, [PY, APP, "--out", str(out), "--term-delay", "0.3"], new_session=True)
        try:
            started = poll(lambda: (out / "ready.json").exists() and json.loads((out / "ready.json").read_text()))
            pid = started["child"]
            ready(out, pid)
            os.killpg(proc.pid, signal.SIGINT)
        finally:
            code = _finish(proc)
        assert code == 0
        assert names(out, pid) == ["SIGINT"]

    @pytest.mark.parametrize(
        ("flags", "expected"), [(["--exit", "3"], 3), (["--kill-self"], 137)], ids=["exit-3", "sigkill"]
    )
    def test_exits_with_the_childs_code(self, out, flags, expected) -> None:
        """injector exits with the child's exit code, 128 + N when signal N killed it."""
        assert _finish(_supervise(out, [PY, APP, "--out", str(out), *flags])) == expected


def _need_unshare() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a PID namespace")


@pytest.mark.root
class TestPid1:
    def test_orphans_are_reaped_and_the_exit_code_kept(self, out) -> None:
        """As PID 1, injector reaps its child's orphans and still exits with the child's code."""
        _need_unshare()
        leaves_file = out / "leaves.json"
        proc = _supervise(
            out,
            [PY, ORPHANS, "--out", str(leaves_file), "--count", "5", "--exit", "7"],
            prefix=("unshare", "--pid", "--fork", "--mount-proc"),
            reap=True,
        )
        assert _finish(proc) == 7
        report = json.loads((out / "report.json").read_text())
        assert len(json.loads(leaves_file.read_text())) == 5
        assert report == {"pid": 1, "code": 7, "zombies": []}

    def test_without_the_reaper_orphans_stay_zombies(self, out) -> None:
        """Control: the same run without the reaper leaves the orphans as zombies of PID 1."""
        _need_unshare()
        leaves_file = out / "leaves.json"
        proc = _supervise(
            out,
            [PY, ORPHANS, "--out", str(leaves_file), "--count", "5", "--exit", "7"],
            prefix=("unshare", "--pid", "--fork", "--mount-proc"),
        )
        assert _finish(proc) == 7
        report = json.loads((out / "report.json").read_text())
        assert sorted(report["zombies"]) == sorted(json.loads(leaves_file.read_text()))
