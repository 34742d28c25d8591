"""Fixtures of the notifier tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.notify.support import AppServer


@pytest.fixture
def http_app() -> Iterator[AppServer]:
    """An app with a reload endpoint on 127.0.0.1 that records requests; statuses are queued."""
    server = AppServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
