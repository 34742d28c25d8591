"""One TLS context per CA bundle for every connection of the process, Vault's and AWS's.

requests and botocore leave TLS to urllib3, which gives each new connection of requests a context
of its own and loads the CA bundle into it, and loads it again into a botocore client's context at
each new connection. certifi's bundle (the default of both) is about 1 MiB of OpenSSL memory and
16 ms of CPU per load. The Vault source keeps a connection per worker thread (16 by default) and
each AWS client a pool of its own: an idle sidecar talking to both over TLS held 55 MiB, 13 MiB more
than over plain http, and ``init`` spent a quarter of its CPU loading the same bundle again.

Here each (bundle, client certificate) gets one ``ssl.SSLContext``, loaded once and shared by the
Vault sessions (``vault_http``) and the AWS clients (``_aws``); their connections then wrap sockets
with it and load nothing. Sharing is safe: an ``SSLContext`` is thread-safe for wrapping sockets,
every connection of a process trusts the same CAs for the same bundle, and hostnames are checked
per connection as before.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

from urllib3.util.ssl_ import create_urllib3_context

__all__ = ["SHARED_TLS", "SharedTLS"]

#: Contexts kept: a bundle or two, and a client certificate's versions as it is rotated.
_KEPT = 8


class SharedTLS:
    """TLS contexts by CA bundle and client certificate, each built once and kept (at most a few).

    Each is what urllib3 would build for a connection (``create_urllib3_context``: its minimum
    version and ciphers, certificates required, hostnames checked) with the CA certificates and
    the client certificate the client would have loaded into it, each loaded once. A client
    certificate's files are part of the key (their inode, size and time), so a rotated key pair
    gets a context of its own at the next request, as requests would read it at the next
    connection. A bundle or certificate that cannot be loaded gets no context: the client then
    fails the connection as it always does, with its own error.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[object, ...], ssl.SSLContext | None] = {}

    def context(self, location: str, cert: Any) -> ssl.SSLContext | None:
        """The context for the CA bundle (file or folder) at ``location`` and the client ``cert``
        (a file, or the certificate's and the key's), or None if they cannot be loaded."""
        files = tuple(cert) if isinstance(cert, list | tuple) else (cert,) if cert else ()
        try:
            versions = tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, files))
        except (OSError, TypeError, ValueError):
            return None
        key = (location, files, versions)
        with self._lock:
            if key not in self._contexts:
                if len(self._contexts) >= _KEPT:
                    self._contexts.clear()
                self._contexts[key] = self._build(location, cert)
            return self._contexts[key]

    def owns(self, context: object) -> bool:
        with self._lock:
            return any(context is mine for mine in self._contexts.values())

    @staticmethod
    def _build(location: str, cert: Any) -> ssl.SSLContext | None:
        context = create_urllib3_context()
        try:
            if os.path.isdir(location):
                context.load_verify_locations(capath=location)
            else:
                context.load_verify_locations(cafile=location)
            if isinstance(cert, list | tuple):
                context.load_cert_chain(cert[0], cert[1])
            elif cert:
                context.load_cert_chain(cert)
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            return None
        return context


#: The process's contexts (every Vault session and AWS client uses these).
SHARED_TLS = SharedTLS()
