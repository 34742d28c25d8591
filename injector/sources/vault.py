"""``vault:`` references: KV v1/v2 (detected per mount), dynamic engines with leases, PKI issue.

How a reference becomes a request:

1. The mount of the path is looked up once per mount, as the Vault CLI does
   (``GET sys/internal/ui/mounts/PATH`` with the client token; 404 means an old Vault, read as KV v1)
   and cached, so 50 references under ``secret/`` cost one lookup.
2. KV v2: ``data/`` is inserted after the mount (unless the path already starts with ``data/``,
   ``metadata/`` or ``subkeys/``) and ``?version=N`` becomes the ``version`` query parameter.
   KV v1: the path is read as is. A reference with request parameters (``common_name``, ``ttl`` …)
   or a ``pki`` mount's ``issue/ROLE`` is a write (POST) with those parameters as its body. Anything
   else is a read (``database/creds/ROLE``, ``aws/creds/ROLE``, …).
3. The answer becomes a ``Fetched``: KV v2 ``data.data`` and its version; a ``Lease`` when the answer
   has a ``lease_id``; ``ttl`` from a lease-less ``lease_duration`` (a KV v1 refresh hint); and the
   certificate's validity for PKI answers, so the scheduler re-issues before it ends.

hvac errors are mapped once, in ``_errors``: 403 → AccessDeniedError, 404 → NotFoundError (saying
when a KV v2 version was deleted or destroyed), 400 → SourceError, 429/5xx/sealed/no connection →
UnavailableError. A 403 caused by an invalid token triggers one new login and one retry.

Requests run in a bounded thread pool; each thread has its own hvac adapter and ``requests.Session``
(a Session is not documented as thread-safe), while the shared client is used only for auth.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import hvac.exceptions
import requests
import urllib3

from injector.config.model import LimitsConfig
from injector.errors import (
    AccessDeniedError,
    AuthError,
    ConfigError,
    NotFoundError,
    SourceError,
    UnavailableError,
)
from injector.refs import Reference, Secret
from injector.sources import CallCounter, Fetched, Lease, SourceDefaults
from injector.sources._limits import ValueLimits
from injector.sources.vault_auth import (
    TRANSIENT_STATUSES,
    VaultAuthenticator,
    transport_reason,
    vault_reason,
    vault_status,
)
from injector.sources.vault_client import Client, VaultClient
from injector.sources.vault_http import ENVELOPE_BYTES, VaultSession
from injector.sources.vault_policy import VaultPathPolicy

if TYPE_CHECKING:
    from injector.config.model import Config

__all__ = ["VaultSource", "build_vault_source"]

logger = logging.getLogger(__name__)
# hvac and urllib3 log request details at DEBUG; nothing of theirs below WARNING is wanted.
for _name in ("hvac", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: Reference parameters that are not part of a request body.
_NOT_BODY = frozenset({"version", "refresh"})
#: Mount types whose reads are plain reads, neither KV nor leased engines.
_PLAIN_TYPES = frozenset({"cubbyhole", "system", "identity", "transit", "totp", "ns_system", "pki"})
#: Token endpoints → the operation a call to them counts as (anything else under auth/ is a login).
_TOKEN_OPERATIONS = {"renew-self": "renew", "lookup-self": "lookup", "revoke-self": "revoke"}


def _operation(path: str) -> str:
    """What a request to ``/v1/PATH`` was for, as ``injector_backend_calls_total`` labels it."""
    if path.startswith("auth/token/"):
        return _TOKEN_OPERATIONS.get(path.removeprefix("auth/token/"), "fetch")
    if path.startswith("auth/") and path.endswith("/login"):
        return "login"
    if path.startswith("sys/leases/"):
        action = path.split("/")[2]
        return action if action in ("renew", "revoke", "lookup") else "fetch"
    return "fetch"


def build_vault_source(config: Config) -> VaultSource:
    """Builds the Vault source from ``config.vault``: one hvac client, its authenticator, a pool.

    Raises:
        ConfigError: there is no ``vault:`` section.
    """
    vault = config.vault
    if vault is None:
        raise ConfigError("vault: references need a vault: section (address and auth) or VAULT_ADDR")
    verify: bool | str = True
    if vault.tls_skip_verify:
        logger.warning("TLS verification of Vault at %s is OFF (vault.tls_skip_verify)", vault.address)
        # One warning at start is enough; urllib3 would repeat it on every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        verify = False
    elif vault.ca_cert is not None:
        verify = str(vault.ca_cert)
    elif vault.ca_path is not None:
        verify = str(vault.ca_path)
    cert = (str(vault.client_cert), str(vault.client_key)) if vault.client_cert and vault.client_key else None
    # Every setting comes from the config: the client reads no VAULT_* variable (hvac.Client would
    # read VAULT_ADDR, VAULT_TOKEN, ~/.vault-token and VAULT_CACERT). Its token is "" until login.
    limits = config.limits

    def new_session() -> requests.Session:
        session = VaultSession(max_bytes=limits.max_secret_bytes + ENVELOPE_BYTES, max_depth=limits.max_depth)
        # hvac takes verify from a given session over its own argument.
        session.verify = verify
        return session

    client = Client(
        url=vault.address,
        verify=verify,
        cert=cert,
        timeout=vault.timeout,
        namespace=vault.namespace,
        session=new_session(),
        allow_redirects=False,
    )
    authenticator = VaultAuthenticator(client, vault.auth, address=vault.address)
    return VaultSource(
        client=client,
        authenticator=authenticator,
        max_concurrency=limits.max_concurrency,
        policy=VaultPathPolicy(vault.allowed_paths),
        new_session=new_session,
        value_limits=ValueLimits(max_bytes=limits.max_secret_bytes, max_depth=limits.max_depth),
    )


def _default_session() -> requests.Session:
    defaults = LimitsConfig()
    return VaultSession(max_bytes=defaults.max_secret_bytes + ENVELOPE_BYTES, max_depth=defaults.max_depth)


@dataclass(frozen=True, slots=True)
class _Mount:
    """A secrets engine mount as ``sys/internal/ui/mounts`` describes it."""

    path: str  # "secret/", always with the trailing slash
    type: str  # "kv", "pki", "database" … ("" when the Vault is too old to say)
    kv_version: int  # 1 or 2 for KV mounts, 0 otherwise


@dataclass(frozen=True, slots=True)
class _Plan:
    """The one request a reference turns into."""

    kind: str  # kv1 | kv2 | lease | pki | read | write
    method: str
    path: str  # the Vault API path, without /v1/
    mount: _Mount
    version: str | None = None
    body: Mapping[str, str] | None = None

    @property
    def action(self) -> str:
        return "writing to" if self.method == "POST" else "reading"


class VaultSource(SourceDefaults):
    """The ``vault`` scheme: a ``Source``, ``LeasedSource`` and ``StatefulSource``.

    Args:
        client: an hvac client with url, verify, timeout and namespace set; the authenticator owns
            its token.
        authenticator: logs in, renews the token, hands it over (``vault_auth.VaultAuthenticator``).
        max_concurrency: at most this many requests to Vault at once.
        clock: ``time.monotonic`` or a test clock, for lease grant times.
        policy: which paths references may touch (default: KV reads and issuing endpoints).
        new_session: makes each worker thread's ``requests.Session`` (default: a ``VaultSession``
            with the default limits).
        value_limits: ``limits.max_secret_bytes`` and ``limits.max_depth`` for each value (texts
            inside KV data that look like JSON are scanned before anything parses them).
    """

    scheme = "vault"

    def __init__(
        self,
        *,
        client: VaultClient,
        authenticator: VaultAuthenticator,
        max_concurrency: int = 16,
        clock: Callable[[], float] = time.monotonic,
        policy: VaultPathPolicy | None = None,
        new_session: Callable[[], requests.Session] | None = None,
        value_limits: ValueLimits | None = None,
    ) -> None:
        self._client = client
        self._policy = policy or VaultPathPolicy()
        self._new_session = new_session or _default_session
        if not isinstance(client.adapter.session, VaultSession):
            # Logins and token calls go through the shared client: they get the redirect rule too.
            # (hvac passes verify, cert and timeout with each request, not through the session.)
            client.adapter.session = self._new_session()
        defaults = LimitsConfig()
        self._limits = value_limits or ValueLimits(max_bytes=defaults.max_secret_bytes, max_depth=defaults.max_depth)
        self._auth = authenticator
        self._max_concurrency = max(1, max_concurrency)
        self._clock = clock
        self._lock = threading.Lock()
        self._mounts: dict[str, _Mount] = {}
        self._mount_locks: dict[str, threading.Lock] = {}
        #: Adapters not in use, each with a requests.Session of its own that keeps its connections
        #: open between rounds; at most one per request in flight at once (``max_concurrency``).
        self._idle: list[Any] = []
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        #: Every answered HTTP request, counted by a response hook on each session (auth's too).
        self.calls = CallCounter()
        client.adapter.session.hooks["response"].append(self._count)
        #: ``prepare_early``'s thread, until the first ``fetch`` has waited for it; the KV values it
        #: read, until that fetch takes them (the rest is dropped then).
        self._early_done: threading.Event | None = None
        self._early: dict[Reference, Fetched | SourceError] = {}

    @property
    def authenticator(self) -> VaultAuthenticator:
        return self._auth

    # --- Source ---------------------------------------------------------------------------------

    def describe(self, ref: Reference) -> str:
        """Returns ``vault.kv2(secret/app)``, ``vault.lease(database/creds/app)`` … (log-safe).

        Before the mount of ``ref`` was looked up the label is ``vault(PATH)``.
        """
        version = ref.param("version")
        suffix = f"?version={version}" if version else ""
        mount = self._cached_mount(ref.path)
        if mount is None:
            return f"vault({ref.path}{suffix})"
        return f"vault.{self._kind(ref, mount)}({ref.path}{suffix})"

    def prepare(self, refs: Iterable[Reference]) -> None:
        """Logs in and looks up the mounts of ``refs``, as the first ``fetch`` would do before its
        reads, and reads those of them that are KV values: a KV read creates nothing (no lease, no
        certificate, no write), so reading one that turns out unused costs only the request. The
        next ``fetch`` takes these answers, a value or the reference's error, as its own instead of
        sending the same requests again. A path the policy refuses is neither looked up nor read.

        Raises:
            SourceError: what that ``fetch`` would report for the login or a mount.
        """
        self._auth.ensure()
        reads = []
        for ref in dict.fromkeys(refs):
            self._policy.check_path(str(ref), ref.path)
            if self._kind(ref, self._mount_of(ref)) in ("kv1", "kv2"):
                reads.append(ref)
        early = self._fetch_all(reads)
        with self._lock:
            self._early.update(early)

    def prepare_early(self, refs: Iterable[Reference]) -> None:
        """Runs ``prepare(refs)`` on a thread of its own and returns at once: ``injector init`` starts
        it before it loads the template engine, so Vault's round trips overlap that. The first
        ``fetch`` waits for it (its login, lookups and reads, the reads in parallel, are what that
        fetch would send first), then goes on with what it left. A failed login or lookup is only
        logged at debug level: that fetch tries again and reports it as it always did. A failed
        read is that reference's error in the fetch's answer, as if the fetch had sent it."""
        refs = list(refs)
        done = threading.Event()
        self._early_done = done

        def run() -> None:
            try:
                self.prepare(refs)
            except Exception as exc:  # noqa: BLE001 - the first fetch reports it; a thread must not print it
                logger.debug("the early Vault login did not complete (%s); the first fetch retries", type(exc).__name__)
            finally:
                done.set()

        threading.Thread(target=run, name="vault-login", daemon=True).start()

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        """Fetches every reference concurrently (at most ``max_concurrency`` at once); the first call
        after ``prepare_early`` waits for it and takes the values it read."""
        unique = list(dict.fromkeys(refs))
        if not unique:
            return {}
        got = self._take_early(unique)
        rest = [ref for ref in unique if ref not in got]
        if rest:
            try:
                self._auth.ensure()
            except SourceError as exc:
                got.update({ref: type(exc)(f"{ref}: {exc}", ref=str(ref)) for ref in rest})
            else:
                got.update(self._fetch_all(rest))
        return {ref: got[ref] for ref in unique}

    def _take_early(self, refs: Sequence[Reference]) -> dict[Reference, Fetched | SourceError]:
        """What ``prepare`` read of ``refs`` (values or errors), once it has finished; the answers
        that ``refs`` do not name are dropped (only the first fetch after it takes any)."""
        done = self._early_done
        if done is not None:
            done.wait()
            self._early_done = None
        with self._lock:
            early, self._early = self._early, {}
        return {ref: early[ref] for ref in refs if ref in early}

    def _fetch_all(self, refs: Sequence[Reference]) -> dict[Reference, Fetched | SourceError]:
        if len(refs) <= 1:
            return {ref: self._fetch_one(ref) for ref in refs}
        # Threads only for this round: an idle sidecar has none (it kept 16, ~0.3 MiB of RSS).
        workers = min(self._max_concurrency, len(refs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vault") as pool:
            return dict(zip(refs, pool.map(self._fetch_one, refs), strict=True))

    def issues(self, ref: Reference) -> bool:
        """Whether fetching ``ref`` creates something: a lease (``database/creds``, ``aws/creds`` …),
        a certificate (``pki/issue``, ``pki/sign``) or any other write (a reference with parameters).

        Raises:
            SourceError: logging in or looking up the mount failed.
        """
        self._auth.ensure()
        return self._kind(ref, self._mount_of(ref)) in ("lease", "pki", "write")

    def close(self) -> None:
        """Closes every connection."""
        with self._lock:
            self._idle.clear()
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        self._client.adapter.close()

    # --- LeasedSource ---------------------------------------------------------------------------

    def renew(self, ref: Reference, fetched: Fetched) -> Fetched:
        """Renews the lease of ``fetched`` for its original duration; the value stays.

        A renewal that grants less than asked (the lease's max TTL is near) is returned as is: the
        scheduler sees the short duration and fetches again before it ends.

        Raises:
            NotFoundError: the lease expired or was revoked (fetch again).
            SourceError: there is no lease, or it is not renewable (fetch again).
            AccessDeniedError, UnavailableError, AuthError: as for fetch.
        """
        lease = fetched.lease
        label = self.describe(ref)
        if lease is None:
            raise SourceError(f"{ref}: {label} has no lease to renew; fetch it again", ref=str(ref))
        if not lease.renewable:
            raise SourceError(f"{ref}: the lease of {label} is not renewable; fetch it again", ref=str(ref))
        asked = max(1, int(lease.duration))
        with self._errors(ref, f"{ref.path} via sys/leases/renew", action="renewing the lease of", lease=True):
            body = self._call("PUT", "sys/leases/renew", body={"lease_id": lease.lease_id, "increment": asked})
        granted = float(body.get("lease_duration") or 0)
        if granted < asked:
            logger.info(
                "renewed the lease of %s for %.0fs of %ds asked: its max TTL is near, it will be fetched again",
                label,
                granted,
                asked,
            )
        else:
            logger.debug("renewed the lease of %s for %.0fs", label, granted)
        renewed = Lease(
            lease_id=str(body.get("lease_id") or lease.lease_id),
            duration=granted,
            renewable=bool(body.get("renewable", lease.renewable)),
            granted_at=self._clock(),
        )
        return replace(fetched, lease=renewed)

    def revoke(self, ref: Reference, fetched: Fetched) -> None:
        """Revokes the lease of ``fetched`` (nothing to do without one)."""
        if fetched.lease is None:
            return
        with self._errors(ref, f"{ref.path} via sys/leases/revoke", action="revoking the lease of", lease=True):
            self._call("PUT", "sys/leases/revoke", body={"lease_id": fetched.lease.lease_id})
        logger.info("revoked the lease of %s", self.describe(ref))

    def revoke_issued(self, ref: Reference, fetched: Fetched) -> bool:
        """Revokes the lease of ``fetched``, or a PKI certificate issued without one (``POST
        {mount}/revoke``, which needs ``update`` on that path); False if there is neither.

        A certificate is revoked by its serial number. A ``no_store`` role's certificates are not
        kept by serial, so Vault answers that one with 400 "not found"; it is then presented whole
        (the ``certificate`` field, Vault 1.12 and later), which Vault accepts once it has checked
        that an issuer of the mount signed it. If that is refused too, its error is raised."""
        if fetched.lease is not None:
            self.revoke(ref, fetched)
            return True
        if fetched.serial is None:
            return False
        path = f"{self._mount_of(ref).path}revoke"
        how = "its serial number"
        with self._errors(ref, path, action="revoking the certificate of"):
            try:
                self._call("POST", path, body={"serial_number": fetched.serial})
            except hvac.exceptions.InvalidRequest:
                value = fetched.value.reveal()
                certificate = value.get("certificate") if isinstance(value, Mapping) else None
                if not isinstance(certificate, str):
                    raise
                self._call("POST", path, body={"certificate": certificate})
                how = "the certificate itself (Vault keeps no copy by serial: a no_store role)"
        logger.info("revoked the certificate of %s by %s", self.describe(ref), how)
        return True

    # --- StatefulSource -------------------------------------------------------------------------

    def save_state(self) -> Mapping[str, Any]:
        """Returns the token handoff state (it contains the token: written 0600, never logged)."""
        return self._auth.save_state()

    def restore_state(self, state: Mapping[str, Any]) -> bool:
        """Adopts ``init``'s token if the auth settings match and Vault still accepts it."""
        return self._auth.restore_state(state)

    def maintain(self) -> float | None:
        """Renews the token at ~2/3 of its TTL or logs in again; returns the next due time."""
        return self._auth.maintain()

    def revoke_session(self) -> None:
        """Revokes the token this process logged in for."""
        self._auth.revoke()

    # --- one reference --------------------------------------------------------------------------

    def _fetch_one(self, ref: Reference) -> Fetched | SourceError:
        try:
            self._policy.check_path(str(ref), ref.path)
            mount = self._mount_of(ref)
            plan = self._plan(ref, mount)
            self._policy.check_request(
                str(ref),
                path=ref.path,
                mount_path=mount.path,
                mount_type=mount.type,
                kv=mount.kv_version > 0,
                write=plan.method != "GET",
            )
            with self._errors(ref, plan.path, action=plan.action, plan=plan):
                params = {"version": plan.version} if plan.version else None
                body = self._call(plan.method, plan.path, params=params, body=plan.body)
            try:
                fetched = self._fetched(ref, plan, body)
            except (KeyError, TypeError, ValueError, AttributeError):
                # The exception text could quote response data; say only where it came from.
                raise SourceError(
                    f"{ref}: Vault's answer for {plan.path} has an unexpected shape", ref=str(ref)
                ) from None
            self._limits.check(str(ref), fetched.value.reveal(), ref=str(ref))
        except SourceError as exc:
            return exc
        logger.debug("fetched %s (version %s)", self.describe(ref), fetched.version)
        return fetched

    def _plan(self, ref: Reference, mount: _Mount) -> _Plan:
        rest = ref.path[len(mount.path) :] if ref.path.startswith(mount.path) else ""
        version = ref.param("version")
        body = {k: v for k, v in ref.params if k not in _NOT_BODY}
        kind = self._kind(ref, mount)
        if kind == "kv2":
            if not rest.startswith("data/"):
                rest = "data/" + rest
            return _Plan(kind=kind, method="GET", path=mount.path + rest, mount=mount, version=version)
        if version is not None:
            why = "KV v1 has no versions" if kind == "kv1" else f"{mount.path} is not a KV v2 mount"
            raise SourceError(f"{ref}: ?version= needs a KV v2 secret, and {why}; drop ?version", ref=str(ref))
        if kind in ("pki", "write"):
            return _Plan(kind=kind, method="POST", path=ref.path, mount=mount, body=body)
        return _Plan(kind=kind, method="GET", path=ref.path, mount=mount)

    @staticmethod
    def _kind(ref: Reference, mount: _Mount) -> str:
        rest = ref.path[len(mount.path) :] if ref.path.startswith(mount.path) else ""
        has_body = any(k not in _NOT_BODY for k, _ in ref.params)
        if mount.kv_version == 2 and not rest.startswith(("metadata/", "subkeys/")):
            return "kv2"
        if has_body or (mount.type == "pki" and rest.startswith(("issue/", "sign/"))):
            return "pki" if mount.type == "pki" else "write"
        if mount.kv_version == 1:
            return "kv1"
        if mount.type in _PLAIN_TYPES or mount.kv_version == 2:
            return "read"
        return "lease"

    def _fetched(self, ref: Reference, plan: _Plan, body: Mapping[str, Any]) -> Fetched:
        now = self._clock()
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise SourceError(f"{ref}: Vault returned no data for {plan.path}", ref=str(ref))
        if plan.kind == "kv2":
            return Fetched(value=Secret(dict(data["data"])), version=str(data["metadata"]["version"]), fetched_at=now)
        duration = float(body.get("lease_duration") or 0)
        lease_id = str(body.get("lease_id") or "")
        lease = None
        if lease_id:
            lease = Lease(lease_id=lease_id, duration=duration, renewable=bool(body.get("renewable")), granted_at=now)
        # A certificate's end of validity: PKI's issue/sign responses carry it as ``expiration``
        # (Unix seconds), so no X.509 parser is needed. Its start is when we fetched it.
        not_after = None
        expiration = data.get("expiration")
        if isinstance(expiration, int | float) and not isinstance(expiration, bool) and "certificate" in data:
            # Vault's absolute time, converted once to the monotonic clock the scheduler uses.
            not_after = now + (float(expiration) - time.time())
        serial = data.get("serial_number")
        return Fetched(
            value=Secret(dict(data)),
            lease=lease,
            # Without a lease, lease_duration is advisory (KV v1): a refresh hint, not an expiry.
            ttl=duration if not lease_id and duration > 0 else None,
            not_after=not_after,
            serial=serial if plan.kind == "pki" and not_after is not None and isinstance(serial, str) else None,
            fetched_at=now,
        )

    # --- mounts ---------------------------------------------------------------------------------

    def _cached_mount(self, path: str) -> _Mount | None:
        candidate = path + "/"
        best: _Mount | None = None
        for mount_path, mount in list(self._mounts.items()):
            if candidate.startswith(mount_path) and (best is None or len(mount_path) > len(best.path)):
                best = mount
        return best

    def _mount_of(self, ref: Reference) -> _Mount:
        """Returns the mount of ``ref``, asking Vault once per mount (one lookup in flight per top path)."""
        found = self._cached_mount(ref.path)
        if found is not None:
            return found
        top = ref.path.split("/", 1)[0]
        with self._lock:
            lock = self._mount_locks.setdefault(top, threading.Lock())
        with lock:
            found = self._cached_mount(ref.path)
            if found is not None:
                return found
            mount = self._detect(ref, top)
            with self._lock:
                self._mounts[mount.path] = mount
        logger.debug("Vault mount %s is %s", mount.path, f"KV v{mount.kv_version}" if mount.kv_version else mount.type)
        return mount

    def _detect(self, ref: Reference, top: str) -> _Mount:
        path = f"sys/internal/ui/mounts/{ref.path}"
        try:
            with self._errors(ref, path, action="looking up the mount of"):
                body = self._call("GET", path)
        except NotFoundError:
            # As the Vault CLI: an old Vault without this endpoint is read as KV v1.
            return _Mount(path=top + "/", type="", kv_version=1)
        data = body.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("path"), str) or not data["path"]:
            return _Mount(path=top + "/", type="", kv_version=1)
        mount_path = str(data["path"])
        mount_path = mount_path if mount_path.endswith("/") else mount_path + "/"
        mount_type = str(data.get("type") or "")
        options = data.get("options")
        version = str(options.get("version") or "") if isinstance(options, Mapping) else ""
        kv_version = (2 if version == "2" else 1) if mount_type in ("kv", "generic", "") else 0
        return _Mount(path=mount_path, type=mount_type, kv_version=kv_version)

    # --- requests -------------------------------------------------------------------------------

    def _checkout(self) -> Any:
        """Returns an adapter no other thread is using, with a session of its own."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        base = self._client.adapter
        adapter = type(base).from_adapter(base)
        # from_adapter shares the base session; verify/cert/timeout still travel per request.
        adapter.session = self._new_session()
        adapter.session.hooks["response"].append(self._count)
        with self._lock:
            self._sessions.add(adapter.session)
        return adapter

    def _checkin(self, adapter: Any) -> None:
        with self._lock:
            self._idle.append(adapter)

    def _count(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        request = response.request
        path = urllib.parse.urlsplit(request.url or "").path.removeprefix("/v1/")
        self.calls.add(_operation(path), request.method or "GET")

    def _request(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = dict(params)
        if body is not None:
            kwargs["json"] = dict(body)
        adapter = self._checkout()
        try:
            adapter.token = self._auth.token or ""
            result = adapter.request(method, f"/v1/{path}", **kwargs)
        finally:
            self._checkin(adapter)
        # hvac's JSONAdapter returns a dict for 200 with a body and the Response otherwise (204).
        return result if isinstance(result, dict) else {}

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        """One request; on a 403 from an invalid token, one new login and one retry."""
        if self._auth.token is None:
            self._auth.ensure()
        generation = self._auth.generation
        try:
            return self._request(method, path, params, body)
        except hvac.exceptions.Forbidden:
            if not self._auth.recover(generation):
                raise
        return self._request(method, path, params, body)

    # --- errors ---------------------------------------------------------------------------------

    @contextmanager
    def _errors(
        self, ref: Reference, path: str, *, action: str, plan: _Plan | None = None, lease: bool = False
    ) -> Iterator[None]:
        """Maps hvac and requests errors to ours, naming the reference, the path and the identity."""
        try:
            yield
        except SourceError as exc:
            if exc.ref is None or not str(exc).startswith(str(ref)):
                raise type(exc)(f"{ref}: {exc}", ref=str(ref)) from exc
            raise
        except hvac.exceptions.VaultError as exc:
            raise self._mapped(ref, path, exc, action=action, plan=plan, lease=lease) from exc
        except requests.RequestException as exc:
            raise UnavailableError(
                f"{ref}: cannot reach Vault at {self._client.url}: {transport_reason(exc)}", ref=str(ref)
            ) from exc
        except RecursionError:
            # VaultSession checks the depth before parsing; this is the last line, not the first.
            raise SourceError(f"{ref}: Vault's answer for {path} nests too deeply to parse", ref=str(ref)) from None

    def _mapped(
        self,
        ref: Reference,
        path: str,
        exc: hvac.exceptions.VaultError,
        *,
        action: str,
        plan: _Plan | None,
        lease: bool,
    ) -> SourceError:
        status = vault_status(exc)
        reason = vault_reason(exc)
        where = str(ref)
        if status == 403 and path.startswith("sys/internal/ui/mounts/"):
            return AccessDeniedError(
                f"{ref}: permission denied looking up the mount of {ref.path} as {self._auth.identity()}: "
                "no secrets engine is mounted there, or the token's policies grant nothing under it",
                ref=where,
            )
        if status == 403:
            said = "" if reason == "permission denied" else f" (Vault: {reason})"
            need = ""
            if plan is not None:
                need = f"; a policy must grant {'update' if plan.method == 'POST' else 'read'} on {plan.path}"
            return AccessDeniedError(
                f"{ref}: permission denied {action} {path} as {self._auth.identity()}{said}{need}", ref=where
            )
        if status == 401:
            return AuthError(f"{ref}: Vault refused the token of {self._auth.describe()} ({reason})", ref=where)
        if status == 404:
            return self._not_found(ref, path, exc, plan)
        if status == 503 and "sealed" in reason.lower():
            return UnavailableError(f"{ref}: Vault at {self._client.url} is sealed; {action} {path} failed", ref=where)
        if status in TRANSIENT_STATUSES or status == 501:
            return UnavailableError(f"{ref}: {action} {path} failed: Vault answered {status}: {reason}", ref=where)
        if lease and status == 400 and ("not found" in reason or "expired" in reason or "invalid" in reason):
            return NotFoundError(f"{ref}: {action} {self.describe(ref)} failed: {reason}; fetch it again", ref=where)
        if status == 400:
            return SourceError(f"{ref}: Vault rejected {action} {path}: {reason}", ref=where)
        return SourceError(
            f"{ref}: {action} {path} failed: Vault answered {status or 'unexpectedly'}: {reason}", ref=where
        )

    def _not_found(
        self, ref: Reference, path: str, exc: hvac.exceptions.VaultError, plan: _Plan | None
    ) -> NotFoundError:
        where = str(ref)
        reason = vault_reason(exc)
        if "no handler for route" in reason:
            top = ref.path.split("/", 1)[0]
            return NotFoundError(f"{ref}: no secrets engine is mounted at {top}/ (Vault: {reason})", ref=where)
        if plan is not None and plan.kind == "kv2":
            envelope = exc.json if isinstance(exc.json, Mapping) else {}
            data = envelope.get("data")
            metadata = data.get("metadata") if isinstance(data, Mapping) else None
            if isinstance(metadata, Mapping) and metadata.get("version"):
                version = metadata["version"]
                secret_path = plan.mount.path + plan.path[len(plan.mount.path) :].removeprefix("data/")
                if metadata.get("destroyed"):
                    return NotFoundError(
                        f"{ref}: version {version} of {secret_path} was destroyed and cannot be restored; "
                        "write a new version or read another ?version=N",
                        ref=where,
                    )
                if metadata.get("deletion_time"):
                    return NotFoundError(
                        f"{ref}: version {version} of {secret_path} was deleted at {metadata['deletion_time']}; "
                        f"`vault kv undelete -versions={version} {secret_path}` restores it, or read another "
                        "?version=N",
                        ref=where,
                    )
            if plan.version:
                return NotFoundError(
                    f"{ref}: version {plan.version} of {path} does not exist (or is older than max_versions keeps)",
                    ref=where,
                )
        return NotFoundError(f"{ref}: nothing at {path} in Vault at {self._client.url}", ref=where)
