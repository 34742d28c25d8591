"""Hostile paths through `injector init` (a real process on a real tmpfs): destinations that try to
leave output_dir, symlinks planted in the output or state directory, names held by someone else's
file or folder. Each ends in a clear error or a safe replacement, never a write outside output_dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.support import Run, data_link, run_injector, visible_files, write_config

pytestmark = pytest.mark.slow


def init(tmp_path: Path, output_dir: Path, templates: list[dict[str, Any]], **extra: Any) -> Run:
    config = write_config(tmp_path / "injector.yaml", {"output_dir": str(output_dir), "templates": templates, **extra})
    return run_injector(["init", "-c", str(config)])


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder`` (links by target, files by bytes), not following links."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = path.read_bytes()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside output_dir holding one precious file: nothing may change in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "a").write_text("precious\n")
    (folder / "app.env").write_text("precious\n")
    return folder


BAD_DESTINATIONS = [
    ("nested-dotdot", "conf/../../escape"),
    ("dot-slash-dotdot", "./../escape"),
    ("reserved-data", "..data/escape"),
    ("reserved-snapshot", "..2026_01_01_00_00_00.1/escape"),
    ("backslash", "..\\escape"),
    ("nul", "a\x00b"),
    ("dot", "."),
    ("trailing-slash", "conf/"),
    ("empty", ""),
]


class TestDestinations:
    @pytest.mark.parametrize("destination", [d for _, d in BAD_DESTINATIONS], ids=[i for i, _ in BAD_DESTINATIONS])
    def test_a_destination_leaving_output_dir_is_a_config_error(
        self, tmp_path: Path, output_dir: Path, destination: str
    ) -> None:
        """Exit 11 naming templates[0].destination; nothing written inside or beside output_dir."""
        beside = sorted(os.listdir(output_dir.parent))
        result = init(tmp_path, output_dir, [{"contents": "x", "destination": destination}])
        assert result.returncode == 11, result.stderr
        assert len(result.errors) == 1
        assert "templates[0].destination" in result.errors[0]
        assert os.listdir(output_dir) == []
        assert sorted(os.listdir(output_dir.parent)) == beside


class TestPlantedSymlinks:
    def test_symlink_at_a_destination_is_replaced_not_followed(
        self, tmp_path: Path, output_dir: Path, outside: Path
    ) -> None:
        """a -> /outside/a planted before init: the link is replaced by ours; /outside/a is untouched."""
        before = tree(outside)
        (output_dir / "a").symlink_to(outside / "a")
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "a"}])
        assert result.returncode == 0, result.stderr
        assert os.readlink(output_dir / "a") == "..data/a"
        assert (output_dir / "a").read_text() == "ours\n"
        assert tree(outside) == before

    def test_symlinked_folder_of_a_destination_is_replaced_not_followed(
        self, tmp_path: Path, output_dir: Path, outside: Path
    ) -> None:
        """conf -> /outside planted, destination conf/app.env: nothing is written into /outside."""
        before = tree(outside)
        (output_dir / "conf").symlink_to(outside, target_is_directory=True)
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "conf/app.env"}])
        assert result.returncode == 0, result.stderr
        assert (output_dir / "conf" / "app.env").read_text() == "ours\n"
        assert os.readlink(output_dir / "conf") == "..data/conf"
        assert tree(outside) == before

    def test_snapshot_named_symlink_is_removed_without_following_it(
        self, tmp_path: Path, output_dir: Path, outside: Path
    ) -> None:
        """A symlink named like a stale snapshot folder, pointing outside: unlinked, /outside intact."""
        before = tree(outside)
        (output_dir / "..2020_01_01_00_00_00.1").symlink_to(outside, target_is_directory=True)
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "a"}])
        assert result.returncode == 0, result.stderr
        assert not (output_dir / "..2020_01_01_00_00_00.1").is_symlink()
        assert tree(outside) == before

    @pytest.mark.parametrize("target", ["outside", "snapshot-named-link"])
    def test_data_link_pointing_outside_is_refused_or_replaced(
        self, tmp_path: Path, output_dir: Path, outside: Path, target: str
    ) -> None:
        """..data pointing outside (directly or through a snapshot-named link): /outside stays intact,
        and init either refuses with exit 17 naming ..data or publishes its own snapshot."""
        before = tree(outside)
        if target == "outside":
            (output_dir / "..data").symlink_to(outside, target_is_directory=True)
        else:
            (output_dir / "..2020_01_01_00_00_00.1").symlink_to(outside, target_is_directory=True)
            (output_dir / "..data").symlink_to("..2020_01_01_00_00_00.1", target_is_directory=True)
        (output_dir / "a").symlink_to("..data/a")
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "a"}])
        assert tree(outside) == before
        if result.returncode == 0:
            assert (output_dir / "a").read_text() == "ours\n"
            assert not os.path.realpath(output_dir / "a").startswith(str(outside))
        else:
            assert result.returncode == 17, result.stderr
            assert "..data" in result.errors[0] or "..2020_01_01_00_00_00.1" in result.errors[0], result.errors


class TestNamesHeldBySomeoneElse:
    def test_a_folder_at_a_destination_is_refused(self, tmp_path: Path, output_dir: Path) -> None:
        """A real folder where the file should go: exit 17 naming it; the folder and its content stay."""
        (output_dir / "a").mkdir()
        (output_dir / "a" / "keep").write_text("theirs\n")
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "a"}])
        assert result.returncode == 17, result.stderr
        assert "is a folder injector did not create" in result.errors[0]
        assert (output_dir / "a" / "keep").read_text() == "theirs\n"
        assert data_link(output_dir) is None

    def test_a_file_owned_by_another_user_is_refused_untouched(self, tmp_path: Path, output_dir: Path) -> None:
        """A regular file of uid 12345 at the destination: exit 17; its bytes, owner and mode stay."""
        theirs = output_dir / "a"
        theirs.write_text("theirs\n")
        os.chown(theirs, 12345, 12345)
        os.chmod(theirs, 0o644)
        result = init(tmp_path, output_dir, [{"contents": "ours\n", "destination": "a"}])
        assert result.returncode == 17, result.stderr
        assert "is a file injector did not create" in result.errors[0]
        st = theirs.lstat()
        assert (theirs.read_text(), st.st_uid, st.st_gid, st.st_mode & 0o7777) == ("theirs\n", 12345, 12345, 0o644)
        assert visible_files(output_dir) == {"a": b"theirs\n"}


class TestStateDir:
    def test_symlinked_state_dir_is_refused(self, tmp_path: Path, output_dir: Path) -> None:
        """state_dir is a symlink to another folder: exit 17 saying so; no state lands in the target."""
        real = tmp_path / "real-state"
        real.mkdir(mode=0o700)
        link = tmp_path / "state"
        link.symlink_to(real, target_is_directory=True)
        result = init(tmp_path, output_dir, [{"contents": "x", "destination": "a"}], state_dir=str(link))
        assert result.returncode == 17, result.stderr
        assert "is a symlink" in result.errors[0]
        assert os.listdir(real) == []

    def test_symlinked_state_file_is_never_followed(self, tmp_path: Path, output_dir: Path, outside: Path) -> None:
        """state.json -> /outside/a planted in state_dir: /outside/a keeps its bytes; a clear error or a replacement."""
        before = tree(outside)
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        (state / "state.json").symlink_to(outside / "a")
        result = init(tmp_path, output_dir, [{"contents": "x", "destination": "a"}], state_dir=str(state))
        assert tree(outside) == before
        if result.returncode == 0:
            assert not (state / "state.json").is_symlink()
        else:
            assert result.returncode == 17, result.stderr
            assert "symlink" in result.errors[0]
