"""The ``injector`` command's help, as the image runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from injector.cli import cli

COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_does_not_come_from_docstrings(command: str) -> None:
    """`--help` says the same at optimization level 2 (the image's bytecode has no docstrings)."""
    argv = [sys.executable, "-OO", "-m", "injector", *([command] if command else []), "--help"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    optimized = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    plain = subprocess.run([a for a in argv if a != "-OO"], capture_output=True, text=True, env=env, timeout=60,
                           check=True).stdout
    assert optimized == plain
    group = cli if not command else cli.commands[command]
    assert group.help, f"{command or 'injector'} has no help text"
    opening = " ".join(click.unstyle(group.help).split()[:6])  # click rewraps the lines
    assert opening in " ".join(optimized.split())


def test_every_command_is_covered() -> None:
    """The commands the test above checks are the CLI's own."""
    assert {"init", "sidecar", "validate", "render", "exec", "webhook"} <= set(COMMANDS)
