"""The redaction safety net: every registered value is masked in log text, JSON leaves included."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from injector import redact
from injector.logs import configure_logging
from injector.redact import MASK, RedactingFilter, escape_controls, register_value, scrub
from tests.fixtures.sentinel import SENTINEL


class TestScrub:
    def test_plain_value(self) -> None:
        """A registered string is masked wherever it appears."""
        register_value(SENTINEL + "-plain")
        assert scrub(f"x {SENTINEL}-plain y") == f"x {MASK} y"

    def test_values_inside_a_json_secret(self) -> None:
        """Each value of a JSON-object secret is masked on its own (a #KEY selects one of them)."""
        register_value(json.dumps({"password": SENTINEL + "-json", "port": 54321}))
        assert scrub(f"password is {SENTINEL}-json") == f"password is {MASK}"
        assert scrub("port 54321") == f"port {MASK}"

    def test_lines_of_a_multiline_value(self) -> None:
        """Each line of a PEM-like value is masked too."""
        register_value(f"-----BEGIN-----\n{SENTINEL}-line\n-----END-----")
        assert MASK in scrub(f"bad line: {SENTINEL}-line")

    def test_rebuilt_patterns_leave_no_value_in_the_re_cache(self) -> None:
        """The scrubber's pattern, rebuilt as values change, stays out of re's module cache."""
        for n in range(3):
            register_value(f"{SENTINEL}rebuiltvalue{n}")
            assert scrub(f"{SENTINEL}rebuiltvalue{n}") == MASK
        assert not [key for key in re._cache if "rebuiltvalue" in str(key)]  # type: ignore[attr-defined]

    def test_a_value_holding_another_is_masked_whole(self) -> None:
        """The longest value wins where one contains another, and every value of a line is masked."""
        register_value(f"{SENTINEL}-inner")
        register_value(f"outer-{SENTINEL}-inner-outer")
        register_value(f"{SENTINEL}-second")
        line = f"a outer-{SENTINEL}-inner-outer b {SENTINEL}-inner c {SENTINEL}-second"
        assert scrub(line) == f"a {MASK} b {MASK} c {MASK}"

    def test_a_line_without_values_compiles_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Only the values found in a line make its pattern: a line with none costs substring tests,
        not a pattern of every registered value (rebuilt after each change of the values)."""
        compiled: list[str] = []
        real = redact._compile
        monkeypatch.setattr(redact, "_compile", lambda pattern, flags: compiled.append(pattern) or real(pattern, flags))
        for n in range(50):
            register_value(f"{SENTINEL}-many-{n:03d}")
        line = "published snapshot ..2026 (2 files, 2 changed)"
        assert scrub(line) == line
        assert compiled == []
        assert scrub(f"oops {SENTINEL}-many-007") == f"oops {MASK}"
        assert len(compiled) == 1 and "many\\-007" in compiled[0] and "many\\-008" not in compiled[0]

    def test_short_values_are_left_alone(self) -> None:
        """Values under four characters would garble every message, so they are not scrubbed."""
        register_value("abc")
        assert scrub("abc") == "abc"


def test_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    """A log record carrying a registered value is masked by the filter, args included."""
    register_value(SENTINEL + "-log")
    logger = logging.getLogger("tests.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("got %s", SENTINEL + "-log")
    assert SENTINEL not in caplog.text
    assert MASK in caplog.text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_control_characters_are_escaped(fmt: str) -> None:
    """Newlines, carriage returns, ESC and C1 controls in a message, its args and its error become
    escapes: no forged line, in the text format (the error on its own line) and the JSON format."""
    stream = io.StringIO()
    configure_logging("debug", fmt, stream)
    try:
        logger = logging.getLogger("tests.redact.controls")
        try:
            raise ValueError("bad\nERROR forged")
        except ValueError:
            logger.exception("key %r and %s", "a\nINFO forged", "b\r\x1b[2J\x9b\x00\x7f")
    finally:
        logging.getLogger().removeHandler(logging.getLogger().handlers[-1])
    text = stream.getvalue()
    assert text.splitlines()[1:] == (["ValueError: bad\\nERROR forged"] if fmt == "text" else [])
    for char in "\r\x1b\x9b\x00\x7f":
        assert char not in text
    assert "b\\r\\x1b[2J\\x9b\\x00\\x7f" in (json.loads(text)["message"] if fmt == "json" else text)


def test_escape_controls_keeps_printable_text() -> None:
    """Printable text, unicode included, is unchanged; tabs and newlines become \\t and \\n."""
    assert escape_controls("é ü 日本 \t\n") == "é ü 日本 \\t\\n"
