"""Durations and file modes as people write them in YAML and flags: ``500ms``, ``1m30s``, ``"0440"``."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration", "parse_mode"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Returns seconds for ``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s`` or a bare number of seconds.

    Raises:
        ValueError: with a message saying what is expected; callers prefix the field path.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 500ms, 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 500ms, 30s, 5m or 1h, got {type(value).__name__}")
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        total = float(text)
    else:
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"expected a duration such as 500ms, 30s, 5m or 1h, got {value!r}")
    if not math.isfinite(total):  # thousands of digits overflow a float
        raise ValueError(f"a duration must be a finite number of seconds, got {len(text)} characters of digits")
    return total


def format_duration(seconds: float) -> str:
    """Returns a short human form of a duration (``250ms``, ``42s``, ``5m``, ``1h30m``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs else "")


def parse_mode(value: object) -> int:
    """Returns a permission mode from ``"0440"``, ``"440"``, ``"0o440"`` or the int 0o440.

    YAML reads an unquoted ``0440`` as the octal int 288, which is what the user meant; a decimal
    int such as 440 is refused because it would be a surprising mode.
    """
    if isinstance(value, bool):
        raise ValueError(f'expected an octal file mode such as "0440", got {value!r}')
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o|0)?[0-7]{3,4}", value.strip()):
        text = value.strip()
        mode = int(text[2:] if text.startswith("0o") else text, 8)
    else:
        raise ValueError(f'expected an octal file mode such as "0440", got {value!r}')
    if not 0 <= mode <= 0o7777:
        raise ValueError(f'expected an octal file mode such as "0440", got {value!r}')
    return mode
