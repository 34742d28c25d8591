"""`injector sidecar` as a process beside a real app: a change reaches the file and the app gets
exactly one signal per burst; no change, no signal; a broken template keeps its last good output."""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.sidecar import Harness, configmap_write, wait_for

#: The process name a pidfile notifier expects: the app is this Python interpreter.
APP_NAME = Path(sys.executable).name

pytestmark = pytest.mark.slow

FAST = {
    "interval": "1s",
    "jitter": 0.0,
    "wait": {"min": "100ms", "max": "1s"},
    "min_backoff": "200ms",
    "max_backoff": "1s",
}


def base_config(output_dir: Path, templates: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"output_dir": str(output_dir), "templates": templates, "refresh": FAST, **extra}


def metric(text: str, name: str, **labels: str) -> float:
    """Returns the value of one sample of the Prometheus text ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and ",".join(sorted((match.group(2) or "").split(","))) == want:
            return float(match.group(3))
    return 0.0


class TestConfigMapSource:
    def test_a_configmap_swap_reaches_the_file_and_signals_once(self, harness: Harness, output_dir: Path) -> None:
        """A kubelet-style ..data swap of a file: source updates the output and sends one SIGHUP."""
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"color": "blue"})
        pidfile = harness.tmp_path / "app-0.pid"
        config = harness.config(
            base_config(
                output_dir,
                [{"contents": "color={{ secret('file:" + str(cm / "color") + "') }}\n", "destination": "app.conf",
                  "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}]}],
            )
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        app = harness.app(output_dir / "app.conf")
        configmap_write(cm, {"color": "green"})
        wait_for(lambda: app.reloads() == ["color=green"], 10, "one reload reading green")
        assert (output_dir / "app.conf").read_text() == "color=green\n"

    def test_no_change_no_signal(self, harness: Harness, output_dir: Path) -> None:
        """Rewriting a source with the same bytes sends nothing; the next real change sends one."""
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"color": "blue"})
        pidfile = harness.tmp_path / "app-0.pid"
        config = harness.config(
            base_config(
                output_dir,
                [{"contents": "{{ secret('file:" + str(cm / "color") + "') }}\n", "destination": "a",
                  "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}]}],
            )
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        app = harness.app(output_dir / "a")
        snapshot = (output_dir / "..data").readlink()
        for _ in range(3):
            configmap_write(cm, {"color": "blue"})  # same bytes, new inode: the watcher fires
        configmap_write(cm, {"color": "red"})  # the barrier: a real change after the no-ops
        wait_for(lambda: app.reloads() == ["red"], 10, "exactly one reload reading red")
        assert (output_dir / "..data").readlink() != snapshot
        assert app.reloads() == ["red"]

    def test_a_burst_of_changes_is_one_signal(self, harness: Harness, output_dir: Path) -> None:
        """Twenty changes inside the wait window lead to a single SIGHUP with the last value."""
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"n": "0"})
        pidfile = harness.tmp_path / "app-0.pid"
        refresh = {**FAST, "wait": {"min": "600ms", "max": "3s"}}
        config = harness.config(
            {
                "output_dir": str(output_dir),
                "refresh": refresh,
                "templates": [{"contents": "{{ secret('file:" + str(cm / "n") + "') }}\n", "destination": "n",
                               "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}]}],
            }
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        app = harness.app(output_dir / "n")
        for i in range(1, 21):
            configmap_write(cm, {"n": str(i)})
            time.sleep(0.01)
        wait_for(lambda: app.reloads(), 10, "a reload")
        wait_for(lambda: (output_dir / "n").read_text() == "20\n", 10, "the last value on disk")
        # A later change is the barrier that proves no second signal of the burst was pending.
        configmap_write(cm, {"n": "done"})
        wait_for(lambda: app.reloads()[-1:] == ["done"], 10, "the barrier reload")
        assert len(app.reloads()) == 2, app.events()
        assert app.reloads()[0] == "20"


class TestTemplates:
    def test_an_edited_template_is_rerendered(self, harness: Harness, output_dir: Path) -> None:
        """Editing a template source re-renders it and signals the app."""
        template = harness.tmp_path / "app.j2"
        template.write_text("v1\n")
        pidfile = harness.tmp_path / "app-0.pid"
        config = harness.config(
            base_config(output_dir, [{"source": str(template), "destination": "a",
                                      "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile),
                                                     "process": APP_NAME}]}])
        )
        harness.sidecar(config).wait_ready()
        app = harness.app(output_dir / "a")
        template.write_text("v2\n")
        wait_for(lambda: app.reloads() == ["v2"], 10, "a reload with v2")

    def test_a_broken_template_keeps_the_last_good_output_until_fixed(self, harness: Harness, output_dir: Path) -> None:
        """A syntax error is reported (log, metric) and the good file stays; fixing it renders again."""
        template = harness.tmp_path / "app.j2"
        template.write_text("good\n")
        config = harness.config(base_config(output_dir, [{"source": str(template), "destination": "a"}]))
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        template.write_text("{% if %}\n")
        wait_for(lambda: "template a failed" in sidecar.logs(), 10, "the error in the log")
        assert (output_dir / "a").read_text() == "good\n"
        assert metric(sidecar.get("/metrics")[1], "injector_render_errors_total", template="a") >= 1
        assert sidecar.get("/readyz")[0] == 200
        template.write_text("fixed\n")
        wait_for(lambda: (output_dir / "a").read_text() == "fixed\n", 10, "the fixed render")

    def test_only_templates_using_a_changed_value_rerender(self, harness: Harness, output_dir: Path) -> None:
        """A change to one source re-renders the template that uses it, not the others."""
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"a": "1", "b": "1"})
        config = harness.config(
            base_config(
                output_dir,
                [
                    {"contents": "{{ secret('file:" + str(cm / "a") + "') }}", "destination": "a"},
                    {"contents": "{{ secret('file:" + str(cm / "b") + "') }}", "destination": "b"},
                ],
            )
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        renders = lambda name: metric(sidecar.get("/metrics")[1], "injector_renders_total", template=name)  # noqa: E731
        before_a, before_b = renders("a"), renders("b")
        configmap_write(cm, {"a": "2", "b": "1"})
        wait_for(lambda: (output_dir / "a").read_text() == "2", 10, "a re-rendered")
        assert renders("a") == before_a + 1
        assert renders("b") == before_b


class TestPolledAws:
    def test_a_secrets_manager_change_reaches_the_app(self, harness: Harness, output_dir: Path, aws_endpoint: str,
                                                      sm_client: Any) -> None:
        """A value changed in Secrets Manager is polled at refresh.interval and signalled once."""
        sm_client.create_secret(Name="app/db", SecretString=json.dumps({"password": "one"}))
        pidfile = harness.tmp_path / "app-0.pid"
        config = harness.config(
            base_config(
                output_dir,
                [{"contents": "{{ secret('aws-sm:app/db#password') }}\n", "destination": "pw",
                  "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile), "process": APP_NAME}]}],
                aws={"region": "us-east-1", "endpoint_url": aws_endpoint},
            )
        )
        harness.sidecar(config).wait_ready()
        app = harness.app(output_dir / "pw")
        sm_client.put_secret_value(SecretId="app/db", SecretString=json.dumps({"password": "two"}))
        wait_for(lambda: app.reloads() == ["two"], 15, "a reload reading the new password")


class _Reload(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    status = 200

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def reload_server() -> Iterator[tuple[str, type[_Reload]]]:
    handler = type("Handler", (_Reload,), {"hits": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


class TestNotifiers:
    def test_http_notifier_is_called_once_per_change(
        self, harness: Harness, output_dir: Path, reload_server: tuple[str, type[_Reload]]
    ) -> None:
        """An HTTP reload endpoint gets one POST per change, none at start when nothing changed."""
        url, handler = reload_server
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"v": "1"})
        config = harness.config(
            base_config(output_dir, [{"contents": "{{ secret('file:" + str(cm / "v") + "') }}", "destination": "v",
                                      "on_change": [{"http": url + "/-/reload", "method": "POST"}]}])
        )
        harness.sidecar(config).wait_ready()
        configmap_write(cm, {"v": "2"})
        wait_for(lambda: handler.hits == ["/-/reload"], 10, "one POST")

    def test_failing_http_notifier_is_retried_and_never_stops_the_loop(
        self, harness: Harness, output_dir: Path, reload_server: tuple[str, type[_Reload]]
    ) -> None:
        """A 500 from the reload endpoint is retried with backoff; later changes still render."""
        url, handler = reload_server
        handler.status = 500
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"v": "1"})
        config = harness.config(
            base_config(output_dir, [{"contents": "{{ secret('file:" + str(cm / "v") + "') }}", "destination": "v",
                                      "on_change": [{"http": url, "method": "POST"}]}])
        )
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        configmap_write(cm, {"v": "2"})
        wait_for(lambda: len(handler.hits) >= 2, 15, "a retry")
        handler.status = 200
        configmap_write(cm, {"v": "3"})
        wait_for(lambda: (output_dir / "v").read_text() == "3", 10, "the next render")
        text = sidecar.get("/metrics")[1]
        assert "injector_notifications_total" in text
        assert "HTTP 500" in sidecar.logs() or "500" in sidecar.logs()

    def test_command_notifier_runs_once_per_change(self, harness: Harness, output_dir: Path) -> None:
        """A command notifier runs with argv (no shell string) once per change."""
        marker = harness.tmp_path / "ran"
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"v": "1"})
        config = harness.config(
            base_config(
                output_dir,
                [{"contents": "{{ secret('file:" + str(cm / "v") + "') }}", "destination": "v",
                  "on_change": [{"command": ["/bin/sh", "-c", f"echo run >> {marker}"], "timeout": "5s"}]}],
            )
        )
        harness.sidecar(config).wait_ready()
        configmap_write(cm, {"v": "2"})
        wait_for(lambda: marker.exists() and marker.read_text() == "run\n", 10, "the command")


class TestLifecycle:
    def test_sigterm_exits_zero(self, harness: Harness, output_dir: Path) -> None:
        """SIGTERM stops the sidecar cleanly with exit code 0."""
        config = harness.config(base_config(output_dir, [{"contents": "x", "destination": "a"}]))
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        assert sidecar.stop() == 0
        assert "sidecar stopped" in sidecar.logs()

    def test_sigterm_during_a_first_render_backoff_exits_promptly(self, harness: Harness, output_dir: Path) -> None:
        """A sidecar waiting out a long backoff (Vault unreachable) still stops at once on SIGTERM."""
        config = harness.config(
            {
                "output_dir": str(output_dir),
                "vault": {"address": "http://127.0.0.1:9", "auth": {"method": "token"}, "timeout": "1s"},
                "templates": [{"contents": "{{ secret('vault:secret/app#k') }}", "destination": "a"}],
                "refresh": {"min_backoff": "20s", "max_backoff": "40s"},
            }
        )
        sidecar = harness.sidecar(config, env={"VAULT_TOKEN": "root"})
        wait_for(lambda: "retrying in" in sidecar.logs(), 15, "the first backoff")
        started = time.monotonic()
        assert sidecar.stop() == 0
        assert time.monotonic() - started < 5, "SIGTERM waited for the backoff"

    def test_adopts_what_init_wrote_without_a_swap(self, harness: Harness, output_dir: Path) -> None:
        """A sidecar started after init finds the same bytes and neither writes nor signals."""
        import subprocess
        import sys

        pidfile = harness.tmp_path / "app-0.pid"
        config = harness.config(
            base_config(output_dir, [{"contents": "same\n", "destination": "a",
                                      "on_change": [{"signal": "SIGHUP", "pidfile": str(pidfile),
                                                     "process": APP_NAME}]}])
        )
        subprocess.run([sys.executable, "-m", "injector", "init", "-c", str(config)], check=True, capture_output=True)
        snapshot = (output_dir / "..data").readlink()
        app = harness.app(output_dir / "a")
        harness.sidecar(config).wait_ready()
        assert (output_dir / "..data").readlink() == snapshot
        assert app.reloads() == []

    def test_waits_for_a_missing_secret_then_becomes_ready(self, harness: Harness, output_dir: Path) -> None:
        """A reference missing at start keeps /readyz at 503; once it exists the sidecar renders and is ready."""
        missing = harness.tmp_path / "later" / "token"
        config = harness.config(
            base_config(output_dir, [{"contents": "{{ secret('file:" + str(missing) + "') }}", "destination": "t"}])
        )
        sidecar = harness.sidecar(config)
        wait_for(lambda: "first render failed" in sidecar.logs(), 10, "the first failure in the log")
        status, reason = sidecar.get("/readyz")
        assert status == 503
        assert "waiting for the first render" in reason
        missing.parent.mkdir()
        missing.write_text("arrived")
        sidecar.wait_ready()
        assert (output_dir / "t").read_text() == "arrived"

    def test_health_endpoints(self, harness: Harness, output_dir: Path) -> None:
        """/healthz and /readyz answer 200 when rendered; /metrics is Prometheus text."""
        config = harness.config(base_config(output_dir, [{"contents": "x", "destination": "a"}]))
        sidecar = harness.sidecar(config)
        sidecar.wait_ready()
        assert sidecar.get("/healthz")[0] == 200
        status, text = sidecar.get("/metrics")
        assert status == 200
        assert metric(text, "injector_ready") == 1
        assert metric(text, "injector_renders_total", template="a") == 1


class TestSentinel:
    def test_sidecar_logs_and_metrics_never_show_the_value(self, harness: Harness, output_dir: Path) -> None:
        """At debug level through a change, the sentinel is in the file only: not logs, not /metrics."""
        cm = harness.tmp_path / "cm"
        configmap_write(cm, {"pw": SENTINEL + "-1"})
        config = harness.config(
            base_config(output_dir, [{"contents": "{{ secret('file:" + str(cm / "pw") + "') }}", "destination": "pw"}])
        )
        sidecar = harness.sidecar(config, "--log-level", "debug", "--log-format", "json")
        sidecar.wait_ready()
        configmap_write(cm, {"pw": SENTINEL + "-2"})
        wait_for(lambda: (output_dir / "pw").read_text() == SENTINEL + "-2", 10, "the new value")
        for path in ("/metrics", "/readyz", "/healthz"):
            assert SENTINEL not in sidecar.get(path)[1]
        sidecar.stop()
        assert SENTINEL not in sidecar.logs()
        assert SENTINEL not in Path(f"/proc/{sidecar.proc.pid}/cmdline").read_text() if Path(
            f"/proc/{sidecar.proc.pid}"
        ).exists() else True
