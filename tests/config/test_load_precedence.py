"""Config loading against hostile YAML and the precedence of flags, file and INJECTOR_* variables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from injector.config.load import load_config
from injector.errors import ConfigError
from tests.fixtures.cli import run


def laughs(levels: int = 9) -> str:
    """The billion-laughs document: ``levels`` lists of ten aliases of the previous one."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join(f"*a{i - 1}" for _ in range(10)) + "]")
    return "\n".join(lines) + "\n"


class TestHostileYaml:
    def test_alias_bomb_in_an_error_path_is_refused_small_and_fast(self, tmp_path: Path):
        """Billion laughs under a key whose error message would render it is refused before parsing."""
        path = tmp_path / "injector.yaml"
        path.write_text(f"output_dir: {tmp_path}/out\n" + laughs() + "refresh:\n  jitter: *a9\n")
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert time.monotonic() - started < 5
        assert len(str(caught.value)) < 500
        assert "aliases" in str(caught.value)
        assert "lol" not in str(caught.value)

    def test_few_aliases_still_work(self, tmp_path: Path):
        """Ordinary anchors and aliases (a shared notifier list) load as before."""
        path = tmp_path / "injector.yaml"
        path.write_text(
            f"output_dir: {tmp_path}/out\n"
            "templates:\n"
            "  - {contents: a, destination: a, on_change: &reload [{signal: SIGHUP, process: nginx}]}\n"
            "  - {contents: b, destination: b, on_change: *reload}\n"
        )
        config = load_config(path, environ={})
        assert config.templates[0].on_change == config.templates[1].on_change

    def test_deep_config_is_refused(self, tmp_path: Path):
        """A config nested past 64 levels is refused on the parser's events, before it is built."""
        path = tmp_path / "injector.yaml"
        path.write_text(f"output_dir: {tmp_path}/out\nx: " + "[" * 100 + "]" * 100 + "\n")
        with pytest.raises(ConfigError, match="deeper"):
            load_config(path, environ={})

    def test_value_rendered_in_a_message_is_bounded(self, tmp_path: Path):
        """A large list where a number belongs is described by its type, not printed."""
        path = tmp_path / "injector.yaml"
        path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "refresh": {"jitter": ["x" * 50] * 1000}}))
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert len(str(caught.value)) < 300


class TestPrecedence:
    @pytest.fixture
    def config_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "injector.yaml"
        path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "from-file"), "templates": []}))
        return path

    def test_file_wins_over_injector_variables(self, config_file: Path, tmp_path: Path):
        """INJECTOR_OUTPUT_DIR does not override the file's output_dir."""
        result = run(["validate", "-c", str(config_file)], env={"INJECTOR_OUTPUT_DIR": str(tmp_path / "from-env")})
        assert result.returncode == 0, result.stderr
        assert str(tmp_path / "from-file") in result.stdout
        assert "from-env" not in result.stdout

    def test_variable_fills_what_the_file_leaves_out(self, tmp_path: Path):
        """INJECTOR_OUTPUT_DIR is used when the file has no output_dir."""
        path = tmp_path / "injector.yaml"
        path.write_text(yaml.safe_dump({"templates": []}))
        result = run(["validate", "-c", str(path)], env={"INJECTOR_OUTPUT_DIR": str(tmp_path / "from-env")})
        assert result.returncode == 0, result.stderr
        assert str(tmp_path / "from-env") in result.stdout

    def test_flag_wins_over_file_and_variable(self, config_file: Path, tmp_path: Path):
        """--output-dir wins over both the file and INJECTOR_OUTPUT_DIR."""
        result = run(
            ["validate", "-c", str(config_file), "--output-dir", str(tmp_path / "from-flag")],
            env={"INJECTOR_OUTPUT_DIR": str(tmp_path / "from-env")},
        )
        assert result.returncode == 0, result.stderr
        assert str(tmp_path / "from-flag") in result.stdout


class TestOneYamlParser:
    """The config and ``file:`` YAML are checked and loaded by one parser: libyaml's, where PyYAML has it."""

    def test_libyaml_parses_when_pyyaml_has_it(self):
        from injector.config.document import safe_loader

        if not yaml.__with_libyaml__:
            pytest.skip("this PyYAML was built without libyaml: the pure-Python loader is the only one")
        assert safe_loader() is yaml.CSafeLoader

    def test_the_pure_python_parser_never_runs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        """Loading a config never touches PyYAML's pure-Python reader (what ``yaml.safe_load`` uses)."""
        from injector.config.document import safe_loader

        if safe_loader() is yaml.SafeLoader:
            pytest.skip("this PyYAML was built without libyaml")

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("the pure-Python YAML reader ran")

        monkeypatch.setattr(yaml.reader.Reader, "__init__", refuse)
        path = tmp_path / "injector.yaml"
        path.write_text(f"output_dir: {tmp_path}/out\nsecrets:\n  a: file:///etc/hostname\n")
        assert str(load_config(path, environ={}).output_dir) == f"{tmp_path}/out"

    @pytest.mark.parametrize(
        "shipped", sorted((Path(__file__).parents[2] / "deploy").rglob("injector.yaml")), ids=lambda p: p.parent.name
    )
    def test_shipped_configs_load_as_safe_load_reads_them(self, shipped: Path):
        from injector.config.load import load_yaml

        text = shipped.read_text()
        assert load_yaml(text, max_depth=64, max_nodes=100_000) == yaml.safe_load(text)

    @pytest.mark.parametrize(
        "text",
        [
            "a: 1\nb: [1, 2.5, true, null, ~, 0o17, 0x1f, 1_000, .inf]\n",
            "when: 2024-01-02\nstamp: 2024-01-02T03:04:05Z\nyes_word: yes\noff_word: off\n",
            's: \'quoted: colon\'\nt: "tab\\tescape"\nu: "\\u00e9"\nfolded: >\n  one\n  two\nlit: |\n  x\n',
            "anchors: {a: &x [1, 2], b: *x}\nmerge: {<<: {k: v}, own: 1}\n",
        ],
    )
    def test_values_are_those_of_safe_load(self, text: str):
        from injector.config.load import load_yaml

        assert load_yaml(text, max_depth=64, max_nodes=100_000) == yaml.safe_load(text)
