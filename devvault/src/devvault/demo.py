"""``injector demo``: the whole story on embedded backends, printed as a timeline with timings.

1. start the dev Vault and moto (Secrets Manager, SSM) on 127.0.0.1 and seed them;
2. mount a tmpfs for the output (or use a temporary folder, with a notice, when not root);
3. ``injector init`` renders the files; a small app starts and prints what it reads;
4. ``injector sidecar`` keeps them fresh; a value is rotated in each backend and a ConfigMap-style
   template is edited, and each time the timeline shows when the app reloaded with the new value;
5. everything stops; exit 0.

The init container and the sidecar are the real CLI in their own processes. The demo's values
are made up; the app prints only non-secret fields and the masked tail of the API key.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from injector.errors import InjectorError

#: The process name a pidfile notifier expects: the demo app is this Python interpreter.
APP_NAME = Path(sys.executable).name

__all__ = ["run_demo"]

APP = r"""
import os, signal, sys, time
out, path = sys.argv[1], sys.argv[2]
pending = []
signal.signal(signal.SIGHUP, lambda *_: pending.append(1))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
def show(event):
    values = dict(line.split("=", 1) for line in open(path).read().splitlines() if "=" in line)
    key = values.get("API_KEY", "")
    print(f"{event}: GREETING={values.get('GREETING')} DB_USER={values.get('DB_USER')} "
          f"PASSWORD_VERSION={values.get('PASSWORD_VERSION')} API_KEY=…{key[-2:]} THEME={values.get('THEME')}",
          flush=True)
open(out, "w").write(str(os.getpid()))
show("app started, read")
deadline = time.monotonic() + 120
while time.monotonic() < deadline and os.getppid() != 1:
    if pending:
        pending.clear()
        show("app reloaded (SIGHUP), read")
    time.sleep(0.01)
"""

TEMPLATE_V1 = """\
GREETING={{ secret("aws-ssm:/demo/greeting") }}
DB_USER={{ secrets.db.username }}
PASSWORD={{ secrets.db.password }}
PASSWORD_VERSION={{ secrets.db.version }}
API_KEY={{ secret("aws-sm:demo/api#key") }}
THEME=light
"""


class Timeline:
    """Prints ``[  1.23s] message`` lines, seconds since the demo started."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.start = time.monotonic()
        self.echo = echo

    def __call__(self, message: str) -> float:
        now = time.monotonic() - self.start
        self.echo(f"[{now:6.2f}s] {message}")
        return now


def run_demo(echo: Callable[[str], None] = print) -> int:
    """Runs the demo; returns the exit code (0 when every rotation reached the app)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        echo("injector demo needs moto: pip install 'tmpfs-injector[demo]' (make demo does this)")
        return 1
    from devvault import DevVault

    say = Timeline(echo)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="injector-demo-")))
        vault = stack.enter_context(DevVault().start())
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
        moto.start()
        stack.callback(moto.stop)
        aws_url = f"http://127.0.0.1:{moto._port}"
        say(f"dev Vault on {vault.address}, moto (Secrets Manager, SSM) on {aws_url}")
        clients = _seed(vault, aws_url)
        say("seeded: vault secret/demo (KV v2), aws-sm demo/api, aws-ssm /demo/greeting")
        output = stack.enter_context(_output_dir(work, say))
        config = _write_config(work, output, vault.address, aws_url)
        env = {**os.environ, "VAULT_TOKEN": vault.root_token, "AWS_DEFAULT_REGION": "us-east-1"}

        started = time.monotonic()
        init = subprocess.run(
            _injector("init", "-c", str(config)), env=env, capture_output=True, text=True, check=False
        )
        if init.returncode != 0:
            echo(init.stderr)
            return init.returncode
        say(f"injector init: exit 0 in {time.monotonic() - started:.2f}s — {init.stderr.strip().splitlines()[-1]}")

        app_lines: list[tuple[float, str]] = []
        app = _start_app(work, output / "app.env", app_lines, say)
        stack.callback(_terminate, app)
        port = _free_port()
        sidecar = subprocess.Popen(
            _injector("sidecar", "-c", str(config), "--health-address", f"127.0.0.1:{port}"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / "sidecar.log").open("w"),
        )
        stack.callback(_terminate, sidecar)
        _wait(lambda: _ok(f"http://127.0.0.1:{port}/readyz"), 20, "the sidecar's /readyz")
        say(f"injector sidecar: /readyz 200 on 127.0.0.1:{port} (native-sidecar startupProbe passes)")

        steps: list[tuple[str, Callable[[], None], str]] = [
            (
                "rotate the Vault KV secret secret/demo (version 2)",
                lambda: clients["vault"].secrets.kv.v2.create_or_update_secret(
                    path="demo", secret={"username": "app", "password": "pw-two", "version": "2"}
                ),
                "PASSWORD_VERSION=2",
            ),
            (
                "rotate the Secrets Manager secret demo/api",
                lambda: clients["sm"].put_secret_value(SecretId="demo/api", SecretString=json.dumps({"key": "k-v2"})),
                "API_KEY=…v2",
            ),
            (
                "change the SSM parameter /demo/greeting",
                lambda: clients["ssm"].put_parameter(
                    Name="/demo/greeting", Value="hello again", Type="String", Overwrite=True
                ),
                "GREETING=hello again",
            ),
            (
                "edit the template in the ConfigMap-style folder (THEME=dark)",
                lambda: _configmap_write(work / "templates", TEMPLATE_V1.replace("THEME=light", "THEME=dark")),
                "THEME=dark",
            ),
        ]
        results = []
        for title, action, expect in steps:
            begin = say(title)
            seen = len(app_lines)
            action()
            line = _wait(functools.partial(_find, app_lines, seen, expect), 20, f"the app to read {expect}")
            results.append((title, line[0] - begin))
            say(f"  → {line[1]}  ({(line[0] - begin) * 1000:.0f} ms after the change)")

        sidecar.send_signal(signal.SIGTERM)
        code = sidecar.wait(timeout=15)
        say(f"injector sidecar: SIGTERM → exit {code}")
        echo("")
        echo("change → app reloaded with the new value (refresh.interval 1s for the polled backends):")
        for title, seconds in results:
            echo(f"  {seconds * 1000:7.0f} ms  {title}")
        return 0 if code == 0 else code


def _find(lines: list[tuple[float, str]], start: int, text: str) -> tuple[float, str] | None:
    """The first app line from ``start`` on that contains ``text``."""
    return next((item for item in lines[start:] if text in item[1]), None)


def _seed(vault: Any, aws_url: str) -> dict[str, Any]:
    import boto3
    import hvac

    client = hvac.Client(url=vault.address, token=vault.root_token)
    client.secrets.kv.v2.create_or_update_secret(
        path="demo", secret={"username": "app", "password": "pw-one", "version": "1"}
    )
    sm = boto3.client("secretsmanager", endpoint_url=aws_url, region_name="us-east-1")
    ssm = boto3.client("ssm", endpoint_url=aws_url, region_name="us-east-1")
    sm.create_secret(Name="demo/api", SecretString=json.dumps({"key": "k-v1"}))
    ssm.put_parameter(Name="/demo/greeting", Value="hello", Type="String")
    return {"vault": client, "sm": sm, "ssm": ssm}


@contextmanager
def _output_dir(work: Path, say: Timeline) -> Iterator[Path]:
    path = work / "secrets"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", str(path)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    if mounted:
        say(f"output: a tmpfs mounted at {path} (as an emptyDir with medium: Memory)")
    else:
        say(f"NOTICE: cannot mount a tmpfs here (not root); using the plain folder {path} with allow_non_tmpfs")
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _write_config(work: Path, output: Path, vault_address: str, aws_url: str) -> Path:
    _configmap_write(work / "templates", TEMPLATE_V1)
    config = {
        "output_dir": str(output),
        "allow_non_tmpfs": True,
        "state_dir": str(work / "state"),
        "vault": {"address": vault_address, "auth": {"method": "token"}},
        "aws": {"region": "us-east-1", "endpoint_url": aws_url},
        "secrets": {"db": "vault:secret/demo"},
        "templates": [
            {
                "source": "templates/app.env.j2",
                "destination": "app.env",
                "mode": "0440",
                "on_change": [{"signal": "SIGHUP", "pidfile": str(work / "app.pid"), "process": APP_NAME}],
            },
        ],
        "refresh": {"interval": "1s", "jitter": 0.0, "wait": {"min": "50ms", "max": "500ms"}},
    }
    path = work / "injector.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _configmap_write(folder: Path, text: str) -> None:
    """Updates ``folder`` as kubelet updates a ConfigMap volume: a ``..data`` symlink swap."""
    folder.mkdir(exist_ok=True)
    stamp = f"..{time.monotonic_ns()}"
    (folder / stamp).mkdir()
    (folder / stamp / "app.env.j2").write_text(text)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    (folder / "..data_tmp").symlink_to(stamp)
    os.replace(folder / "..data_tmp", folder / "..data")
    if not (folder / "app.env.j2").is_symlink():
        (folder / "app.env.j2").symlink_to("..data/app.env.j2")
    if old:
        (folder / old / "app.env.j2").unlink()
        (folder / old).rmdir()


def _start_app(work: Path, watched: Path, lines: list[tuple[float, str]], say: Timeline) -> subprocess.Popen[str]:
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(work / "app.pid"), str(watched)], stdout=subprocess.PIPE, text=True
    )

    def relay() -> None:
        for raw in app.stdout or ():
            lines.append((time.monotonic() - say.start, raw.strip()))

    threading.Thread(target=relay, daemon=True).start()
    first = _wait(lambda: lines[0] if lines else None, 10, "the app to start")
    say(f"app (pid {app.pid}) {first[1]}")
    return app


def _injector(*args: str) -> list[str]:
    return [sys.executable, "-m", "injector", *args]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - a loopback URL we built
            return bool(resp.status == 200)
    except OSError:
        return False


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise InjectorError(f"demo: timed out after {timeout:.0f}s waiting for {what}")


def _terminate(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
