"""Notifiers against real processes, a real HTTP server and real commands; the Dispatcher's timing."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from injector.config.model import CommandNotify, HttpNotify, SignalNotify, WaitConfig
from injector.errors import NotifyError
from injector.metrics import Registry
from injector.notify import build_notifier
from injector.notify.command import CommandNotifier
from injector.notify.dispatch import Dispatcher, NotifyMetrics
from injector.notify.http import HttpNotifier
from injector.notify.signal import SignalNotifier, find_processes

HELPER = Path(__file__).parent / "helpers" / "sigapp.py"
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Polls ``predicate`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


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


@dataclass
class Apps:
    """Starts the helper app under a unique executable name and stops what it started."""

    name: str
    exe: Path
    tmp: Path
    started: list[AppProcess] = field(default_factory=list)

    def start(self, *, worker: bool = False) -> AppProcess:
        out = self.tmp / f"signals-{len(self.started)}.log"
        args = [str(self.exe), str(HELPER), str(out)] + (["--worker"] if worker else [])
        app = AppProcess(proc=subprocess.Popen(args), out=out)
        self.started.append(app)
        wait_for(lambda: any(line.startswith("ready master") for line in app.lines()), what="app ready")
        if worker:
            wait_for(lambda: any(line.startswith("ready worker") for line in app.lines()), what="worker ready")
            app.worker_pid = next(int(x.split()[2]) for x in app.lines() if x.startswith("ready worker"))
        return app

    def stop(self) -> None:
        for app in self.started:
            app.proc.terminate()
            app.proc.wait(5)
            if app.worker_pid is not None and not gone(app.worker_pid):
                os.kill(app.worker_pid, signal.SIGTERM)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    """Helper apps named ``injapp-XXXXXX`` (under the kernel's 15-character comm limit)."""
    name = f"injapp-{secrets.token_hex(3)}"
    exe = tmp_path / name
    exe.symlink_to(sys.executable)
    apps = Apps(name=name, exe=exe, tmp=tmp_path)
    try:
        yield apps
    finally:
        apps.stop()


def hup(**target: object) -> SignalNotifier:
    return SignalNotifier(SignalNotify(signal=signal.SIGHUP, **target))  # type: ignore[arg-type]


def fake_proc(root: Path, pid: int, *, comm: str, argv: list[str], ppid: int = 1, state: str = "S") -> None:
    """Writes the three /proc files find_processes reads, for one made-up process."""
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1\n")
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))


class TestFindProcesses:
    def test_finds_a_process_by_its_executable_name(self, apps: Apps) -> None:
        """A process is found by the name of the file it executed."""
        app = apps.start()
        assert find_processes(apps.name) == [app.pid]

    def test_skips_children_of_a_match(self, apps: Apps) -> None:
        """Of a master and its same-named worker, only the master is returned."""
        app = apps.start(worker=True)
        assert app.worker_pid is not None
        assert find_processes(apps.name) == [app.pid]

    def test_finds_by_argv0_basename(self, tmp_path: Path) -> None:
        """A process whose argv[0] basename is the name matches even if its comm differs."""
        name = f"injargv-{secrets.token_hex(3)}"
        proc = subprocess.Popen([f"/opt/bin/{name}", "30"], executable="/bin/sleep")
        try:
            assert find_processes(name) == [proc.pid]
        finally:
            proc.kill()
            proc.wait(5)

    def test_never_returns_ourselves(self) -> None:
        """The sidecar's own process is never a target, even when it has the name."""
        own = Path("/proc/self/comm").read_text().strip()
        assert os.getpid() not in find_processes(own)

    def test_skips_zombies_and_kernel_threads(self, tmp_path: Path) -> None:
        """Zombies and kernel threads (empty cmdline) named like the app are not targets."""
        fake_proc(tmp_path, 10, comm="nginx", argv=["nginx"], state="Z")
        fake_proc(tmp_path, 11, comm="nginx", argv=[])
        fake_proc(tmp_path, 12, comm="nginx", argv=["nginx: master process /usr/sbin/nginx"])
        assert find_processes("nginx", proc=tmp_path) == [12]

    def test_matches_truncated_comm_of_long_names(self, tmp_path: Path) -> None:
        """A name longer than 15 characters matches the kernel's truncated comm."""
        fake_proc(tmp_path, 20, comm="a-very-long-app", argv=["python3", "app.py"])
        assert find_processes("a-very-long-app-name", proc=tmp_path) == [20]

    def test_parses_comm_with_spaces_and_parentheses(self, tmp_path: Path) -> None:
        """A comm holding ") x (" does not confuse the parent pid parsing."""
        fake_proc(tmp_path, 30, comm="we) ird (x", argv=["we) ird (x"], ppid=1)
        fake_proc(tmp_path, 31, comm="we) ird (x", argv=["we) ird (x"], ppid=30)
        assert find_processes("we) ird (x", proc=tmp_path) == [30]


class TestSignalNotifier:
    def test_signals_a_process_by_name(self, apps: Apps) -> None:
        """process: NAME sends the signal to the process with that executable name."""
        app = apps.start()
        hup(process=apps.name).notify()
        wait_for(lambda: f"master SIGHUP {app.pid}" in app.lines(), what="SIGHUP recorded")

    def test_signals_every_process_with_the_name(self, apps: Apps) -> None:
        """Two unrelated processes with the name both get the signal."""
        first, second = apps.start(), apps.start()
        hup(process=apps.name).notify()
        wait_for(lambda: f"master SIGHUP {first.pid}" in first.lines(), what="first app signalled")
        wait_for(lambda: f"master SIGHUP {second.pid}" in second.lines(), what="second app signalled")

    def test_workers_are_not_signalled(self, apps: Apps) -> None:
        """Only the master of a master/worker pair gets the signal."""
        app = apps.start(worker=True)
        assert app.worker_pid is not None
        hup(process=apps.name).notify()
        wait_for(lambda: f"master SIGHUP {app.pid}" in app.lines(), what="master signalled")
        # Had the worker got SIGHUP, it would be recorded before this later, higher-numbered signal.
        os.kill(app.worker_pid, signal.SIGUSR1)
        wait_for(lambda: f"worker SIGUSR1 {app.worker_pid}" in app.lines(), what="worker SIGUSR1")
        assert f"worker SIGHUP {app.worker_pid}" not in app.lines()

    def test_no_match_says_to_enable_share_process_namespace(self) -> None:
        """With no process of that name, the error names it and points to shareProcessNamespace."""
        name = f"nosuch-{secrets.token_hex(3)}"
        with pytest.raises(NotifyError, match=f"no process named {name} is visible: enable shareProcessNamespace"):
            hup(process=name).notify()

    def test_pidfile_signals_the_pid_in_it(self, apps: Apps, tmp_path: Path) -> None:
        """pidfile: PATH signals the pid written in it (surrounding whitespace ignored)."""
        app = apps.start()
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(f"  {app.pid}\n")
        hup(pidfile=pidfile).notify()
        wait_for(lambda: f"master SIGHUP {app.pid}" in app.lines(), what="SIGHUP recorded")

    def test_stale_pidfile_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """A pidfile naming a process that has exited raises an error naming the file."""
        proc = subprocess.Popen(["true"])
        proc.wait(5)
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(str(proc.pid))
        with pytest.raises(NotifyError, match=f"no process with pid {proc.pid} \\(pidfile {pidfile} is stale\\)"):
            hup(pidfile=pidfile).notify()

    def test_missing_pidfile_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """A pidfile that does not exist raises an error naming the file."""
        pidfile = tmp_path / "absent.pid"
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} does not exist"):
            hup(pidfile=pidfile).notify()

    def test_garbled_pidfile_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """A pidfile without a number raises an error naming the file and showing its start."""
        pidfile = tmp_path / "app.pid"
        pidfile.write_text("not-a-pid\n")
        with pytest.raises(NotifyError, match=f"pidfile {pidfile} does not hold a pid"):
            hup(pidfile=pidfile).notify()

    def test_child_signals_the_pid_from_the_callable(self, apps: Apps) -> None:
        """child: true signals the pid exec mode's callable returns."""
        app = apps.start()
        notifier = SignalNotifier(SignalNotify(signal=signal.SIGHUP, child=True), child=lambda: app.pid)
        notifier.notify()
        wait_for(lambda: f"master SIGHUP {app.pid}" in app.lines(), what="SIGHUP recorded")

    def test_no_child_is_an_error(self) -> None:
        """child: true with no child running raises an error."""
        notifier = SignalNotifier(SignalNotify(signal=signal.SIGHUP, child=True), child=lambda: None)
        with pytest.raises(NotifyError, match="no child process is running"):
            notifier.notify()

    @pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
    def test_permission_denied_says_same_uid_or_cap_kill(self) -> None:
        """Signalling another user's process without CAP_KILL explains the UID / CAP_KILL requirement."""
        target = subprocess.Popen(["sleep", "30"], user=65534, group=65534)
        code = (
            "import signal\n"
            "from injector.config.model import SignalNotify\n"
            "from injector.errors import NotifyError\n"
            "from injector.notify.signal import SignalNotifier\n"
            f"n = SignalNotifier(SignalNotify(signal=signal.SIGUSR1, child=True), child=lambda: {target.pid})\n"
            "try:\n    n.notify()\nexcept NotifyError as exc:\n    print(exc)\n"
        )
        try:
            # Root without CAP_KILL may only signal its own UID's processes, like a sidecar running as non-root.
            result = subprocess.run(
                ["setpriv", "--bounding-set", "-kill", sys.executable, "-c", code],
                cwd=REPO, capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
        finally:
            target.kill()
            target.wait(5)
        assert "must run as the same UID as the app, or have the CAP_KILL capability" in result.stdout, result.stderr


# --- http -----------------------------------------------------------------------------------------


class _AppHandler(BaseHTTPRequestHandler):
    server: _AppServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers), body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        data = self.server.body if status >= 300 else b"reloaded\n"
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AppHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.body = b"something went wrong\n"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/-/reload"


@pytest.fixture
def http_app() -> Iterator[_AppServer]:
    """An app with a reload endpoint on 127.0.0.1 that records requests; statuses are queued."""
    server = _AppServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestHttpNotifier:
    def test_2xx_is_success_and_sends_no_body(self, http_app: _AppServer) -> None:
        """A 2xx answer succeeds; the request has the method and headers and an empty body."""
        HttpNotifier(HttpNotify(url=http_app.url, headers={"X-Reload": "yes"})).notify()
        [(method, path, headers, body)] = http_app.requests
        assert (method, path, body) == ("POST", "/-/reload", b"")
        assert headers["X-Reload"] == "yes"

    def test_500_raises_with_the_status(self, http_app: _AppServer) -> None:
        """A 500 answer raises NotifyError with the status and the URL."""
        http_app.statuses = [500]
        with pytest.raises(NotifyError, match=r"http POST http://127\.0\.0\.1:\d+/-/reload: the app answered 500"):
            HttpNotifier(HttpNotify(url=http_app.url)).notify()

    def test_error_body_is_cut_to_200_characters(self, http_app: _AppServer) -> None:
        """At most ~200 characters of an error response's body reach the message."""
        http_app.statuses, http_app.body = [503], b"x" * 5000
        with pytest.raises(NotifyError) as info:
            HttpNotifier(HttpNotify(url=http_app.url)).notify()
        assert "x" * 200 in str(info.value)
        assert "x" * 201 not in str(info.value)

    def test_redirect_is_not_followed(self, http_app: _AppServer) -> None:
        """A 3xx answer is a failure, not followed (that would turn the POST into a GET)."""
        http_app.statuses = [302]
        with pytest.raises(NotifyError, match="answered 302"):
            HttpNotifier(HttpNotify(url=http_app.url)).notify()
        assert len(http_app.requests) == 1

    def test_connection_refused_raises(self) -> None:
        """Nobody listening raises NotifyError saying the request failed."""
        url = f"http://127.0.0.1:{free_port()}/-/reload"
        with pytest.raises(NotifyError, match=r"request failed: .*refused"):
            HttpNotifier(HttpNotify(url=url, timeout=2)).notify()

    def test_describe_hides_credentials_and_query(self) -> None:
        """The label drops user:password@ and the query string, where tokens live."""
        notifier = HttpNotifier(HttpNotify(url="http://u:pw@127.0.0.1:8080/-/reload?token=abc", method="PUT"))
        assert notifier.describe() == "http PUT http://127.0.0.1:8080/-/reload"


# --- command --------------------------------------------------------------------------------------


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


class TestBuildNotifier:
    @pytest.mark.parametrize(
        ("config", "kind"),
        [
            (SignalNotify(signal=signal.SIGHUP, process="nginx"), SignalNotifier),
            (HttpNotify(url="http://127.0.0.1:1/-/reload"), HttpNotifier),
            (CommandNotify(argv=("true",)), CommandNotifier),
        ],
        ids=["signal", "http", "command"],
    )
    def test_builds_the_notifier_for_each_config(self, config: object, kind: type) -> None:
        """Each on_change config kind builds its notifier, labelled by its describe()."""
        notifier = build_notifier(config)  # type: ignore[arg-type]
        assert isinstance(notifier, kind)
        assert notifier.describe() == config.describe()  # type: ignore[attr-defined]


# --- dispatcher -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A notifier recording when it fired; fails its first ``failures`` attempts (or always)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, name: str = "rec", failures: int = 0) -> None:
        self.clock, self.name, self.failures = clock, name, failures
        self.calls: list[float] = []

    def describe(self) -> str:
        return f"test {self.name}"

    def notify(self) -> None:
        self.calls.append(self.clock())
        if self.failures:
            self.failures -= 1
            raise NotifyError(f"test {self.name}: refused")


def run_until_idle(dispatcher: Dispatcher, clock: FakeClock, *, until: float = 1e9) -> None:
    """Jumps the fake clock from deadline to deadline, firing what is due, up to ``until``."""
    for _ in range(1000):
        deadline = dispatcher.next_deadline()
        if deadline is None or deadline > until:
            return
        clock.now = max(clock.now, deadline)
        dispatcher.fire_due()
    raise AssertionError("dispatcher did not go idle")


class TestDispatcher:
    def test_burst_fires_once(self) -> None:
        """100 changes in a burst make one notification per notifier."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), clock=clock)
        a, b = Recorder(clock, name="a"), Recorder(clock, name="b")
        d.register("a", a)
        d.register("b", b)
        for _ in range(100):
            d.changed(["a", "b"])
            clock.now += 0.001
        run_until_idle(d, clock)
        assert (len(a.calls), len(b.calls)) == (1, 1)

    def test_waits_for_min_quiet(self) -> None:
        """A notification fires wait.min after the last change, not before."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.25, max=2.0), clock=clock)
        d.register("a", rec := Recorder(clock))
        d.changed(["a"])
        clock.now = 0.5
        d.changed(["a"])
        clock.now = 0.7
        assert d.fire_due() == 0
        clock.now = 0.75
        assert d.fire_due() == 1
        assert rec.calls == [0.75]

    def test_max_bounds_the_delay_under_continuous_changes(self) -> None:
        """Changes every 0.1 s (never min=0.2 quiet) still notify every wait.max=1 s."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=1.0), clock=clock)
        d.register("a", rec := Recorder(clock))
        for step in range(35):
            clock.now = round(step * 0.1, 6)
            d.changed(["a"])
            d.fire_due()
        assert rec.calls == [1.0, 2.1, 3.2]

    def test_keys_fire_independently(self) -> None:
        """Each key has its own burst and fires on its own schedule."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.25, max=2.0), clock=clock)
        d.register("a", a := Recorder(clock, name="a"))
        d.register("b", b := Recorder(clock, name="b"))
        d.changed(["a"])
        clock.now = 0.125
        d.changed(["b"])
        run_until_idle(d, clock)
        assert (a.calls, b.calls) == ([0.25], [0.375])

    def test_shared_key_fires_once_for_all_its_templates(self) -> None:
        """Two templates registering the same key make one notification."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), clock=clock)
        first, second = Recorder(clock), Recorder(clock)
        d.register("nginx", first)
        d.register("nginx", second)
        d.changed(["nginx", "nginx"])
        run_until_idle(d, clock)
        assert (len(first.calls), len(second.calls)) == (1, 0)

    def test_failures_retry_with_growing_gaps_and_bounded_attempts(self) -> None:
        """A failing notifier is retried with doubling, capped gaps, max_attempts times in all."""
        clock = FakeClock()
        d = Dispatcher(
            WaitConfig(min=0.2, max=2.0), min_backoff=1, max_backoff=8, max_attempts=6, clock=clock, rand=lambda: 0.5
        )
        d.register("a", rec := Recorder(clock, failures=100))
        d.changed(["a"])
        run_until_idle(d, clock)
        gaps = [round(b - a, 6) for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
        assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert d.pending() == 0

    def test_backoff_is_fully_jittered(self) -> None:
        """Retry delays are drawn uniformly below the cap (full jitter), so may be short."""
        clock = FakeClock()
        draws = iter([0.0, 0.99])
        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, max_attempts=3, clock=clock, rand=lambda: next(draws))
        d.register("a", rec := Recorder(clock, failures=100))
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.0, 0.0, 1.98]

    def test_a_failing_notifier_does_not_hold_up_another(self) -> None:
        """While one notifier fails and retries, another fires on time, once."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), min_backoff=1, max_attempts=3, clock=clock, rand=lambda: 0.5)
        d.register("bad", bad := Recorder(clock, name="bad", failures=100))
        d.register("good", good := Recorder(clock, name="good"))
        d.changed(["bad"])
        clock.now = 0.3
        d.changed(["good"])
        run_until_idle(d, clock)
        assert good.calls == [0.5]
        assert len(bad.calls) == 3

    def test_change_while_retrying_merges_into_the_retry(self) -> None:
        """A change during the backoff wait does not add a notification: the retry carries it."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), min_backoff=1, clock=clock, rand=lambda: 0.5)
        d.register("a", rec := Recorder(clock, failures=1))
        d.changed(["a"])
        clock.now = 0.2
        d.fire_due()
        clock.now = 0.3
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.2, 0.7]

    def test_gives_up_then_the_next_change_notifies_afresh(self) -> None:
        """After max_attempts the notification is dropped; a later change starts a new one."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, max_attempts=2, clock=clock, rand=lambda: 0.5)
        d.register("a", rec := Recorder(clock, failures=2))
        d.changed(["a"])
        run_until_idle(d, clock)
        clock.now = 10
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.0, 0.5, 10.0]

    def test_unexpected_exception_counts_as_a_failure(self) -> None:
        """A notifier raising something other than NotifyError is retried like a failure."""
        clock = FakeClock()
        calls: list[float] = []

        class Broken:
            def describe(self) -> str:
                return "broken"

            def notify(self) -> None:
                calls.append(clock())
                if len(calls) == 1:
                    raise RuntimeError("bug")

        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, clock=clock, rand=lambda: 0.5)
        d.register("a", Broken())
        d.changed(["a"])
        run_until_idle(d, clock)
        assert calls == [0.0, 0.5]

    def test_pending_and_flush(self) -> None:
        """pending() counts waiting notifications; flush() fires them all now."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=5, max=10), clock=clock)
        d.register("a", a := Recorder(clock, name="a"))
        d.register("b", b := Recorder(clock, name="b"))
        d.register("c", Recorder(clock, name="c"))
        d.changed(["a", "b"])
        assert d.pending() == 2
        d.flush()
        assert (a.calls, b.calls, d.pending()) == ([0.0], [0.0], 0)

    def test_unknown_key_is_an_error(self) -> None:
        """changed() with a key never registered raises KeyError."""
        d = Dispatcher(WaitConfig())
        with pytest.raises(KeyError, match="not registered"):
            d.changed(["nope"])

    def test_counts_results_in_metrics(self) -> None:
        """Successes, failed attempts and give-ups are counted per notifier description."""
        clock, registry = FakeClock(), Registry()
        metrics = NotifyMetrics.create(registry)
        d = Dispatcher(WaitConfig(min=0, max=0), max_attempts=2, clock=clock, metrics=metrics, rand=lambda: 0.5)
        d.register("ok", Recorder(clock, name="ok"))
        d.register("bad", Recorder(clock, name="bad", failures=100))
        d.changed(["ok", "bad"])
        run_until_idle(d, clock)
        text = registry.render()
        assert 'injector_notifications_total{notifier="test ok",result="success"} 1.0' in text
        assert 'injector_notifications_total{notifier="test bad",result="error"} 2.0' in text
        assert 'injector_notifications_total{notifier="test bad",result="gave_up"} 1.0' in text

    def test_failures_are_logged_at_warning_with_the_notifier(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each failed attempt is a WARNING naming the notifier and the error."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0, max=0), max_attempts=2, clock=clock, rand=lambda: 0.5)
        d.register("a", Recorder(clock, name="app", failures=100))
        d.changed(["a"])
        with caplog.at_level("WARNING", logger="injector.notify.dispatch"):
            run_until_idle(d, clock)
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert messages == [
            "notify test app failed (attempt 1 of 2), retrying in 0.50s: test app: refused",
            "notify test app failed (attempt 2 of 2), giving up until the next change: test app: refused",
        ]


class TestDispatcherThread:
    def test_burst_fires_once_in_real_time(self) -> None:
        """With min 50 ms / max 200 ms, a burst of 100 changes fires once, at least 50 ms later."""
        d = Dispatcher(WaitConfig(min=0.05, max=0.2))
        d.register("a", rec := Recorder())
        d.start()
        try:
            started = time.monotonic()
            for _ in range(100):
                d.changed(["a"])
            wait_for(lambda: d.pending() == 0, what="notification sent")
        finally:
            d.stop()
        assert len(rec.calls) == 1
        assert rec.calls[0] - started >= 0.05

    def test_http_notify_is_retried_until_it_succeeds(self, http_app: _AppServer) -> None:
        """A reload endpoint answering 500 twice is retried with backoff and then succeeds."""
        http_app.statuses = [500, 500]
        registry = Registry()
        d = Dispatcher(
            WaitConfig(min=0.01, max=0.05), min_backoff=0.02, max_backoff=0.1, metrics=NotifyMetrics.create(registry)
        )
        notifier = HttpNotifier(HttpNotify(url=http_app.url, timeout=2))
        d.register("http", notifier)
        d.start()
        try:
            d.changed(["http"])
            wait_for(lambda: d.pending() == 0, what="notification delivered")
        finally:
            d.stop()
        assert len(http_app.requests) == 3
        assert f'injector_notifications_total{{notifier="{notifier.describe()}",result="success"}} 1.0' in (
            registry.render()
        )

    def test_a_slow_notifier_does_not_block_another(self) -> None:
        """A notifier stuck in its attempt does not delay another key's notification."""
        release = threading.Event()

        class Slow(Recorder):
            def notify(self) -> None:
                super().notify()
                release.wait(5)

        d = Dispatcher(WaitConfig(min=0.01, max=0.05))
        d.register("slow", slow := Slow(name="slow"))
        d.register("fast", fast := Recorder(name="fast"))
        d.start()
        try:
            d.changed(["slow"])
            wait_for(lambda: slow.calls, what="slow notifier started")
            d.changed(["fast"])
            # Done means no longer pending: the fast one finishes while the slow one is still stuck.
            wait_for(lambda: fast.calls and d.pending() == 1, what="fast notifier done")
            assert len(slow.calls) == 1
            release.set()
            wait_for(lambda: d.pending() == 0, what="slow notifier done")
        finally:
            release.set()
            d.stop()

    def test_idle_thread_does_not_spin(self) -> None:
        """With nothing pending, the thread sleeps: it stops reading the clock."""
        reads = [0]

        def clock() -> float:
            reads[0] += 1
            return time.monotonic()

        d = Dispatcher(WaitConfig(min=0.01, max=0.05), clock=clock)
        d.register("a", Recorder())
        d.start()
        try:
            d.changed(["a"])
            wait_for(lambda: d.pending() == 0, what="notification sent")
            before = reads[0]
            time.sleep(0.2)  # observing idleness, not waiting for a condition
            assert reads[0] - before <= 2
        finally:
            d.stop()

    def test_stop_ends_the_thread(self) -> None:
        """stop() ends the background thread promptly."""
        d = Dispatcher(WaitConfig())
        d.start()
        [thread] = [t for t in threading.enumerate() if t.name == "injector-notify"]
        assert d.running
        d.stop(timeout=2)
        assert not thread.is_alive()
        assert not d.running
