"""The ``state_dir`` handoff from ``init`` to ``sidecar`` (and across container restarts).

``init`` leaves the sources' session state (the Vault token) and every *issued* value (dynamic
credentials with a lease, certificates) in ``state_dir``: a second in-memory volume that is not
mounted into the app. The sidecar adopts them, so it renews the same token and leases instead of
issuing a second set of credentials (vault-k8s#125). Static values are not kept: re-reading them
is cheap and issues nothing. The file is written 0600, atomically, in a 0700 folder.

This module is only the value ↔ file layer: ``Handoff`` in memory, JSON on disk. The engine decides
what goes in (``Engine.handoff``) and what is adopted (``Engine.adopt``). In memory every time is on
the monotonic clock; on disk it is wall time, so the file means the same to another process (or
after a reboot): the conversion happens here, once each way.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from injector.errors import ConfigError
from injector.private import read_private, write_private
from injector.refs import Reference, Secret, parse_reference
from injector.sources import Fetched, Lease

__all__ = ["STATE_FILE", "Handoff", "load", "save"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_VERSION = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Handoff:
    """What one run leaves the next: session state per source scheme, and issued values."""

    sessions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    issued: Mapping[Reference, Fetched] = field(default_factory=dict)


def save(state_dir: Path, handoff: Handoff) -> None:
    """Writes ``handoff`` to ``state_dir`` (0600, atomically)."""
    shift = time.time() - time.monotonic()
    document = {
        "version": _VERSION,
        "saved_at": time.time(),
        "sessions": {scheme: dict(state) for scheme, state in handoff.sessions.items()},
        "issued": {ref.canonical(): _dump_fetched(fetched, shift) for ref, fetched in handoff.issued.items()},
    }
    write_private(state_dir, STATE_FILE, json.dumps(document).encode())
    logger.debug("saved state: %d session(s), %d issued value(s)", len(handoff.sessions), len(handoff.issued))


def load(state_dir: Path) -> Handoff | None:
    """Reads what an earlier run left in ``state_dir``; None when there is nothing usable."""
    raw = read_private(state_dir, STATE_FILE)
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        logger.warning("ignoring %s/%s: not a state file", state_dir, STATE_FILE)
        return None
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        logger.warning("ignoring %s/%s: not a state file of this version", state_dir, STATE_FILE)
        return None
    sessions = document.get("sessions")
    entries = document.get("issued")
    if not isinstance(sessions, dict) or not isinstance(entries, dict):
        logger.warning("ignoring %s/%s: not a state file", state_dir, STATE_FILE)
        return None
    shift = time.time() - time.monotonic()
    issued: dict[Reference, Fetched] = {}
    for text, entry in entries.items():
        try:
            issued[parse_reference(text)] = _load_fetched(entry, shift)
        except (ConfigError, KeyError, TypeError, ValueError, AttributeError):
            logger.warning("ignoring an unreadable issued value in %s/%s", state_dir, STATE_FILE)
    return Handoff(
        sessions={str(k): v for k, v in sessions.items() if isinstance(v, dict)},
        issued=issued,
    )


def _wall(t: float | None, shift: float) -> float | None:
    return None if t is None else t + shift


def _mono(t: Any, shift: float) -> float | None:
    return None if t is None else float(t) - shift


def _dump_fetched(fetched: Fetched, shift: float) -> dict[str, Any]:
    value = fetched.value.reveal()
    if isinstance(value, bytes):
        encoded: dict[str, Any] = {"bytes": base64.b64encode(value).decode()}
    elif isinstance(value, str):
        encoded = {"str": value}
    else:
        encoded = {"map": dict(value)}
    lease = fetched.lease
    return {
        "value": encoded,
        "version": fetched.version,
        "lease": None
        if lease is None
        else {
            "lease_id": lease.lease_id,
            "duration": lease.duration,
            "renewable": lease.renewable,
            "granted_at": _wall(lease.granted_at, shift),
        },
        "ttl": fetched.ttl,
        "not_after": _wall(fetched.not_after, shift),
        "fetched_at": _wall(fetched.fetched_at, shift),
    }


def _load_fetched(entry: Mapping[str, Any], shift: float) -> Fetched:
    encoded = entry["value"]
    value: str | bytes | Mapping[str, Any]
    if "bytes" in encoded:
        value = base64.b64decode(encoded["bytes"])
    elif "str" in encoded:
        value = str(encoded["str"])
    else:
        value = dict(encoded["map"])
    lease_data = entry.get("lease")
    lease = (
        None
        if lease_data is None
        else Lease(
            lease_id=str(lease_data["lease_id"]),
            duration=float(lease_data["duration"]),
            renewable=bool(lease_data["renewable"]),
            granted_at=float(lease_data["granted_at"]) - shift,
        )
    )
    ttl = entry.get("ttl")
    version = entry.get("version")
    return Fetched(
        value=Secret(value),
        version=None if version is None else str(version),
        lease=lease,
        ttl=None if ttl is None else float(ttl),
        not_after=_mono(entry.get("not_after"), shift),
        fetched_at=_mono(entry.get("fetched_at"), shift) or time.monotonic(),
    )
