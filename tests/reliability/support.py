"""Shared helpers of the reliability tests: run the CLI as a process (with its exit code, time and
peak memory), read Prometheus samples, read what an app would see in output_dir."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent / "helpers"


@dataclass(frozen=True)
class Run:
    """One finished (or killed) ``injector`` process."""

    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    elapsed: float
    #: Peak resident memory of the process, in MiB (from wait4's rusage).
    max_rss_mib: float

    @property
    def errors(self) -> list[str]:
        """The ``injector: error:`` lines (the CLI prints exactly one on failure)."""
        return [line for line in self.stderr.splitlines() if line.startswith("injector: error:")]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without INJECTOR_* and VAULT_*, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INJECTOR_", "VAULT_"))}
    env.update(extra or {})
    return env


def run_injector(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    umask: int | None = None,
) -> Run:
    """Runs ``python -m injector ARGS`` to the end (or kills it at ``timeout``) and measures it.

    It runs under helpers/maxrss.py, in a session of its own, so its peak memory is its own and a
    timeout kills it whole.
    """
    started = time.monotonic()
    folder = Path(os.environ.get("TMPDIR", "/tmp"))
    with _Capture(folder) as out, _Capture(folder) as err, _Capture(folder) as rss:
        proc = subprocess.Popen(
            [sys.executable, str(HELPERS / "maxrss.py"), rss.name, sys.executable, "-m", "injector", *args],
            stdin=subprocess.DEVNULL,
            stdout=out.fh,
            stderr=err.fh,
            env=clean_env(env),
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
        elapsed = time.monotonic() - started
    return Run(
        returncode=returncode,
        stdout=out.text,
        stderr=err.text,
        elapsed=elapsed,
        max_rss_mib=int(rss.text or 0) / 1024,
    )


class _Capture:
    """A temporary file that collects a process's output (no pipe to fill up and block on)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.text = ""

    def __enter__(self) -> _Capture:
        self.fh = tempfile.NamedTemporaryFile(dir=self.folder)
        self.name = self.fh.name
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.seek(0)
        self.text = self.fh.read().decode("utf-8", errors="replace")
        self.fh.close()


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


# --- output_dir as an app sees it --------------------------------------------------------------


def visible_files(output_dir: Path) -> dict[str, bytes]:
    """Every regular file reachable through the user-visible names, by relative path.

    Read as an app reads: through the top-level names, never the ``..*`` snapshot folders. A publish
    that swaps snapshots during the walk makes a read fail with FileNotFoundError; the walk is then
    done again (a few times at most), so the result is always one whole snapshot's view.
    """
    for _ in range(20):
        try:
            return _walk_visible(output_dir)
        except FileNotFoundError:
            continue
    return _walk_visible(output_dir)


def _walk_visible(output_dir: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in sorted(os.listdir(output_dir)):
        if name.startswith(".."):
            continue
        top = output_dir / name
        if top.is_file():
            out[name] = top.read_bytes()
        elif top.is_dir():
            for root, _, files in os.walk(top):
                for leaf in files:
                    path = Path(root) / leaf
                    if path.is_file():
                        out[str(path.relative_to(output_dir))] = path.read_bytes()
    return out


def data_link(output_dir: Path) -> str | None:
    """Where ``..data`` points (None when nothing was ever published)."""
    try:
        return os.readlink(output_dir / "..data")
    except FileNotFoundError:
        return None


def leftovers(output_dir: Path) -> list[str]:
    """Entries beyond ``..data``, its snapshot folder and one correct link per entry of that folder."""
    live = os.readlink(output_dir / "..data")
    entries = set(os.listdir(output_dir / live))
    wrong = {name for name in entries if os.readlink(output_dir / name) != f"..data/{name}"}
    return sorted(set(os.listdir(output_dir)) - {"..data", live, *entries} | wrong)


# --- Prometheus text ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` in the Prometheus text ``text``, with its labels."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or not match or match.group(1) != name:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        found.append((labels, float(match.group(3))))
    return found


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(value for have, value in samples(text, name) if all(have.get(k) == v for k, v in labels.items()))


# --- backends that count what reaches them ----------------------------------------------------


class CountingVault:
    """A fresh dev Vault whose every request is timed on arrival, dropped (outage) ones included.

    The dev server's own ``request_log`` skips connections it drops during an outage; wrapping its
    request entry point counts those too, which is what a rate bound needs.
    """

    def __init__(self) -> None:
        from devvault import DevVault

        self.dev = DevVault(host="127.0.0.1", port=0, root_token="root").start()
        self.arrivals: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        serve = self.dev._serve

        def counted(method: str, target: str, headers: dict[str, str], body: bytes, **kwargs: Any) -> Any:
            with self._lock:
                self.arrivals.append((time.monotonic(), method, target.split("?", 1)[0]))
            return serve(method, target, headers, body, **kwargs)

        self.dev._serve = counted

    @property
    def address(self) -> str:
        return str(self.dev.address)

    def client(self, token: str = "root") -> Any:  # noqa: S107 - the dev server's root token
        import hvac

        return hvac.Client(url=self.address, token=token, timeout=10)

    def times(self) -> list[float]:
        with self._lock:
            return [t for t, _, _ in self.arrivals]

    def heal(self) -> None:
        """Switches every fault off."""
        self.dev.set_outage(False)
        self.dev.set_latency(0)
        self.dev.set_error_rate(0.0)
        self.dev.unseal()

    def stop(self) -> None:
        self.heal()
        self.dev.stop()


class CannedAws:
    """A loopback endpoint answering every AWS JSON-protocol request with one canned answer.

    Like tests/fixtures/aws.py's ``scripted_aws``, but usable outside a test function (module-scoped
    scenarios run several at once) and timing each request on arrival.
    """

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler

        self.status, self.body = 200, {}
        self.arrivals: list[tuple[float, str]] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                canned.arrivals.append((time.monotonic(), self.headers.get("X-Amz-Target", "")))
                payload = json.dumps(canned.body).encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._handler = Handler
        self._server: Any = None
        self.port = self._listen(0)
        self.url = f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> int:
        from http.server import ThreadingHTTPServer

        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return int(self._server.server_address[1])

    def close_port(self) -> None:
        """Stops listening: connections to the port are refused, as to a closed loopback port."""
        self.stop()

    def reopen_port(self) -> None:
        """Listens on the same port again."""
        self._listen(self.port)

    def secret(self, name: str, value: Mapping[str, str], version: str) -> None:
        """Answers BatchGetSecretValue with one secret ``name`` holding ``value`` as JSON."""
        entry = {
            "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
            "Name": name,
            "VersionId": version,
            "SecretString": json.dumps(dict(value)),
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": 1700000000,
        }
        self.status, self.body = 200, {"SecretValues": [entry], "Errors": []}

    def error(self, status: int, code: str, message: str) -> None:
        self.status, self.body = status, {"__type": code, "message": message}

    def times(self) -> list[float]:
        return [t for t, _ in list(self.arrivals)]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def distinct_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (all held open at once while they are picked)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def start_sidecar(tmp: Path, config: Path, port: int, *args: str, env: Mapping[str, str] | None = None) -> Any:
    """Starts ``injector sidecar`` on health port ``port``, as ``Harness.sidecar`` does."""
    from tests.fixtures.sidecar import SidecarProcess

    log = tmp / f"sidecar-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "injector",
                "sidecar",
                "-c",
                str(config),
                "--health-address",
                f"127.0.0.1:{port}",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            cwd=ROOT,
        )
    return SidecarProcess(proc=proc, port=port, log=log)
