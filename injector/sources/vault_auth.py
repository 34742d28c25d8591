"""Vault auth methods and the token lifecycle: log in, renew at ~2/3 of the TTL, log in again.

Methods (``vault.auth.method``): ``token`` (``token_file``, re-read at every login, else
``VAULT_TOKEN``), ``kubernetes`` (the service-account token at ``token_path``, re-read at every
login because the kubelet rotates it), ``approle`` (``role_id``/``role_id_file`` and
``secret_id_file``, re-read at every login, or a response-wrapped secret ID unwrapped once),
``jwt`` (``jwt_file``, re-read at every login), ``cert`` (the TLS client certificate) and ``aws``
(iam: a signed ``sts:GetCallerIdentity``); the requests of the last three are in ``vault_methods``,
imported by the login that needs them (no other login loads that code).

Lifecycle, as Vault Agent's auto-auth does it:

1. ``login`` obtains a token and learns its TTL, renewability and policies (``lookup-self`` for a
   given token; the ``auth`` block of a login response otherwise). A token with TTL 0 (root-like)
   never needs renewal.
2. ``maintain`` renews the token (``renew-self``, asking for its original TTL) at ~2/3 of the TTL,
   jittered. A renewal that grants less than asked means the token's max TTL is near, so the next
   due time logs in again instead of renewing; so does a failed renewal or a non-renewable token.
3. ``save_state``/``restore_state`` hand the token from ``init`` to ``sidecar``: the state is
   adopted only if the auth settings match and ``lookup-self`` accepts the token, so a pod uses one
   token (and one set of dynamic credentials) for its whole life.

hvac's error types are mapped here and in ``vault.py``; the small helpers both use live here.
No token, secret_id or JWT is ever logged or put into an exception message.
"""

from __future__ import annotations

import hmac
import http.client
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac.exceptions
import requests

from injector.errors import AuthError, UnavailableError

if TYPE_CHECKING:
    from injector.config.model import VaultAuthConfig
    from injector.sources.vault_client import VaultClient

__all__ = [
    "TRANSIENT_STATUSES",
    "VaultAuthenticator",
    "transport_reason",
    "vault_reason",
    "vault_status",
]

logger = logging.getLogger(__name__)

#: Statuses worth retrying: rate limit, server errors, sealed / standby, missing index state (412).
TRANSIENT_STATUSES = frozenset({412, 429, 500, 502, 503, 504})

_STATUS_OF: tuple[tuple[type[hvac.exceptions.VaultError], int], ...] = (
    (hvac.exceptions.InvalidRequest, 400),
    (hvac.exceptions.Unauthorized, 401),
    (hvac.exceptions.Forbidden, 403),
    (hvac.exceptions.InvalidPath, 404),
    (hvac.exceptions.RateLimitExceeded, 429),
    (hvac.exceptions.InternalServerError, 500),
    (hvac.exceptions.VaultNotInitialized, 501),
    (hvac.exceptions.BadGateway, 502),
    (hvac.exceptions.VaultDown, 503),
)
# Vault wraps some messages in Go's multierror text: "1 error occurred:\n\t* permission denied\n\n".
_MULTIERROR = re.compile(r"^\d+ errors? occurred:\s*")


def vault_status(exc: hvac.exceptions.VaultError) -> int | None:
    """Returns the HTTP status an hvac exception stands for (None for hvac's UnexpectedError)."""
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return status
    return None


def vault_reason(exc: hvac.exceptions.VaultError) -> str:
    """Returns Vault's own error text, tidied, without the URL hvac appends to ``str(exc)``."""
    errors = exc.errors if isinstance(exc.errors, list) else []
    parts: list[str] = []
    for error in errors:
        text = _MULTIERROR.sub("", str(error)).replace("\t* ", "").strip()
        parts.extend(line.strip() for line in text.splitlines() if line.strip())
    if parts:
        return "; ".join(parts)
    status = vault_status(exc)
    return f"HTTP {status}" if status is not None else "an unexpected response"


def transport_reason(exc: requests.RequestException) -> str:
    """Returns why a request never got an answer, in a few words (no URL-laden urllib3 chains)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed; check vault.ca_cert (or VAULT_CACERT)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the request timed out"
    # requests wraps urllib3 wraps the socket error: walk causes, contexts and exception args.
    pending: list[BaseException] = [exc]
    seen: list[BaseException] = []
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        if isinstance(current, http.client.RemoteDisconnected | ConnectionResetError):
            return "the connection was closed without an answer"
        pending.extend(
            e for e in (current.__cause__, current.__context__, *current.args) if isinstance(e, BaseException)
        )
    return type(exc).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class _Token:
    """A token and what Vault said about it. ``repr`` never shows the token itself."""

    token: str = field(repr=False)
    accessor: str
    #: Seconds of validity counted from ``obtained_at``; 0 means it never expires.
    ttl: float
    #: What to ask for when renewing: the TTL the token was issued with.
    increment: float
    renewable: bool
    obtained_at: float
    policies: tuple[str, ...] = ()

    @property
    def expires_at(self) -> float | None:
        return None if self.ttl <= 0 else self.obtained_at + self.ttl


class VaultAuthenticator:
    """Owns the Vault token of one hvac client (``vault_client``): login, renewal, re-login, handoff, revocation.

    Thread-safe: every state change happens under one lock, and ``generation`` counts token changes
    so that many threads seeing the same expired token cause one login, not many.

    Args:
        client: the hvac client whose ``token`` this manages (its session is used only here).
        auth: the ``vault.auth`` config.
        address: the Vault address, for messages.
        environ: where ``VAULT_TOKEN`` is read for the token method (default ``os.environ``).
        clock: ``time.monotonic`` or a test clock; all due times use it (never the wall clock,
            whose steps must not move a renewal).
        renew_fraction: renew at this fraction of the TTL (Vault Agent: ~2/3).
        jitter: renew up to this fraction earlier than that, at random, so pods spread out.
    """

    def __init__(
        self,
        client: VaultClient,
        auth: VaultAuthConfig,
        *,
        address: str = "",
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        renew_fraction: float = 2 / 3,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._auth = auth
        self._address = address or str(client.url)
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._fraction = renew_fraction
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - spreading timers, not cryptography
        self._lock = threading.RLock()
        self._token: _Token | None = None
        self._generation = 0
        self._due: float | None = None
        #: Set when a renewal granted less than asked: the max TTL is near, log in next time.
        self._login_next = False
        #: approle: the role name Vault reports at login (metadata.role_name), for messages.
        self._role_name: str | None = auth.role or auth.name
        #: approle with a wrapped secret_id: the unwrapped ID and the wrapping token it came from.
        self._secret_id: str | None = None
        self._consumed: str | None = None
        self.method = auth.method
        # VaultAuthConfig built in code keeps the dataclass default "token" for every method.
        self.mount = auth.method if auth.mount == "token" and auth.method != "token" else auth.mount
        client.token = ""

    # --- what callers read --------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        """The current token, or None before the first login. Never log it."""
        current = self._token
        return current.token if current is not None else None

    @property
    def generation(self) -> int:
        """Counts token changes; ``recover`` uses it to log in once for many failed requests."""
        return self._generation

    @property
    def next_due(self) -> float | None:
        """When ``maintain`` next has work (``clock`` scale); None when the token never expires."""
        return self._due

    @property
    def expires_at(self) -> float | None:
        current = self._token
        return current.expires_at if current is not None else None

    def describe(self) -> str:
        """Returns who logs in, e.g. ``kubernetes role app at auth/kubernetes`` (log-safe)."""
        if self.method == "token":
            return f"the token from {self._auth.token_file or 'VAULT_TOKEN'}"
        role = f" role {self._role_name}" if self._role_name else ""
        return f"{self.method}{role} at auth/{self.mount}"

    def identity(self) -> str:
        """Returns ``describe()`` plus the token's policies, for permission-denied messages."""
        current = self._token
        policies = ", ".join(current.policies) if current is not None and current.policies else "unknown"
        return f"{self.describe()} (policies: {policies})"

    # --- login ----------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Logs in unless there is a token already."""
        with self._lock:
            if self._token is None:
                self._login()

    def login(self) -> None:
        """Obtains a new token (re-reading every credential file).

        Raises:
            AuthError: the credentials were refused or a credential file is missing.
            UnavailableError: Vault could not be reached or is sealed.
        """
        with self._lock:
            self._login()

    def recover(self, generation: int) -> bool:
        """Handles a 403 seen with token ``generation``: returns True when retrying makes sense.

        True when another thread already replaced the token, or when ``lookup-self`` says the token
        is no longer valid and a new login succeeded; False when the token is fine (a real
        permission problem). Raises ``AuthError`` when the new login is refused.
        """
        with self._lock:
            if generation != self._generation:
                return True
            try:
                self._client.token = self.token or ""
                self._client.auth.token.lookup_self()
            except hvac.exceptions.Forbidden:
                logger.warning("Vault token of %s is no longer valid; logging in again", self.describe())
            except (hvac.exceptions.VaultError, requests.RequestException):
                return False
            else:
                return False
            self._login()
            return True

    def _login(self) -> None:
        with self._login_errors():
            if self.method == "token":
                new = self._login_token()
            elif self.method == "kubernetes":
                new = self._login_kubernetes()
            elif self.method == "approle":
                new = self._login_approle()
            elif self.method == "jwt":
                new = self._login_jwt()
            elif self.method == "cert":
                from injector.sources.vault_methods import cert_login

                new = self._from_login(cert_login(self._client, mount=self.mount, name=self._auth.name))
            elif self.method == "aws":
                from injector.sources.vault_methods import aws_iam_login

                new = self._from_login(
                    aws_iam_login(
                        self._client,
                        mount=self.mount,
                        role=self._auth.role,
                        header_value=self._auth.header_value,
                        region=self._auth.region,
                        sts_endpoint=self._auth.sts_endpoint,
                        where=self._login_what(),
                    )
                )
            else:
                raise AuthError(f"unknown Vault auth method {self.method!r}")
        self._adopt(new)
        logger.info(
            "logged in to Vault as %s (token TTL %s, %s)",
            self.describe(),
            f"{new.ttl:.0f}s" if new.ttl > 0 else "none",
            "renewable" if new.renewable else "not renewable",
        )

    def _login_token(self) -> _Token:
        if self._auth.token_file is not None:
            token = _read_credential(self._auth.token_file, "token", self.describe())
        else:
            token = self._environ.get("VAULT_TOKEN", "").strip()
            if not token:
                raise AuthError(
                    "Vault auth method token: no token; set VAULT_TOKEN or vault.auth.token_file "
                    "(or choose another vault.auth.method)"
                )
        self._client.token = token
        try:
            return self._lookup(token)
        except hvac.exceptions.Forbidden as exc:
            self._client.token = self.token or ""
            raise AuthError(
                f"{self.describe()} was refused by Vault at {self._address}: it is invalid, expired "
                "or revoked; provide a current token"
            ) from exc

    def _login_kubernetes(self) -> _Token:
        jwt = _read_credential(self._auth.token_path, "service-account token", self._login_what())
        return self._from_login(
            self._client.auth.kubernetes.login(role=self._auth.role, jwt=jwt, use_token=False, mount_point=self.mount)
        )

    def _login_approle(self) -> _Token:
        if self._auth.role_id_file is not None:
            role_id = _read_credential(self._auth.role_id_file, "role_id", self._login_what())
        elif self._auth.role_id:
            role_id = self._auth.role_id
        else:
            raise AuthError(f"{self._login_what()}: set vault.auth.role_id_file (or role_id)")
        secret_id = None
        if self._auth.secret_id_response_wrapping_path is not None:
            secret_id = self._wrapped_secret_id()
        elif self._auth.secret_id_file is not None:
            secret_id = _read_credential(self._auth.secret_id_file, "secret_id", self._login_what())
        return self._from_login(
            self._client.auth.approle.login(
                role_id=role_id, secret_id=secret_id, use_token=False, mount_point=self.mount
            )
        )

    def _wrapped_secret_id(self) -> str:
        """Unwraps the secret_id file once; later logins reuse the unwrapped ID until a new file comes."""
        path = self._auth.secret_id_file
        expected = self._auth.secret_id_response_wrapping_path
        if path is None or expected is None:
            raise AuthError(f"{self._login_what()}: a wrapped secret_id needs secret_id_file")
        if self._secret_id is not None and not path.exists():
            return self._secret_id  # the consumed file was removed
        wrapping = _read_credential(path, "wrapped secret_id", self._login_what())
        consumed = (self._consumed or "").encode()
        if self._secret_id is not None and consumed and hmac.compare_digest(wrapping.encode(), consumed):
            return self._secret_id  # the same, already consumed, wrapping token: never unwrapped twice
        from injector.sources.vault_methods import unwrap_secret_id

        secret_id = unwrap_secret_id(
            self._client, wrapping, expected_path=expected, where=self._login_what(), file=path
        )
        self._secret_id, self._consumed = secret_id, wrapping
        removed = False
        if self._auth.remove_secret_id_file_after_reading:
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("could not remove the consumed secret_id file %s: %s", path, exc.strerror)
        logger.info(
            "unwrapped the secret_id in %s (created at %s)%s", path, expected, "; removed it" if removed else ""
        )
        return secret_id

    def _login_jwt(self) -> _Token:
        if self._auth.jwt_file is None:
            raise AuthError(f"{self._login_what()}: set vault.auth.jwt_file")
        jwt = _read_credential(self._auth.jwt_file, "JWT", self._login_what())
        return self._from_login(
            self._client.auth.jwt.jwt_login(role=self._auth.role, jwt=jwt, use_token=False, path=self.mount)
        )

    def _from_login(self, response: Any) -> _Token:
        auth = response.get("auth") if isinstance(response, Mapping) else None
        if not isinstance(auth, Mapping) or not auth.get("client_token"):
            raise AuthError(f"{self._login_what()} failed: Vault's answer carried no token")
        metadata = auth.get("metadata")
        if self.method == "approle" and isinstance(metadata, Mapping) and metadata.get("role_name"):
            self._role_name = str(metadata["role_name"])
        ttl = float(auth.get("lease_duration") or 0)
        return _Token(
            token=str(auth["client_token"]),
            accessor=str(auth.get("accessor") or ""),
            ttl=ttl,
            increment=ttl,
            renewable=bool(auth.get("renewable")),
            obtained_at=self._clock(),
            policies=tuple(str(p) for p in auth.get("policies") or ()),
        )

    def _lookup(self, token: str) -> _Token:
        """``lookup-self`` with ``token`` (already set on the client); raises hvac errors."""
        now = self._clock()
        response = self._client.auth.token.lookup_self()
        data = response.get("data") if isinstance(response, Mapping) else None
        if not isinstance(data, Mapping):
            raise AuthError(f"{self.describe()}: Vault's lookup-self answer carried no data")
        ttl = float(data.get("ttl") or 0)
        return _Token(
            token=token,
            accessor=str(data.get("accessor") or ""),
            ttl=ttl,
            increment=float(data.get("creation_ttl") or ttl),
            renewable=bool(data.get("renewable")),
            obtained_at=now,
            policies=tuple(str(p) for p in data.get("policies") or ()),
        )

    def _adopt(self, new: _Token) -> None:
        self._token = new
        self._client.token = new.token
        self._generation += 1
        self._login_next = False
        self._schedule(new)

    def _schedule(self, current: _Token) -> None:
        if current.ttl <= 0:
            self._due = None
            return
        fraction = self._fraction * (1 - self._jitter * self._rng.random())
        self._due = current.obtained_at + current.ttl * fraction

    def _login_what(self) -> str:
        if self.method in ("approle", "cert"):
            role = f" role {self._role_name}" if self._role_name else ""
            return f"{self.method} login{role} at auth/{self.mount}"
        return f"{self.method} login as role {self._auth.role} at auth/{self.mount}"

    def _hint(self) -> str:
        if self.method == "kubernetes":
            return (
                "check the role's bound_service_account_names/namespaces, the auth method's "
                f"kubernetes config, and that {self._auth.token_path} is the pod's service-account token"
            )
        if self.method == "approle":
            files = ", ".join(str(p) for p in (self._auth.role_id_file, self._auth.secret_id_file) if p is not None)
            return (
                f"check the role_id and secret_id ({files or 'vault.auth.role_id'}); a secret_id may be "
                "expired or used up"
            )
        if self.method == "cert":
            return (
                "check that the client certificate (vault.client_cert) is signed by the CA of a role of "
                f"auth/{self.mount}, and its allowed names"
            )
        if self.method == "aws":
            return (
                "check the role's bound_iam_principal_arn against the pod's AWS identity, the auth method's "
                "iam_server_id_header_value (vault.auth.header_value) and its STS endpoint"
            )
        if self.method == "jwt":
            return (
                f"check the role's bound_audiences/bound_subject/user_claim, the JWT keys of auth/{self.mount}, "
                f"and that {self._auth.jwt_file} holds a current JWT"
            )
        return "provide a current token"

    @contextmanager
    def _login_errors(self) -> Iterator[None]:
        what = self._login_what() if self.method != "token" else f"login with {self.describe()}"
        try:
            yield
        except hvac.exceptions.VaultError as exc:
            status = vault_status(exc)
            reason = vault_reason(exc)
            if status in TRANSIENT_STATUSES or status == 501:
                raise UnavailableError(f"{what} failed: Vault at {self._address} answered: {reason}") from exc
            if status == 404 or "no handler for route" in reason:
                raise AuthError(
                    f"{what} failed: no auth method is enabled at auth/{self.mount}; enable it or set vault.auth.mount"
                ) from exc
            hint = self._hint()
            if status == 403 and reason == "permission denied":
                # Vault gives the same answer for a login path where no auth method is enabled.
                hint += f"; and that a {self.method} auth method is enabled at auth/{self.mount}"
            raise AuthError(f"{what} failed: {reason} — {hint}") from exc
        except requests.RequestException as exc:
            raise UnavailableError(
                f"{what} failed: cannot reach Vault at {self._address}: {transport_reason(exc)}"
            ) from exc

    # --- lifecycle --------------------------------------------------------------------------------

    def maintain(self) -> float | None:
        """Renews the token or logs in again when due; returns the next due time or None.

        Raises:
            AuthError: renewal failed and a new login was refused.
            UnavailableError: Vault could not be reached (the current token is kept; retry later).
        """
        with self._lock:
            current = self._token
            if current is None:
                self._login()
                return self._due
            if self._due is None:
                return None
            now = self._clock()
            if now < self._due:
                return self._due
            expires_at = current.expires_at
            expired = expires_at is not None and now >= expires_at
            # A given token (method token) cannot be replaced by logging in, so "login" re-reads it.
            if current.renewable and not self._login_next and not expired and self._renew(current):
                return self._due
            self._login()
            return self._due

    def _renew(self, current: _Token) -> bool:
        """Renews the token; returns False when Vault refused (log in again instead)."""
        try:
            response = self._client.auth.token.renew_self(increment=int(current.increment) or None)
        except hvac.exceptions.VaultError as exc:
            if vault_status(exc) in TRANSIENT_STATUSES:
                raise UnavailableError(
                    f"renewing the Vault token of {self.describe()} failed: Vault at {self._address} "
                    f"answered: {vault_reason(exc)}"
                ) from exc
            logger.warning(
                "renewing the Vault token of %s failed (%s); logging in again", self.describe(), vault_reason(exc)
            )
            return False
        except requests.RequestException as exc:
            raise UnavailableError(
                f"renewing the Vault token of {self.describe()} failed: cannot reach Vault at "
                f"{self._address}: {transport_reason(exc)}"
            ) from exc
        auth = response.get("auth") if isinstance(response, Mapping) else None
        if not isinstance(auth, Mapping):
            logger.warning("renewing the Vault token of %s returned no auth block; logging in again", self.describe())
            return False
        granted = float(auth.get("lease_duration") or 0)
        if granted <= 0:
            logger.warning("renewing the Vault token of %s granted no time; logging in again", self.describe())
            return False
        renewed = _Token(
            token=current.token,
            accessor=current.accessor,
            ttl=granted,
            increment=current.increment,
            renewable=bool(auth.get("renewable", current.renewable)),
            obtained_at=self._clock(),
            policies=current.policies,
        )
        self._token = renewed
        self._schedule(renewed)
        if granted < current.increment:
            # Vault capped the renewal at the token's max TTL: log in again before it ends.
            self._login_next = True
            logger.info(
                "renewed the Vault token of %s for %.0fs of %.0fs asked: its max TTL is near, "
                "logging in again at the next due time",
                self.describe(),
                granted,
                current.increment,
            )
        else:
            logger.info("renewed the Vault token of %s (TTL %.0fs)", self.describe(), granted)
        return True

    def save_state(self) -> dict[str, Any]:
        """Returns the token and its facts for the ``init`` → ``sidecar`` handoff (contains the token)."""
        with self._lock:
            current = self._token
            if current is None:
                return {}
            return {
                "token": current.token,
                "accessor": current.accessor,
                # On disk in wall time, so that another process reads the same instant.
                "expires_at": None if current.expires_at is None else current.expires_at + time.time() - self._clock(),
                "renewable": current.renewable,
                "auth": self._settings(),
            }

    def restore_state(self, state: Mapping[str, Any]) -> bool:
        """Adopts a saved token when the auth settings match and Vault still accepts it.

        When Vault cannot be asked right now (down, sealed), the token is adopted on the strength of
        the saved expiry: its first use checks it anyway (a 403 leads to a new login), and logging in
        a second time would give the pod a second token and a second set of dynamic credentials.
        """
        with self._lock:
            token = state.get("token")
            if not isinstance(token, str) or not token:
                return False
            if state.get("auth") != self._settings():
                logger.info("not adopting the saved Vault token: it was obtained with other auth settings")
                return False
            expires_at = state.get("expires_at")
            now = self._clock()
            if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
                expires_at = float(expires_at) - time.time() + now
            if expires_at is not None and (not isinstance(expires_at, int | float) or expires_at <= now):
                logger.info("not adopting the saved Vault token: it expired")
                return False
            self._client.token = token
            try:
                new = self._lookup(token)
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                self._client.token = self.token or ""
                if isinstance(exc, hvac.exceptions.VaultError) and vault_status(exc) not in TRANSIENT_STATUSES:
                    logger.info("not adopting the saved Vault token: Vault refused it (%s)", vault_reason(exc))
                    return False
                reason = vault_reason(exc) if isinstance(exc, hvac.exceptions.VaultError) else transport_reason(exc)
                logger.warning("could not check the saved Vault token (%s); adopting it until Vault answers", reason)
                ttl = 0.0 if expires_at is None else float(expires_at) - now
                new = _Token(
                    token=token,
                    accessor=str(state.get("accessor") or ""),
                    ttl=ttl,
                    increment=ttl,
                    renewable=bool(state.get("renewable")),
                    obtained_at=now,
                )
            self._adopt(new)
            logger.info("adopted the saved Vault token of %s (TTL %.0fs)", self.describe(), new.ttl)
            return True

    def revoke(self) -> None:
        """Revokes the token this process logged in for (a given token, method token, is left alone)."""
        with self._lock:
            if self._token is None:
                return
            if self.method == "token":
                logger.info("not revoking %s: it was given to injector, not obtained by it", self.describe())
                return
            try:
                self._client.auth.token.revoke_self()
            except hvac.exceptions.Forbidden:
                logger.info("Vault token of %s was already invalid", self.describe())
            except hvac.exceptions.VaultError as exc:
                raise UnavailableError(
                    f"revoking the Vault token of {self.describe()} failed: {vault_reason(exc)}"
                ) from exc
            except requests.RequestException as exc:
                raise UnavailableError(
                    f"revoking the Vault token of {self.describe()} failed: cannot reach Vault at "
                    f"{self._address}: {transport_reason(exc)}"
                ) from exc
            logger.info("revoked the Vault token of %s", self.describe())
            self._token = None
            self._due = None
            self._generation += 1
            self._client.token = ""

    def _settings(self) -> dict[str, str | None]:
        return {"method": self.method, "mount": self.mount, "role": self._auth.role}


def _read_credential(path: Path, what: str, where: str) -> str:
    """Reads a credential file afresh (tokens rotate); errors name the file, never its content."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuthError(f"{where}: the {what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise AuthError(f"{where}: cannot read the {what} file {path}: {reason}") from None
    if not text:
        raise AuthError(f"{where}: the {what} file {path} is empty")
    return text
