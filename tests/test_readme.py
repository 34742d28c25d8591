"""The README's example, run as a new user would: `injector dev-vault` and `injector init` on the
config and template the README shows (only the addresses and the auth method are local)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cli import run

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.slow


def block_after(marker: str, language: str) -> str:
    """The first ```language block after ``marker`` in the README."""
    text = README.read_text()
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {marker!r}"
    return match.group(1)


@pytest.fixture
def dev_vault() -> Iterator[str]:
    """`injector dev-vault --port 0` as the README tells a user to run it; yields its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "injector", "dev-vault", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_readme_example_renders_against_the_dev_vault(
    tmp_path: Path, output_dir: Path, dev_vault: str, sm_client: Any, aws_endpoint: str
) -> None:
    """The README's config and template render against `injector dev-vault` (role app exists)."""
    config = yaml.safe_load(block_after("and the config it reads:", "yaml"))
    template = block_after("`templates/app.env.j2`:", "jinja")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.env.j2").write_text(template)
    sm_client.create_secret(Name="prod/api", SecretString='{"key": "k-123"}')
    config["output_dir"] = str(output_dir)
    config["state_dir"] = str(tmp_path / "state")
    config["vault"] = {**config["vault"], "address": dev_vault, "auth": {"method": "token"}}
    config["aws"] = {"region": "us-east-1", "endpoint_url": aws_endpoint}
    (tmp_path / "injector.yaml").write_text(yaml.safe_dump(config))
    result = run(["init", "-c", str(tmp_path / "injector.yaml")], env={"VAULT_TOKEN": "root"})
    assert result.returncode == 0, result.stderr
    lines = (output_dir / "app.env").read_text().splitlines()
    rendered = {name: value.strip('"') for name, value in (line.split("=", 1) for line in lines)}
    assert rendered["API_KEY"] == "k-123"
    assert rendered["DB_USER"] and rendered["DB_PASSWORD"]
