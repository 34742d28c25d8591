"""The ``state_dir`` handoff from ``init`` to ``sidecar`` (and across container restarts).

``init`` leaves the sources' session state (the Vault token) and every *issued* value (dynamic
credentials with a lease, certificates) in ``state_dir``: a second in-memory volume that is not
mounted into the app. The sidecar adopts them, so it renews the same token and leases instead of
issuing a second set of credentials (vault-k8s#125). Static values are not kept: re-reading them
is cheap and issues nothing. The file is written 0600, atomically, in a 0700 folder.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from injector.errors import ConfigError
from injector.redact import register_value
from injector.refs import Secret, parse_reference
from injector.sink import read_private, write_private
from injector.sources import Fetched, Lease, StatefulSource

if TYPE_CHECKING:
    from injector.engine import Engine

__all__ = ["STATE_FILE", "load_state", "save_state"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_VERSION = 1
#: An issued value closer than this to its end is not adopted: a fresh one is fetched instead.
ADOPT_MARGIN = 30.0


def save_state(state_dir: Path, engine: Engine) -> None:
    """Writes the sources' session state and the issued values of ``engine`` to ``state_dir``."""
    sessions = {
        scheme: dict(source.save_state())
        for scheme, source in engine.sources.items()
        if isinstance(source, StatefulSource)
    }
    issued = {
        ref.canonical(): _dump_fetched(fetched)
        for ref, fetched in engine.cache.items()
        if fetched.lease is not None or fetched.not_after is not None
    }
    document = {"version": _VERSION, "saved_at": time.time(), "sessions": sessions, "issued": issued}
    write_private(state_dir, STATE_FILE, json.dumps(document).encode())
    logger.debug("saved state: %d session(s), %d issued value(s)", len(sessions), len(issued))


def load_state(state_dir: Path, engine: Engine) -> bool:
    """Adopts what an earlier run left in ``state_dir``; returns whether anything was adopted.

    Sessions are offered only to sources the config uses (no client is imported otherwise); the
    source checks its saved token is still valid. Issued values still valid for ADOPT_MARGIN
    seconds go into the cache, so they are renewed rather than issued again.
    """
    raw = read_private(state_dir, STATE_FILE)
    if raw is None:
        return False
    try:
        document = json.loads(raw)
        if document.get("version") != _VERSION:
            logger.warning("ignoring %s/%s: unknown version", state_dir, STATE_FILE)
            return False
        sessions: Mapping[str, Any] = document.get("sessions", {})
        issued: Mapping[str, Any] = document.get("issued", {})
    except (ValueError, AttributeError):
        logger.warning("ignoring %s/%s: not a state file", state_dir, STATE_FILE)
        return False
    used = {ref.scheme for ref in engine.static_refs()}
    adopted = False
    for scheme, session in sessions.items():
        if scheme in used:
            source = engine.source(scheme)
            if isinstance(source, StatefulSource) and source.restore_state(session):
                logger.info("adopted the %s session from %s", scheme, state_dir)
                adopted = True
    now = time.time()
    for text, entry in issued.items():
        try:
            ref = parse_reference(text)
            fetched = _load_fetched(entry)
        except (ConfigError, KeyError, TypeError, ValueError):
            continue
        end = fetched.lease.expires_at if fetched.lease is not None else fetched.not_after
        if ref.scheme in used and end is not None and end - now > ADOPT_MARGIN:
            register_value(fetched.value.reveal())
            engine.cache[ref] = fetched
            adopted = True
    if adopted:
        logger.info("adopted state from %s (%d issued value(s) still valid)", state_dir, len(engine.cache))
    return adopted


def _dump_fetched(fetched: Fetched) -> dict[str, Any]:
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
            "granted_at": lease.granted_at,
        },
        "ttl": fetched.ttl,
        "not_before": fetched.not_before,
        "not_after": fetched.not_after,
        "fetched_at": fetched.fetched_at,
    }


def _load_fetched(entry: Mapping[str, Any]) -> Fetched:
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
            granted_at=float(lease_data["granted_at"]),
        )
    )
    return Fetched(
        value=Secret(value),
        version=entry.get("version"),
        lease=lease,
        ttl=entry.get("ttl"),
        not_before=entry.get("not_before"),
        not_after=entry.get("not_after"),
        fetched_at=float(entry.get("fetched_at", time.time())),
    )
