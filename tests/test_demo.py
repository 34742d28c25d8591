"""`injector demo` (what `make demo` runs) tells the whole story and exits 0 by itself."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_story() -> None:
    """Every rotation (Vault, Secrets Manager, SSM, ConfigMap template) reaches the app; exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "injector", "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "injector init: exit 0" in out
    assert out.count("→ app reloaded (SIGHUP)") == 4
    for expected in ("PASSWORD_VERSION=2", "API_KEY=…v2", "GREETING=hello again", "THEME=dark"):
        assert expected in out
    assert "SIGTERM → exit 0" in out
    assert "pw-two" not in out and "k-v2" not in out
