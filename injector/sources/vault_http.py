"""The HTTP session every Vault request goes through: redirects as Vault's Go client, bounded bodies.

hvac sends requests through ``requests``, which follows up to 30 redirects and re-sends
``X-Vault-Token`` (a custom header, so not stripped on a host change) and login bodies to each
target, https → http included. ``VaultSession`` replaces that with what ``vault/api``'s client does:

1. at most ONE redirect (301, 302, 307) is followed, with the same method, headers and body (an HA
   standby answers 307 with the active node's address);
2. never from https to anything else: that is an error naming both addresses, and nothing is sent;
3. a second redirect is an error: nothing is re-sent after the first.

requests also looks for ``~/.netrc`` (or ``$NETRC``) at every request of a session without its own
authentication, and sends the password it lists for the request's host as ``Authorization: Basic``.
Vault authenticates by ``X-Vault-Token``, and its own client reads no ``.netrc``; a file nobody
configured for the injector must not add a credential to its requests (nor to a redirect's, which
requests looks up again for the new host). The session's authentication is ``NO_NETRC``, which adds
nothing, so requests never looks.

What requests reads from the environment for each request (proxy variables for the request's host,
``REQUESTS_CA_BUNDLE``) is read once per host and settings instead: requests scans every
environment variable twice per request to find the proxy ones, a third of the CPU of a Vault read
here, and more in a pod, whose environment names every Service of its namespace. The environment of
a process does not change under it, so the answer is the same.

Every TLS connection to Vault verifies with the process's one ``ssl.SSLContext`` for its CA bundle
and client certificate (``injector.sources._tls``). requests gives each new connection a context of
its own and loads the CA bundle into it, and the source keeps a connection per worker thread.

Every answer's body is read here, before hvac parses it: a ``Content-Length`` over the limit is
refused without reading, a body that grows past it is cut off, and a JSON body nested deeper than
``limits.max_depth`` is refused before ``json.loads`` could recurse on it. Errors are
``SourceError`` (not retryable); the Vault source names the reference they belong to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.auth
import requests.utils

from injector.errors import SourceError
from injector.sources._limits import ValueLimits, json_depth
from injector.sources._tls import SHARED_TLS, SharedTLS

__all__ = ["ENVELOPE_BYTES", "NO_NETRC", "REDIRECTS", "VaultSession"]

#: Statuses followed once, as ``vault/api`` does (a 308 is returned as it is).
REDIRECTS = frozenset({301, 302, 307})
#: Room for Vault's envelope (request_id, lease, metadata) around a value of max_secret_bytes.
ENVELOPE_BYTES = 64 * 1024
_CHUNK = 64 * 1024
#: Environment settings kept per session: the Vault address, and a redirect target or two.
_SETTINGS_KEPT = 8


class _NoNetrc(requests.auth.AuthBase):
    """A session's authentication that adds nothing: requests reads ``.netrc`` only without one."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


#: The authentication of every ``VaultSession`` (the module docstring: no ``.netrc``).
NO_NETRC = _NoNetrc()


def _origin(url: str) -> str:
    """``scheme://host:port/path`` of ``url``: no user info, no query (either may carry a credential)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class _SharedTLSAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with every https pool verifying through a ``SharedTLS`` context."""

    def __init__(self, tls: SharedTLS) -> None:
        self._tls = tls
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if host["scheme"] != "https" or verify is False:
            return host, pool
        location = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        context = self._tls.context(location, cert)
        if context is not None:
            for loaded in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
                pool.pop(loaded, None)
            pool["ssl_context"] = context
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if self._tls.owns(getattr(conn, "conn_kw", {}).get("ssl_context")):
            # Already in the shared context: urllib3 would load them into it again per connection.
            conn.ca_certs = conn.ca_cert_dir = conn.cert_file = conn.key_file = None


class VaultSession(requests.Session):
    """A ``requests.Session`` for hvac with Vault's redirect rule and bounded, depth-checked bodies.

    Args:
        max_bytes: the largest response body read (``limits.max_secret_bytes`` + ``ENVELOPE_BYTES``).
        max_depth: ``limits.max_depth``.
        tls: where its TLS contexts come from (default: the process's, shared with every source).
    """

    def __init__(self, *, max_bytes: int, max_depth: int, tls: SharedTLS | None = None) -> None:
        super().__init__()
        self.auth = NO_NETRC
        self.mount("https://", _SharedTLSAdapter(tls or SHARED_TLS))
        self._limits = ValueLimits(max_bytes=max_bytes, max_depth=max_depth)
        self._settings: dict[tuple[object, ...], dict[str, Any]] = {}

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        """requests' own answer, computed once per origin and arguments: it depends on nothing else
        (the module docstring). At most ``_SETTINGS_KEPT`` are kept: a Vault that redirects to a new
        host at every request cannot grow it."""
        parts = urlsplit(url)
        key = (
            parts.scheme,
            parts.netloc,
            tuple(sorted(proxies.items())) if proxies else None,
            stream,
            verify,
            cert if not isinstance(cert, list) else tuple(cert),
            self.trust_env,
        )
        found = self._settings.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._settings) >= _SETTINGS_KEPT:
                self._settings.clear()
            self._settings[key] = found
        return {**found, "proxies": dict(found["proxies"])}

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Sends the request, follows at most one redirect (never off https) and reads the body."""
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        first = str(url.decode() if isinstance(url, bytes) else url)
        response = super().request(method, first, *args, **kwargs)
        if response.status_code in REDIRECTS:
            target = self._redirect_target(first, response)
            response = super().request(method, target, *args, **kwargs)
            if response.status_code in REDIRECTS:
                again = response.headers.get("Location", "")
                response.close()
                raise SourceError(
                    f"Vault at {_origin(first)} redirected to {_origin(target)}, which redirected again "
                    f"(to {_origin(urljoin(target, again))}); at most one redirect is followed, as by Vault's "
                    "own client: point vault.address at the active node or a load balancer"
                )
        self._read_body(response)
        return response

    @staticmethod
    def _redirect_target(url: str, response: requests.Response) -> str:
        location = response.headers.get("Location", "")
        response.close()
        target = urljoin(url, location)
        scheme = urlsplit(target).scheme
        if not location or scheme not in ("http", "https"):
            raise SourceError(f"Vault at {_origin(url)} answered {response.status_code} without a usable Location")
        if urlsplit(url).scheme == "https" and scheme != "https":
            raise SourceError(
                f"Vault at {_origin(url)} redirected to {_origin(target)}: a redirect from https to http is "
                "refused (the token would travel in clear text); fix the Vault server's api_addr"
            )
        return target

    def _read_body(self, response: requests.Response) -> None:
        """Reads the body into the response (so hvac's ``.json()`` works), within the limits."""
        where = f"Vault's answer for {urlsplit(response.url).path}"
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self._limits.max_bytes:
            response.close()
            raise self._limits.too_large(where, int(length))
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                total += len(chunk)
                if total > self._limits.max_bytes:
                    break
                chunks.append(chunk)
        except BaseException:
            response.close()
            raise
        if total > self._limits.max_bytes:
            response.close()  # drops the connection: the rest of the body is never read
            raise self._limits.too_large(where, f"more than {self._limits.max_bytes}")
        body = b"".join(chunks)
        response._content = body  # what Response.content / .json() read from now on
        response._content_consumed = True
        if body[:64].lstrip()[:1] in (b"{", b"[") and json_depth(body) > self._limits.max_depth:
            raise self._limits.too_deep(where)
