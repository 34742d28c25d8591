"""Backends behind one small Protocol, and the registry that builds them lazily.

A source fetches *base* references (no ``#KEY``: one fetch serves every key of a secret) and
returns, per reference, either a ``Fetched`` value or the ``SourceError`` that reference got, so
that one bad reference never hides the others. A source with a batch API uses it inside ``fetch``;
one without fetches concurrently there. Clients (hvac, boto3) are built by the factory and passed
to the source's constructor, so tests hand in real clients pointed at the test servers.

Adding a backend is a new module plus one line in ``SOURCES``; nothing else changes. Factories
import their module (and hvac / boto3) only when a reference of that scheme is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from injector.errors import ConfigError, SourceError
from injector.refs import Reference, Secret

if TYPE_CHECKING:
    from injector.config.model import Config

__all__ = [
    "SOURCES",
    "CallCounter",
    "CountedSource",
    "Fetched",
    "IssuingSource",
    "Lease",
    "LeasedSource",
    "Source",
    "SourceDefaults",
    "StatefulSource",
    "ThrottledSource",
    "build_source",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A Vault lease on a dynamic secret: what the scheduler renews and the handoff keeps."""

    lease_id: str
    #: Seconds granted by the last issue or renewal, counted from ``granted_at``.
    duration: float
    renewable: bool
    #: ``time.monotonic()`` when ``duration`` started.
    granted_at: float

    @property
    def expires_at(self) -> float:
        return self.granted_at + self.duration


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """One fetched base reference: the value and what the scheduler needs to know about it."""

    value: Secret
    #: A backend version (KV v2 version, Secrets Manager VersionId, SSM version) for change checks.
    version: str | None = None
    #: A renewable or non-renewable Vault lease (database creds, leased KV v1 …).
    lease: Lease | None = None
    #: An advisory refresh hint in seconds (KV v1 ``lease_duration`` without a lease id).
    ttl: float | None = None
    #: A hard end of validity (``time.monotonic()`` scale): a certificate's ``expiration``.
    not_after: float | None = None
    #: An issued certificate's serial number (public, not a secret): what revokes it without a lease.
    serial: str | None = None
    #: ``time.monotonic()`` when it was fetched. Every time in memory is monotonic: a step of the
    #: wall clock moves no schedule (the handoff file converts to wall time and back).
    fetched_at: float = field(default_factory=time.monotonic)


class Source(Protocol):
    """A backend. ``scheme`` is the reference scheme it serves (``vault``, ``aws-sm`` …).

    Capabilities are part of the Protocol, so the loop never asks what class a source is:
    ``changes`` (False: its values cannot change while the process lives, never polled),
    ``watch_paths`` (files whose change means a value changed: watched instead of polled), and
    ``variables`` (environment variables holding its values, kept from notifier commands).
    ``SourceDefaults`` gives a remote backend's answers; leases and sessions are the optional
    ``LeasedSource`` and ``StatefulSource`` below.
    """

    scheme: str
    changes: bool

    def watch_paths(self, refs: Sequence[Reference]) -> list[Path]:
        """Returns the local files behind ``refs`` (``file:``); a remote backend has none."""
        ...

    def variables(self, refs: Sequence[Reference]) -> set[str]:
        """Returns the environment variables behind ``refs`` (``env:``); a remote backend has none."""
        ...

    def describe(self, ref: Reference) -> str:
        """Returns a short, log-safe label, e.g. ``vault.kv2(secret/app)``."""
        ...

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        """Fetches base references with the fewest calls the API allows; one result per ref."""
        ...

    def close(self) -> None:
        """Releases clients and connections."""
        ...


class SourceDefaults:
    """The capabilities of a remote backend; a source with other answers overrides them."""

    #: Values may change at any time: they are polled (or renewed) by the scheduler.
    changes: bool = True

    def watch_paths(self, refs: Sequence[Reference]) -> list[Path]:
        return []

    def variables(self, refs: Sequence[Reference]) -> set[str]:
        return set()


@runtime_checkable
class LeasedSource(Protocol):
    """A source whose values can carry leases (Vault): renew in place, revoke on exit."""

    def renew(self, ref: Reference, fetched: Fetched) -> Fetched:
        """Renews the lease of ``fetched``; the value stays, the lease is updated."""
        ...

    def revoke(self, ref: Reference, fetched: Fetched) -> None:
        """Revokes the lease of ``fetched`` (``--revoke-on-exit``)."""
        ...


@runtime_checkable
class IssuingSource(Protocol):
    """A source some of whose fetches create something: dynamic credentials, a certificate, a write.

    ``render --dry-run`` asks it and fetches those references only with ``--issue``.
    """

    def issues(self, ref: Reference) -> bool:
        """Whether fetching ``ref`` creates something; may ask the backend (a mount lookup).

        Raises:
            SourceError: the backend could not say.
        """
        ...

    def revoke_issued(self, ref: Reference, fetched: Fetched) -> bool:
        """Revokes what fetching ``ref`` created (its lease, or a certificate without one); False if
        there is nothing this source can revoke.

        Raises:
            SourceError: the backend refused or failed (the thing stays valid until it expires).
        """
        ...


@runtime_checkable
class StatefulSource(Protocol):
    """A source with session state (a Vault token) handed from ``init`` to ``sidecar``.

    ``maintain`` keeps that state alive (renew the token at ~2/3 of its TTL, log in again when
    renewal fails) and returns when it next wants to run (``time.monotonic()`` scale), or None.
    """

    def save_state(self) -> Mapping[str, Any]:
        """Returns JSON-able state, written 0600 to ``state_dir`` (never into the output)."""
        ...

    def restore_state(self, state: Mapping[str, Any]) -> bool:
        """Adopts saved state if it is still valid; returns whether it was adopted."""
        ...

    def maintain(self) -> float | None:
        """Renews or re-obtains credentials when due; returns the next time it is due."""
        ...

    def revoke_session(self) -> None:
        """Revokes the session's own credentials (``--revoke-on-exit``)."""
        ...


class CallCounter:
    """The requests a source's client really sent, by (operation, kind); thread-safe.

    ``operation`` is what a request was for (``fetch``, ``renew``, ``login``, ``lookup``,
    ``revoke``); ``kind`` is the backend's name for it (the AWS API, the HTTP method for Vault).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, operation: str, kind: str) -> None:
        with self._lock:
            self._counts[operation, kind] = self._counts.get((operation, kind), 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


@runtime_checkable
class CountedSource(Protocol):
    """A source that counts its real API calls (``injector_backend_calls_total`` reads them)."""

    calls: CallCounter


@runtime_checkable
class ThrottledSource(Protocol):
    """A source whose backend can throttle it (AWS): ``injector_backend_throttles_total`` reads it."""

    def throttles(self) -> dict[str, int]:
        """Throttled answers so far, per API operation (retried ones included)."""
        ...


SourceFactory = Callable[["Config"], Source]


def _vault(config: Config) -> Source:
    if config.vault is None:
        raise ConfigError("vault: references are used but the config has no vault: section (address, auth)")
    from injector import _imports

    _imports.urllib3_without_http2_opt_in()
    _imports.requests_without_idna()  # before requests is imported
    _imports.requests_without_charset_detection()
    _imports.hvac_without_its_catalogue()
    from injector.sources.vault import build_vault_source

    return build_vault_source(config)


def _aws_sm(config: Config) -> Source:
    from injector import _imports

    _imports.urllib3_without_http2_opt_in()
    _imports.botocore_without_jmespath()
    from injector.sources.aws_secretsmanager import build_secretsmanager_source

    return build_secretsmanager_source(config)


def _aws_ssm(config: Config) -> Source:
    from injector import _imports

    _imports.urllib3_without_http2_opt_in()
    _imports.botocore_without_jmespath()
    from injector.sources.aws_ssm import build_ssm_source

    return build_ssm_source(config)


def _file(config: Config) -> Source:
    from injector.sources.files import FileSource

    roots = config.file_roots
    if not roots:
        # Default: the config's folder and the folders of the templates' sources.
        sources = (t.source.parent for t in config.templates if t.source is not None)
        roots = tuple(dict.fromkeys((config.base_dir, *sources)))
    return FileSource(
        base_dir=config.base_dir,
        roots=roots,
        state_dir=config.state_dir,
        max_bytes=config.limits.max_secret_bytes,
        max_depth=config.limits.max_depth,
    )


def _env(config: Config) -> Source:
    from injector.sources.env import EnvSource

    return EnvSource()


#: scheme → factory. The one line to add for a new backend.
SOURCES: Mapping[str, SourceFactory] = {
    "vault": _vault,
    "aws-sm": _aws_sm,
    "aws-ssm": _aws_ssm,
    "file": _file,
    "env": _env,
}


def build_source(scheme: str, config: Config) -> Source:
    """Builds the source for ``scheme`` (importing its client library only now)."""
    return SOURCES[scheme](config)
