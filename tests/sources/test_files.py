"""file: references on a real file system: roots, planted symlinks, state_dir, size and depth bounds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from injector.config.model import Config, LimitsConfig, TemplateConfig
from injector.errors import AccessDeniedError, NotFoundError, SourceError
from injector.refs import Reference, parse_reference
from injector.sources import Fetched, build_source
from injector.sources.files import FileSource


def ref(text: str) -> Reference:
    return parse_reference(text)


def fetch(source: FileSource, text: str) -> Fetched | SourceError:
    reference = ref(text)
    return source.fetch([reference])[reference]


def value(source: FileSource, text: str) -> object:
    result = fetch(source, text)
    assert isinstance(result, Fetched), str(result)
    return result.value.reveal()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A config folder (the root), a folder outside it with a secret, and a state dir."""
    root, outside, state = tmp_path / "config", tmp_path / "outside", tmp_path / "state"
    for folder in (root, outside, state):
        folder.mkdir()
    (outside / "secret").write_text("outside-value")
    (state / "token").write_text("hvs.state-token")
    return {"root": root, "outside": outside, "state": state}


class TestRoots:
    def test_reads_a_file_in_the_config_folder(self, layout):
        """A relative reference reads beneath the config's folder."""
        (layout["root"] / "color").write_text("blue")
        source = FileSource(base_dir=layout["root"])
        assert value(source, "file:color") == "blue"

    def test_path_outside_the_roots_is_refused(self, layout):
        """An absolute path outside file_roots is refused, naming the roots and the config key."""
        source = FileSource(base_dir=layout["root"])
        error = fetch(source, f"file:{layout['outside']}/secret")
        assert isinstance(error, AccessDeniedError)
        assert str(layout["root"]) in str(error) and "file_roots" in str(error)

    def test_dotdot_cannot_leave_the_root(self, layout):
        """``../`` out of the root is refused."""
        source = FileSource(base_dir=layout["root"])
        assert isinstance(fetch(source, "file:../outside/secret"), AccessDeniedError)

    def test_kubernetes_volume_links_inside_the_root_work(self, layout):
        """A Secret volume's ``key -> ..data/key``, ``..data -> ..2026_x`` chain resolves inside the root."""
        volume = layout["root"] / "volume"
        (volume / "..2026_01_01").mkdir(parents=True)
        (volume / "..2026_01_01" / "password").write_text("pw")
        (volume / "..data").symlink_to("..2026_01_01")
        (volume / "password").symlink_to("..data/password")
        source = FileSource(base_dir=layout["root"], roots=[volume])
        assert value(source, f"file:{volume}/password") == "pw"

    def test_planted_symlink_out_of_the_root_is_refused(self, layout):
        """The app swaps a file it shares for a symlink to a file outside the root: the read is refused."""
        shared = layout["root"] / "shared"
        shared.write_text("first")
        source = FileSource(base_dir=layout["root"])
        assert value(source, "file:shared") == "first"
        shared.unlink()
        shared.symlink_to(layout["outside"] / "secret")
        error = fetch(source, "file:shared")
        assert isinstance(error, AccessDeniedError)
        assert "outside-value" not in str(error)

    def test_planted_relative_symlink_out_of_the_root_is_refused(self, layout):
        """A relative symlink climbing out with ``..`` is refused too."""
        (layout["root"] / "link").symlink_to("../outside/secret")
        source = FileSource(base_dir=layout["root"])
        assert isinstance(fetch(source, "file:link"), AccessDeniedError)

    def test_state_dir_is_never_readable(self, layout, tmp_path: Path):
        """state_dir is refused even under a root, directly or through a symlink to it."""
        (layout["root"] / "tok").symlink_to(layout["state"])
        source = FileSource(base_dir=layout["root"], roots=[tmp_path], state_dir=layout["state"])
        direct = fetch(source, f"file:{layout['state']}/token")
        linked = fetch(source, f"file:{layout['root']}/tok/token")
        assert isinstance(direct, AccessDeniedError) and "state_dir" in str(direct)
        assert isinstance(linked, AccessDeniedError) and "state_dir" in str(linked)

    def test_fifo_is_refused_without_blocking(self, layout):
        """A FIFO planted where a file is expected is refused at once, not read."""
        os.mkfifo(layout["root"] / "pipe")
        error = fetch(FileSource(base_dir=layout["root"]), "file:pipe")
        assert isinstance(error, SourceError) and "regular file" in str(error)

    def test_missing_file_is_not_found(self, layout):
        """A missing file inside a root is NotFoundError."""
        assert isinstance(fetch(FileSource(base_dir=layout["root"]), "file:nope"), NotFoundError)

    def test_default_roots_are_the_config_and_template_folders(self, layout, tmp_path: Path):
        """Built from a config, the roots are its folder and its templates' source folders."""
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "x").write_text("from templates")
        config = Config(
            path=None,
            base_dir=layout["root"],
            output_dir=tmp_path / "out",
            templates=(TemplateConfig(where="templates[0]", destination="a", source=templates / "a.j2"),),
        )
        source = build_source("file", config)
        assert isinstance(source, FileSource)
        assert source.roots == (layout["root"], templates)
        assert value(source, f"file:{templates}/x") == "from templates"


class TestLimits:
    def test_deep_json_file_is_that_references_error(self, layout):
        """A 6 KB file of nested JSON arrays is refused before anything parses it."""
        (layout["root"] / "deep.json").write_text("[" * 3000 + "]" * 3000)
        error = fetch(FileSource(base_dir=layout["root"]), "file:deep.json")
        assert isinstance(error, SourceError) and "limits.max_depth" in str(error)
        assert not error.retryable

    def test_deep_yaml_file_is_that_references_error(self, layout):
        """A deeply nested YAML file is refused on its events, before PyYAML's recursive composer."""
        (layout["root"] / "deep.yaml").write_text("a: " + "[" * 100 + "]" * 100 + "\n")
        error = fetch(FileSource(base_dir=layout["root"]), "file:deep.yaml")
        assert isinstance(error, SourceError) and "deeper" in str(error)

    def test_yaml_aliases_cannot_expand_past_the_file(self, layout):
        """A billion-laughs YAML file is refused instead of becoming a value that expands to 10**9 nodes."""
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, 10):
            refs = ",".join(f"*a{i - 1}" for _ in range(10))
            lines.append(f"a{i}: &a{i} [{refs}]")
        (layout["root"] / "laughs.yaml").write_text("\n".join(lines) + "\n")
        error = fetch(FileSource(base_dir=layout["root"]), "file:laughs.yaml")
        assert isinstance(error, SourceError) and "aliases" in str(error)

    def test_a_yaml_file_that_contains_itself_is_that_references_error(self, layout):
        """``&a [*a]``, a collection inside itself, is refused, not handed to templates to walk."""
        (layout["root"] / "loop.yaml").write_text("a: &a [1, *a]\n")
        error = fetch(FileSource(base_dir=layout["root"]), "file:loop.yaml")
        assert isinstance(error, SourceError) and "inside" in str(error)

    def test_large_file_is_refused_by_size(self, layout):
        """A file over limits.max_secret_bytes is refused, naming the limit."""
        (layout["root"] / "big").write_bytes(b"x" * 2048)
        error = fetch(FileSource(base_dir=layout["root"], max_bytes=1024), "file:big")
        assert isinstance(error, SourceError) and "limits.max_secret_bytes" in str(error)

    def test_limits_come_from_the_config(self, layout, tmp_path: Path):
        """build_source passes limits.max_depth to the file source."""
        (layout["root"] / "nested.json").write_text(json.dumps({"a": {"b": {"c": 1}}}))
        config = Config(
            path=None, base_dir=layout["root"], output_dir=tmp_path / "out", limits=LimitsConfig(max_depth=2)
        )
        source = build_source("file", config)
        assert isinstance(source, FileSource)
        assert isinstance(fetch(source, "file:nested.json"), SourceError)
