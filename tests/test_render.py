"""Tests for injector.render and injector.filters, with an in-memory lookup (no backend)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shlex
import textwrap
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from injector.config.model import LimitsConfig, TemplateConfig
from injector.errors import ConfigError, NotFoundError, RenderError, UnavailableError
from injector.refs import Reference, Secret, parse_reference
from injector.template.render import CompiledTemplate, Renderer, RenderResult
from tests.fixtures.sentinel import SENTINEL

Values = Mapping[str, Any]

APP = {"password": SENTINEL, "user": "bob"}


def make_renderer(
    *,
    secrets: Mapping[str, str] | None = None,
    limits: LimitsConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> Renderer:
    return Renderer(
        secrets={name: parse_reference(text) for name, text in (secrets or {}).items()},
        limits=limits or LimitsConfig(),
        environ=environ if environ is not None else {},
    )


def compile_text(renderer: Renderer, text: str, *, destination: str = "app.env", index: int = 0) -> CompiledTemplate:
    return renderer.compile(TemplateConfig(where=f"templates[{index}]", destination=destination, contents=text))


def lookup_of(values: Values) -> Callable[[Reference], Secret]:
    """A lookup over ``{reference text: value}``, keyed by base reference as the runner's cache is."""
    table = {parse_reference(text).base: Secret(value) for text, value in values.items()}

    def lookup(ref: Reference) -> Secret:
        return table[ref]

    return lookup


def render(
    text: str,
    values: Values | None = None,
    *,
    secrets: Mapping[str, str] | None = None,
    limits: LimitsConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> RenderResult:
    renderer = make_renderer(secrets=secrets, limits=limits, environ=environ)
    return renderer.render(compile_text(renderer, text), lookup_of(values or {}))


def render_text(text: str, values: Values | None = None, **options: Any) -> str:
    result = render(text, values, **options)
    assert not result.missing
    return result.content.decode("utf-8")


def refs(*texts: str) -> frozenset[Reference]:
    return frozenset(parse_reference(t).base for t in texts)


def exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


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


class TestCompile:
    def test_contents_compile(self) -> None:
        """A contents: template compiles and keeps its TemplateConfig for the runner."""
        renderer = make_renderer()
        compiled = compile_text(renderer, "x={{ 1 }}\n")
        assert compiled.template.destination == "app.env"
        assert compiled.label == "templates[0] (app.env)"

    def test_source_file_is_read(self, tmp_path: Path) -> None:
        """A source: template is read from its file."""
        source = tmp_path / "app.env.j2"
        source.write_text("A={{ 'b' }}\n", encoding="utf-8")
        renderer = make_renderer()
        compiled = renderer.compile(TemplateConfig(where="templates[0]", destination="a", source=source))
        assert renderer.render(compiled, lookup_of({})).content == b"A=b\n"

    def test_missing_source_is_a_config_error_naming_the_file(self, tmp_path: Path) -> None:
        """A source file that does not exist is a ConfigError (exit 11) naming the template and the file."""
        source = tmp_path / "missing.j2"
        with pytest.raises(ConfigError, match=r"templates\[2\] \(app.env\): template file not found: .*missing.j2"):
            make_renderer().compile(TemplateConfig(where="templates[2]", destination="app.env", source=source))

    def test_unreadable_source_names_the_file(self, tmp_path: Path) -> None:
        """A source that exists but cannot be read (a folder) is a RenderError naming the template and the file."""
        with pytest.raises(RenderError, match=r"templates\[2\] \(app.env\): cannot read template .*"):
            make_renderer().compile(TemplateConfig(where="templates[2]", destination="app.env", source=tmp_path))

    def test_contents_given_with_source_are_the_sources_text(self, tmp_path: Path) -> None:
        """source plus contents renders the contents (the source's text, read already) and reads no file."""
        source = tmp_path / "not-on-disk.j2"
        renderer = make_renderer()
        compiled = renderer.compile(
            TemplateConfig(where="templates[0]", destination="a", source=source, contents="A={{ 'b' }}\n")
        )
        assert renderer.render(compiled, lookup_of({})).content == b"A=b\n"

    def test_syntax_error_names_template_and_line(self) -> None:
        """A syntax error names templates[i] (destination) and the line."""
        renderer = make_renderer()
        with pytest.raises(RenderError, match=r"^templates\[1\] \(app.env\): line 3: unexpected '}'") as info:
            compile_text(renderer, "a\nb\n{% if x }}\n", index=1)
        assert info.value.__context__ is None and info.value.__cause__ is None

    def test_syntax_error_in_source_names_the_file(self, tmp_path: Path) -> None:
        """A syntax error in a source file names the file too."""
        source = tmp_path / "bad.j2"
        source.write_text("{% if %}", encoding="utf-8")
        with pytest.raises(RenderError, match=r"templates\[0\] \(x\): .*bad.j2: line 1: "):
            make_renderer().compile(TemplateConfig(where="templates[0]", destination="x", source=source))

    def test_unknown_filter_fails_at_compile(self) -> None:
        """An unknown filter is found when compiling, not at the first render."""
        with pytest.raises(RenderError, match="No filter named 'nope'"):
            compile_text(make_renderer(), "{{ 1 | nope }}")

    def test_include_is_refused(self) -> None:
        """There is no loader: a template cannot read other files."""
        with pytest.raises(RenderError, match="no loader"):
            render("{% include '/etc/passwd' %}")

    def test_raw_template_has_no_jinja(self) -> None:
        """A secret: template compiles to raw bytes output, no Jinja template."""
        template = TemplateConfig(where="templates[0]", destination="k", secret=parse_reference("file:/k#a"))
        assert make_renderer().compile(template).jinja is None


class TestStaticRefs:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{{ secret("vault:secret/app#password") }}', ["vault:secret/app"]),
            ('{{ secret("vault:secret/app#a") }}{{ secret("vault:secret/app#b") }}', ["vault:secret/app"]),
            ('{{ secret("vault:secret/app?refresh=30s#a") }}', ["vault:secret/app"]),
            ('{{ secret("aws-sm:prod/db").password }}', ["aws-sm:prod/db"]),
            ('{{ secret("vault:" ~ "secret/app") }}', ["vault:secret/app"]),
            (
                '{{ secret("vault:pki/issue/web", common_name="a.example.com", ttl="72h") }}',
                ["vault:pki/issue/web?common_name=a.example.com&ttl=72h"],
            ),
            (
                '{{ secret("vault:pki/issue/web", alt_names=["a", "b"], common_name="c") }}',
                ["vault:pki/issue/web?alt_names=a,b&common_name=c"],
            ),
            ('{{ secrets.db.username }}{{ secrets["app"] }}', ["vault:database/creds/app", "vault:secret/app"]),
            ('{% if false %}{{ secret("env:HOME") }}{% endif %}', ["env:HOME"]),
            ('{{ secret(name) }}{{ secret("vault:pki/issue/web", common_name=host) }}', []),
            ("{{ secrets[name] }}", []),
        ],
        ids=[
            "literal",
            "keys-share-a-base",
            "refresh-dropped",
            "attribute",
            "constant-concat",
            "kwargs-params",
            "kwargs-list",
            "secrets-names",
            "dead-branch",
            "dynamic",
            "dynamic-name",
        ],
    )
    def test_found_without_rendering(self, text: str, expected: list[str]) -> None:
        """Literal references are found by walking the AST, as base references."""
        renderer = make_renderer(secrets={"db": "vault:database/creds/app", "app": "vault:secret/app"})
        assert renderer.static_refs(compile_text(renderer, text)) == refs(*expected)

    def test_raw_template_ref(self) -> None:
        """A secret: template's static reference is its base reference."""
        renderer = make_renderer()
        template = TemplateConfig(where="templates[0]", destination="k", secret=parse_reference("aws-sm:ks#p12"))
        assert renderer.static_refs(renderer.compile(template)) == refs("aws-sm:ks")

    def test_bad_literal_reference(self) -> None:
        """A bad literal reference is a RenderError naming the template and line and quoting the reference."""
        renderer = make_renderer()
        compiled = compile_text(renderer, 'a\n{{ secret("vault:/abs#x") }}')
        with pytest.raises(RenderError, match=r"templates\[0\] \(app.env\): line 2: bad reference 'vault:/abs#x'"):
            renderer.static_refs(compiled)

    def test_bad_literal_param(self) -> None:
        """A keyword argument the scheme does not take is refused with the allowed ones."""
        renderer = make_renderer()
        compiled = compile_text(renderer, '{{ secret("aws-sm:x", common_name="a") }}')
        with pytest.raises(RenderError, match="unknown parameter 'common_name'"):
            renderer.static_refs(compiled)

    def test_unknown_secrets_name(self) -> None:
        """secrets.NAME that the config does not declare lists the declared names."""
        renderer = make_renderer(secrets={"db": "vault:database/creds/app", "app": "vault:secret/app"})
        compiled = compile_text(renderer, "{{ secrets.dbb }}")
        with pytest.raises(RenderError, match=r"secrets.dbb: no such name .*\(app, db\)"):
            renderer.static_refs(compiled)


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


class TestSecretsNames:
    def test_attribute_and_item(self) -> None:
        """secrets.NAME and secrets["NAME"] resolve the config's references."""
        out = render_text(
            "{{ secrets.app.user }} {{ secrets['pw'] }}",
            {"vault:secret/app": APP},
            secrets={"app": "vault:secret/app", "pw": "vault:secret/app#user"},
        )
        assert out == "bob bob"

    @pytest.mark.parametrize("expression", ["secrets.nope", "secrets['nope']"], ids=["attribute", "item"])
    def test_unknown_name_at_render(self, expression: str) -> None:
        """An unknown name is an error listing the declared names."""
        with pytest.raises(RenderError, match=r"secrets.nope: no such name .*\(app\)"):
            render(f"{{{{ {expression} }}}}", secrets={"app": "vault:secret/app"})


class TestEnv:
    def test_set_variable(self) -> None:
        """env(NAME) gives the variable's value."""
        assert render_text("{{ env('REGION') }}", environ={"REGION": "eu-west-1"}) == "eu-west-1"

    def test_default(self) -> None:
        """env(NAME, default) gives the default when the variable is unset."""
        assert render_text("{{ env('REGION', 'us-east-1') }}") == "us-east-1"

    def test_unset_without_default(self) -> None:
        """env(NAME) of an unset variable is an error naming it."""
        with pytest.raises(RenderError, match=r"env\('REGION'\): the variable is not set"):
            render("{{ env('REGION') }}")


class TestLookupFlow:
    def test_unfetched_reference_is_missing(self) -> None:
        """A reference the lookup does not have is reported in missing, with empty content."""
        result = render('{{ secret("vault:secret/app#password") }}')
        assert result.missing == refs("vault:secret/app")
        assert result.content == b""

    def test_refs_are_base_references_used(self) -> None:
        """refs lists the base references the render used."""
        result = render(
            '{{ secret("vault:secret/app#user") }}{{ secret("vault:secret/app?refresh=1m#user") }}',
            {"vault:secret/app": APP},
        )
        assert result.refs == refs("vault:secret/app")
        assert result.missing == frozenset()

    def test_collects_several_missing_in_one_pass(self) -> None:
        """Independent unfetched references are all reported by one render."""
        result = render('{{ secret("vault:a#x") }}{{ secret("vault:b").y }}{{ secrets.c }}', secrets={"c": "env:C"})
        assert result.missing == refs("vault:a", "vault:b", "env:C")

    def test_dynamic_reference_found_in_second_pass(self) -> None:
        """A reference built from another secret is missing after the first, and renders in the next pass."""
        renderer = make_renderer()
        compiled = compile_text(renderer, '{{ secret("vault:secret/" ~ secret("vault:secret/app#user") ~ "#k") }}')
        assert renderer.static_refs(compiled) == refs("vault:secret/app")
        values: dict[str, Any] = {"vault:secret/app": APP}
        first = renderer.render(compiled, lookup_of(values))
        assert first.missing == refs("vault:secret/bob")
        values["vault:secret/bob"] = {"k": "v"}
        second = renderer.render(compiled, lookup_of(values))
        assert (second.content, second.missing) == (b"v", frozenset())

    def test_pending_value_never_builds_a_reference(self) -> None:
        """A reference built from a value not fetched yet is not reported: the render stops there."""
        result = render('{{ secret("vault:secret/" ~ secret("vault:missing#name")) }}')
        assert result.missing == refs("vault:missing")

    def test_pending_value_never_picks_a_branch(self) -> None:
        """A comparison with a value not fetched yet stops the render instead of taking a branch."""
        text = '{% if secret("vault:missing#mode") == "a" %}{{ secret("vault:a") }}{% else %}{{ secrets.b }}{% endif %}'
        assert render(text, secrets={"b": "vault:b"}).missing == refs("vault:missing")

    def test_pending_value_attribute_chain(self) -> None:
        """Printing an attribute of a value not fetched yet keeps looking for other references."""
        result = render('{{ secret("vault:one").a.b }}{{ secret("vault:two#c") | b64encode }}')
        assert result.missing == refs("vault:one", "vault:two")

    def test_pending_value_method_chain(self) -> None:
        """.get() on a value not fetched yet keeps looking for other references."""
        result = render('{{ secret("vault:one").get("a", "b") }}{{ secret("vault:two#c") }}')
        assert result.missing == refs("vault:one", "vault:two")

    def test_source_error_propagates_unchanged(self) -> None:
        """A SourceError from the lookup propagates as the same object."""
        error = UnavailableError("vault:secret/app: connection refused", ref="vault:secret/app")

        def lookup(ref: Reference) -> Secret:
            raise error

        renderer = make_renderer()
        with pytest.raises(UnavailableError) as info:
            renderer.render(compile_text(renderer, '{{ secret("vault:secret/app#user") }}'), lookup)
        assert info.value is error

    def test_raw_template_missing(self) -> None:
        """A secret: template whose reference is not fetched reports it missing."""
        renderer = make_renderer()
        template = TemplateConfig(where="templates[0]", destination="k", secret=parse_reference("aws-sm:ks"))
        result = renderer.render(renderer.compile(template), lookup_of({}))
        assert (result.missing, result.refs, result.content) == (refs("aws-sm:ks"), refs("aws-sm:ks"), b"")


class TestRawTemplates:
    def render_raw(self, ref: str, values: Values, limits: LimitsConfig | None = None) -> RenderResult:
        renderer = make_renderer(limits=limits)
        template = TemplateConfig(where="templates[3]", destination="keystore.p12", secret=parse_reference(ref))
        return renderer.render(renderer.compile(template), lookup_of(values))

    @pytest.mark.parametrize(
        ("ref", "value", "expected"),
        [
            ("file:/ks", b"\x00\xff\xfe", b"\x00\xff\xfe"),
            ("file:/ks", "pé", "pé".encode()),
            ("aws-sm:ks#p12", {"p12": "abc"}, b"abc"),
            ("aws-sm:json", '{"a": 1}', b'{"a": 1}'),
        ],
        ids=["bytes", "text", "key", "json-string-as-is"],
    )
    def test_writes_value_bytes(self, ref: str, value: Any, expected: bytes) -> None:
        """A raw template writes the selected value's bytes, untemplated."""
        result = self.render_raw(ref, {ref.split("#")[0]: value})
        assert (result.content, result.refs) == (expected, refs(ref))

    def test_mapping_refused(self) -> None:
        """A mapping value is refused with a hint to select a #KEY."""
        with pytest.raises(RenderError, match=r"templates\[3\] \(keystore.p12\): .*mapping \(keys: a, b\).*#KEY"):
            self.render_raw("vault:secret/ks", {"vault:secret/ks": {"a": "1", "b": "2"}})

    def test_missing_key(self) -> None:
        """A missing #KEY is a NotFoundError naming the template and the keys."""
        with pytest.raises(NotFoundError, match=r"templates\[3\].*key 'p13' not found \(keys: p12\)"):
            self.render_raw("vault:secret/ks#p13", {"vault:secret/ks": {"p12": "x"}})

    def test_size_limit(self) -> None:
        """A value over max_output_bytes is refused."""
        with pytest.raises(RenderError, match="max_output_bytes"):
            self.render_raw("file:/big", {"file:/big": b"x" * 11}, LimitsConfig(max_output_bytes=10))


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
            ("{{ 'x' | int }}", "invalid literal for int"),
            ("{{ 'x' | float }}", "could not convert"),
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


SANDBOX_ESCAPES = [
    ("mro", "{{ ''.__class__.__mro__ }}"),
    ("subclasses", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    ("list-base", "{{ [].__class__.__base__.__subclasses__() }}"),
    ("globals-cycler", "{{ cycler.__init__.__globals__.os }}"),
    ("globals-self", "{{ self.__init__.__globals__ }}"),
    ("globals-function", "{{ secret.__globals__ }}"),
    ("bound-self", "{{ secret.__self__ }}"),
    ("format-class", '{{ "{0.__class__}".format(1) }}'),
    ("format-map", '{{ "{x.__class__.__mro__}".format_map({"x": 1}) }}'),
    ("attr-filter", "{{ ''|attr('__class__') }}"),
    ("private-attr", "{{ secrets._renderer }}"),
    ("dict-mutation", "{{ {}.update(a=1) }}"),
    ("big-range", "{{ range(10**9) | list | length }}"),
    ("big-pow", "{{ 2 ** 100000000 }}"),
    ("big-repeat", "{{ 'a' * 10**9 }}"),
    ("big-ljust", "{{ 'x'.ljust(10**9) }}"),
    ("big-format-width", '{{ "{:>999999999}".format("x") }}'),
    ("big-percent-width", '{{ "%999999999s" % "x" }}'),
    ("big-center", "{{ 'x' | center(10**9) }}"),
    (
        "concat-doubling",
        '{% set ns = namespace(x="ab") %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}',
    ),
    ("lipsum", "{{ lipsum(n=100000) }}"),
]


class TestSandbox:
    @pytest.mark.parametrize("payload", [p for _, p in SANDBOX_ESCAPES], ids=[i for i, _ in SANDBOX_ESCAPES])
    def test_escape_is_refused(self, payload: str) -> None:
        """Known sandbox escapes and resource bombs fail with a RenderError and never run."""
        with pytest.raises(RenderError) as info:
            render(payload, limits=LimitsConfig(max_output_bytes=1 << 20, render_timeout=5.0))
        assert info.value.__context__ is None


class TestLimits:
    def test_output_size_stops_early(self) -> None:
        """Output over max_output_bytes is a RenderError, raised while generating, not at the end."""
        calls = 0

        def lookup(ref: Reference) -> Secret:
            nonlocal calls
            calls += 1
            return Secret({"v": "x" * 10})

        renderer = make_renderer(limits=LimitsConfig(max_output_bytes=100))
        compiled = compile_text(renderer, '{% for i in range(1000) %}{{ secret("vault:s#v") }}\n{% endfor %}')
        with pytest.raises(RenderError, match=r"larger than limits.max_output_bytes \(100 bytes\)"):
            renderer.render(compiled, lookup)
        assert calls < 20

    def test_render_timeout(self) -> None:
        """A render that takes longer than render_timeout is a RenderError."""
        text = (
            "{% for i in range(300) %}{% for j in range(300) %}{% if i ~ j == 'x' %}{% endif %}{% endfor %}{% endfor %}"
        )
        with pytest.raises(RenderError, match=r"longer than limits.render_timeout \(0.001s\)"):
            render(text, limits=LimitsConfig(render_timeout=0.001))

    def test_recursion(self) -> None:
        """A macro that calls itself forever is a RenderError, not a crash."""
        with pytest.raises(RenderError, match="recursion too deep"):
            render("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}")

    def test_range_budget_per_render(self) -> None:
        """Nested ranges share one budget per render."""
        with pytest.raises(RenderError, match=r"range\(\): more than 100000 items"):
            render("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}")

    def test_captured_text_counts(self) -> None:
        """Text captured by {% set %} blocks counts toward a bound on work, not only the output."""
        text = "{% set x %}{% for i in range(5000) %}{{ i ~ 'abcdefgh' }}{% endfor %}{% endset %}{{ x | length }}"
        with pytest.raises(RenderError, match=r"16 x limits\.max_output_bytes"):
            render(text, limits=LimitsConfig(max_output_bytes=1000))


SMALL = LimitsConfig(max_output_bytes=10_000, render_timeout=5.0)
OVER_LIMIT = r"would exceed limits\.max_output_bytes \(10000 bytes\)"


def refused(text: str, what: str, values: Values | None = None) -> RenderError:
    """Renders ``text`` with a 10 000-byte output limit; it must fail with ``what`` over the limit."""
    with pytest.raises(RenderError, match=f"blocked by the sandbox: {re.escape(what)} {OVER_LIMIT}") as info:
        render(text, values, limits=SMALL)
    return info.value


class TestSizeLimits:
    """Calls whose result would be over the output limit are refused before Python makes it."""

    def test_nested_format_width(self) -> None:
        """A width given by a nested field (``{0:{1}}``) is resolved, then checked."""
        refused('{{ "{0:{1}}".format("x", "20000") }}', "a format width or precision")

    def test_nested_format_precision(self) -> None:
        """A float precision given by a nested field is checked too."""
        refused('{{ "{0:.{1}f}".format(1.5, 20000) }}', "a format width or precision")

    def test_repeated_format_fields(self) -> None:
        """A field repeated many times counts each time."""
        refused('{{ ("{0}" * 100).format("x" * 1000) }}', "str.format")

    def test_format_map_repeated_fields(self) -> None:
        """format_map is checked like format."""
        refused('{{ ("{a}" * 100).format_map({"a": "x" * 1000}) }}', "str.format")

    def test_format_conversion_of_a_large_container(self) -> None:
        """``{0!s}`` of a list whose text is over the limit is refused before str() makes it."""
        refused('{{ "{0!s}".format(["x" * 1000] * 100) }}', "str.format")

    def test_percent_repeated_named_fields(self) -> None:
        """``%(a)s`` repeated counts each time."""
        refused('{{ ("%(a)s" * 100) % {"a": "x" * 1000} }}', "a % result")

    def test_percent_star_width(self) -> None:
        """A ``*`` width taken from the arguments is checked, negative (left-aligned) too."""
        refused('{{ "%*s" % (-20000, "x") }}', "a width or count")

    def test_format_filter_repeated_fields(self) -> None:
        """The format filter (printf-style) counts each conversion."""
        refused('{{ "%s%s%s%s%s%s%s%s%s%s%s" | format(*(["x" * 1000] * 11)) }}', "the format filter")

    def test_str_replace_expansion(self) -> None:
        """str.replace counts the growth of every occurrence."""
        refused('{{ ("x" * 1000).replace("x", "yy" * 10) }}', "str.replace")

    def test_str_replace_with_empty_old(self) -> None:
        """An empty ``old`` occurs len(s) + 1 times."""
        refused('{{ ("x" * 1000).replace("", "y" * 10) }}', "str.replace")

    def test_str_replace_count_is_respected(self) -> None:
        """A replace limited by ``count`` is only charged for that many occurrences."""
        assert render_text('{{ ("x" * 1000).replace("x", "y" * 100, 5) | length }}', limits=SMALL) == "1495"

    def test_replace_filter_expansion(self) -> None:
        """The replace filter is checked like str.replace."""
        refused('{{ ("x" * 1000) | replace("x", "y" * 20) }}', "the replace filter")

    def test_join_filter_of_repeats(self) -> None:
        """Joining many references to one string is refused before the text is made."""
        refused('{{ (["x" * 1000] * 11) | join }}', "the join filter")

    def test_join_filter_counts_separators(self) -> None:
        """Separators count toward a join's size."""
        refused('{{ (["x"] * 1000) | join("y" * 10) }}', "the join filter")

    def test_str_join_of_a_generator(self) -> None:
        """str.join of a lazy sequence stops while gathering it."""
        refused('{{ "".join(range(100) | map("string") | map("center", 200)) }}', "str.join")

    def test_list_repetition_item_cap(self) -> None:
        """A list of more than a million references is refused, whatever the output limit."""
        with pytest.raises(RenderError, match="more than 1000000 items"):
            render("{{ ([1] * 2000000) | length }}", limits=LimitsConfig(max_output_bytes=1 << 24))

    def test_printing_a_large_container(self) -> None:
        """A list whose text is over the limit is refused before str() makes it."""
        refused('{{ ["x" * 1000] * 20 }}', "printing this value")

    def test_string_filter_of_a_large_container(self) -> None:
        """Filters that make text of a container check its size first."""
        refused('{{ (["x" * 1000] * 20) | string | length }}', "the string filter")

    def test_tojson_indent_is_counted(self) -> None:
        """tojson counts the indentation of every nested item."""
        refused("{{ ([[1] * 100] * 10) | tojson(indent=20) }}", "the tojson filter")

    def test_concat_of_a_large_container(self) -> None:
        """``~`` checks the text of a container before making it."""
        refused('{{ "a" ~ (["x" * 1000] * 20) }}', "a ~ result")

    def test_expandtabs(self) -> None:
        """str.expandtabs counts tabsize per tab."""
        refused('{{ ("\t" * 100).expandtabs(1000) }}', "str.expandtabs")

    def test_translate(self) -> None:
        """str.translate counts each character's replacement."""
        refused('{{ ("x" * 1000).translate({120: "y" * 20}) }}', "str.translate")

    def test_indent_counts_every_line(self) -> None:
        """indent adds its width to every line."""
        refused('{{ ("a\n" * 1000) | indent(20) }}', "the indent filter")

    def test_wordwrap_line_count(self) -> None:
        """wordwrap into very many lines is refused, naming the sizes and never the text."""
        with pytest.raises(RenderError, match="wordwrap of 200000 characters into lines of 1 would make more than"):
            render('{{ ("y" * 200000) | wordwrap(1) | length }}', limits=LimitsConfig(max_output_bytes=1 << 20))

    def test_wordwrap_long_word_cost(self) -> None:
        """Splitting one huge word into short lines (quadratic in textwrap) is refused."""
        with pytest.raises(RenderError, match="words longer than the width are split a line at a time"):
            render('{{ ("y" * 500000) | wordwrap(10) | length }}', limits=LimitsConfig(max_output_bytes=1 << 20))

    def test_wordwrap_wrapstring_is_counted(self) -> None:
        """A long wrapstring counts once per line."""
        refused('{{ ("ab " * 100) | wordwrap(3, wrapstring="-" * 500) }}', "wordwrap of 300 characters into lines of 3")

    def test_batch_and_slice_counts(self) -> None:
        """batch and slice sizes over a million items are refused."""
        for text in ('{{ [1] | batch(2000000, "x") | list }}', "{{ [] | slice(2000000) | list }}"):
            with pytest.raises(RenderError, match="a count over 1000000 items"):
                render(text, limits=SMALL)

    def test_sum_of_lists(self) -> None:
        """sum(start=[]) of many lists (quadratic copying) is refused."""
        with pytest.raises(RenderError, match="the sum filter: lists of more than 1000000 items in all"):
            render('{{ ("x" * 100000) | list | map("list") | sum(start=[]) | length }}')

    def test_filter_results_count_toward_the_work_budget(self) -> None:
        """Many new strings kept alive (map | list) are bounded by 16 x max_output_bytes."""
        with pytest.raises(RenderError, match=r"16 x limits\.max_output_bytes"):
            render('{{ (["X" * 9000] * 100) | map("lower") | list | length }}', limits=SMALL)

    def test_message_has_no_value(self) -> None:
        """A refused call names the limit and never quotes the secret."""
        values = {"vault:s": {"v": SENTINEL}}
        error = refused('{{ secret("vault:s#v").replace("", "y" * 1000) }}', "str.replace", values)
        assert SENTINEL not in str(error) and "<redacted>" not in str(error)


class TestSizeLimitsKeepNormalUses:
    """The size checks leave everyday templates alone."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{{ "{0:>8}".format(x) }}', "      ab"),
            ('{{ "{0:{1}}|".format(x, 5) }}', "ab   |"),
            ('{{ "{:.2f}".format(3.14159) }}', "3.14"),
            ('{{ "{a}-{a}".format_map({"a": x}) }}', "ab-ab"),
            ('{{ "%-4s|%05.1f" % (x, 3.14159) }}', "ab  |003.1"),
            ('{{ "%(a)s=%(a)s" % {"a": x} }}', "ab=ab"),
            ('{{ "%s, %s!" | format("Hello", x) }}', "Hello, ab!"),
            ('{{ "a,b".replace(",", ";") }}', "a;b"),
            ('{{ "a,b" | replace(",", ";") }}', "a;b"),
            ('{{ ["a", "b", 3] | join(",") }}', "a,b,3"),
            ('{{ ",".join(["a", x]) }}', "a,ab"),
            ("{{ [{'n': 'a'}, {'n': 'b'}] | join('+', attribute='n') }}", "a+b"),
            ('{{ "a\tb".expandtabs(4) }}', "a   b"),
            ('{{ "abc".translate({98: "xy"}) }}', "axyc"),
            ("{{ [[1], [2, 3]] | sum(start=[]) }}", "[1, 2, 3]"),
            ("{{ [1, 2, 3] | batch(2, 0) | list }}", "[[1, 2], [3, 0]]"),
            ("{{ [1, 2] * 2 }}", "[1, 2, 1, 2]"),
            ("{{ x | center(6) }}|", "  ab  |"),
        ],
    )
    def test_normal_use(self, text: str, expected: str) -> None:
        """Everyday formatting, replacing, joining and padding give Python's results."""
        assert render_text("{% set x = 'ab' %}" + text) == expected

    def test_wordwrap_of_a_paragraph(self) -> None:
        """wordwrap(80) of a paragraph gives textwrap's lines."""
        paragraph = " ".join(f"word{i}" for i in range(300))
        out = render_text('{{ secret("vault:s#p") | wordwrap(80) }}', {"vault:s": {"p": paragraph}})
        assert out == "\n".join(textwrap.wrap(paragraph, 80))

    def test_wordwrap_of_a_base64_blob(self) -> None:
        """Wrapping a 100 KB base64 value at 64 columns (a PEM body) is allowed."""
        blob = base64.b64encode(bytes(75_000)).decode()
        out = render_text('{{ secret("vault:s#b") | wordwrap(64) }}', {"vault:s": {"b": blob}})
        assert out.split("\n") == textwrap.wrap(blob, 64)


# Failures whose underlying exception text contains the secret value (or a form of it).
LEAKY_FAILURES = [
    ("int", '{{ secret("vault:secret/app#password") | int }}'),
    ("float", '{{ secret("vault:secret/app#password") | float }}'),
    ("float-b64", '{{ secret("vault:secret/app#password") | b64encode | float }}'),
    ("whole-json-float", '{{ secret("vault:secret/app") | string | float }}'),
    ("dynamic-ref", '{{ secret("env:" ~ secret("vault:secret/app#password")) }}'),
    ("dynamic-name", '{{ secrets[secret("vault:secret/app#password")] }}'),
    ("env-int", "{{ env('TOKEN') | int }}"),
    ("key-is-value", '{{ secret("vault:secret/app")[secret("vault:secret/app#password")] }}'),
    ("long-truncated", '{{ secret("vault:secret/long#v") | int }}'),
    ("b64decode-derived", '{{ secret("vault:secret/app#b64") | b64decode | int }}'),
]


class TestRedaction:
    VALUES: ClassVar[Values] = {
        "vault:secret/app": {"password": SENTINEL, "user": "bob", "b64": base64.b64encode(SENTINEL.encode()).decode()},
        "vault:secret/long": {"v": SENTINEL * 40},
    }

    @pytest.mark.parametrize("text", [t for _, t in LEAKY_FAILURES], ids=[i for i, _ in LEAKY_FAILURES])
    def test_sentinel_never_in_errors_or_logs(self, text: str, caplog: pytest.LogCaptureFixture) -> None:
        """The secret is in no error text, repr, chained exception, traceback or DEBUG log."""
        caplog.set_level(logging.DEBUG)
        with pytest.raises((RenderError, NotFoundError)) as info:
            render(text, self.VALUES, environ={"TOKEN": SENTINEL})
        exc = info.value
        assert "<redacted>" in str(exc) or isinstance(exc, NotFoundError)
        for item in exception_chain(exc):
            assert SENTINEL not in str(item) and SENTINEL not in repr(item)
        assert SENTINEL not in "".join(traceback.format_exception(exc))
        assert exc.__cause__ is None and exc.__context__ is None
        assert SENTINEL not in caplog.text
        assert str(exc).startswith("templates[0] (app.env): line 1: ")

    def test_sentinel_in_output_only(self, caplog: pytest.LogCaptureFixture) -> None:
        """A successful render has the value in its content and nowhere in the logs."""
        caplog.set_level(logging.DEBUG)
        result = render('{{ secret("vault:secret/app#password") }}', self.VALUES)
        assert result.content == SENTINEL.encode()
        assert SENTINEL not in caplog.text and SENTINEL not in repr(result.refs)

    def test_derived_value_is_masked(self) -> None:
        """A value that only exists after b64decode is masked too."""
        derived = "only-after-decoding-1234"
        values = {"vault:s": {"b64": base64.b64encode(derived.encode()).decode()}}
        with pytest.raises(RenderError) as info:
            render('{{ secret("vault:s#b64") | b64decode | int }}', values)
        assert derived not in str(info.value)

    def test_message_without_values_is_kept(self) -> None:
        """Redaction leaves a message without values readable."""
        with pytest.raises(RenderError, match=r"invalid literal for int\(\) with base 10: '<redacted>'"):
            render('{{ secret("vault:secret/app#password") | int }}', self.VALUES)

    def test_short_values_are_not_masked(self) -> None:
        """Values under four characters are not masked (they would garble every message)."""
        with pytest.raises(RenderError, match="'bob'"):
            render('{{ secret("vault:secret/app#user") | int }}', self.VALUES)
