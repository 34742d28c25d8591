"""`injector webhook` as a process, and the injected config read by the unchanged `injector` commands."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from devvault.certs import issue, make_ca, new_key, private_pem

from injector.webhook.keys import CONFIG
from tests.fixtures.cli import run
from tests.webhook.support import deployment_pod, inject, review


def test_injected_config_is_read_by_injector_validate(tmp_path: Path) -> None:
    """The config annotation, saved as the downward-API file would be, passes `injector validate` unchanged."""
    pod = inject(deployment_pod())
    path = tmp_path / "injector.yaml"
    path.write_text(pod["metadata"]["annotations"][CONFIG], encoding="utf-8")
    result = run(["validate", "--config", str(path)])
    assert result.returncode == 0, result.stderr
    assert "3 template(s)" in result.stdout


def test_webhook_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The CLI serves HTTPS on 127.0.0.1, logs JSON lines naming the pod, and exits 0 on SIGTERM."""
    ca = make_ca("cli test CA", now=time.time(), ttl=600)
    key = new_key()
    cert = issue(ca, common_name="webhook", dns_names=[], ip_sans=["127.0.0.1"], now=time.time(), ttl=600, key=key)
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_text(private_pem(key))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INJECTOR_")}
    argv = [sys.executable, "-m", "injector", "webhook", "--listen", "127.0.0.1:0",
            "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"),
            "--image", "registry.example.com/injector:0.1.0",
            "--shutdown-delay", "0s", "--log-format", "json"]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        lines: list[str] = []
        port = 0
        deadline = time.monotonic() + 30
        while not port:
            assert time.monotonic() < deadline, lines
            line = process.stderr.readline()
            assert line, f"the webhook exited: {lines}"
            lines.append(line)
            found = re.search(r"https://127\.0\.0\.1:(\d+)/mutate", line)
            port = int(found.group(1)) if found else 0
        context = ssl.create_default_context(cadata=ca.pem)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        conn.request("POST", "/mutate", json.dumps(review(deployment_pod())), {"Content-Type": "application/json"})
        assert json.loads(conn.getresponse().read())["response"]["allowed"] is True
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        records = [json.loads(line) for line in [*lines, *process.stderr.read().splitlines()] if line.startswith("{")]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (decision,) = [r["message"] for r in records if r["message"].startswith("admission ")]
    assert (
        "namespace=shop pod=web-7d9f8b6c5d-* owner=ReplicaSet/web-7d9f8b6c5d decision=allow reason=injected" in decision
    )
    assert "vault:" not in "\n".join(r["message"] for r in records)


def test_webhook_refuses_a_missing_certificate(tmp_path: Path) -> None:
    """A certificate pair that cannot be loaded is a config error (exit 11) naming the flags."""
    result = run(
        ["webhook", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key"), "--image", "i"]
    )
    assert result.returncode == 11
    assert "--tls-cert/--tls-key" in result.stderr


def test_webhook_refuses_a_bad_defaults_file(tmp_path: Path) -> None:
    """An unknown key in --defaults stops the webhook at start (exit 11)."""
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"vault-adress": "x"}))
    result = run(
        ["webhook", "--tls-cert", "x", "--tls-key", "y", "--image", "i", "--defaults", str(tmp_path / "d.yaml")]
    )
    assert result.returncode == 11 and "vault-adress" in result.stderr
