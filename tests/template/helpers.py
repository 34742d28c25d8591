"""Rendering one template with an in-memory lookup (no backend), for the tests of injector.template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from injector.config.model import LimitsConfig, TemplateConfig
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
