"""Tests of injector.template.render: compiling, references, the lookup flow, raw templates and errors."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jinja2 import nodes

from injector.config.model import LimitsConfig, TemplateConfig
from injector.errors import ConfigError, NotFoundError, RenderError, UnavailableError
from injector.refs import Reference, Secret, parse_reference
from injector.template.render import RenderResult
from tests.fixtures.sentinel import SENTINEL
from tests.template.helpers import (
    APP,
    Values,
    compile_text,
    exception_chain,
    lookup_of,
    make_renderer,
    refs,
    render,
    render_text,
)


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
        with pytest.raises(RenderError, match="include, import and extends are not available"):
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

    def test_the_syntax_tree_is_not_kept(self) -> None:
        """A compiled template keeps its literal references, not Jinja2's parse tree (memory)."""
        renderer = make_renderer()
        compiled = compile_text(renderer, '{{ secret("vault:secret/app#password") }}')
        fields = [getattr(compiled, name) for name in type(compiled).__dataclass_fields__]
        assert not [value for value in fields if isinstance(value, nodes.Node)]
        assert compiled.static == refs("vault:secret/app")

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

    @pytest.mark.parametrize(
        "name", ["VAULT_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "INJECTOR_STATE_DIR", "VAULT_ROLE_ID"]
    )
    def test_credentials_are_refused(self, name: str) -> None:
        """env() of one of the injector's own credentials is an error naming the variable, default or not."""
        refused = f"env\\('{name}'\\): {name} holds the injector's own credentials"
        with pytest.raises(RenderError, match=refused) as info:
            render(f"{{{{ env('{name}', 'x') }}}}", environ={name: SENTINEL})
        assert SENTINEL not in str(info.value)


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


# Failures whose underlying exception text would contain the secret value (or a form of it).
LEAKY_FAILURES = [
    ("int", '{{ secret("vault:secret/app#password") | int }}'),
    ("float", '{{ secret("vault:secret/app#password") | float }}'),
    ("float-b64", '{{ secret("vault:secret/app#password") | b64encode | float }}'),
    ("whole-json-float", '{{ secret("vault:secret/app") | string | float }}'),
    ("slice-int", '{{ secret("vault:secret/app#password")[3:15] | int }}'),
    ("upper-int", '{{ secret("vault:secret/app#password") | upper | int }}'),
    ("format-keyerror", '{{ ("{" ~ secret("vault:secret/app#password")[:10] ~ "}").format(a=1) }}'),
    ("dynamic-ref", '{{ secret("env:" ~ secret("vault:secret/app#password")) }}'),
    ("dynamic-bad-ref", '{{ secret("nope" ~ secret("vault:secret/app#password")) }}'),
    ("dynamic-name", '{{ secrets[secret("vault:secret/app#password")] }}'),
    ("dynamic-env", "{{ env(secret('vault:secret/app#password')) }}"),
    ("dynamic-attribute", '{{ {"a": 1}[secret("vault:secret/app#password")] }}'),
    ("env-int", "{{ env('TOKEN') | int }}"),
    ("key-is-value", '{{ secret("vault:secret/app")[secret("vault:secret/app#password")] }}'),
    ("parsed-keys", '{{ (secret("vault:secret/app#json") | fromjson).nope }}'),
    ("long-truncated", '{{ secret("vault:secret/long#v") | int }}'),
    ("b64decode-derived", '{{ secret("vault:secret/app#b64") | b64decode | int }}'),
]


class TestErrorsCarryNoValues:
    VALUES: ClassVar[Values] = {
        "vault:secret/app": {
            "password": SENTINEL,
            "user": "bob",
            "b64": base64.b64encode(SENTINEL.encode()).decode(),
            "json": json.dumps({SENTINEL: 1}),
        },
        "vault:secret/long": {"v": SENTINEL * 40},
    }

    @pytest.mark.parametrize("text", [t for _, t in LEAKY_FAILURES], ids=[i for i, _ in LEAKY_FAILURES])
    def test_sentinel_never_in_errors_or_logs(self, text: str, caplog: pytest.LogCaptureFixture) -> None:
        """The secret, or any 6 characters of it, is in no error text, repr, chained exception,
        traceback or DEBUG log; the error names the template and the line."""
        caplog.set_level(logging.DEBUG)
        with pytest.raises((RenderError, NotFoundError)) as info:
            render(text, self.VALUES, environ={"TOKEN": SENTINEL})
        exc = info.value
        for item in exception_chain(exc):
            assert_no_part_of(SENTINEL, str(item) + repr(item))
        assert SENTINEL not in "".join(traceback.format_exception(exc))  # its source lines name SENTINEL
        assert exc.__cause__ is None and exc.__context__ is None
        assert_no_part_of(SENTINEL, caplog.text)
        assert str(exc).startswith("templates[0] (app.env): line 1: ")

    def test_sentinel_in_output_only(self, caplog: pytest.LogCaptureFixture) -> None:
        """A successful render has the value in its content and nowhere in the logs."""
        caplog.set_level(logging.DEBUG)
        result = render('{{ secret("vault:secret/app#password") }}', self.VALUES)
        assert result.content == SENTINEL.encode()
        assert SENTINEL not in caplog.text and SENTINEL not in repr(result.refs)

    def test_derived_value_is_in_no_error(self) -> None:
        """A value that only exists after b64decode is in no error either."""
        derived = "only-after-decoding-1234"
        values = {"vault:s": {"b64": base64.b64encode(derived.encode()).decode()}}
        with pytest.raises(RenderError) as info:
            render('{{ secret("vault:s#b64") | b64decode | int }}', values)
        assert_no_part_of(derived, str(info.value))

    def test_foreign_exception_is_named_by_its_class(self) -> None:
        """An exception of Python's or Jinja's is reported by its class and line, not its text."""
        with pytest.raises(RenderError, match=r"line 2: KeyError \(its text is not shown"):
            render('x\n{{ "{nope}".format(a=1) }}')

    def test_key_built_at_render_time_is_not_quoted(self) -> None:
        """A missing key that is not written in the template (it may be a value) is not quoted."""
        with pytest.raises(NotFoundError, match=r"key <built at render time> not found \(keys:") as info:
            render('{{ secret("vault:secret/app")[secret("vault:secret/app#user") ~ "x"] }}', self.VALUES)
        assert "bob" not in str(info.value)

    def test_reference_built_at_render_time_keeps_its_error_class(self) -> None:
        """A backend's error about a reference built from a value keeps its class (exit code), not its text."""

        def lookup(ref: Reference) -> Secret:
            if ref.path != "secret/app":
                raise NotFoundError(f"{ref}: not found", ref=str(ref))
            return Secret(self.VALUES["vault:secret/app"])

        renderer = make_renderer()
        compiled = compile_text(renderer, '{{ secret("vault:secret/x" ~ secret("vault:secret/app#password")) }}')
        with pytest.raises(NotFoundError, match="<built at render time> could not be fetched") as info:
            renderer.render(compiled, lookup)
        assert_no_part_of(SENTINEL, str(info.value))


def assert_no_part_of(value: str, text: str, length: int = 6) -> None:
    """Fails when ``text`` holds any ``length`` consecutive characters of ``value``."""
    for start in range(len(value) - length + 1):
        assert value[start : start + length] not in text, f"{value[start : start + length]!r} is in {text!r}"
