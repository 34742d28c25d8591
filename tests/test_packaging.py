"""What the production distribution holds: the injector package and its runtime dependencies, and
never the dev Vault or the demo (they are the devvault/ distribution of this repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """`pip wheel .` of a copy of the project (offline: the build backend comes from the test extras)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "injector", source / "injector", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "devvault", source / "devvault", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {**os.environ, "PIP_DEFAULT_TIMEOUT": "15", "PIP_RETRIES": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp / "dist"), str(source)],
        check=True, env=env, capture_output=True,
    )
    (path,) = (tmp / "dist").glob("tmpfs_injector-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_no_dev_server(wheel: zipfile.ZipFile) -> None:
    """No devvault package, no injector/devserver and no demo module ship in the production wheel."""
    names = wheel.namelist()
    assert "injector/engine.py" in names
    assert not [n for n in names if n.startswith(("devvault/", "injector/devserver/")) or n.endswith("/demo.py")]


def test_the_wheel_needs_no_cryptography(wheel: zipfile.ZipFile) -> None:
    """cryptography is the dev Vault's dependency, not the injector's (PKI responses carry the expiration)."""
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in requires if "extra ==" not in line]
    assert runtime and not [line for line in runtime if "cryptography" in line]


def test_demo_without_devvault_says_how_to_install_it() -> None:
    """`injector demo` where devvault is not installed exits 11 with the one command that installs it."""
    code = (
        "import sys; sys.modules['devvault'] = None; sys.argv = ['injector', 'demo']; "
        "from injector.__main__ import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 11
    assert "pip install './devvault[demo]'" in result.stderr
