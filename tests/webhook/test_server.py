"""The webhook over real HTTPS on 127.0.0.1: reviews, bad clients, certificate rotation, probes, metrics."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from devvault.certs import CA, issue, make_ca, new_key, private_pem

from injector.webhook.admission import Admission
from injector.webhook.keys import PREFIX
from injector.webhook.server import CertificateStore, WebhookServer
from tests.webhook.support import admission, deployment_pod, patch_of, review

CLIENT_TIMEOUT = 0.5


@dataclass
class CertDir:
    """Certificate files laid out as kubelet mounts a Secret: ``..data`` swapped atomically on update."""

    root: Path
    ca: CA
    serial: int = 0
    generation: int = 0

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    def rotate(self) -> int:
        """Writes a new pair and swaps it in; returns the new certificate's serial number."""
        self.generation += 1
        key = new_key()
        cert = issue(self.ca, common_name="injector-webhook", dns_names=["localhost"], ip_sans=["127.0.0.1"],
                     now=time.time(), ttl=3600, key=key, client=False)  # fmt: skip
        folder = self.root / f"..gen{self.generation}"
        folder.mkdir()
        (folder / "tls.crt").write_text(cert.public_bytes(serialization.Encoding.PEM).decode())
        (folder / "tls.key").write_text(private_pem(key))
        link = self.root / "..data_tmp"
        link.symlink_to(folder.name)
        os.replace(link, self.root / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        self.serial = cert.serial_number
        return self.serial


@pytest.fixture
def certs(tmp_path: Path) -> CertDir:
    ca = make_ca("test webhook CA", now=time.time(), ttl=3600)
    cert_dir = CertDir(tmp_path / "tls", ca)
    cert_dir.root.mkdir()
    cert_dir.rotate()
    return cert_dir


@dataclass
class Running:
    server: WebhookServer
    admission: Admission
    certs: CertDir

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.certs.ca.pem)
        return context

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=self.client_context(), timeout=10)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = self.connect()
        try:
            conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        conn = self.connect()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()


@pytest.fixture
def running(certs: CertDir) -> Iterator[Running]:
    handler = admission()
    store = CertificateStore(certs.cert, certs.key, check_interval=0)
    server = WebhookServer("127.0.0.1:0", handler, store, client_timeout=CLIENT_TIMEOUT, max_connections=4)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield Running(server, handler, certs)
    finally:
        server.stop()
        thread.join(5)
        server.server_close()
        assert not thread.is_alive()


def _serial(conn: http.client.HTTPSConnection) -> int:
    assert conn.sock is not None
    der = conn.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    return x509.load_der_x509_certificate(der).serial_number


def _review_body(api: str = "admission.k8s.io/v1") -> bytes:
    return json.dumps(review(deployment_pod(), api=api)).encode()


def test_review_over_https_gets_a_patch(running: Running) -> None:
    """A Pod CREATE review over HTTPS is answered with the same uid and a JSONPatch."""
    status, body = running.post(_review_body())
    answer = json.loads(body)
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "u-1" and answer["response"]["allowed"] is True
    assert patch_of(answer)


def test_v1beta1_review_gets_a_v1beta1_answer(running: Running) -> None:
    """An admission.k8s.io/v1beta1 review is answered in v1beta1."""
    _, body = running.post(_review_body("admission.k8s.io/v1beta1"))
    assert json.loads(body)["apiVersion"] == "admission.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {}}', {}, 400),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', {}, 400),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
    ],
    ids=["bad-json", "wrong-kind", "no-request", "deeply-nested", "wrong-media-type"],
)
def test_bad_bodies_get_a_4xx(running: Running, body: bytes, headers: dict[str, str], status: int) -> None:
    """Malformed requests are answered with a 4xx; the server keeps serving."""
    assert running.post(body, headers)[0] == status
    assert running.post(_review_body())[0] == 200


def test_huge_body_is_refused_unread(running: Running) -> None:
    """A Content-Length over the limit gets 413 before the body is read."""
    conn = running.connect()
    conn.putrequest("POST", "/mutate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(64 * 1024 * 1024))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_missing_length_gets_411(running: Running) -> None:
    """A chunked POST without Content-Length gets 411."""
    conn = running.connect()
    conn.putrequest("POST", "/mutate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def _tls_socket(running: Running) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
    return running.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _read_all(sock: ssl.SSLSocket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_headers_get_408_while_others_are_served(running: Running) -> None:
    """A client that stops mid-headers gets 408 after the client timeout; meanwhile others are answered."""
    slow = _tls_socket(running)
    slow.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: app")
    assert running.post(_review_body())[0] == 200
    assert _read_all(slow).startswith(b"HTTP/1.1 408")
    slow.close()


def test_slow_body_gets_408(running: Running) -> None:
    """A client that sends half its body and stops gets 408, not a hung worker."""
    slow = _tls_socket(running)
    slow.sendall(
        b'POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'
    )
    assert _read_all(slow).startswith(b"HTTP/1.1 408")
    slow.close()


def test_client_that_never_handshakes_blocks_nobody(running: Running) -> None:
    """A TCP connection with no TLS handshake is closed after the timeout and stalls no other client."""
    idle = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
    assert running.post(_review_body())[0] == 200
    assert idle.recv(1) == b""  # closed by the server
    idle.close()


def test_connections_over_the_limit_are_closed_not_queued(running: Running) -> None:
    """With max_connections busy, a new connection is closed at once; once they end, service resumes."""
    busy = [_tls_socket(running) for _ in range(4)]
    for sock in busy:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # each holds a worker (keep-alive)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        running.post(_review_body())
    for sock in busy:
        sock.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert running.post(_review_body())[0] == 200
            break
        except (ssl.SSLError, OSError):
            assert time.monotonic() < deadline, "the webhook did not serve again after the busy clients left"


def test_certificate_rotation_mid_test(running: Running) -> None:
    """After a rotation new connections get the new certificate; an open keep-alive connection keeps working."""
    old_serial = running.certs.serial
    kept = running.connect()
    kept.request("POST", "/mutate", body=_review_body(), headers={"Content-Type": "application/json"})
    assert kept.getresponse().read() and _serial(kept) == old_serial
    new_serial = running.certs.rotate()
    fresh = running.connect()
    fresh.request("GET", "/healthz")
    assert fresh.getresponse().status == 200
    assert _serial(fresh) == new_serial != old_serial
    kept.request("POST", "/mutate", body=_review_body(), headers={"Content-Type": "application/json"})
    response = kept.getresponse()
    assert response.status == 200 and json.loads(response.read())["response"]["allowed"] is True
    assert running.server.certificates.reloads == 1
    kept.close()
    fresh.close()


def test_broken_certificate_keeps_the_previous_one(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """A certificate file caught half-written keeps the old context (warned) and the server serving."""
    serial = running.certs.serial
    target = running.certs.cert.resolve()
    target.unlink()
    target.write_text("-----BEGIN CERTIFICATE-----\ntruncated")
    with caplog.at_level(logging.WARNING, logger="injector.webhook.server"):
        conn = running.connect()
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    assert _serial(conn) == serial
    assert "keeping the previous one" in caplog.text
    conn.close()


def test_probes_and_metrics(running: Running) -> None:
    """/healthz and /readyz answer ok; /metrics counts requests, injections, denials by reason, latency."""
    running.post(_review_body())
    pod = deployment_pod()
    pod["metadata"]["annotations"][PREFIX + "vault-adress"] = "x"
    running.post(json.dumps(review(pod)).encode())
    assert running.get("/healthz") == (200, "ok\n")
    assert running.get("/readyz") == (200, "ok\n")
    status, text = running.get("/metrics")
    assert status == 200
    assert 'injector_webhook_requests_total{decision="inject"} 1.0' in text
    assert "injector_webhook_injections_total 1.0" in text
    assert 'injector_webhook_denials_total{reason="annotations"} 1.0' in text
    assert "injector_webhook_review_duration_seconds_count 2.0" in text


def test_readyz_fails_once_stopping(running: Running) -> None:
    """After stop() begins (SIGTERM) /readyz is 503 for whoever is still connected."""
    conn = running.connect()
    conn.request("GET", "/readyz")
    assert conn.getresponse().read() == b"ok\n"
    running.server.ready.clear()
    conn.request("GET", "/readyz")
    response = conn.getresponse()
    assert response.status == 503
    conn.close()


def test_logs_name_the_pod_but_never_annotation_values(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """The decision log names namespace, pod, owner and the denied annotation; no reference or template text."""
    sentinel = "vault:secret/sentinel-7f3a9c#password"
    pod = deployment_pod()
    pod["metadata"]["annotations"][PREFIX + "secret-db_password"] = sentinel
    pod["metadata"]["annotations"][PREFIX + "notify-tls_crt"] = "SIGNOPE sentinel-7f3a9c"
    with caplog.at_level(logging.DEBUG):
        answer = json.loads(running.post(json.dumps(review(pod)).encode())[1])
    assert answer["response"]["allowed"] is False
    assert "sentinel-7f3a9c" not in caplog.text
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("admission "))
    assert "namespace=shop pod=web-7d9f8b6c5d-* owner=ReplicaSet/web-7d9f8b6c5d decision=deny" in line
    assert f"annotations={PREFIX}notify-tls_crt" in line
