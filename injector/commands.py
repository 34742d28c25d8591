"""What ``init`` and ``sidecar`` do once their options are read, and how every command's failure
becomes one line and an exit code (errors.py lists the codes).

Two readers of the command line share this: click (``injector.cli``, every command, ``--help``,
every usage error) and ``parse`` below, which reads only the command lines a pod runs and no
others. A pod runs ``injector init --config FILE`` and ``injector sidecar --config FILE [...]``
(deploy/ and the webhook write them), and importing click and building its command tree costs
every sidecar about 1 MiB of RSS for its whole life and every ``init`` about 10 ms, to read a few
long options. ``parse`` returns None, so that click reads the whole command line, for anything it
does not handle exactly as click would: ``--help``, a short option, an unknown or repeated option,
an argument, a value click would reject or read differently. ``OPTIONS`` is also what the click
options of these flags are built from, and a test compares the two readers on generated command
lines and environments.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from injector.errors import ConfigError, InjectorError
from injector.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from injector.process.hygiene import make_undumpable, one_malloc_arena
from injector.redact import escape_controls, scrub
from injector.units import format_duration, parse_duration

__all__ = [
    "COMMANDS",
    "OPTIONS",
    "OVERRIDES",
    "Parsed",
    "exit_codes",
    "exit_now",
    "parse",
    "run_init",
    "run_parsed",
    "run_sidecar",
    "start_up",
]

logger = logging.getLogger("injector")

#: A long option: (its parameter's name, its environment variable, its kind, its default).
#: Kinds: ``file`` and ``dir`` (paths; the other kind at that path is refused), ``duration``,
#: ``level`` and ``format`` (choices; levels ignore case), ``flag``, ``text``.
OPTIONS: dict[str, tuple[str, str | None, str, str | None]] = {
    "--config": ("config_path", "INJECTOR_CONFIG", "file", None),
    "--output-dir": ("output_dir", "INJECTOR_OUTPUT_DIR", "dir", None),
    "--timeout": ("timeout", "INJECTOR_INIT_TIMEOUT", "duration", "2m"),
    "--revoke-on-exit": ("revoke_on_exit", "INJECTOR_REVOKE_ON_EXIT", "flag", None),
    "--health-address": ("health_address", "INJECTOR_HEALTH_ADDRESS", "text", None),
    "--log-level": ("log_level", "INJECTOR_LOG_LEVEL", "level", "info"),
    "--log-format": ("log_format", "INJECTOR_LOG_FORMAT", "format", "text"),
}
#: Options without which click refuses the command line.
REQUIRED = frozenset({"--config"})
#: The commands ``parse`` reads, and their options (all of them: click has no others for these).
COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("--config", "--output-dir", "--timeout", "--log-level", "--log-format"),
    "sidecar": ("--config", "--output-dir", "--revoke-on-exit", "--health-address", "--log-level", "--log-format"),
}
#: Config keys that a flag given on the command line overrides (from the environment, the same
#: options only fill what the file leaves out: ``apply_env``).
OVERRIDES = {"output_dir": "output_dir", "health_address": "health.address"}
#: click's reading of a boolean environment variable (``BoolParamType``).
_BOOLEANS = {
    "1": True,
    "yes": True,
    "true": True,
    "on": True,
    "t": True,
    "y": True,
    "0": False,
    "no": False,
    "false": False,
    "off": False,
    "f": False,
    "n": False,
}

#: A command line read by ``parse``: the command, its parameters (but those that only override a
#: config key), and the config keys given on the command line.
Parsed = tuple[str, dict[str, Any], dict[str, str]]


def parse(argv: list[str], environ: Mapping[str, str]) -> Parsed | None:
    """Reads ``argv`` (without the program name) as click would, or returns None for click to."""
    if not argv or argv[0] not in COMMANDS or any(k.startswith("_") and k.endswith("_COMPLETE") for k in environ):
        return None
    allowed = COMMANDS[argv[0]]
    given: dict[str, str | bool] = {}
    rest = iter(argv[1:])
    for token in rest:
        name, equals, value = token.partition("=")
        if name not in allowed or name in given:
            return None
        if OPTIONS[name][2] == "flag":
            if equals:
                return None
            given[name] = True
            continue
        if not equals:
            value = next(rest, "")
        if not value or value.startswith("-"):
            return None
        given[name] = value
    params: dict[str, Any] = {}
    overrides: dict[str, str] = {}
    for name in allowed:
        dest, envvar, kind, default = OPTIONS[name]
        raw = given.get(name)
        if raw is None and envvar:
            raw = environ.get(envvar) or None
        value = _convert(kind, raw if raw is not None else default)
        if value is _REFUSED or (value is None and name in REQUIRED):
            return None
        if dest not in OVERRIDES:
            params[dest] = value
        elif name in given:
            overrides[OVERRIDES[dest]] = str(value)
    return argv[0], params, overrides


_REFUSED = object()


def _convert(kind: str, raw: str | bool | None) -> Any:
    """One value as click's type for ``kind`` converts it, or ``_REFUSED`` if click might not."""
    if raw is None or isinstance(raw, bool):
        return raw if kind != "flag" else bool(raw)
    if kind == "flag":
        return _BOOLEANS.get(raw.strip().lower(), _REFUSED)
    if kind in ("file", "dir"):
        try:
            mode = os.stat(raw).st_mode
        except OSError:
            return Path(raw)
        refused = stat.S_ISDIR(mode) if kind == "file" else stat.S_ISREG(mode)
        return _REFUSED if refused or not os.access(raw, os.R_OK) else Path(raw)
    if kind == "duration":
        try:
            return parse_duration(raw)
        except ValueError:
            return _REFUSED
    if kind == "level":
        return next((level for level in LOG_LEVELS if level.casefold() == raw.casefold()), _REFUSED)
    if kind == "format":
        return raw if raw in LOG_FORMATS else _REFUSED
    return raw


def run_parsed(parsed: Parsed) -> None:
    """Runs what ``parse`` read, with the exit codes click's path gives the same failures."""
    command, params, overrides = parsed
    with exit_codes():
        try:
            if command == "init":
                run_init(**params, overrides=overrides)
            else:
                run_sidecar(**params, overrides=overrides)
        except (KeyboardInterrupt, EOFError):
            print("\ninjector: aborted", file=sys.stderr)
            sys.exit(1)


def start_up(
    log_level: str, log_format: str, config_path: Path, overrides: dict[str, str], *, elsewhere: bool = False
) -> Any:
    """Logging, then no core dumps and one malloc arena, then the config: how every command that
    renders begins. ``elsewhere``: the config's YAML is parsed in a child process, so that this
    one never imports PyYAML (a sidecar, which keeps what it imports for the pod's whole life)."""
    configure_logging(log_level, log_format)
    make_undumpable()
    one_malloc_arena()
    from injector.config.load import load_config

    return load_config(config_path, overrides=overrides, elsewhere=elsewhere)


def run_init(
    *, config_path: Path, timeout: float, log_level: str, log_format: str, overrides: dict[str, str]
) -> NoReturn:
    """``injector init``: render once, report on stderr, exit 0 at once (``exit_now``: the
    interpreter's teardown of the 450 to 560 modules init imports would add 20–30 ms to every pod's
    start, for nothing: the files are written and closed, and no thread is left)."""
    config = start_up(log_level, log_format, config_path, overrides)
    from injector.modes.init import prepare
    from injector.modes.init import run_init as render_once

    # The Vault login starts now, before run_init imports the template engine, so the two overlap.
    result = render_once(config, timeout=timeout, sources=prepare(config))
    print(
        f"injector: rendered {result.files} file(s) from {result.references} reference(s) into "
        f"{escape_controls(str(config.output_dir))} in {format_duration(result.elapsed)} "
        f"({len(result.changed)} changed)",
        file=sys.stderr,
        flush=True,
    )
    exit_now(0)


def run_sidecar(
    *, config_path: Path, revoke_on_exit: bool, log_level: str, log_format: str, overrides: dict[str, str]
) -> NoReturn:
    """``injector sidecar``: keep every file fresh until SIGTERM, then exit with the loop's code."""
    config = start_up(log_level, log_format, config_path, overrides, elsewhere=True)
    from injector.modes.sidecar import Sidecar

    sys.exit(Sidecar(config, revoke_on_exit=revoke_on_exit).run())


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turns what escapes a command into one line on stderr and the exit code of its class."""
    try:
        yield
    except InjectorError as exc:
        message = escape_controls(scrub(str(exc)))
        logger.debug("exiting with %s (code %d)", type(exc).__name__, exc.exit_code)
        print(f"injector: error: {message}", file=sys.stderr)
        exit_now(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        logger.debug("unexpected error", exc_info=True)
        print(
            f"injector: internal error: {type(exc).__name__}: {escape_controls(scrub(str(exc)))} "
            "(please report it; run with --log-level debug for details)",
            file=sys.stderr,
        )
        sys.exit(ConfigError.exit_code - 1)


def exit_now(code: int) -> NoReturn:
    """Exits with ``code`` at once, without the interpreter's teardown. After an error a backend
    thread may still be inside a client retry (botocore sleeps in its own loop); the normal exit
    would wait for it, past the deadline the user set. After a successful ``init`` the teardown is
    only time. Output is flushed first; injector keeps nothing that needs atexit handlers (every
    file it writes is closed before the command returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
