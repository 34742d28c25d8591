"""Property-based tests at injector's boundaries.

- The parsers: whatever the input, the config loader and the reference parser give a valid object
  or ``ConfigError`` — never another exception, and never an object the rest of the program cannot
  use (a NaN duration, a path with a NUL byte).
- ``render --dry-run --show``: for any secret value and every filter the sandbox offers, neither its
  output (or its error) nor any debug log line holds 6 consecutive characters of the value or of
  an encoding of it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from injector.config.load import check_destination, load_config, parse_config
from injector.config.model import CommandNotify, Config, HttpNotify, SignalNotify
from injector.errors import ConfigError, InjectorError, SourceError
from injector.logs import configure_logging
from injector.modes.dryrun import preview
from injector.refs import SCHEMES, Reference, Secret, parse_reference
from injector.sources import Fetched
from injector.template.sandbox import Sandbox
from tests.fixtures.sentinel import encoded_forms

SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BASE = Path(tempfile.gettempdir())

# --- strategies ------------------------------------------------------------------------------------

#: Strings a config holds, right and wrong, so that generated configs get past the first key.
WORDS = [
    "/run/secrets/app", "/run/injector", "relative", "1s", "500ms", "1m30s", "0", "-1s", "1e400", ".nan",
    "0440", "0o640", "0777", "9999", "SIGHUP", "HUP", "SIGNOPE", "token", "kubernetes", "approle", "jwt",
    "vault:secret/app#password", "aws-sm:prod/db?stage=AWSPREVIOUS", "aws-ssm:/app/", "env:HOME", "file:x.json#k",
    "consul:x", "http://127.0.0.1:8080/-/reload", "http://[::1", "https://vault:8200", "ftp://x", "0.0.0.0:8099",
    ":99999", "a", "..", "../x", "a/../../b", "..data/x", "/etc/passwd", "a\x00b", "\x00", "{{ x }}", "", " ",
]  # fmt: skip
LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from(WORDS)
    | st.text(max_size=12)
)
ANY = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def section(keys: list[str], **special: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping of some of ``keys`` (and now and then an unknown one) to values of any shape."""
    value = {key: special.get(key, LEAF | ANY) for key in keys}
    known = st.fixed_dictionaries({}, optional=value)
    unknown = st.dictionaries(st.text(max_size=6), LEAF, max_size=1)
    return known | st.builds(lambda d, extra: {**d, **extra}, known, unknown)


NOTIFIER = section(["signal", "process", "pidfile", "child", "http", "method", "timeout", "headers", "command"])
TEMPLATE = section(
    ["source", "contents", "secret", "destination", "mode", "uid", "gid", "on_change"],
    on_change=st.lists(NOTIFIER, max_size=2) | LEAF,
)
CONFIG = section(
    [
        "output_dir", "state_dir", "allow_non_tmpfs", "vault", "aws", "secrets", "templates", "refresh", "health",
        "limits", "env", "exec",
    ],
    output_dir=st.sampled_from(WORDS) | LEAF,
    vault=section(
        ["address", "namespace", "ca_cert", "tls_skip_verify", "timeout", "auth"],
        auth=section(["method", "token_file", "role", "mount", "token_path", "role_id", "role_id_file", "jwt_file"]),
    ),
    aws=section(["region", "endpoint_url", "max_attempts", "timeout"]),
    secrets=st.dictionaries(st.sampled_from(["db", "api", "1x", "a-b", ""]), LEAF, max_size=3),
    templates=st.lists(TEMPLATE, max_size=3) | LEAF,
    refresh=section(
        ["interval", "jitter", "wait", "max_stale", "min_backoff", "max_backoff"], wait=section(["min", "max"])
    ),
    health=section(["address"]),
    limits=section(["max_output_bytes", "max_secret_bytes", "render_timeout", "max_concurrency"]),
    env=st.dictionaries(st.sampled_from(["DB_PASSWORD", "1X", "A-B", "ok"]), LEAF, max_size=3),
    exec=section(["env_allow", "env_deny", "kill_signal", "kill_timeout", "splay"]),
)  # fmt: skip

# --- what a usable Config is -----------------------------------------------------------------------


def durations(config: Config) -> dict[str, float]:
    found = {
        "refresh.interval": config.refresh.interval,
        "refresh.wait.min": config.refresh.wait.min,
        "refresh.wait.max": config.refresh.wait.max,
        "refresh.max_stale": config.refresh.max_stale,
        "refresh.min_backoff": config.refresh.min_backoff,
        "refresh.max_backoff": config.refresh.max_backoff,
        "limits.render_timeout": config.limits.render_timeout,
        "aws.timeout": config.aws.timeout,
        "exec.kill_timeout": config.exec.kill_timeout,
        "exec.splay": config.exec.splay,
    }
    if config.vault is not None:
        found["vault.timeout"] = config.vault.timeout
    for template in config.templates:
        for i, notify in enumerate(template.on_change):
            if isinstance(notify, HttpNotify | CommandNotify):
                found[f"{template.where}.on_change[{i}].timeout"] = notify.timeout
    return found


def paths(config: Config) -> dict[str, str]:
    found = {"output_dir": str(config.output_dir), "state_dir": str(config.state_dir or "")}
    if config.vault is not None:
        auth = config.vault.auth
        for name in ("ca_cert",):
            found[f"vault.{name}"] = str(getattr(config.vault, name) or "")
        for name in ("token_file", "token_path", "role_id_file", "secret_id_file", "jwt_file"):
            found[f"vault.auth.{name}"] = str(getattr(auth, name) or "")
    for template in config.templates:
        found[f"{template.where}.source"] = str(template.source or "")
        for i, notify in enumerate(template.on_change):
            if isinstance(notify, SignalNotify):
                found[f"{template.where}.on_change[{i}].pidfile"] = str(notify.pidfile or "")
            if isinstance(notify, CommandNotify):
                found[f"{template.where}.on_change[{i}].command"] = "".join(notify.argv)
    return found


def assert_usable(config: Config) -> None:
    """What the rest of injector relies on: finite durations, paths the OS accepts, safe destinations."""
    for name, seconds in durations(config).items():
        assert math.isfinite(seconds) and seconds >= 0, f"{name} is {seconds!r}"
    assert config.refresh.interval > 0
    assert config.refresh.wait.min <= config.refresh.wait.max
    assert config.refresh.min_backoff <= config.refresh.max_backoff
    for name, text in paths(config).items():
        assert "\x00" not in text, f"{name} holds a NUL byte: {text!r}"
    assert config.output_dir.is_absolute()
    for template in config.templates:
        assert check_destination(template.destination, "x") == template.destination
        assert 0 <= template.mode <= 0o7777


# --- the properties --------------------------------------------------------------------------------


def parse_or_config_error(raw: object) -> Config | None:
    try:
        return parse_config(raw, base_dir=BASE, environ={})
    except ConfigError:
        return None


@SETTINGS
@given(CONFIG | ANY)
def test_parse_config_gives_a_config_or_a_config_error(raw: object) -> None:
    """Any tree of dicts, lists, strings, numbers and None: a Config or ConfigError, nothing else."""
    parse_or_config_error(raw)


@SETTINGS
@given(CONFIG)
@example({"output_dir": "/out", "refresh": {"interval": float("nan")}})
@example({"output_dir": "/out", "refresh": {"interval": float("inf")}})
@example({"output_dir": "/out", "limits": {"render_timeout": float("nan")}})
@example({"output_dir": "/out\x00"})
@example({"output_dir": "/out", "templates": [{"source": "a\x00b", "destination": "a"}]})
def test_an_accepted_config_is_usable(raw: dict[str, Any]) -> None:
    """A config parse_config accepts has finite durations, NUL-free paths and safe destinations."""
    config = parse_or_config_error(raw)
    if config is not None:
        assert_usable(config)


def dumped(tree: object) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True).encode()


@SETTINGS
@given(st.binary(max_size=300) | CONFIG.map(dumped) | st.text(max_size=200).map(str.encode))
@example(b"[" * 5000 + b"]" * 5000)
@example(b"{a: " * 3000)
@example(b"output_dir: /out\nvault: {address: 'http://[::1'}\n")
@example(b"output_dir: /out\naws: {endpoint_url: 'http://[x'}\n")
@example(b"\xff\xfe\x00")
@example(b"a: !!python/object/apply:os.system ['true']\n")
@example(b"a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n")
def test_load_config_on_any_file_gives_a_config_or_a_config_error(data: bytes) -> None:
    """Any bytes in the config file: a Config or ConfigError (never RecursionError, ValueError …)."""
    with tempfile.NamedTemporaryFile(suffix=".yaml") as fh:
        fh.write(data)
        fh.flush()
        with contextlib.suppress(ConfigError):
            load_config(fh.name, environ={})


SCHEME_TEXT = st.sampled_from(
    [*SCHEMES, "arn:aws:secretsmanager:us-east-1:123456789012:secret", "arn:aws:ssm:eu-west-1:1:parameter", "nope"]
)
PART = st.text(max_size=12) | st.sampled_from(["secret/app", "/a/b/", "..", "", "?", "#", "%", "&", "=", "a b"])
QUERY = st.sampled_from(["", "?version=2", "?refresh=1s", "?stage=X", "?version=x", "?a=b", "?refresh=", "?&", "?="])
REFERENCE_TEXT = st.text() | st.builds(
    lambda scheme, path, key, query: f"{scheme}:{path}{key}{query}",
    SCHEME_TEXT,
    PART,
    st.just("") | PART.map(lambda k: "#" + k),
    QUERY | PART.map(lambda q: "?" + q),
)


@SETTINGS
@given(REFERENCE_TEXT)
def test_parse_reference_gives_a_reference_or_a_config_error(text: str) -> None:
    """Any text: a usable Reference (it prints, has a base, round-trips) or ConfigError."""
    try:
        ref = parse_reference(text)
    except ConfigError:
        return
    assert isinstance(ref, Reference)
    assert ref.scheme in SCHEMES and ref.path
    assert parse_reference(ref.canonical()) == ref
    assert parse_reference(str(ref.base)) == ref.base
    ref.refresh  # noqa: B018 - parses ?refresh=, must not raise for an accepted reference


# --- render --dry-run --show -------------------------------------------------------------------------

#: Every filter a template can use: Jinja's builtins and injector's, as the sandbox has them.
FILTER_NAMES = sorted(Sandbox(max_size=1 << 20, tick=lambda: None).filters)
#: Arguments for the filters that need some; the others are called bare.
FILTER_ARGS = {
    "attr": "('upper')",
    "batch": "(3)",
    "center": "(40)",
    "groupby": "('pw')",
    "map": "('upper')",
    "reject": "('eq', 'x')",
    "rejectattr": "('pw')",
    "replace": "('a', 'b')",
    "select": "('ne', 'x')",
    "selectattr": "('pw')",
    "slice": "(3)",
    "truncate": "(12, true, '')",
    "wordwrap": "(5)",
}
#: What a filter is applied to: the value, the whole secret (a mapping), a list holding it.
SUBJECTS = {
    "value": "secret('vault:app#pw')",
    "mapping": "secret('vault:app')",
    "list": "[secret('vault:app')]",
}
#: Quotes, backslashes, %, delimiters, unicode and whitespace: what encoders and escapers change.
VALUE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list("\"'\\%$@:/#?&=+{}<> \t\n")),
    min_size=6,
    max_size=40,
)


class MemorySource:
    """One secret, ``vault:app``: ``{"pw": value, "user": "app"}``, from memory."""

    scheme = "vault"

    def __init__(self, value: str) -> None:
        self._value = {"pw": value, "user": "app"}

    def describe(self, ref: Reference) -> str:
        return f"memory({ref.path})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        return {ref: Fetched(value=Secret(self._value)) for ref in refs}

    def close(self) -> None:
        return None




def leaked_part(value: str, text: str, control: str, length: int = 6) -> str | None:
    """The first ``length`` characters of a form of ``value`` found in ``text`` but not in ``control``
    (the same run with another value: text that is there whatever the value is, such as a log
    message Hypothesis borrowed for a value, is no leak). Whitespace-only runs aside."""
    for form in encoded_forms(value):
        for start in range(len(form) - length + 1):
            part = form[start : start + length]
            if not part.isspace() and part in text and part not in control:
                return part
    return None


def dry_run_show(template: str, value: str) -> str:
    """``render --dry-run --show`` of ``template`` in this process: its lines (or its error) and the
    debug log, as text."""
    config = parse_config(
        {"output_dir": "/nonexistent/out", "templates": [{"contents": template, "destination": "a"}]},
        base_dir=BASE,
        environ={},
    )
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    root.handlers[:] = []  # only injector's handler: pytest's capture would slow every example down
    configure_logging("debug", "text", stream)
    try:
        try:
            output = "\n".join(preview(config, timeout=5, show=True, sources={"vault": MemorySource(value)}))
        except InjectorError as exc:
            output = str(exc)
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    return output + "\n" + stream.getvalue()


@pytest.mark.parametrize("name", FILTER_NAMES)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUE_TEXT, subject=st.sampled_from(sorted(SUBJECTS)))
def test_dry_run_show_and_debug_logs_hold_no_part_of_a_value(name: str, value: str, subject: str) -> None:
    """Any value through any filter: --show output, its error and debug logs hold no 6 characters of it."""
    template = f"X={{{{ {SUBJECTS[subject]} | {name}{FILTER_ARGS.get(name, '')} }}}}\n"
    text = dry_run_show(template, value)
    control = dry_run_show(template, ("\u2603" if "\u2603" not in value else "\u2604") * len(value))
    part = leaked_part(value, text, control)
    assert part is None, f"{part!r} of the value is in:\n{text}"
