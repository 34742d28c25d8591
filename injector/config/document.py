"""The config file as a YAML document: read, bounded and parsed into plain values, here or in a
process of its own.

``read_tree(path)`` reads a config file and parses it: libyaml's parser with PyYAML's safe
constructors (``load_yaml``), once ``check_yaml`` has bounded the document's depth and size on the
parser's events. Every failure is one ``ConfigError`` that names the file and, for bad YAML, the
line and column, never a line of the file's text.

``read_tree_elsewhere(path)`` does the same in a child process (``python -m
injector.config.document PATH``) and takes the parsed values back through a pipe (``marshal``,
with dates, times and tuples tagged), so that the asking process never imports PyYAML. The
sidecar reads its config so: it runs for the pod's whole life and needs YAML only for this, and
PyYAML's modules would hold 0.8–1.1 MiB of its memory to the end (bench/README.md). The child's
errors are the same ``ConfigError`` messages, with its exit code; it gets none of this process's
credentials (``child_environment``). A sidecar that later needs YAML
(a ``file:`` source's ``.yaml`` file, the ``toyaml`` filter) imports it then.
"""

from __future__ import annotations

import datetime
import marshal
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from injector.errors import ConfigError

__all__ = [
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES",
    "check_yaml",
    "child_environment",
    "load_yaml",
    "main",
    "parse_text",
    "read_tree",
    "read_tree_elsewhere",
    "safe_loader",
]

#: Bounds on a config document, checked on YAML events before anything is built from them.
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_NODES = 100_000
#: How long the child may take to read and parse a config (it is bounded by ``MAX_CONFIG_NODES``).
CHILD_TIMEOUT = 60.0

#: Tags of the values ``marshal`` cannot carry, or could confuse with a tag: each is sent as a
#: tuple of (tag, payload). PyYAML's safe constructors make no other types.
_DATETIME, _DATE, _TUPLE = "datetime", "date", "tuple"


def safe_loader() -> Any:
    """libyaml's parser with PyYAML's safe constructors, where PyYAML was built with libyaml (its
    wheels are): the same documents and values as ``yaml.safe_load``, parsed ten times faster."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, *, max_depth: int, max_nodes: int) -> Any:
    """``yaml.safe_load`` of ``text`` once ``check_yaml`` let it through, both on ``safe_loader``'s
    parser: a document the check parsed is the document loaded.

    Raises:
        ValueError: the document is too deep or too large (``check_yaml``).
        yaml.YAMLError: the text is not YAML.
    """
    import yaml

    check_yaml(text, max_depth=max_depth, max_nodes=max_nodes)
    return yaml.load(text, Loader=safe_loader())  # noqa: S506 - a safe loader


def check_yaml(text: str, *, max_depth: int, max_nodes: int) -> None:
    """Refuses YAML nested deeper than ``max_depth`` or expanding to more than ``max_nodes`` nodes.

    Works on the parser's events (the parser keeps an explicit stack, so it does not recurse),
    counting each alias as the size of what its anchor stands for: nine levels of ten aliases
    ("billion laughs") are 10**9 nodes once expanded, whoever expands them later (a message, a
    template, ``json.dumps``). Messages give counts and limits, never document text.

    A collection that contains itself (an alias inside its own anchor) is refused too: nothing
    can walk it to an end.

    Raises:
        ValueError: the document is too deep, too large once aliases are expanded, or contains
            itself.
        yaml.YAMLError: the text is not YAML.
    """
    import yaml

    sizes: dict[str, int] = {}
    open_nodes: list[list[Any]] = [[None, 0]]  # per open collection: its anchor, its expanded size
    for event in yaml.parse(text, Loader=safe_loader()):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) > max_depth:
                raise ValueError(f"YAML nested deeper than {max_depth} levels")
            open_nodes.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(node[0] == event.anchor for node in open_nodes):
                # ``&a [*a]``: a collection inside itself, which no config, template or JSON can use.
                raise ValueError("YAML refers to a collection from inside it (an alias inside its own anchor)")
            anchor, size = None, sizes.get(str(event.anchor), 1)
        else:
            continue
        if anchor is not None:
            sizes[str(anchor)] = size
        open_nodes[-1][1] += size
        if open_nodes[-1][1] > max_nodes:
            raise ValueError(f"YAML expands to more than {max_nodes} nodes once its aliases (*name) are expanded")


def parse_text(text: str, path: Path) -> Any:
    """The values of the config document ``text`` (read from ``path``, which only names it).

    Raises:
        ConfigError: too deep or too large, or not YAML (with its line and column).
    """
    import yaml

    try:
        return load_yaml(text, max_depth=MAX_CONFIG_DEPTH, max_nodes=MAX_CONFIG_NODES)
    except ValueError as exc:
        raise ConfigError(f"{path}: refused: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: the snippet YAML adds could quote a line of the file.
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def read_tree(path: Path) -> Any:
    """Reads the config file at ``path`` and returns its values (``parse_text``).

    Raises:
        ConfigError: the file is missing or unreadable, or its text is refused.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass --config FILE or set INJECTOR_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_text(text, path)


def read_tree_elsewhere(path: Path, *, timeout: float = CHILD_TIMEOUT) -> Any:
    """``read_tree(path)`` in a child process of this interpreter, this process importing no YAML.

    Raises:
        ConfigError: the child's, as ``read_tree`` raises it; or the child failed otherwise
            (it could not start, it crashed, it took over ``timeout`` seconds).
    """
    command = [sys.executable, "-m", "injector.config.document", str(path)]
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=timeout, check=False, env=child_environment(os.environ)
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path}: reading the config took over {timeout:g}s") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot start {sys.executable} to read the config: {exc.strerror}") from None
    message = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == ConfigError.exit_code and message:
        raise ConfigError(message)
    if done.returncode != 0:
        raise ConfigError(
            f"{path}: reading the config in a child process failed (exit {done.returncode})"
            + (f": {message.splitlines()[-1]}" if message else "")
        )
    try:
        return _unpack(marshal.loads(done.stdout))  # noqa: S302 - our own child's values, over a pipe
    except (EOFError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: the child process that read the config sent no config ({exc})") from None


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the child gets of ``environ``: how to run Python (``PYTHON*``: its path, its bytecode
    folder), the locale and ``PATH``, and nothing else. The child is not made undumpable before it
    runs, so for those milliseconds a process of the same user (the app, sharing the pod's process
    namespace) could read its ``/proc/PID/environ``: the token and every other credential in this
    process's environment stay out of it. It needs none of them to parse YAML."""
    return {
        name: value for name, value in environ.items() if name.startswith(("PYTHON", "LC_")) or name in ("LANG", "PATH")
    }


def _pack(value: Any) -> Any:
    """``value`` with every date, time and tuple as a tagged tuple, which ``marshal`` carries."""
    if isinstance(value, dict):
        return {_pack(key): _pack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pack(item) for item in value]
    if isinstance(value, tuple):
        return (_TUPLE, tuple(_pack(item) for item in value))
    if isinstance(value, datetime.datetime):  # before date: a datetime is a date
        return (_DATETIME, value.isoformat())
    if isinstance(value, datetime.date):
        return (_DATE, value.isoformat())
    return value


def _unpack(value: Any) -> Any:
    """``_pack`` undone."""
    if isinstance(value, dict):
        return {_unpack(key): _unpack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unpack(item) for item in value]
    if isinstance(value, tuple):
        tag, payload = value
        if tag == _TUPLE:
            return tuple(_unpack(item) for item in payload)
        if tag == _DATETIME:
            return datetime.datetime.fromisoformat(payload)
        return datetime.date.fromisoformat(payload)
    return value


def main(argv: list[str]) -> int:
    """``python -m injector.config.document PATH``: the values of the config at PATH on standard
    output (``marshal``), or its ``ConfigError`` on standard error with that error's exit code."""
    try:
        tree = read_tree(Path(argv[0]))
        sys.stdout.buffer.write(marshal.dumps(_pack(tree)))
    except ConfigError as exc:
        sys.stderr.write(str(exc))
        return ConfigError.exit_code
    except Exception as exc:  # noqa: BLE001 - the type only: a message could quote the file
        sys.stderr.write(f"internal error: {type(exc).__name__}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
