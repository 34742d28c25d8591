"""The command lines a pod runs start without click, and read exactly as click reads them.

``injector.commands.parse`` reads ``injector init|sidecar`` with long options and hands every
other command line to click. These tests hold it to click: on generated command lines and
environments, whatever ``parse`` accepts, click accepts with the same parameters and the same
flag overrides; what deploy/ and the webhook write is accepted (so pods do skip click); and a run
through either reader ends the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from click.core import ParameterSource
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.cli import cli
from injector.commands import COMMANDS, OPTIONS, OVERRIDES, parse
from tests.fixtures.cli import run, write_config


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("paths")
    (root / "injector.yaml").write_text("output_dir: /out\n")
    (root / "out").mkdir()
    (root / "unreadable").write_text("")
    (root / "unreadable").chmod(0)
    return {
        "file": str(root / "injector.yaml"),
        "dir": str(root / "out"),
        "dir/": str(root / "out") + "//",
        "missing": str(root / "missing" / "x.yaml"),
        "relative": "./conf//injector.yaml",
        "unreadable": str(root / "unreadable"),
    }


def click_reading(argv: list[str], environ: dict[str, str]) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """What click makes of ``argv``: (command, parameters, overrides from the command line), or None."""
    with mock.patch.dict(os.environ, environ, clear=True):
        try:
            ctx = cli.make_context("injector", list(argv))
            name, command, rest = cli.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            assert command is not None and name is not None
            sub = command.make_context(name, rest, parent=ctx)
        except (click.ClickException, click.exceptions.Exit):
            return None
    params = {k: v for k, v in sub.params.items() if k not in OVERRIDES}
    overrides = {
        OVERRIDES[k]: str(v)
        for k, v in sub.params.items()
        if k in OVERRIDES and v is not None and sub.get_parameter_source(k) is ParameterSource.COMMANDLINE
    }
    return name, params, overrides


def values_for(paths: dict[str, str], kind: str | None = None) -> st.SearchStrategy[str]:
    """Values for an option of ``kind``: mostly ones of its own kind, some of any other."""
    pools = {
        "file": [paths["file"], paths["missing"], paths["relative"], paths["dir"], paths["unreadable"]],
        "dir": [paths["dir"], paths["dir/"], paths["missing"], paths["file"], "out"],
        "duration": ["2m", "90s", "1h30m", "0s", "soon", "-5s", "1.5s"],
        "level": ["info", "DEBUG", "Warning", "error", "verbose", "İnfo"],
        "format": ["json", "JSON", "text", "yaml"],
        "flag": ["yes", "No", " on ", "maybe", "1", "0", "TRUE", "off"],
        "text": ["127.0.0.1:8099", "0.0.0.0:8080", "x", "a=b"],
    }
    anything = sorted({v for pool in pools.values() for v in pool} | {"", "-x", "--config"})
    if kind is None:
        return st.sampled_from(anything)
    return st.one_of(st.sampled_from(pools[kind]), st.sampled_from(pools[kind]), st.sampled_from(anything))


@st.composite
def command_lines(draw: st.DrawFn, paths: dict[str, str]) -> list[str]:
    """Mostly init and sidecar with some of their own options, sometimes anything else."""
    command = draw(st.sampled_from(["init", "sidecar", "init", "sidecar", "exec", "validate", "--help", "Init"]))
    own = list(COMMANDS.get(command, COMMANDS["init"]))
    names = [n for n in own if draw(st.integers(0, 9)) < (8 if n == "--config" else 4)]
    if draw(st.integers(0, 7)) == 0:
        names.append(draw(st.sampled_from(sorted(OPTIONS))))  # a repeat, or another command's option
    names = draw(st.permutations(names))
    argv = [command]
    for name in names:
        kind = OPTIONS[name][2]
        if kind == "flag":
            argv.append(name if draw(st.integers(0, 7)) else f"{name}={draw(values_for(paths, kind))}")
        elif draw(st.booleans()):
            argv.append(f"{name}={draw(values_for(paths, kind))}")
        else:
            argv += [name, draw(values_for(paths, kind))]
    if draw(st.integers(0, 7)) == 0:
        stray = draw(st.sampled_from(["-c", "-h", "--help", "--", "--version", "--unknown", "positional"]))
        argv.insert(draw(st.integers(1, len(argv))), stray)
    return argv


@st.composite
def environments(draw: st.DrawFn, paths: dict[str, str]) -> dict[str, str]:
    environ = {}
    for _dest, envvar, kind, _default in OPTIONS.values():
        if envvar and draw(st.integers(0, 3)) == 0:
            environ[envvar] = draw(st.one_of(values_for(paths, kind), st.just("")))
    if draw(st.integers(0, 20)) == 0:
        environ["_INJECTOR_COMPLETE"] = "bash_source"
    return environ


class TestParseReadsAsClickDoes:
    def test_whatever_parse_accepts_click_reads_the_same(self, paths: dict[str, str]) -> None:
        """On generated command lines and environments, an accepted line has click's exact reading."""
        accepted = {"n": 0}

        @settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
        @given(argv=command_lines(paths), environ=environments(paths))
        def check(argv: list[str], environ: dict[str, str]) -> None:
            ours = parse(argv, environ)
            if ours is None:
                return
            accepted["n"] += 1
            assert click_reading(argv, environ) == ours, (argv, environ)

        check()
        assert accepted["n"] >= 50, "too few generated command lines were accepted to compare"

    @pytest.mark.parametrize(
        ("argv", "environ"),
        [
            (["init", "--config", "{file}"], {}),
            (["init", "--config={file}", "--timeout", "90s", "--log-level", "DEBUG", "--log-format", "json"], {}),
            (["init", "--output-dir", "{dir/}"], {"INJECTOR_CONFIG": "{file}", "INJECTOR_OUTPUT_DIR": "/elsewhere"}),
            (["init", "--config", "{missing}"], {"INJECTOR_INIT_TIMEOUT": "1h30m", "INJECTOR_LOG_LEVEL": "Warning"}),
            (["sidecar", "--config", "{relative}", "--revoke-on-exit"], {"INJECTOR_REVOKE_ON_EXIT": "maybe"}),
            (["sidecar", "--config", "{file}"], {"INJECTOR_REVOKE_ON_EXIT": " on ", "INJECTOR_HEALTH_ADDRESS": "x:1"}),
            (["sidecar", "--config", "{file}", "--health-address", "127.0.0.1:8099", "--output-dir", "{dir}"], {}),
        ],
    )
    def test_accepted_lines(self, paths: dict[str, str], argv: list[str], environ: dict[str, str]) -> None:
        """Lines and environments that parse accepts, each read exactly as click reads it."""
        argv = [a.format(**paths) for a in argv]
        environ = {k: v.format(**paths) for k, v in environ.items()}
        ours = parse(argv, environ)
        assert ours is not None
        assert ours == click_reading(argv, environ)

    @pytest.mark.parametrize(
        ("argv", "environ"),
        [
            (["init", "-c", "{file}"], {}),
            (["init", "--config", "{file}", "--help"], {}),
            (["init", "--config", "{file}", "--config", "{file}"], {}),
            (["init", "--config", "{dir}"], {}),
            (["init", "--config", "{file}", "--output-dir", "{file}"], {}),
            (["init"], {}),
            (["init", "--config", "{file}", "--timeout", "soon"], {}),
            (["init", "--config", "{file}"], {"INJECTOR_LOG_FORMAT": "JSON"}),
            (["init", "--config", "{file}", "--revoke-on-exit"], {}),
            (["sidecar", "--config", "{file}", "--revoke-on-exit=1"], {}),
            (["sidecar", "--config", "{file}", "--health-address", "-x"], {}),
            (["sidecar", "--config", "{file}"], {"_INJECTOR_COMPLETE": "bash_source"}),
            (["sidecar", "--config", "{file}", "--", "extra"], {}),
            (["exec", "--config", "{file}", "--", "true"], {}),
        ],
    )
    def test_handed_to_click(self, paths: dict[str, str], argv: list[str], environ: dict[str, str]) -> None:
        """Help, short options, repeats, refused values and other commands are click's to read."""
        argv = [a.format(**paths) for a in argv]
        environ = {k: v.format(**paths) for k, v in environ.items()}
        assert parse(argv, environ) is None

    def test_every_option_of_the_two_commands_is_known(self) -> None:
        """parse knows every option click has for init and sidecar, with click's env var and default."""
        for name, flags in COMMANDS.items():
            click_options = {
                opt: param for param in cli.commands[name].params for opt in param.opts if opt.startswith("--")
            }
            assert set(click_options) - {"--help"} == set(flags), name
            for flag in flags:
                dest, envvar, _kind, default = OPTIONS[flag]
                param = click_options[flag]
                assert (param.name, param.envvar) == (dest, envvar), flag
                # click's own "no default" (None, False or its UNSET sentinel) where ours is None
                assert param.default == default if default is not None else not isinstance(param.default, str), flag


def test_what_deploy_and_the_webhook_run_is_read_without_click(paths: dict[str, str]) -> None:
    """The manifests' command lines (with their env) are parse's, so pods never import click."""
    lines = [
        ["init", "--config", paths["file"], "--timeout", "2m"],
        ["sidecar", "--config", paths["file"]],
        ["sidecar", "--config", paths["file"], "--revoke-on-exit"],
        ["init", "--config", paths["file"], "--output-dir", paths["dir"]],
        ["sidecar", "--config", paths["file"], "--output-dir", paths["dir"], "--health-address", "0.0.0.0:8099"],
    ]
    environ = {"INJECTOR_LOG_FORMAT": "json", "INJECTOR_STATE_DIR": "/run/injector/state", "TMPDIR": "/tmp"}
    for argv in lines:
        assert parse(argv, environ) is not None, argv


def test_a_pod_command_line_does_not_import_click(tmp_path: Path, output_dir: Path) -> None:
    """`injector init --config` renders without importing click; `-c` goes through click, same result."""
    results = {}
    for flag, name in (("--config", "fast"), ("-c", "click")):
        folder = tmp_path / name
        folder.mkdir()
        out = output_dir / name
        out.mkdir()
        config = write_config(folder, out, [{"contents": "x={{ env('X') }}\n", "destination": "a"}])
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "injector", "init", flag, str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "X": "1"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        imported_click = any(line.split("|")[-1].strip() == "click" for line in result.stderr.splitlines())
        assert imported_click is (flag == "-c"), flag
        assert (out / "a").read_text() == "x=1\n"
        report = [line for line in result.stderr.splitlines() if line.startswith("injector:")]
        results[flag] = [re.sub(r" in \S+ \(", " in T (", line.replace(str(out), "OUT")) for line in report]
    assert (
        results["--config"]
        == results["-c"]
        == ["injector: rendered 1 file(s) from 0 reference(s) into OUT in T (1 changed)"]
    )


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_init_ends_without_the_interpreters_teardown(tmp_path: Path, output_dir: Path, flag: str) -> None:
    """A successful init exits at once (exit_now): no atexit handler runs, the files and the report
    line are all there, the exit code is 0, through either reader."""
    config = write_config(tmp_path, output_dir, [{"contents": "x={{ env('X') }}\n", "destination": "a"}])
    code = (
        "import atexit, sys; atexit.register(print, 'teardown ran', file=sys.stderr); "
        f"sys.argv = ['injector', 'init', {flag!r}, {str(config)!r}]; "
        "from injector.__main__ import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "X": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "teardown ran" not in result.stderr
    assert "injector: rendered 1 file(s)" in result.stderr
    assert (output_dir / "a").read_text() == "x=1\n"


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_failures_end_the_same_way_through_either_reader(tmp_path: Path, flag: str) -> None:
    """An error is one line and its exit code whichever reader read the command line."""
    result = run(["init", flag, str(tmp_path / "nope.yaml")])
    assert result.returncode == 11
    missing = tmp_path / "nope.yaml"
    hint = "pass --config FILE or set INJECTOR_CONFIG"
    assert result.stderr == f"injector: error: {missing}: config file not found; {hint}\n"
