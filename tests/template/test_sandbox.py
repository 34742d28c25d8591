"""Tests of injector.template.sandbox: escapes refused, time, recursion and range limits."""

from __future__ import annotations

import pytest

from injector.config.model import LimitsConfig
from injector.errors import RenderError
from injector.refs import Reference, Secret
from tests.template.helpers import (
    compile_text,
    make_renderer,
    render,
)

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
