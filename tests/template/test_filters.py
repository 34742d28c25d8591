"""Tests of injector.template.filters: each filter, and dotenv/shell/yaml output read back as its reader would."""

from __future__ import annotations

import base64
import io
import re
import shlex

import pytest
import yaml

from injector.errors import RenderError
from tests.template.helpers import (
    render,
    render_text,
)

_ESCAPES = {"n": "\n", "r": "\r"}


def read_dotenv_compose(text: str) -> dict[str, str]:
    """Reads a dotenv file as docker compose (compose-go, godotenv) does, for the values we write.

    Double quotes: the value ends at the first ``"`` not preceded by ``\\``; ``\\n`` and ``\\r``
    become newline and carriage return, ``\\X`` becomes X, and ``\\$`` a literal ``$``. A ``$``
    without a backslash before a name or ``{`` would be interpolated: that is a test failure here.
    Single quotes: literal up to the next ``'``.
    """
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        line_end = text.find("\n", pos)
        line = text[pos : line_end if line_end >= 0 else len(text)]
        if not line.strip() or line.lstrip().startswith("#"):
            pos = (line_end if line_end >= 0 else len(text)) + 1
            continue
        key, _, _ = line.partition("=")
        start = pos + len(key) + 1
        quote = text[start]
        if quote == "'":
            end = text.index("'", start + 1)
            out[key.strip()] = text[start + 1 : end]
        elif quote == '"':
            end = start + 1
            while text[end] != '"' or text[end - 1] == "\\":
                end += 1
            raw = text[start + 1 : end]
            assert not re.search(r"(?<!\\)\$[A-Za-z_{]", raw), f"{key} would be interpolated"
            out[key.strip()] = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw, flags=re.S)
        else:
            end = start + len(line) - len(key) - 2
            out[key.strip()] = line[len(key) + 1 :].strip()
        nl = text.find("\n", end)
        pos = (nl if nl >= 0 else len(text)) + 1
    return out


def dotenv_line(value: str) -> str:
    """Returns ``K=<value | dotenv_quote>`` and a newline, as a template writes it."""
    return "K=" + render_text('{{ secret("vault:s#v") | dotenv_quote }}', {"vault:s": {"v": value}}) + "\n"


DOTENV_VALUES = [
    ("plain", "s3cret"),
    ("spaces-and-hash", "a b # c"),
    ("double-quote", 'say "hi"'),
    ("single-quote", "it's"),
    ("backslash", "a\\nb\\c"),
    ("newline", "line1\nline2\r\n"),
    ("dollar", "pa$$word ${HOME} $USER"),
    ("dollar-and-quote", "it's $HOME"),
    ("dollar-and-backslash", "a\\$HOME"),
    ("unicode", "pässwörd ✓"),
    ("equals", "a=b=c"),
    ("empty", ""),
]


class TestFilters:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("{{ 'pé' | b64encode }}", base64.b64encode("pé".encode()).decode()),
            ("{{ 'cMOp' | b64decode }}", "pé"),
            ("{{ 'cMOp\n' | b64decode }}", "pé"),
            ("{{ '-_8' | b64decode | b64encode }}", "+/8="),
            ("{{ {'a': '<&>', 'b': [1, true, none]} | tojson }}", '{"a": "<&>", "b": [1, true, null]}'),
            ("{{ 'it\\'s \"x\"' | tojson }}", '"it\'s \\"x\\""'),
            ("{{ {'a': 1} | tojson(indent=2) }}", '{\n  "a": 1\n}'),
            ("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}", '{"a": 2, "b": 1}'),
            ("{{ ('{\"a\": [1]}' | fromjson).a[0] }}", "1"),
            ("{{ 'no' | toyaml }}", '"no"'),
            ("{{ 5 | toyaml }}|{{ true | toyaml }}", "5|true"),
            ("{{ {'a': 'x', 'b': [1, 2]} | toyaml }}", "a: x\nb:\n- 1\n- 2"),
            ('{{ "it\'s $x" | shell_quote }}', "'it'\"'\"'s $x'"),
            ("{{ 'p@ss:w/rd #%' | urlquote }}", "p%40ss%3Aw%2Frd%20%23%25"),
            ("{{ '42' | int + 1 }}", "43"),
            ("{{ '3.7' | int }}", "3"),
            ("{{ 'x' | int(default=7) }}", "7"),
            ("{{ 'ff' | int(base=16) }}", "255"),
            ("{{ '1.5' | float * 2 }}", "3.0"),
            ("{{ 'a\nb' | indent(2, first=true) }}", "  a\n  b"),
        ],
        ids=[
            "b64encode",
            "b64decode",
            "b64decode-whitespace",
            "b64decode-urlsafe",
            "tojson-no-html-escape",
            "tojson-quotes",
            "tojson-indent",
            "tojson-sort",
            "fromjson",
            "toyaml-string",
            "toyaml-scalars",
            "toyaml-block",
            "shell_quote",
            "urlquote",
            "int",
            "int-from-float",
            "int-default",
            "int-base",
            "float",
            "indent-builtin",
        ],
    )
    def test_filter(self, text: str, expected: str) -> None:
        """Each filter gives the documented output."""
        assert render_text(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("{{ 'not base64!' | b64decode }}", "not valid base64"),
            ("{{ 'x' | int }}", "int: a str that is not an integer in base 10"),
            ("{{ 'x' | float }}", "float: a str that is not a number"),
            ("{{ {'a': 1} | b64encode }}", "expects a string or bytes, got a mapping"),
            ("{{ '{x' | fromjson }}", "not valid JSON"),
            ("{{ {'a': 1} | shell_quote }}", "got a mapping; select a key"),
            ("{{ 'a\\x00b' | dotenv_quote }}", "NUL"),
            ("{{ 'ends\\\\' | dotenv_quote }}", "ending in a backslash"),
        ],
        ids=[
            "b64decode",
            "int",
            "float",
            "b64encode-mapping",
            "fromjson",
            "shell_quote-mapping",
            "dotenv-nul",
            "dotenv-backslash-end",
        ],
    )
    def test_filter_errors(self, text: str, message: str) -> None:
        """Filters fail loudly on bad input instead of writing something wrong."""
        with pytest.raises(RenderError, match=message):
            render(text)

    def test_tojson_of_binary(self) -> None:
        """tojson of a binary value says to use b64encode."""
        with pytest.raises(RenderError, match="b64encode"):
            render('{{ secret("file:/x") | tojson }}', {"file:/x": b"\xff"})

    def test_b64decode_binary_is_bytes(self) -> None:
        """b64decode of non-UTF-8 data gives bytes, which b64encode takes back."""
        assert render_text("{{ '/wA=' | b64decode | b64encode }}") == "/wA="

    @pytest.mark.parametrize("value", [v for _, v in DOTENV_VALUES], ids=[i for i, _ in DOTENV_VALUES])
    def test_dotenv_quote_compose_roundtrip(self, value: str) -> None:
        """docker compose (compose-go rules) reads a dotenv_quote'd value back unchanged."""
        assert read_dotenv_compose(dotenv_line(value)) == {"K": value}

    @pytest.mark.parametrize(
        "value",
        [v for i, v in DOTENV_VALUES if i not in ("dollar-and-quote", "dollar-and-backslash")],
        ids=[i for i, _ in DOTENV_VALUES if i not in ("dollar-and-quote", "dollar-and-backslash")],
    )
    def test_dotenv_quote_python_dotenv_roundtrip(self, value: str) -> None:
        """python-dotenv reads a dotenv_quote'd value back unchanged (rules 1 and 2).

        python-dotenv expands ``${NAME}`` whatever the quotes and has no escape for it, so a value
        holding ``${`` needs ``interpolate=False`` on the reading side.
        """
        dotenv = pytest.importorskip("dotenv")
        stream = io.StringIO(dotenv_line(value))
        assert dotenv.dotenv_values(stream=stream, interpolate="${" not in value) == {"K": value}

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("a$b", "'a$b'"), ('a"b', '"a\\"b"'), ("it's $x", '"it\'s \\$x"'), ("a\nb", '"a\\nb"')],
        ids=["rule2-single", "rule1-double", "rule3-escaped-dollar", "rule1-newline"],
    )
    def test_dotenv_quote_rules(self, value: str, expected: str) -> None:
        """dotenv_quote picks the documented form for each kind of value."""
        assert render_text('{{ secret("vault:s#v") | dotenv_quote }}', {"vault:s": {"v": value}}) == expected

    def test_shell_quote_roundtrip(self) -> None:
        """shlex.split reads a shell_quote'd value back unchanged."""
        value = "a 'b' \"c\" $d `e` \\f\n"
        out = render_text('X={{ secret("vault:s#v") | shell_quote }}', {"vault:s": {"v": value}})
        assert shlex.split(out) == [f"X={value}"]

    def test_toyaml_roundtrip(self) -> None:
        """yaml.safe_load reads toyaml output back, multi-line strings included."""
        data = {"cert": "-----BEGIN-----\nAAA\n-----END-----\n", "n": 1, "no": "no", "list": ["a: b", "1.0"]}
        text = "top:\n  {{ secret('vault:s') | toyaml | indent(2) }}\nquoted: {{ secret('vault:s').no | toyaml }}\n"
        assert yaml.safe_load(render_text(text, {"vault:s": data})) == {"top": data, "quoted": "no"}
