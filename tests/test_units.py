"""Durations and modes as people write them."""

from __future__ import annotations

import pytest

from injector.units import format_duration, parse_duration, parse_mode


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("2", 2), (1.5, 1.5), ("1d", 86400)],
        ids=str,
    )
    def test_accepts(self, text: object, seconds: float) -> None:
        """Each documented unit and a bare number of seconds parse."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "5 minutes", "m5", "-1", "1x", True, None, [1]], ids=repr)
    def test_refuses(self, text: object) -> None:
        """Anything else says what is expected."""
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_duration(text)

    @pytest.mark.parametrize("text", ["9" * 400, "9" * 400 + "h", "9" * 400 + ".5s"], ids=len)
    def test_refuses_what_overflows_a_float(self, text: str) -> None:
        """Hundreds of digits are an error, not an infinite timeout (and the message does not echo them)."""
        with pytest.raises(ValueError, match="finite") as caught:
            parse_duration(text)
        assert len(str(caught.value)) < 120

    def test_format(self) -> None:
        """Durations print short."""
        assert [format_duration(s) for s in (0.25, 42, 300, 5400)] == ["250ms", "42s", "5m", "1h30m"]


class TestParseMode:
    @pytest.mark.parametrize(("value", "mode"), [("0440", 0o440), ("440", 0o440), ("0o600", 0o600), (0o640, 0o640)])
    def test_accepts(self, value: object, mode: int) -> None:
        """Quoted octal strings and YAML's octal ints are modes."""
        assert parse_mode(value) == mode

    @pytest.mark.parametrize("value", ["rw-r--r--", "0999", True, "12"])
    def test_refuses(self, value: object) -> None:
        """Anything that is not an octal mode is refused."""
        with pytest.raises(ValueError, match="octal"):
            parse_mode(value)
