"""Tests of injector.template.values: what a template sees for a secret (strings, maps, lists, binary, missing keys)."""

from __future__ import annotations

import json

import pytest

from injector.errors import NotFoundError, RenderError
from injector.refs import Reference, Secret, parse_reference
from tests.fixtures.sentinel import SENTINEL
from tests.template.helpers import (
    APP,
    compile_text,
    make_renderer,
    render,
    render_text,
)


class TestSecretFunction:
    def test_key_reference_gives_string(self) -> None:
        """secret("…#KEY") gives the value of that key."""
        assert render_text('{{ secret("vault:secret/app#user") }}', {"vault:secret/app": APP}) == "bob"

    @pytest.mark.parametrize(
        "expression",
        ['secret("vault:secret/app").user', 'secret("vault:secret/app")["user"]'],
        ids=["attribute", "item"],
    )
    def test_whole_reference_gives_mapping(self, expression: str) -> None:
        """A whole mapping secret is reached by attribute or by item."""
        assert render_text(f"{{{{ {expression} }}}}", {"vault:secret/app": APP}) == "bob"

    def test_mapping_prints_compact_json(self) -> None:
        """A whole mapping secret prints as compact JSON."""
        out = render_text('{{ secret("vault:secret/app") }}', {"vault:secret/app": {"a": "1", "b": {"c": [1, None]}}})
        assert out == '{"a":"1","b":{"c":[1,null]}}'

    def test_json_string_is_a_mapping(self) -> None:
        """A whole secret holding a JSON object string (Secrets Manager) is a mapping."""
        values = {"aws-sm:prod/db": json.dumps({"password": "pw", "port": 5432})}
        assert render_text(
            '{{ secret("aws-sm:prod/db").password }}:{{ secret("aws-sm:prod/db").port + 1 }}', values
        ) == ("pw:5433")

    def test_json_string_key_reference(self) -> None:
        """A #KEY of a JSON-string secret gives that key."""
        assert render_text('{{ secret("aws-sm:prod/db#password") }}', {"aws-sm:prod/db": '{"password": "pw"}'}) == "pw"

    def test_scalar_whole_secret_is_string(self) -> None:
        """A whole secret that is not a mapping is its string."""
        assert render_text('{{ secret("aws-ssm:/app/host") }}', {"aws-ssm:/app/host": "db.internal"}) == "db.internal"

    def test_list_prints_json(self) -> None:
        """A list inside a secret prints as JSON and works with list filters."""
        values = {"vault:pki/issue/web": {"ca_chain": ["a", "b"]}}
        text = '{% set s = secret("vault:pki/issue/web") %}{{ s.ca_chain }}|{{ s.ca_chain | join }}'
        assert render_text(text, values) == '["a","b"]|ab'

    def test_utf8_bytes_are_text(self) -> None:
        """A bytes value that is UTF-8 is used as text."""
        assert render_text('{{ secret("file:/x") }}', {"file:/x": "é".encode()}) == "é"

    def test_binary_bytes_refused_as_text(self) -> None:
        """A non-UTF-8 bytes value printed as text is an error that says to use b64encode."""
        with pytest.raises(RenderError, match=r"b64encode"):
            render('{{ secret("file:/x") }}', {"file:/x": b"\xff\x00"})

    def test_binary_bytes_b64encode(self) -> None:
        """A non-UTF-8 bytes value goes through | b64encode."""
        assert render_text('{{ secret("file:/x") | b64encode }}', {"file:/x": b"\xff\x00"}) == "/wA="

    def test_params_reach_the_lookup(self) -> None:
        """Keyword arguments become the reference's parameters, so the runner fetches with them."""
        seen: list[Reference] = []

        def lookup(ref: Reference) -> Secret:
            seen.append(ref)
            return Secret({"certificate": "CERT"})

        renderer = make_renderer()
        compiled = compile_text(
            renderer, '{{ secret("vault:pki/issue/web", common_name="a.b", ttl="1h").certificate }}'
        )
        assert renderer.render(compiled, lookup).content == b"CERT"
        assert seen == [parse_reference("vault:pki/issue/web?ttl=1h&common_name=a.b")]

    def test_params_with_variable(self) -> None:
        """A keyword argument from a variable is merged into the reference at render time."""
        values = {"vault:pki/issue/web?common_name=a.b": {"certificate": "C"}}
        text = '{% set cn = "a.b" %}{{ secret("vault:pki/issue/web", common_name=cn).certificate }}'
        assert render_text(text, values) == "C"

    def test_param_given_twice_refused(self) -> None:
        """A parameter in both the reference and a keyword argument is refused."""
        with pytest.raises(RenderError, match="given twice"):
            render('{% set t = "1h" %}{{ secret("vault:pki/issue/web?ttl=2h", ttl=t) }}')

    def test_non_string_reference_refused(self) -> None:
        """secret() of something that is not a string says what it expects."""
        with pytest.raises(RenderError, match=r"secret\(\) expects a reference .* got int"):
            render("{{ secret(42) }}")

    def test_undefined_reference_names_variable(self) -> None:
        """secret() of an undefined variable names the variable."""
        with pytest.raises(RenderError, match="'nope' is undefined"):
            render("{{ secret(nope) }}")

    def test_values_are_not_templates(self) -> None:
        """A value containing template syntax is written literally, never evaluated."""
        payload = "{{ 7*7 }}{% for x in range(3) %}{{ x }}{% endfor %}{{ ''.__class__ }}"
        assert render_text('{{ secret("vault:secret/app#v") }}', {"vault:secret/app": {"v": payload}}) == payload


class TestMissingKeys:
    @pytest.mark.parametrize(
        "expression",
        [
            'secret("vault:secret/app").pasword',
            'secret("vault:secret/app")["pasword"]',
            'secret("vault:secret/app#pasword")',
        ],
        ids=["attribute", "item", "key-reference"],
    )
    def test_missing_key_names_reference_and_keys(self, expression: str) -> None:
        """A missing key is a NotFoundError naming the reference and the keys, never a value."""
        with pytest.raises(
            NotFoundError,
            match=r"templates\[0\] \(app.env\): line 1: vault:secret/app.*"
            r"key 'pasword' not found \(keys: password, user\)",
        ) as info:
            render(f"{{{{ {expression} }}}}", {"vault:secret/app": APP})
        assert SENTINEL not in str(info.value)

    def test_key_names_are_one_line(self) -> None:
        """Key names holding control characters are escaped in a missing-key message (no forged lines)."""
        values = {"vault:secret/app": {"a\nERROR forged": {"b": 1}, "\x1b[2J": 2}}
        with pytest.raises(NotFoundError) as info:
            render('{{ secret("vault:secret/app")["a\\nERROR forged"].nope }}', values)
        assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
        assert "a\\nERROR forged" in str(info.value)

    def test_missing_nested_key(self) -> None:
        """A missing key of a nested mapping names the path to it."""
        with pytest.raises(NotFoundError, match=r"vault:secret/app#db: key 'hots' not found \(keys: host\)"):
            render('{{ secret("vault:secret/app").db.hots }}', {"vault:secret/app": {"db": {"host": "h"}}})

    def test_get_is_the_optional_way(self) -> None:
        """.get(key, default) reads an optional key without an error."""
        assert render_text('{{ secret("vault:secret/app").get("port", "5432") }}', {"vault:secret/app": APP}) == "5432"

    def test_null_is_not_printed(self) -> None:
        """Printing null (None) is an error, not the text "None"."""
        with pytest.raises(RenderError, match=r"printed null"):
            render('{{ secret("vault:secret/app").get("port") }}', {"vault:secret/app": APP})

    def test_undefined_variable_names_it(self) -> None:
        """An undefined variable is an error naming it (StrictUndefined), never an empty string."""
        with pytest.raises(RenderError, match=r"line 2: 'db_host' is undefined"):
            render("a\n{{ db_host }}")

    def test_undefined_attribute_of_string(self) -> None:
        """An attribute of a string value is an error, not an empty string."""
        with pytest.raises(RenderError, match="has no attribute 'nope'"):
            render('{{ secret("vault:secret/app#user").nope }}', {"vault:secret/app": APP})
