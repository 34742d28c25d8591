"""The sidecar loop in-process, on an in-memory source: what only timing and state show, without a
process (the process-level behaviour is in tests/modes/test_sidecar.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from injector.config.load import parse_config
from injector.config.model import TemplateConfig
from injector.engine import Engine
from injector.modes.sidecar import Hooks, Sidecar
from injector.refs import parse_reference
from tests.fixtures.sidecar import wait_for
from tests.memory_source import MemorySource


def config_for(tmp_path: Path, templates: list[dict[str, Any]], **extra: Any) -> Any:
    (tmp_path / "out").mkdir(exist_ok=True)
    return parse_config(
        {
            "output_dir": str(tmp_path / "out"),
            "allow_non_tmpfs": True,
            "vault": {"address": "http://127.0.0.1:1", "auth": {"method": "token"}},
            "refresh": {"interval": "200ms", "jitter": 0, "min_backoff": "50ms", "max_backoff": "100ms",
                        "wait": {"min": "10ms", "max": "50ms"}},
            "health": {"address": False, **extra.pop("health", {})},
            "templates": templates,
            **extra,
        },
        base_dir=tmp_path,
        environ={"VAULT_TOKEN": "unused"},
    )


class Running:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.thread = threading.Thread(target=sidecar.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(self.sidecar.ready_event.is_set, 10, "the first render")
        return self

    def __exit__(self, *exc: object) -> None:
        self.sidecar.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def source() -> Iterator[MemorySource]:
    source = MemorySource({"secret/app": {"password": "one"}})
    yield source
    source.unblocked.set()


def start(tmp_path: Path, source: MemorySource, template: str = "pw={{ secret('vault:secret/app#password') }}",
          hooks: Hooks | None = None, **extra: Any) -> Running:
    config = config_for(tmp_path, [{"contents": template, "destination": "app.env"}], **extra)
    return Running(Sidecar(config, engine=Engine(config, sources={"vault": source}), hooks=hooks))


def output(tmp_path: Path) -> bytes:
    return (tmp_path / "out" / "app.env").read_bytes()


def test_a_changed_value_is_rendered_and_published(tmp_path: Path, source: MemorySource) -> None:
    """A new value at the backend reaches the file within a poll interval."""
    with start(tmp_path, source):
        assert output(tmp_path) == b"pw=one"
        source.values["secret/app"] = {"password": "two"}
        wait_for(lambda: output(tmp_path) == b"pw=two", 5, "the new value")


def test_a_backward_wall_clock_step_does_not_freeze_refreshing(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall clock stepping back an hour (NTP, a VM resume) changes no schedule: polling goes on."""
    real = time.time
    with start(tmp_path, source):
        monkeypatch.setattr(time, "time", lambda: real() - 3600)
        source.values["secret/app"] = {"password": "after-step"}
        wait_for(lambda: output(tmp_path) == b"pw=after-step", 5, "a refresh after the clock step")


def test_a_forward_wall_clock_step_does_not_hurry_refreshing(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jump forward of a day does not make everything due at once: rounds stay one per interval."""
    real = time.time
    with start(tmp_path, source):
        time.sleep(0.1)
        before = len(source.rounds)
        monkeypatch.setattr(time, "time", lambda: real() + 86400)
        time.sleep(1.0)
        assert len(source.rounds) - before <= 1.0 / 0.2 + 2


def test_a_wedged_pass_turns_healthz_red_and_recovers(tmp_path: Path, source: MemorySource) -> None:
    """A fetch that never returns makes /healthz fail after health.watchdog, and pass once it returns."""
    with start(tmp_path, source, health={"watchdog": "300ms"}) as running:
        source.unblocked.clear()
        wait_for(lambda: not running.sidecar.live()[0], 5, "/healthz to fail")
        assert "busy" in running.sidecar.live()[1]
        source.unblocked.set()
        wait_for(lambda: running.sidecar.live()[0], 5, "/healthz to pass again")


def test_a_failing_backend_keeps_the_last_good_file_and_turns_unready(tmp_path: Path, source: MemorySource) -> None:
    """A backend down past max_stale: the file stays, /readyz fails naming the reference, then recovers."""
    with start(tmp_path, source, refresh={"interval": "100ms", "jitter": 0, "min_backoff": "50ms",
                                          "max_backoff": "100ms", "max_stale": "300ms"}) as running:
        source.down("secret/app")
        wait_for(lambda: not running.sidecar.ready()[0], 5, "/readyz to fail")
        assert "vault:secret/app" in running.sidecar.ready()[1]
        assert output(tmp_path) == b"pw=one"
        source.errors.clear()
        wait_for(lambda: running.sidecar.ready()[0], 5, "/readyz to pass again")


def test_references_no_template_uses_leave_the_cache_and_schedule(tmp_path: Path, source: MemorySource) -> None:
    """When a value stops pointing at a reference, that reference is forgotten (no growth with history)."""
    source.values.update({"secret/ptr": {"to": "a"}, "secret/a": {"k": "A"}, "secret/b": {"k": "B"}})
    template = "{{ secret('vault:secret/' ~ secret('vault:secret/ptr#to') ~ '#k') }}"
    with start(tmp_path, source, template=template) as running:
        engine = running.sidecar.engine
        assert output(tmp_path) == b"A"
        source.values["secret/ptr"] = {"to": "b"}
        wait_for(lambda: output(tmp_path) == b"B", 5, "the pointer to move")
        wait_for(lambda: parse_reference("vault:secret/a") not in engine.cache, 5, "the old reference to go")
        assert parse_reference("vault:secret/a") not in running.sidecar.scheduler.entries


def test_in_memory_values_reach_the_hook(tmp_path: Path, source: MemorySource) -> None:
    """exec's hook gets the in-memory values after the first render and again when they change."""
    seen: list[dict[str, str]] = []
    config = config_for(tmp_path, [])
    engine = Engine(config, sources={"vault": source})
    env = TemplateConfig(where="env.PW", destination="$env/PW", contents="{{ secret('vault:secret/app#password') }}")
    engine.compile([env], in_memory=True)
    hooks = Hooks(ready=lambda m: seen.append(dict(m)), memory_changed=lambda m: bool(seen.append(dict(m))))
    with Running(Sidecar(config, engine=engine, started=False, hooks=hooks)):
        assert seen == [{"$env/PW": "one"}]
        source.values["secret/app"] = {"password": "two"}
        wait_for(lambda: seen[-1] == {"$env/PW": "two"}, 5, "the changed value")
