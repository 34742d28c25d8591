"""Hostile templates through `injector init` (a real process): sandbox escapes, resource bombs and
recursion end with exit 16, one clear line, nothing written, nothing executed, and within the time
and memory the limits promise. tests/template/ covers the Renderer itself; this is what a user
of the CLI gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reliability.support import Run, data_link, run_injector, visible_files, write_config

pytestmark = pytest.mark.slow

CANARY = "CANARY"  # replaced by a path: an escape that ran a command would create it

ESCAPES = [
    ("cycler-globals", "{{ cycler.__init__.__globals__.os.system('touch CANARY') }}"),
    ("joiner-globals", "{{ joiner.__init__.__globals__.os.system('touch CANARY') }}"),
    ("namespace-globals", "{{ namespace.__init__.__globals__.os.system('touch CANARY') }}"),
    ("namespace-dunder-set", "{% set ns = namespace() %}{% set ns.__class__ = 1 %}{{ ns.__class__ }}"),
    ("function-globals", "{{ secret.__globals__.os.system('touch CANARY') }}"),
    ("method-func", "{{ env.__func__.__globals__ }}"),
    ("tuple-subclasses", "{{ ().__class__.__base__.__subclasses__() }}"),
    ("format-attribute", '{{ "{0.__init__.__globals__[os]}".format(cycler) }}'),
    ("format-map", '{{ "{x.__init__.__globals__}".format_map({"x": joiner}) }}'),
    ("attr-filter", "{{ cycler | attr('__init__') | attr('__globals__') }}"),
    ("map-attribute", "{{ [cycler] | map(attribute='__init__.__globals__') | map('string') | join }}"),
    ("sort-attribute", "{{ [cycler, joiner] | sort(attribute='__init__.__globals__') | list }}"),
    ("groupby-attribute", "{% for g, _ in [cycler] | groupby('__init__.__globals__') %}{{ g }}{% endfor %}"),
    ("self-context", "{{ self._TemplateReference__context }}"),
    ("loop-internals", "{% for x in [1] %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}"),
    ("include-file", "{% include '/etc/passwd' %}"),
    ("import-file", "{% import '/etc/passwd' as p %}{{ p }}"),
    ("extends-file", "{% extends '/etc/passwd' %}"),
    ("range-bomb", "{{ range(10**9) | list | length }}"),
    ("range-budget", "{% for i in range(60000) %}{% endfor %}{% for i in range(60000) %}{% endfor %}"),
    ("recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
    ("call-recursion", "{% macro f() %}{{ caller() }}{% endmacro %}{% call f() %}{{ f() }}{% endcall %}"),
    ("pow-bomb", "{{ 7 ** (7 ** 7) }}"),
    ("int-to-text-bomb", "{{ 10 ** 100000 }}"),
]


def init(tmp_path: Path, output_dir: Path, contents: str, limits: dict[str, Any], timeout: float = 30) -> Run:
    config = write_config(
        tmp_path / "injector.yaml",
        {"output_dir": str(output_dir), "limits": limits, "templates": [{"contents": contents, "destination": "a"}]},
    )
    return run_injector(["init", "-c", str(config)], timeout=timeout)


class TestSandbox:
    @pytest.mark.parametrize("payload", [p for _, p in ESCAPES], ids=[i for i, _ in ESCAPES])
    def test_escape_fails_with_16_and_runs_nothing(self, tmp_path: Path, output_dir: Path, payload: str) -> None:
        """An escape or bomb through init: exit 16 naming the template, no file written, no command run."""
        canary = tmp_path / "pwned"
        result = init(tmp_path, output_dir, payload.replace(CANARY, str(canary)), {"render_timeout": "5s"})
        assert result.returncode == 16, result.stderr
        assert len(result.errors) == 1, result.stderr
        assert "templates[0] (a)" in result.errors[0]
        assert "Traceback" not in result.stderr
        assert "internal error" not in result.stderr
        assert not canary.exists()
        assert visible_files(output_dir) == {}
        assert data_link(output_dir) is None


LIMITS = {"max_output_bytes": 1024 * 1024, "render_timeout": "1s"}
#: The CLI at rest uses ~25 MiB; rendering may hold the output and the expression work budget
#: (16 x max_output_bytes): 128 MiB is generous for a 1 MiB output limit.
MAX_RSS_MIB = 128
#: A render stops at render_timeout; the process also starts and exits: 2 s of room on a loaded machine.
TIME_MARGIN = 2.0

BOMBS = [
    ("output-size", "{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxx{% endfor %}"),
    (
        "render-time",
        '{% for c in "x" * 5000 %}{% for d in "x" * 5000 %}{% if c ~ d == "z" %}{% endif %}{% endfor %}{% endfor %}',
    ),
    ("loop-without-output", '{% for c in "x" * 20000 %}{% for d in "x" * 20000 %}{% endfor %}{% endfor %}'),
    ("nested-format-width", '{{ "{0:{1}}".format("x", "300000000") | length }}'),
    ("replace-expansion", '{{ ("x" * 1000000).replace("x", "y" * 300) | length }}'),
    ("join-of-repeats", '{{ (["x" * 1000000] * 300) | join | length }}'),
    ("repeated-format-fields", '{{ ("{0}" * 30000).format("x" * 10000) | length }}'),
    ("slow-filter", '{{ ("y" * 1000000) | wordwrap(1) | length }}'),
]


class TestLimits:
    @pytest.mark.parametrize("payload", [p for _, p in BOMBS], ids=[i for i, _ in BOMBS])
    def test_bomb_stops_within_the_time_and_memory_limits(self, tmp_path: Path, output_dir: Path, payload: str) -> None:
        """With a 1 MiB output limit and a 1 s render_timeout: exit 16 in ≤ 3 s, ≤ 128 MiB, nothing written."""
        result = init(tmp_path, output_dir, payload, LIMITS, timeout=1.0 + TIME_MARGIN + 2)
        seen = (
            f"exit {result.returncode} (None: killed) after {result.elapsed:.2f}s, peak {result.max_rss_mib:.0f} MiB, "
            f"files {sorted(visible_files(output_dir))}: {result.errors or result.stderr[-300:]}"
        )
        assert result.returncode == 16, seen
        assert result.elapsed <= 1.0 + TIME_MARGIN, seen
        assert result.max_rss_mib <= MAX_RSS_MIB, seen
        assert visible_files(output_dir) == {}, seen
