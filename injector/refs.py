"""References to secrets (``vault:secret/app#password``) and the masked ``Secret`` value type.

Grammar (DESIGN.md §4)::

    vault:PATH[#KEY][?PARAMS]            KV v1/v2 (version=N), dynamic engines, pki/issue (common_name…)
    aws-sm:NAME_OR_ARN[#KEY][?stage=S | ?version_id=V]
    aws-ssm:NAME                         one parameter
    aws-ssm:/PATH/                       every parameter under PATH, as a mapping
    arn:aws:secretsmanager:…[#KEY][?…]   bare ARNs are aws-sm / aws-ssm references
    arn:aws:ssm:…:parameter/NAME
    file:PATH[#KEY]                      a file's text, or a key of a JSON/YAML file
    env:NAME                             an environment variable of the injector

``?PARAMS`` and ``#KEY`` may come in either order. Every scheme also takes ``?refresh=DURATION``, which
overrides ``refresh.interval`` for that reference. A reference never contains a value, so its text is
safe to log and to put in error messages; a ``Secret`` is not, and its ``repr``/``str`` say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from injector.errors import ConfigError, NotFoundError
from injector.redact import escape_controls
from injector.units import parse_duration

__all__ = ["SCHEMES", "Reference", "Secret", "parse_reference"]

SCHEMES = ("vault", "aws-sm", "aws-ssm", "file", "env")

# Parameters of a Vault request body for write-style reads such as pki/issue/ROLE.
_VAULT_REQUEST_PARAMS = frozenset(
    {
        "common_name",
        "alt_names",
        "ip_sans",
        "uri_sans",
        "other_sans",
        "ttl",
        "format",
        "private_key_format",
        "exclude_cn_from_sans",
        "not_after",
        "key_type",
        "key_bits",
    }
)
_PARAMS: Mapping[str, frozenset[str]] = {
    "vault": frozenset({"version", "refresh"}) | _VAULT_REQUEST_PARAMS,
    "aws-sm": frozenset({"stage", "version_id", "refresh"}),
    "aws-ssm": frozenset({"refresh"}),
    "file": frozenset(),
    "env": frozenset(),
}
_EXPECTED = {
    "vault": "vault:PATH[#KEY][?version=N], e.g. vault:secret/app#password",
    "aws-sm": "aws-sm:NAME_OR_ARN[#KEY][?stage=AWSCURRENT|?version_id=ID], e.g. aws-sm:prod/db#password",
    "aws-ssm": "aws-ssm:NAME or aws-ssm:/PATH/, e.g. aws-ssm:/app/prod/db_host",
    "file": "file:PATH[#KEY], e.g. file:/etc/app/config.json#port",
    "env": "env:NAME, e.g. env:DB_PASSWORD",
}
_ARN = re.compile(r"arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]*:\d*:(secret:|parameter/)\S+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SSM_NAME = re.compile(r"[A-Za-z0-9_.\-/]+")
_SM_NAME = re.compile(r"[A-Za-z0-9/_+=.@\-:]+")
_VAULT_PATH = re.compile(r"[^\s?#]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A parsed reference. Hashable; ``base`` is what a backend actually fetches."""

    scheme: str
    path: str
    key: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    #: The text the user wrote, for messages. Not part of equality.
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or self.canonical()

    def canonical(self) -> str:
        """Returns the reference in the documented order: ``scheme:path#key?params``."""
        out = f"{self.scheme}:{self.path}"
        if self.key is not None:
            out += f"#{self.key}"
        if self.params:
            out += "?" + urlencode(self.params)
        return out

    def param(self, name: str) -> str | None:
        """Returns the value of query parameter ``name``, or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def base(self) -> Reference:
        """The reference without ``#KEY`` and ``?refresh``: one fetch serves every key of it."""
        params = tuple(p for p in self.params if p[0] != "refresh")
        if self.key is None and params == self.params:
            return self
        plain = replace(self, key=None, params=params, text="")
        return replace(plain, text=plain.canonical())

    @property
    def refresh(self) -> float | None:
        """The ``?refresh=`` override of the polling interval, in seconds."""
        value = self.param("refresh")
        return None if value is None else parse_duration(value)

    @property
    def by_path(self) -> bool:
        """True for ``aws-ssm:/PATH/``: every parameter under a path."""
        return self.scheme == "aws-ssm" and self.path.endswith("/")


def parse_reference(text: str, *, where: str = "") -> Reference:
    """Parses reference ``text``; ``where`` (a field path) prefixes the error message.

    Raises:
        ConfigError: quoting the reference and saying what is expected.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{prefix}expected a reference such as vault:secret/app#password, got {text!r}")
    raw = text.strip()

    def fail(why: str, scheme: str | None = None) -> ConfigError:
        hint = _EXPECTED.get(scheme or "", "one of " + ", ".join(f"{s}:…" for s in SCHEMES))
        return ConfigError(f"{prefix}bad reference {raw!r}: {why}; expected {hint}")

    if raw.startswith("arn:"):
        match = _ARN.fullmatch(raw.split("#", 1)[0].split("?", 1)[0])
        if not match:
            raise fail("not a Secrets Manager or SSM parameter ARN", "aws-sm")
        scheme, rest = ("aws-sm" if match.group(1) == "secretsmanager" else "aws-ssm"), raw
    else:
        scheme, sep, rest = raw.partition(":")
        if not sep or scheme not in SCHEMES:
            raise fail(f"unknown scheme {scheme!r}" if sep else "no scheme")
    path, key, query = _split(rest)
    if key is not None and not key:
        raise fail("empty #KEY", scheme)
    if path != path.strip() or (key is not None and key != key.strip()):
        raise fail("whitespace at the start or end of the path or #KEY (a typo?)", scheme)
    if key is not None and "?" in key:
        # Only reachable as PATH?QUERY#KEY: written PATH#KEY?QUERY, such a key would read differently.
        raise fail("a #KEY cannot contain '?', which starts the parameters", scheme)
    params = _parse_params(query, scheme, fail)
    _check_path(scheme, path, key, fail)
    return Reference(scheme=scheme, path=path, key=key, params=params, text=raw)


def _split(rest: str) -> tuple[str, str | None, str]:
    """Splits ``path#key?query`` or ``path?query#key`` into its three parts."""
    hash_at, query_at = rest.find("#"), rest.find("?")
    key: str | None = None
    query = ""
    if hash_at >= 0 and (query_at < 0 or hash_at < query_at):
        path, tail = rest[:hash_at], rest[hash_at + 1 :]
        key, _, query = tail.partition("?")
    elif query_at >= 0:
        path, tail = rest[:query_at], rest[query_at + 1 :]
        query, sep, key_part = tail.partition("#")
        key = key_part if sep else None
    else:
        path = rest
    return path, key, query


def _parse_params(query: str, scheme: str, fail: Any) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise fail(f"cannot parse parameters {query!r}", scheme) from None
    allowed = _PARAMS[scheme]
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise fail(f"unknown parameter {name!r} (allowed: {known})", scheme)
        if name in seen:
            raise fail(f"parameter {name!r} given twice", scheme)
        seen[name] = value
    if "version" in seen and not seen["version"].isdigit():
        raise fail(f"version must be a whole number, got {seen['version']!r}", scheme)
    if "stage" in seen and "version_id" in seen:
        raise fail("give either stage or version_id, not both", scheme)
    if "refresh" in seen:
        try:
            parse_duration(seen["refresh"])
        except ValueError as exc:
            raise fail(f"refresh: {exc}", scheme) from None
    return tuple(sorted(seen.items()))


def _check_path(scheme: str, path: str, key: str | None, fail: Any) -> None:
    if not path:
        raise fail("empty path", scheme)
    if scheme == "env":
        if not _ENV_NAME.fullmatch(path):
            raise fail(f"{path!r} is not an environment variable name", scheme)
        if key is not None:
            raise fail("env: references take no #KEY", scheme)
    elif scheme == "vault":
        if not _VAULT_PATH.fullmatch(path) or path.startswith("/") or "//" in path:
            raise fail(f"{path!r} is not a Vault path (no leading /, spaces or //)", scheme)
        if ".." in path.split("/"):
            raise fail("'..' is not allowed in a Vault path", scheme)
    elif scheme == "aws-ssm":
        _check_ssm_path(path, key, fail)
    elif scheme == "aws-sm":
        if not _SM_NAME.fullmatch(path):
            raise fail(f"{path!r} is not a secret name or ARN", scheme)
    elif scheme == "file" and ("\x00" in path or path != path.strip() or not path.strip()):
        raise fail("a file path cannot contain NUL or begin or end with white space", scheme)


def _check_ssm_path(path: str, key: str | None, fail: Any) -> None:
    name = path.split(":parameter", 1)[-1] if path.startswith("arn:") else path
    if not _SSM_NAME.fullmatch(name):
        raise fail(f"{path!r} is not a parameter name", "aws-ssm")
    if path.endswith("/") and not path.startswith("/"):
        raise fail("a by-path reference starts and ends with /", "aws-ssm")
    if path.endswith("/") and key is not None:
        # A key of a by-path mapping is written as a longer path instead.
        raise fail("a by-path reference takes no #KEY; name the parameter itself", "aws-ssm")


class Secret:
    """A secret value whose ``repr``/``str`` never show it. ``reveal()`` is for render and sink only.

    The value is what the backend returned: ``str``, ``bytes``, or a mapping (KV data, SSM by path).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes | Mapping[str, Any]) -> None:
        self._value = value

    def reveal(self) -> str | bytes | Mapping[str, Any]:
        """Returns the value. Grep for ``reveal(`` to audit where values leave this type."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    def __str__(self) -> str:
        return "<redacted>"

    def __format__(self, spec: str) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self._value == other._value

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled (it would leave the process in clear text)")

    def keys(self) -> list[str]:
        """Returns the key names of a mapping value (or of a JSON-object string); [] otherwise."""
        mapping = self._as_mapping()
        return sorted(str(k) for k in mapping) if mapping is not None else []

    def select(self, key: str, *, ref: str) -> Secret:
        """Returns the value at ``key``, parsing a JSON-object string first.

        Raises:
            NotFoundError: naming ``ref`` and the keys that exist (never their values).
        """
        mapping = self._as_mapping()
        if mapping is None:
            raise NotFoundError(
                f"{ref}: the secret is not a JSON object or key/value map, so #{key} cannot be "
                "selected; drop the #KEY to use the whole value",
                ref=ref,
            )
        if key not in mapping:
            # Key names are the backend's: a newline in one must not forge a line of the error output.
            keys = escape_controls(", ".join(sorted(str(k) for k in mapping))) or "none"
            raise NotFoundError(f"{ref}: key {key!r} not found (keys: {keys})", ref=ref)
        value = mapping[key]
        if value is None or isinstance(value, bool | int | float) or not isinstance(value, str | bytes | Mapping):
            value = json.dumps(value)
        return Secret(value)

    def _as_mapping(self) -> Mapping[str, Any] | None:
        value = self._value
        if isinstance(value, Mapping):
            return value
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
        return None
