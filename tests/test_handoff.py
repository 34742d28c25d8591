"""The state_dir handoff: a value <-> file layer that keeps monotonic times meaningful across processes."""

from __future__ import annotations

import time
from pathlib import Path

from injector.handoff import STATE_FILE, Handoff, load, save
from injector.refs import Secret, parse_reference
from injector.sources import Fetched, Lease

DB = parse_reference("vault:database/creds/app")


def test_round_trip_keeps_values_and_remaining_time(tmp_path: Path) -> None:
    """What is saved comes back with the same value and the same time left on its lease."""
    now = time.monotonic()
    fetched = Fetched(
        value=Secret({"username": "u", "password": "p"}),
        lease=Lease(lease_id="database/creds/app/1", duration=600, renewable=True, granted_at=now - 100),
        fetched_at=now - 100,
    )
    save(tmp_path, Handoff(sessions={"vault": {"token": "t"}}, issued={DB: fetched}))
    loaded = load(tmp_path)
    assert loaded is not None
    assert loaded.sessions == {"vault": {"token": "t"}}
    back = loaded.issued[DB]
    assert back.value.reveal() == {"username": "u", "password": "p"}
    assert back.lease is not None
    assert abs((back.lease.expires_at - time.monotonic()) - (fetched.lease.expires_at - now)) < 1.0  # type: ignore[union-attr]


def test_the_file_is_private(tmp_path: Path) -> None:
    """The state file is 0600 (it holds a token)."""
    save(tmp_path, Handoff())
    assert (tmp_path / STATE_FILE).stat().st_mode & 0o777 == 0o600


def test_a_garbled_file_is_ignored(tmp_path: Path) -> None:
    """A file that is not a state file of this version is ignored, not an error."""
    save(tmp_path, Handoff())
    (tmp_path / STATE_FILE).write_text('{"version": 1, "sessions": {}}')
    assert load(tmp_path) is None
    (tmp_path / STATE_FILE).write_text("[" * 100_000)
    assert load(tmp_path) is None


def test_nothing_saved_is_none(tmp_path: Path) -> None:
    """An empty state_dir has nothing to adopt."""
    assert load(tmp_path) is None
