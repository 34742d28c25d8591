"""The HTTP notifier: one request to the app's reload endpoint, any 2xx is success."""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from injector.config.model import HttpNotify
from injector.errors import NotifyError

logger = logging.getLogger(__name__)


#: How much of a failed HTTP response body goes into the error message.
MAX_BODY_CHARS = 200
#: How many trailing lines of a failed command's stderr go into the error message.
STDERR_TAIL_LINES = 5
_PROC = Path("/proc")



def _safe_url(url: str) -> str:
    """Returns ``url`` without credentials, query or fragment (tokens live there), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a garbled port: show none rather than fail while reporting
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A reload endpoint that redirects is misconfigured; following it would turn POST into GET.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpNotifier:
    """Sends one HTTP request (POST by default, no body); any 2xx status is success.

    Redirects are not followed and proxy environment variables are ignored: the target is the app
    in the same pod. Headers are sent but never logged (they may hold a token).
    """

    def __init__(self, config: HttpNotify) -> None:
        if urlsplit(config.url).scheme not in ("http", "https"):
            raise NotifyError(f"http {config.method} {_safe_url(config.url)}: expected an http:// or https:// URL")
        self._config = config
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._label = f"http {config.method} {_safe_url(config.url)}"

    def describe(self) -> str:
        return self._label

    def notify(self) -> None:
        config = self._config
        # The scheme is http or https: checked in __init__ (and by the config loader).
        request = urllib.request.Request(  # noqa: S310
            config.url, method=config.method, headers=dict(config.headers)
        )
        try:
            with self._opener.open(request, timeout=config.timeout) as response:
                status = response.status
                reason = response.reason
        except urllib.error.HTTPError as exc:
            body = _read_some(exc)
            raise NotifyError(
                f"{self.describe()}: the app answered {exc.code} {exc.reason}"
                + (f": {body}" if body else "")
                + "; check the reload endpoint, method and headers"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(why, TimeoutError):
                raise NotifyError(
                    f"{self.describe()}: no answer within {config.timeout:g}s; is the app up and the URL right?"
                ) from None
            raise NotifyError(f"{self.describe()}: request failed: {why}; is the app listening there?") from None
        if not 200 <= status < 300:
            raise NotifyError(f"{self.describe()}: the app answered {status} {reason}, expected a 2xx status")
        logger.info("%s answered %d", self.describe(), status)


def _read_some(exc: urllib.error.HTTPError) -> str:
    try:
        data = exc.read(MAX_BODY_CHARS * 4)
    except OSError:
        return ""
    finally:
        exc.close()
    text = " ".join(data.decode("utf-8", errors="replace").split())
    return text[:MAX_BODY_CHARS] + ("…" if len(text) > MAX_BODY_CHARS else "")
