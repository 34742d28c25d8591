"""The engine in-process with an in-memory source: one render loop, one start-up sequence."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from injector.backoff import Backoff
from injector.config.load import parse_config
from injector.config.model import Config, TemplateConfig
from injector.engine import MAX_RENDER_PASSES, Engine
from injector.errors import NotFoundError, RenderError, UnavailableError
from tests.memory_source import MemorySource


def make(
    tmp_path: Path, templates: list[dict[str, Any]], values: dict[str, Any], **extra: Any
) -> tuple[Engine, MemorySource]:
    config: Config = parse_config(
        {
            "output_dir": str(tmp_path / "out"),
            "allow_non_tmpfs": True,
            "vault": {"address": "http://127.0.0.1:1", "auth": {"method": "token"}},
            "refresh": {"min_backoff": "10ms", "max_backoff": "20ms"},
            "templates": templates,
            **extra,
        },
        base_dir=tmp_path,
        environ={"VAULT_TOKEN": "unused"},
    )
    source = MemorySource(values)
    engine = Engine(config, sources={"vault": source})
    engine.compile()
    return engine, source


def converge(engine: Engine, timeout: float = 2.0) -> None:
    engine.converge(deadline=time.monotonic() + timeout, backoff=Backoff(0.01, 0.02))


def test_literal_references_of_every_template_cost_one_round(tmp_path: Path) -> None:
    """Ten templates naming the same and different literal references: one backend round, each ref once."""
    text = "{{{{ secret('vault:secret/a#k') }}}}-{{{{ secret('vault:secret/b{i}#k') }}}}"
    templates = [{"contents": text.format(i=i), "destination": f"f{i}"} for i in range(10)]
    values = {"secret/a": {"k": "A"}, **{f"secret/b{i}": {"k": str(i)} for i in range(10)}}
    engine, source = make(tmp_path, templates, values)
    converge(engine)
    assert len(source.rounds) == 1
    assert len(source.rounds[0]) == 11
    assert {f.path: f.content for f in engine.files()}["f3"] == b"A-3"


def test_a_reference_built_from_a_value_is_fetched_in_a_second_round(tmp_path: Path) -> None:
    """A reference only known at render time comes back missing and is fetched in the next round."""
    text = "{{ secret('vault:secret/' ~ secret('vault:secret/ptr#to') ~ '#k') }}"
    templates = [{"contents": text, "destination": "f"}]
    engine, source = make(tmp_path, templates, {"secret/ptr": {"to": "real"}, "secret/real": {"k": "v"}})
    converge(engine)
    assert source.rounds == [["secret/ptr"], ["secret/real"]]
    assert engine.files()[0].content == b"v"


def test_a_template_chasing_its_tail_is_a_render_error(tmp_path: Path) -> None:
    """A chain of references longer than the pass limit fails with RenderError naming the template."""
    chain = {f"secret/n{i}": {"next": f"n{i + 1}"} for i in range(MAX_RENDER_PASSES + 3)}
    text = (
        "{% set ns = namespace(p='n0') %}{% for _ in range(20) %}"
        "{% set ns.p = secret('vault:secret/' ~ ns.p ~ '#next') %}{% endfor %}{{ ns.p }}"
    )
    engine, _ = make(tmp_path, [{"contents": text, "destination": "loop"}], chain)
    with pytest.raises(RenderError, match="keeps asking for new references"):
        converge(engine)


def test_a_permanent_error_in_an_unused_branch_fails_nothing(tmp_path: Path) -> None:
    """A literal reference that does not exist, in a branch that never runs, is not an error."""
    text = "{% if false %}{{ secret('vault:secret/missing#k') }}{% endif %}ok"
    engine, _ = make(tmp_path, [{"contents": text, "destination": "f"}], {})
    converge(engine)
    assert engine.files()[0].content == b"ok"


def test_a_permanent_error_that_is_used_raises_at_once(tmp_path: Path) -> None:
    """A missing secret a template uses raises NotFoundError without retrying."""
    engine, source = make(tmp_path, [{"contents": "{{ secret('vault:secret/missing#k') }}", "destination": "f"}], {})
    with pytest.raises(NotFoundError):
        converge(engine, timeout=5)
    assert len(source.rounds) == 1


def test_transient_errors_are_retried_until_the_deadline(tmp_path: Path) -> None:
    """An unavailable backend is retried with backoff, then the last error is raised with the count."""
    engine, source = make(tmp_path, [{"contents": "{{ secret('vault:secret/a#k') }}", "destination": "f"}], {})
    source.down("secret/a")
    with pytest.raises(UnavailableError, match=r"gave up after \d+ attempt"):
        converge(engine, timeout=0.3)
    assert len(source.rounds) >= 3


def test_render_keeps_the_last_good_output_of_a_failing_template(tmp_path: Path) -> None:
    """Engine.render reports a failing template and keeps its previous output; the others render."""
    templates = [
        {"contents": "{{ secret('vault:secret/a#k') }}", "destination": "good"},
        {"contents": "{{ secret('vault:secret/b#k') }}", "destination": "bad"},
    ]
    engine, source = make(tmp_path, templates, {"secret/a": {"k": "1"}, "secret/b": {"k": "2"}})
    converge(engine)
    source.values["secret/a"] = {"k": "1b"}
    engine.cache.drop(engine.static_refs())
    source.errors["secret/b"] = NotFoundError("vault:secret/b: gone", ref="vault:secret/b")
    errors = engine.render(["good", "bad"])
    assert set(errors) == {"bad"}
    assert {f.path: f.content for f in engine.files()} == {"good": b"1b", "bad": b"2"}


def test_start_publishes_and_hands_off(tmp_path: Path) -> None:
    """The start-up sequence publishes the files and leaves the handoff in state_dir."""
    state_dir = tmp_path / "state"
    templates = [{"contents": "x={{ secret('vault:secret/a#k') }}", "destination": "f"}]
    engine, _ = make(tmp_path, templates, {"secret/a": {"k": "1"}}, state_dir=str(state_dir))
    (tmp_path / "out").mkdir()
    engine.sink.prepare()
    result = engine.start(deadline=time.monotonic() + 2)
    assert result.changed == frozenset({"f"})
    assert (tmp_path / "out" / "f").read_bytes() == b"x=1"
    assert (state_dir / "state.json").exists()


def test_in_memory_templates_are_never_published(tmp_path: Path) -> None:
    """Templates compiled in memory (exec's env:) are rendered but not written."""
    engine, _ = make(tmp_path, [{"contents": "file", "destination": "f"}], {"secret/a": {"k": "s"}})
    env = TemplateConfig(where="env.X", destination="$env/X", contents="{{ secret('vault:secret/a#k') }}")
    engine.compile([env], in_memory=True)
    converge(engine)
    assert [f.path for f in engine.files()] == ["f"]
    assert engine.memory_values() == {"$env/X": "s"}


def test_an_idle_engine_keeps_no_fetch_threads(tmp_path: Path) -> None:
    """The fetch pool lives for one round only: after it, no fetch thread is left."""
    text = "{{ secret('vault:secret/a#k') }}{{ secret('env:HOME') }}"
    engine, _ = make(tmp_path, [{"contents": text, "destination": "f"}], {"secret/a": {"k": "1"}})
    converge(engine)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("fetch") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fetch")]
