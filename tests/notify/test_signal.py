"""The signal notifier against real processes: by name, by pidfile, the child; whose processes it may signal."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from injector.config.load import parse_config
from injector.config.model import SignalNotify
from injector.errors import ConfigError, NotifyError
from injector.notify.signal import SignalNotifier, find_processes
from tests.fixtures.sidecar import wait_for
from tests.notify.support import gone

HELPER = Path(__file__).resolve().parent.parent / "helpers" / "sigapp.py"
REPO = Path(__file__).resolve().parent.parent.parent
#: The user the "other user's process" tests run apps as.
OTHER_UID = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="starting processes as another user needs root")


def _world_python() -> str | None:
    """An interpreter any user may run (ours may sit under /root, which others cannot enter)."""
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


# --- the signal helper app ------------------------------------------------------------------------


@dataclass
class AppProcess:
    proc: subprocess.Popen[bytes]
    out: Path
    worker_pid: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def got(self, signame: str, role: str = "master") -> bool:
        pid = self.pid if role == "master" else self.worker_pid
        return f"{role} {signame} {pid}" in self.lines()

    def not_got(self, signame: str) -> bool:
        """True when the master has not recorded ``signame``: checked after a later SIGUSR1 arrived,
        so a ``signame`` sent before it would already be recorded."""
        os.kill(self.pid, signal.SIGUSR1)
        wait_for(lambda: self.got("SIGUSR1"), 5, "the marker SIGUSR1")
        return not self.got(signame)


@dataclass
class Apps:
    """Starts the helper app under one unique executable name, as root or as another user."""

    name: str
    folder: Path
    started: list[AppProcess] = field(default_factory=list)

    def start(self, *, worker: bool = False, uid: int | None = None) -> AppProcess:
        out = self.folder / f"signals-{len(self.started)}.log"
        out.touch()
        if uid is None:
            exe = self.folder / "root" / self.name
        else:
            python = _world_python()
            if python is None:
                pytest.skip("no python3 in /usr/bin or /usr/local/bin that another user may run")
            os.chown(out, uid, uid)
            exe = self.folder / "other" / self.name
            if not exe.exists():
                exe.symlink_to(python)
        args = [str(exe), str(HELPER), str(out)] + (["--worker"] if worker else [])
        kwargs = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        app = AppProcess(proc=subprocess.Popen(args, **kwargs), out=out)  # type: ignore[call-overload]
        self.started.append(app)
        wait_for(lambda: any(line.startswith("ready master") for line in app.lines()), 10, "app ready")
        if worker:
            wait_for(lambda: any(line.startswith("ready worker") for line in app.lines()), 10, "worker ready")
            app.worker_pid = next(int(x.split()[2]) for x in app.lines() if x.startswith("ready worker"))
        return app

    def stop(self) -> None:
        for app in self.started:
            app.proc.kill()
            app.proc.wait(5)
            if app.worker_pid is not None and not gone(app.worker_pid):
                os.kill(app.worker_pid, signal.SIGKILL)


@pytest.fixture
def apps() -> Iterator[Apps]:
    """Helper apps named ``injapp-XXXXXX`` (under the kernel's 15-character comm limit), in a folder
    every user may enter (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="injector-sig-"))
    folder.chmod(0o755)
    (folder / "root").mkdir(mode=0o755)
    (folder / "other").mkdir(mode=0o755)
    name = f"injapp-{secrets.token_hex(3)}"
    (folder / "root" / name).symlink_to(sys.executable)
    apps = Apps(name=name, folder=folder)
    try:
        yield apps
    finally:
        apps.stop()
        shutil.rmtree(folder, ignore_errors=True)


def hup(**target: object) -> SignalNotifier:
    return SignalNotifier(SignalNotify(signal=signal.SIGHUP, **target))  # type: ignore[arg-type]


def fake_proc(
    root: Path, pid: int, *, comm: str, argv: list[str], ppid: int = 1, state: str = "S", uid: int = 0
) -> None:
    """Writes the /proc files find_processes reads, for one made-up process."""
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1\n")
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def pids(infos: list[object]) -> list[int]:
    return [info.pid for info in infos]  # type: ignore[attr-defined]


class TestFindProcesses:
    def test_finds_a_process_by_its_executable_name(self, apps: Apps) -> None:
        """A process is found by the name of the file it executed."""
        app = apps.start()
        assert pids(find_processes(apps.name)) == [app.pid]

    def test_skips_children_of_a_match(self, apps: Apps) -> None:
        """Of a master and its same-named worker, only the master is returned."""
        app = apps.start(worker=True)
        assert app.worker_pid is not None
        assert pids(find_processes(apps.name)) == [app.pid]

    def test_finds_by_argv0_basename(self) -> None:
        """A process whose argv[0] basename is the name matches even if its comm differs."""
        name = f"injargv-{secrets.token_hex(3)}"
        proc = subprocess.Popen([f"/opt/bin/{name}", "30"], executable="/bin/sleep")
        try:
            assert pids(find_processes(name)) == [proc.pid]
        finally:
            proc.kill()
            proc.wait(5)

    def test_never_returns_ourselves(self) -> None:
        """The sidecar's own process is never a target, even when it has the name."""
        own = Path("/proc/self/comm").read_text().strip()
        assert os.getpid() not in pids(find_processes(own))

    def test_reads_the_uids_and_comm(self, tmp_path: Path) -> None:
        """Each process found carries its comm and real/effective/saved UIDs, for the checks and the log."""
        fake_proc(tmp_path, 12, comm="nginx", argv=["nginx: master process"], uid=101)
        [info] = find_processes("nginx", proc=tmp_path)
        assert (info.comm, info.uids, info.label()) == ("nginx", (101, 101, 101), "pid 12 (nginx, uid 101)")

    def test_skips_zombies_and_kernel_threads(self, tmp_path: Path) -> None:
        """Zombies and kernel threads (empty cmdline) named like the app are not targets."""
        fake_proc(tmp_path, 10, comm="nginx", argv=["nginx"], state="Z")
        fake_proc(tmp_path, 11, comm="nginx", argv=[])
        fake_proc(tmp_path, 12, comm="nginx", argv=["nginx: master process /usr/sbin/nginx"])
        assert pids(find_processes("nginx", proc=tmp_path)) == [12]

    def test_matches_truncated_comm_of_long_names(self, tmp_path: Path) -> None:
        """A name longer than 15 characters matches the kernel's truncated comm."""
        fake_proc(tmp_path, 20, comm="a-very-long-app", argv=["python3", "app.py"])
        assert pids(find_processes("a-very-long-app-name", proc=tmp_path)) == [20]

    def test_parses_comm_with_spaces_and_parentheses(self, tmp_path: Path) -> None:
        """A comm holding ") x (" does not confuse the parent pid parsing."""
        fake_proc(tmp_path, 30, comm="we) ird (x", argv=["we) ird (x"], ppid=1)
        fake_proc(tmp_path, 31, comm="we) ird (x", argv=["we) ird (x"], ppid=30)
        assert pids(find_processes("we) ird (x", proc=tmp_path)) == [30]


class TestByName:
    def test_signals_a_process_by_name(self, apps: Apps) -> None:
        """process: NAME sends the signal to the process with that executable name."""
        app = apps.start()
        hup(process=apps.name).notify()
        wait_for(lambda: app.got("SIGHUP"), 5, "SIGHUP recorded")

    def test_signals_every_process_with_the_name(self, apps: Apps) -> None:
        """Two unrelated processes with the name both get the signal."""
        first, second = apps.start(), apps.start()
        hup(process=apps.name).notify()
        wait_for(lambda: first.got("SIGHUP"), 5, "first app signalled")
        wait_for(lambda: second.got("SIGHUP"), 5, "second app signalled")

    def test_workers_are_not_signalled(self, apps: Apps) -> None:
        """Only the master of a master/worker pair gets the signal."""
        app = apps.start(worker=True)
        assert app.worker_pid is not None
        hup(process=apps.name).notify()
        wait_for(lambda: app.got("SIGHUP"), 5, "master signalled")
        # Had the worker got SIGHUP, it would be recorded before this later signal.
        os.kill(app.worker_pid, signal.SIGUSR1)
        wait_for(lambda: app.got("SIGUSR1", role="worker"), 5, "worker SIGUSR1")
        assert not app.got("SIGHUP", role="worker")

    def test_logs_whom_it_signalled(self, apps: Apps, caplog: pytest.LogCaptureFixture) -> None:
        """Each signal sent is logged with the pid, comm and uid of its target."""
        app = apps.start()
        with caplog.at_level("INFO", logger="injector.notify.signal"):
            hup(process=apps.name).notify()
        assert f"sent SIGHUP to pid {app.pid} ({apps.name}, uid {os.geteuid()})" in caplog.messages

    def test_no_match_says_to_enable_share_process_namespace(self) -> None:
        """With no process of that name, the error names it and points to shareProcessNamespace."""
        name = f"nosuch-{secrets.token_hex(3)}"
        with pytest.raises(NotifyError, match=f"no process named {name} is visible: enable shareProcessNamespace"):
            hup(process=name).notify()


@needs_root
class TestWhoseProcesses:
    def test_by_default_only_processes_of_our_own_uid(self, apps: Apps) -> None:
        """As root, a same-named process of another user is not signalled; root's own one is."""
        other, own = apps.start(uid=OTHER_UID), apps.start()
        hup(process=apps.name).notify()
        wait_for(lambda: own.got("SIGHUP"), 5, "root's app signalled")
        assert other.not_got("SIGHUP")

    def test_user_selects_whose_processes(self, apps: Apps) -> None:
        """user: UID signals that user's process and not root's."""
        other, own = apps.start(uid=OTHER_UID), apps.start()
        hup(process=apps.name, user=OTHER_UID).notify()
        wait_for(lambda: other.got("SIGHUP"), 5, "the other user's app signalled")
        assert own.not_got("SIGHUP")

    def test_user_any_signals_every_user(self, apps: Apps) -> None:
        """user: any signals the same-named processes of every user."""
        other, own = apps.start(uid=OTHER_UID), apps.start()
        hup(process=apps.name, user="any").notify()
        wait_for(lambda: other.got("SIGHUP") and own.got("SIGHUP"), 5, "both apps signalled")

    def test_only_other_users_processes_is_an_error_naming_them(self, apps: Apps) -> None:
        """When every match is another user's, the error lists whom it skipped and points to user:."""
        other = apps.start(uid=OTHER_UID)
        with pytest.raises(NotifyError) as info:
            hup(process=apps.name).notify()
        message = str(info.value)
        assert f"pid {other.pid} ({apps.name}, uid {OTHER_UID}) does not run as uid 0" in message
        assert "Set user: to the app's UID" in message
        assert other.not_got("SIGHUP")

    @pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv")
    def test_a_process_it_may_not_signal_is_skipped_and_the_rest_signalled(self, apps: Apps) -> None:
        """Without CAP_KILL, an EPERM on one same-named process is logged and the next one still gets the signal."""
        other, own = apps.start(uid=OTHER_UID), apps.start()
        code = (
            "import logging, signal, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s %(message)s')\n"
            "from injector.config.model import SignalNotify\n"
            "from injector.notify.signal import SignalNotifier\n"
            f"SignalNotifier(SignalNotify(signal=signal.SIGHUP, process={apps.name!r}, user='any')).notify()\n"
        )
        # Root without CAP_KILL may only signal its own UID's processes, like a sidecar running as non-root.
        result = subprocess.run(
            ["setpriv", "--bounding-set", "-kill", sys.executable, "-c", code],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"not allowed to signal pid {other.pid} ({apps.name}, uid {OTHER_UID}); skipped it" in result.stdout
        assert f"sent SIGHUP to pid {own.pid} ({apps.name}, uid 0)" in result.stdout
        wait_for(lambda: own.got("SIGHUP"), 5, "root's app signalled")
        assert other.not_got("SIGHUP")


class TestPidfile:
    def test_signals_the_pid_in_it(self, apps: Apps, tmp_path: Path) -> None:
        """pidfile: PATH signals the pid written in it (surrounding whitespace ignored)."""
        app = apps.start()
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(f"  {app.pid}\n")
        hup(pidfile=pidfile, process=apps.name).notify()
        wait_for(lambda: app.got("SIGHUP"), 5, "SIGHUP recorded")

    def test_process_may_be_given_as_a_path(self, apps: Apps, tmp_path: Path) -> None:
        """process: /usr/sbin/NAME with a pidfile matches by the basename, as process: alone does."""
        app = apps.start()
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(str(app.pid))
        hup(pidfile=pidfile, process=f"/usr/sbin/{apps.name}").notify()
        wait_for(lambda: app.got("SIGHUP"), 5, "SIGHUP recorded")

    def test_a_pid_of_another_name_is_refused(self, tmp_path: Path) -> None:
        """A pidfile naming a process of another name raises an error naming the pidfile; nothing is signalled."""
        victim = subprocess.Popen(["sleep", "30"])  # SIGHUP would end it
        try:
            pidfile = tmp_path / "app.pid"
            pidfile.write_text(f"{victim.pid}\n")
            refused = f"pidfile {pidfile} names pid {victim.pid} \\(sleep, uid {os.geteuid()}\\) is not named nginx"
            with pytest.raises(NotifyError, match=refused):
                hup(pidfile=pidfile, process="nginx").notify()
            assert victim.poll() is None
        finally:
            victim.kill()
            victim.wait(5)

    @needs_root
    def test_a_pid_of_another_user_is_refused(self, apps: Apps, tmp_path: Path) -> None:
        """A pidfile naming a same-named process of another user raises an error naming the pidfile."""
        other = apps.start(uid=OTHER_UID)
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(str(other.pid))
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} names pid {other.pid} .* does not run as uid 0"):
            hup(pidfile=pidfile, process=apps.name).notify()
        assert other.not_got("SIGHUP")

    @needs_root
    def test_user_lets_it_signal_the_apps_user(self, apps: Apps, tmp_path: Path) -> None:
        """With user: set to the app's UID, the pidfile's process of that user is signalled."""
        other = apps.start(uid=OTHER_UID)
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(str(other.pid))
        hup(pidfile=pidfile, process=apps.name, user=OTHER_UID).notify()
        wait_for(lambda: other.got("SIGHUP"), 5, "SIGHUP recorded")

    def test_stale_pidfile_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """A pidfile naming a process that has exited raises an error naming the file."""
        proc = subprocess.Popen(["true"])
        proc.wait(5)
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(str(proc.pid))
        with pytest.raises(NotifyError, match=f"no process with pid {proc.pid} \\(pidfile {pidfile} is stale\\)"):
            hup(pidfile=pidfile, process="true").notify()

    def test_missing_pidfile_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """A pidfile that does not exist raises an error naming the file."""
        pidfile = tmp_path / "absent.pid"
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} does not exist"):
            hup(pidfile=pidfile, process="app").notify()

    def test_garbled_pidfile_is_an_error_that_does_not_show_it(self, tmp_path: Path) -> None:
        """A pidfile without a number raises an error naming the file, not quoting it (it may be a link to a secret)."""
        secret = tmp_path / "token"
        secret.write_text("s.sentinel-token-value\n")
        pidfile = tmp_path / "app.pid"
        pidfile.symlink_to(secret)
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} does not hold a pid") as info:
            hup(pidfile=pidfile, process="app").notify()
        assert "sentinel" not in str(info.value)

    def test_a_fifo_as_pidfile_does_not_hang(self, tmp_path: Path) -> None:
        """A FIFO planted as the pidfile is refused at once instead of blocking the notifier."""
        pidfile = tmp_path / "app.pid"
        os.mkfifo(pidfile)
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} is not a regular file"):
            hup(pidfile=pidfile, process="app").notify()


class TestChild:
    def test_signals_the_pid_from_the_callable(self, apps: Apps) -> None:
        """child: true signals the pid exec mode's callable returns."""
        app = apps.start()
        notifier = SignalNotifier(SignalNotify(signal=signal.SIGHUP, child=True), child=lambda: app.pid)
        notifier.notify()
        wait_for(lambda: app.got("SIGHUP"), 5, "SIGHUP recorded")

    def test_no_child_is_an_error(self) -> None:
        """child: true with no child running raises an error."""
        notifier = SignalNotifier(SignalNotify(signal=signal.SIGHUP, child=True), child=lambda: None)
        with pytest.raises(NotifyError, match="no child process is running"):
            notifier.notify()

    @pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
    def test_permission_denied_says_same_uid_or_cap_kill(self) -> None:
        """Signalling another user's process without CAP_KILL explains the UID / CAP_KILL requirement."""
        target = subprocess.Popen(["sleep", "30"], user=OTHER_UID, group=OTHER_UID)
        code = (
            "import signal\n"
            "from injector.config.model import SignalNotify\n"
            "from injector.errors import NotifyError\n"
            "from injector.notify.signal import SignalNotifier\n"
            f"n = SignalNotifier(SignalNotify(signal=signal.SIGUSR1, child=True), child=lambda: {target.pid})\n"
            "try:\n    n.notify()\nexcept NotifyError as exc:\n    print(exc)\n"
        )
        try:
            result = subprocess.run(
                ["setpriv", "--bounding-set", "-kill", sys.executable, "-c", code],
                cwd=REPO, capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
        finally:
            target.kill()
            target.wait(5)
        assert "must run as the same UID as the app, or have the CAP_KILL capability" in result.stdout, result.stderr


def signal_config(**notifier: object) -> SignalNotify:
    """Parses a config with one template whose only on_change entry is ``notifier``."""
    template = {"contents": "x", "destination": "a", "on_change": [notifier]}
    raw = {"output_dir": "/out", "templates": [template]}
    [parsed] = parse_config(raw, base_dir=Path("/cfg"), environ={}).templates[0].on_change
    assert isinstance(parsed, SignalNotify)
    return parsed


class TestConfig:
    def test_pidfile_with_process_and_user(self) -> None:
        """{signal, pidfile, process, user} loads with every field."""
        parsed = signal_config(signal="SIGHUP", pidfile="/run/nginx.pid", process="nginx", user=101)
        assert parsed == SignalNotify(signal=signal.SIGHUP, pidfile=Path("/run/nginx.pid"), process="nginx", user=101)

    def test_pidfile_without_process_is_refused(self) -> None:
        """A pidfile alone is refused with a message asking for process: (the app writes the pidfile)."""
        with pytest.raises(ConfigError, match=r"on_change\[0\]\.process: is required with pidfile"):
            signal_config(signal="SIGHUP", pidfile="/run/app.pid")

    @pytest.mark.parametrize(("value", "expected"), [(None, None), ("any", "any"), (0, 0), ("101", 101)])
    def test_user_values(self, value: object, expected: object) -> None:
        """user: is a UID (a number, or digits), or any; left out, it is None (the injector's own UID)."""
        assert signal_config(signal="HUP", process="nginx", user=value).user == expected

    @pytest.mark.parametrize("value", ["nginx", -1, True, 2**32])
    def test_user_must_be_a_uid_or_any(self, value: object) -> None:
        """A user name, a negative number or a boolean is refused, naming the field."""
        with pytest.raises(ConfigError, match=r"on_change\[0\]\.user: expected a numeric UID"):
            signal_config(signal="HUP", process="nginx", user=value)

    def test_user_with_child_is_refused(self) -> None:
        """user: with child: true is refused: the child is injector's own."""
        with pytest.raises(ConfigError, match=r"on_change\[0\]\.user: applies to process: and pidfile:"):
            signal_config(signal="HUP", child=True, user=0)
