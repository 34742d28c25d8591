"""The hvac client the Vault source is built with: hvac's HTTP adapter and the four auth methods it calls.

``hvac.Client`` builds, for every client, an object of each of the ~60 API classes hvac has (every
auth method, secrets engine and system endpoint), and importing it imports all of their modules.
The Vault source sends its reads, writes, lease and mount calls through the client's adapter
(``hvac.adapters.JSONAdapter``: the base address, the token, the namespace header, Vault's errors
mapped to ``hvac.exceptions``), and calls four of hvac's auth method classes: ``token`` (lookup,
renewal, revocation of its own token), ``kubernetes``, ``approle`` and ``jwt`` logins. ``Client``
holds exactly those, built by hvac's own classes with the arguments ``hvac.Client`` would pass.
With ``_imports.hvac_without_its_catalogue`` the process then imports 14 of hvac's modules
instead of 68: 0.7–0.8 MiB less resident memory in an idle sidecar and about 7 ms less of each
start (``make bench``; the numbers are in ``_imports``).

``VaultClient`` is what the source, its authenticator and the login helpers use of a client:
``hvac.Client`` has it too, so tests and callers may hand in either.
"""

from __future__ import annotations

from typing import Any, Protocol

import requests
from hvac.adapters import JSONAdapter
from hvac.api.auth_methods.approle import AppRole
from hvac.api.auth_methods.jwt import JWT
from hvac.api.auth_methods.kubernetes import Kubernetes
from hvac.api.auth_methods.token import Token

__all__ = ["AuthMethods", "Client", "VaultClient"]


class VaultClient(Protocol):
    """What the Vault source uses of an hvac client (``hvac.Client`` or ``Client``)."""

    #: The token sent as ``X-Vault-Token`` ("" for none); the adapter's, set through the client.
    token: str

    @property
    def adapter(self) -> Any:
        """The ``hvac.adapters.Adapter`` every request goes through."""
        ...

    @property
    def url(self) -> str:
        """Vault's address (the adapter's ``base_uri``)."""
        ...

    @property
    def auth(self) -> Any:
        """Has ``token``, ``kubernetes``, ``approle`` and ``jwt``: hvac's auth method objects."""
        ...


class AuthMethods:
    """The auth methods ``Client.auth`` offers, by ``hvac.Client.auth``'s attribute names, each
    hvac's own class on the client's adapter. (A plain class: a dataclass would cost ``init``
    0.6 ms to create, for a holder that is never compared.)"""

    __slots__ = ("approle", "jwt", "kubernetes", "token")

    def __init__(self, adapter: Any) -> None:
        self.token = Token(adapter=adapter)
        self.kubernetes = Kubernetes(adapter=adapter)
        self.approle = AppRole(adapter=adapter)
        self.jwt = JWT(adapter=adapter)


class Client:
    """hvac's ``JSONAdapter`` and four auth methods on it, in the shape of ``hvac.Client``.

    Every argument is explicit: ``hvac.Client`` would read ``VAULT_ADDR``, ``VAULT_TOKEN``,
    ``~/.vault-token`` and ``VAULT_CACERT`` for those it is not given, and this one reads nothing.
    """

    def __init__(
        self,
        *,
        url: str,
        verify: bool | str,
        cert: tuple[str, str] | None,
        timeout: float,
        namespace: str | None,
        session: requests.Session,
        allow_redirects: bool,
    ) -> None:
        self._adapter = JSONAdapter(
            base_uri=url,
            token="",
            cert=cert,
            verify=verify,
            timeout=timeout,
            proxies=None,
            allow_redirects=allow_redirects,
            session=session,
            namespace=namespace,
        )
        self._auth = AuthMethods(self._adapter)

    @property
    def adapter(self) -> Any:
        return self._adapter

    @property
    def auth(self) -> AuthMethods:
        return self._auth

    @property
    def url(self) -> str:
        url: str = self._adapter.base_uri
        return url

    @property
    def token(self) -> str:
        token: str = self._adapter.token
        return token

    @token.setter
    def token(self, token: str) -> None:
        self._adapter.token = token
