"""Shared fixtures: each backend's fixtures live in tests/fixtures/ and are loaded here."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.tmpfs",
    "tests.fixtures.sentinel",
    "tests.fixtures.sidecar",
    "tests.fixtures.aws",
    "tests.fixtures.vault",
]
