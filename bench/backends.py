"""The backends every benchmark talks to, on loopback: the dev Vault and moto, with the same delay.

- Vault: ``devvault.DevVault``; ``set_latency`` sleeps before answering each request, and
  ``request_log`` lists every request it answered (method, path).
- AWS: moto's WSGI application (the one ``ThreadedMotoServer`` serves, re-exported by ``moto.server``)
  in a threaded werkzeug server, wrapped in ``DelayAndCount``: a WSGI middleware that sleeps the
  same delay before handing each request to moto and records its API call (``X-Amz-Target``, e.g.
  ``AmazonSSM.GetParameters``; the ``Action`` of a query-protocol call). Wrapping the app, not
  proxying the socket, means no extra hop: Vault and AWS both see "sleep, then serve", in-server.

With ``Backends(tls=True)`` both serve https, each from a certificate of a CA of its own, and
``ca_bundle`` is a file of certifi's public CA bundle with those two CAs appended: what a pod loads
that trusts the public CAs (AWS's clients do by default, and so does a Vault with a public
certificate), so the TLS cost measured is the one a pod pays.

Both servers run in threads of the bench process. Their own processing time (moto's above all,
~1-3 ms per call on this machine) comes on top of the injected delay, for the injector and the
baseline alike.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from devvault import DevVault

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class DelayAndCount:
    """WSGI middleware: sleep ``latency`` seconds, log (monotonic time of arrival, API call), serve."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.latency = 0.0
        self._log: list[tuple[float, str]] = []

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        arrived = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        call = str(environ.get("HTTP_X_AMZ_TARGET") or "")
        if not call:
            actions: list[str] | None = parse_qs(str(environ.get("QUERY_STRING") or "")).get("Action")
            method, path = str(environ.get("REQUEST_METHOD")), str(environ.get("PATH_INFO"))
            call = actions[0] if actions else f"{method} {path}"
        with self._lock:
            self._log.append((arrived, call))
        return self._app(environ, start_response)

    def log(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._log)

    def count(self) -> int:
        with self._lock:
            return len(self._log)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()


class DelayedMoto:
    """moto behind ``DelayAndCount`` on 127.0.0.1, in a daemon thread (https with ``ssl_context``)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        # werkzeug logs every request at INFO.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.middleware = DelayAndCount(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self.middleware, threaded=True, request_handler=MotoRequestHandler, ssl_context=ssl_context
        )
        self._scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_port}"

    def start(self) -> DelayedMoto:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class Backends:
    """Both backends, one delay knob, and the server-side call counts (over https with ``tls``)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.vault = DevVault(tls=tls).start()
        self.ca_bundle: str | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        context = None
        if tls:
            import certifi

            self._folder = tempfile.TemporaryDirectory(prefix="injector-bench-tls-")
            context, moto_ca = _server_context(Path(self._folder.name))
            bundle = Path(self._folder.name) / "bundle.pem"
            bundle.write_text(Path(certifi.where()).read_text() + "\n" + (self.vault.ca_pem or "") + moto_ca)
            self.ca_bundle = str(bundle)
        self.moto = DelayedMoto(context).start()

    def client_env(self) -> dict[str, str]:
        """What an ``injector`` process is given: the token and, over TLS, the CA bundle."""
        env = {"VAULT_TOKEN": self.root_token}
        if self.ca_bundle is not None:
            env.update(VAULT_CACERT=self.ca_bundle, AWS_CA_BUNDLE=self.ca_bundle)
        return env

    @property
    def vault_address(self) -> str:
        return self.vault.address

    @property
    def root_token(self) -> str:
        return self.vault.root_token

    @property
    def aws_url(self) -> str:
        return self.moto.url

    def set_latency(self, seconds: float) -> None:
        """Every request to either backend waits ``seconds`` before it is served."""
        self.vault.set_latency(seconds)
        self.moto.middleware.latency = seconds

    def reset_counts(self) -> None:
        self.vault.reset_counts()
        self.moto.middleware.reset()

    def total_requests(self) -> int:
        return len(self.vault.request_log) + self.moto.middleware.count()

    def calls(self) -> Counter[str]:
        """Requests served since the last reset, by kind: ``vault GET secret/data/…`` is folded to
        ``vault GET <mount>/data`` and the like, AWS calls keep their API name."""
        out: Counter[str] = Counter()
        for method, path in self.vault.request_log:
            out[f"vault {method} {_fold(path)}"] += 1
        for _, call in self.moto.middleware.log():
            out[f"aws {call}"] += 1
        return out

    def close(self) -> None:
        self.moto.stop()
        self.vault.stop()
        if self._folder is not None:
            self._folder.cleanup()


def _server_context(folder: Path) -> tuple[ssl.SSLContext, str]:
    """A server context for 127.0.0.1 from a new CA (made as the dev Vault makes its own), and its PEM."""
    from cryptography.hazmat.primitives import serialization
    from devvault.certs import issue, make_ca, new_key, private_pem

    now = time.time()
    ca = make_ca("injector bench moto CA", now=now, ttl=86400)
    key = new_key("ec")
    cert = issue(ca, common_name="localhost", dns_names=["localhost"], ip_sans=["127.0.0.1"], now=now, ttl=86400,
                 key=key)
    (folder / "moto.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "moto.key").write_text(private_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "moto.pem", folder / "moto.key")
    return context, ca.pem


def _fold(path: str) -> str:
    """``/v1/secret/data/bench/app-00`` → ``secret/data/*``; ``/v1/sys/internal/ui/mounts/x`` →
    ``sys/internal/ui/mounts/*``; ``/v1/auth/token/lookup-self`` stays as is."""
    parts = path.removeprefix("/v1/").split("/")
    if parts[:3] == ["sys", "internal", "ui"]:
        return "sys/internal/ui/mounts/*"
    if len(parts) > 2 and parts[1] in ("data", "metadata"):
        return f"{parts[0]}/{parts[1]}/*"
    return "/".join(parts)
