"""Request fields as Vault's ``framework.FieldData`` reads them, plus Go time and duration text.

Every parser takes the request ``data`` mapping and a field name, tolerates JSON ``null`` and
absent fields (the default), accepts the string forms a form-encoded body or the CLI would send,
and raises a 400 :class:`VaultError` naming the field otherwise.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from devvault.wire import VaultError

__all__ = [
    "DEFAULT_LEASE_TTL",
    "MAX_LEASE_TTL",
    "get_bool",
    "get_duration",
    "get_int",
    "get_list",
    "get_map",
    "get_str",
    "go_duration",
    "parse_duration",
    "random_text",
    "rfc3339",
]

#: Vault's system default and maximum lease TTL: 768h (``vault/expiration.go``).
DEFAULT_LEASE_TTL = 32 * 24 * 3600
MAX_LEASE_TTL = DEFAULT_LEASE_TTL

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
             "d": 86400.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_ALNUM = string.ascii_letters + string.digits


def _convert_error(value: Any, name: str, detail: str) -> VaultError:
    return VaultError(400, f'error converting input {value} for field "{name}": {detail}')


def parse_duration(value: Any, name: str = "ttl") -> int:
    """Returns whole seconds, like Go's ``parseutil.ParseDurationSecond``.

    Accepts an int, a float, a numeric string (seconds) or a Go duration such as ``1h30m``,
    ``90s`` or ``2d``; ``None`` and ``""`` are 0.
    """
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise _convert_error(value, name, "expected a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise _convert_error(value, name, "duration cannot be negative")
        return int(value)
    if not isinstance(value, str):
        raise _convert_error(value, name, "expected a duration")
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    pos, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise _convert_error(value, name, f'time: invalid duration "{value}"')
    return int(total)


def go_duration(seconds: float) -> str:
    """Returns Go's ``time.Duration.String()`` of whole seconds: ``0s``, ``1m30s``, ``1h0m0s``."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rfc3339(timestamp: float) -> str:
    """Returns Go's RFC3339Nano text of a unix time in UTC (trailing zeros of the fraction cut)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def random_text(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def get_str(data: Mapping[str, Any], name: str, default: str = "") -> str:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise _convert_error(value, name, "expected a string")


def get_int(data: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _convert_error(value, name, "expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    raise _convert_error(value, name, "expected an integer")


def get_bool(data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "t", "false", "0", "f"):
        return value.strip().lower() in ("true", "1", "t")
    raise _convert_error(value, name, "expected a boolean")


def get_duration(data: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name)
    if value is None or value == "":
        return default
    return parse_duration(value, name)


def get_list(data: Mapping[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    """Returns a string list from a JSON list or a comma-separated string (Vault's CSV slice)."""
    value = data.get(name)
    if value is None:
        return list(default or [])
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(item).strip() for item in value if str(item).strip()]
    raise _convert_error(value, name, "expected a list of strings")


def get_map(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, dict):
        return dict(value)
    raise _convert_error(value, name, "expected a JSON object")
