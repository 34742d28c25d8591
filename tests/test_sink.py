"""injector.sink: the snapshot layout, changes, cleanup, refusals and state_dir files, on a real tmpfs."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from injector.dirfd import filesystem_type
from injector.errors import ConfigError, OutputError
from injector.sink import OutputFile, PublishResult, Sink, check_filesystem, read_private, write_private
from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.tmpfs import mount_tmpfs, unmount

SNAPSHOT_RE = re.compile(r"\.\.\d{4}(?:_\d{2}){5}\.\d+")
SMALL = {"a.txt": b"a" * 8192, "b/c.txt": b"c" * 8192}
GOOD = {"app.env": b"A=1\n", "tls/cert.pem": b"CERT-1\n", "tls/key.pem": b"KEY-1\n"}


def outputs(files: dict[str, bytes], **options: int) -> list[OutputFile]:
    return [OutputFile(path=path, content=content, **options) for path, content in files.items()]


def snapshots(out: Path) -> list[str]:
    return sorted(name for name in os.listdir(out) if SNAPSHOT_RE.fullmatch(name))


def visible(out: Path, paths: Iterator[str] | list[str]) -> dict[str, bytes]:
    """Reads files the way the app does: through the user-visible paths."""
    return {path: (out / path).read_bytes() for path in paths}


def tree(out: Path) -> dict[str, object]:
    """Everything under ``out`` (links not followed): to assert that a refusal changed nothing."""
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(out))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", st.st_mode, st.st_uid)
            else:
                found[rel] = ("file", path.read_bytes(), st.st_mode, st.st_uid, st.st_gid)
    return found


@pytest.fixture
def sink(output_dir: Path) -> Sink:
    sink = Sink(output_dir)
    sink.prepare()
    return sink


@pytest.fixture
def published(sink: Sink, output_dir: Path) -> Path:
    """output_dir holding the GOOD snapshot."""
    sink.publish(outputs(GOOD))
    return output_dir


@pytest.fixture
def small_out(tmp_path: Path) -> Iterator[Path]:
    """An output_dir on a 64 KiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root")
    path = tmp_path / "small"
    mount_tmpfs(path, size="64k")
    try:
        yield path
    finally:
        unmount(path)


class TestLayout:
    def test_data_link_points_to_a_timestamped_folder(self, published: Path) -> None:
        """..data is a relative link to the one snapshot folder, named as kubelet names them."""
        (name,) = snapshots(published)
        assert os.readlink(published / "..data") == name
        assert (published / name).is_dir()

    def test_top_level_entries_are_relative_links_into_data(self, published: Path) -> None:
        """Each top-level entry is a link ..data/NAME; nested files have no links of their own."""
        assert os.readlink(published / "app.env") == "..data/app.env"
        assert os.readlink(published / "tls") == "..data/tls"
        assert sorted(os.listdir(published)) == sorted(["..data", *snapshots(published), "app.env", "tls"])

    def test_files_are_readable_through_the_visible_paths(self, published: Path) -> None:
        """The app reads every file, nested ones included, at output_dir/DESTINATION."""
        assert visible(published, list(GOOD)) == GOOD

    def test_result_names_the_snapshot_and_every_added_file(self, sink: Sink, output_dir: Path) -> None:
        """The first publish reports all files as changed and the folder ..data now points to."""
        result = sink.publish(outputs(GOOD))
        assert result == PublishResult(changed=frozenset(GOOD), snapshot=os.readlink(output_dir / "..data"))


class TestModesAndOwners:
    def test_default_mode_is_0440(self, published: Path) -> None:
        """Files are owner- and group-readable only unless the template says otherwise."""
        assert stat.S_IMODE((published / "app.env").stat().st_mode) == 0o440

    def test_mode_is_applied(self, sink: Sink, output_dir: Path) -> None:
        """A template's mode is the file's mode."""
        sink.publish([OutputFile(path="run.sh", content=b"#!/bin/sh\n", mode=0o750)])
        assert stat.S_IMODE((output_dir / "run.sh").stat().st_mode) == 0o750

    def test_snapshot_folders_get_dir_mode(self, output_dir: Path) -> None:
        """The snapshot folder and its sub-folders have dir_mode."""
        sink = Sink(output_dir, dir_mode=0o755)
        sink.publish(outputs(GOOD))
        (name,) = snapshots(output_dir)
        assert stat.S_IMODE((output_dir / name).stat().st_mode) == 0o755
        assert stat.S_IMODE((output_dir / name / "tls").stat().st_mode) == 0o755

    def test_uid_and_gid_are_applied_as_root(self, sink: Sink, output_dir: Path) -> None:
        """As root, uid/gid 1234:1234 chown the file."""
        sink.publish([OutputFile(path="app.env", content=b"x", uid=1234, gid=1234)])
        st = (output_dir / "app.env").stat()
        assert (st.st_uid, st.st_gid) == (1234, 1234)

    def test_setgid_output_dir_gives_files_its_group(self, output_dir: Path) -> None:
        """With a setgid output_dir (fsGroup), files get its group and republishing is a no-op."""
        os.chown(output_dir, 0, 4321)
        os.chmod(output_dir, 0o2770)  # noqa: S103 - setgid, as kubelet makes an fsGroup emptyDir
        sink = Sink(output_dir)
        sink.publish(outputs(GOOD))
        assert (output_dir / "tls/cert.pem").stat().st_gid == 4321
        assert sink.publish(outputs(GOOD)).snapshot is None

    def test_uid_without_root_is_refused(self) -> None:
        """A non-root injector asked to chown says it is not root, and publishes nothing."""
        # Outside tmp_path: pytest's base folder is 0700, which the unprivileged child cannot enter.
        out = Path(tempfile.mkdtemp(prefix="sink-nonroot-"))
        os.chmod(out, 0o755)  # noqa: S103 - the unprivileged child must reach the mount inside
        mount_tmpfs(out)
        try:
            os.chmod(out, 0o777)  # noqa: S103 - and write to it
            message = _in_child_as_nobody(
                lambda: Sink(out).publish([OutputFile(path="app.env", content=b"x", uid=1234)])
            )
            assert message.startswith("writing app.env: cannot give it owner 1234:")
            assert "not root" in message
            assert os.listdir(out) == []
        finally:
            unmount(out)
            out.rmdir()


def _in_child_as_nobody(action: Callable[[], object]) -> str:
    """Runs ``action`` in a forked child as uid/gid 65534; returns the OutputError it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            action()
        except OutputError as exc:
            os.write(write_end, str(exc).encode())
            code = 3
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, "the child did not raise OutputError"
    return message


class TestChanges:
    def test_unchanged_files_write_nothing(self, sink: Sink, published: Path) -> None:
        """Publishing the same bytes, modes and owners swaps nothing and reports nothing."""
        before = tree(published)
        assert sink.publish(outputs(GOOD)) == PublishResult(changed=frozenset(), snapshot=None)
        assert tree(published) == before

    def test_changed_file_makes_one_new_snapshot_and_removes_the_old(self, sink: Sink, published: Path) -> None:
        """A change publishes one new folder, and the previous one is gone."""
        (old,) = snapshots(published)
        result = sink.publish(outputs({**GOOD, "app.env": b"A=2\n"}))
        assert result.changed == {"app.env"}
        assert snapshots(published) == [result.snapshot]
        assert result.snapshot != old
        assert (published / "app.env").read_bytes() == b"A=2\n"

    def test_mode_change_counts_as_a_change(self, sink: Sink, published: Path) -> None:
        """Same bytes with another mode is a change."""
        result = sink.publish(
            [
                *outputs({k: v for k, v in GOOD.items() if k != "app.env"}),
                *outputs({"app.env": GOOD["app.env"]}, mode=0o400),
            ]
        )
        assert result.changed == {"app.env"}

    def test_owner_change_counts_as_a_change(self, sink: Sink, published: Path) -> None:
        """Same bytes with another owner is a change."""
        result = sink.publish(outputs(GOOD, uid=1234))
        assert result.changed == frozenset(GOOD)
        assert (published / "tls/key.pem").stat().st_uid == 1234

    def test_removed_destination_loses_its_link(self, sink: Sink, published: Path) -> None:
        """A destination left out of the set is reported and its link removed."""
        result = sink.publish(outputs({"app.env": GOOD["app.env"]}))
        assert result.changed == {"tls/cert.pem", "tls/key.pem"}
        assert not os.path.lexists(published / "tls")

    def test_deleted_link_is_restored_on_an_unchanged_publish(self, sink: Sink, published: Path) -> None:
        """A link removed behind our back comes back even when no file changed."""
        (published / "app.env").unlink()
        assert sink.publish(outputs(GOOD)).snapshot is None
        assert (published / "app.env").read_bytes() == GOOD["app.env"]


class TestAdoption:
    def test_current_is_empty_before_the_first_publish(self, sink: Sink) -> None:
        """Nothing published means nothing to adopt."""
        assert sink.current() == {}

    def test_current_reads_what_another_instance_published(self, published: Path) -> None:
        """A sidecar's Sink sees the files init's Sink wrote."""
        assert Sink(published).current() == GOOD

    def test_adopted_files_are_not_republished(self, published: Path) -> None:
        """A new Sink publishing what init wrote changes nothing."""
        assert Sink(published).publish(outputs(GOOD)).snapshot is None


class TestDiff:
    def test_diff_reports_changes_without_writing(self, sink: Sink, published: Path) -> None:
        """diff names added, changed and removed destinations and leaves output_dir as it was."""
        before = tree(published)
        assert sink.diff(outputs({"app.env": b"A=2\n", "new.txt": b"n"})) == {
            "app.env",
            "new.txt",
            "tls/cert.pem",
            "tls/key.pem",
        }
        assert tree(published) == before

    def test_diff_without_output_dir_reports_everything(self, tmp_path: Path) -> None:
        """A dry run on a laptop (no output_dir) reports every file as new and creates nothing."""
        missing = tmp_path / "missing"
        assert Sink(missing).diff(outputs(GOOD)) == frozenset(GOOD)
        assert not missing.exists()


class TestPrepare:
    def test_missing_output_dir_is_refused_not_created(self, tmp_path: Path) -> None:
        """A missing mount point is an error that says to mount the emptyDir; nothing is created."""
        missing = tmp_path / "missing"
        with pytest.raises(OutputError, match="does not exist: mount the emptyDir"):
            Sink(missing, allow_non_tmpfs=True).prepare()
        assert not missing.exists()

    def test_file_as_output_dir_is_refused(self, tmp_path: Path) -> None:
        """output_dir must be a folder."""
        (tmp_path / "file").write_text("x")
        with pytest.raises(OutputError, match="is not a folder"):
            Sink(tmp_path / "file", allow_non_tmpfs=True).prepare()

    def test_non_tmpfs_output_dir_is_refused_with_the_fix(self, tmp_path: Path) -> None:
        """A disk-backed output_dir is refused, naming its filesystem and both ways out."""
        fstype = check_filesystem(tmp_path)
        with pytest.raises(OutputError) as caught:
            Sink(tmp_path).prepare()
        assert str(caught.value) == (
            f"output_dir {tmp_path} is on {fstype}, not tmpfs: mount an emptyDir with medium: Memory there, "
            "or set allow_non_tmpfs: true"
        )

    def test_non_tmpfs_output_dir_is_refused_by_publish_too(self, tmp_path: Path) -> None:
        """publish() without prepare() still checks the filesystem, and writes nothing."""
        with pytest.raises(OutputError, match="not tmpfs"):
            Sink(tmp_path).publish(outputs(GOOD))
        assert os.listdir(tmp_path) == []

    def test_allow_non_tmpfs_publishes_with_a_warning(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """allow_non_tmpfs is the escape hatch: it publishes, and warns."""
        sink = Sink(tmp_path, allow_non_tmpfs=True)
        with caplog.at_level(logging.WARNING, logger="injector.sink"):
            sink.publish(outputs(GOOD))
        assert visible(tmp_path, list(GOOD)) == GOOD
        assert "not tmpfs" in caplog.text

    def test_bad_dir_mode_is_a_config_error(self, output_dir: Path) -> None:
        """A dir_mode without owner rwx could not be written into."""
        with pytest.raises(ConfigError, match="dir_mode"):
            Sink(output_dir, dir_mode=0o550)


class TestCleanup:
    def test_leftover_data_tmp_and_its_folder_are_removed(self, published: Path) -> None:
        """A crash between linking ..data_tmp and the rename leaves both; prepare removes them."""
        orphan = "..2026_01_01_00_00_00.42"
        (published / orphan).mkdir()
        (published / orphan / "app.env").write_bytes(b"half")
        os.symlink(orphan, published / "..data_tmp")
        Sink(published).prepare()
        assert not os.path.lexists(published / "..data_tmp")
        assert not os.path.lexists(published / orphan)
        assert visible(published, list(GOOD)) == GOOD

    def test_orphan_snapshot_folder_is_removed(self, published: Path) -> None:
        """A folder ..data does not point to is a crash's leftover."""
        orphan = published / "..2026_01_01_00_00_00.7"
        (orphan / "tls").mkdir(parents=True)
        Sink(published).prepare()
        assert snapshots(published) == [os.readlink(published / "..data")]

    def test_temporary_links_are_removed(self, published: Path) -> None:
        """..link_tmp.* links left by a crash in step 3 are removed."""
        os.symlink("..data/x", published / "..link_tmp.0badc0de")
        Sink(published).prepare()
        assert not os.path.lexists(published / "..link_tmp.0badc0de")

    def test_links_to_missing_names_are_removed(self, published: Path) -> None:
        """Our link to a name the live snapshot lacks (crash before step 5) is removed."""
        os.symlink("..data/gone.txt", published / "gone.txt")
        Sink(published).prepare()
        assert not os.path.lexists(published / "gone.txt")

    def test_missing_links_are_restored(self, published: Path) -> None:
        """A live entry without its link gets it back."""
        (published / "tls").unlink()
        Sink(published).prepare()
        assert os.readlink(published / "tls") == "..data/tls"

    def test_foreign_entries_are_never_touched(self, published: Path, tmp_path: Path) -> None:
        """Files, folders and links that are not ours stay, whatever they look like."""
        (published / "notes.txt").write_text("mine")
        (published / ".hidden").write_text("mine")
        (published / "..mine").write_text("mine")
        (published / "folder").mkdir()
        (published / "folder" / "f").write_text("mine")
        os.symlink(str(tmp_path), published / "abs-link")
        os.symlink("..data/app.env", published / "alias")
        before = tree(published)
        Sink(published).prepare()
        assert tree(published) == before

    def test_removals_are_logged_at_info(self, published: Path, caplog: pytest.LogCaptureFixture) -> None:
        """What prepare removed is logged at INFO, by name."""
        (published / "..2026_01_01_00_00_00.9").mkdir()
        with caplog.at_level(logging.INFO, logger="injector.sink"):
            Sink(published).prepare()
        assert "..2026_01_01_00_00_00.9" in caplog.text

    def test_foreign_data_entry_is_refused(self, output_dir: Path) -> None:
        """A ..data that is a real folder is not ours to replace."""
        (output_dir / "..data").mkdir()
        with pytest.raises(OutputError, match=r"\.\.data is not a symlink"):
            Sink(output_dir).prepare()
        assert (output_dir / "..data").is_dir()


class TestRefusals:
    @pytest.mark.parametrize(
        "path",
        ["../x", "a/../../x", "/abs", "..data", "..2026_01_01_00_00_00.1", "a//b", "./a", "a/", ""],
        ids=["dotdot", "nested-dotdot", "absolute", "data", "snapshot-name", "empty-part", "dot", "slash", "empty"],
    )
    def test_bad_destination_is_refused(self, sink: Sink, published: Path, path: str) -> None:
        """A destination that is not a plain relative path inside output_dir writes nothing."""
        before = tree(published)
        with pytest.raises(ConfigError, match="destination"):
            sink.publish(outputs({**GOOD, path: b"evil"}))
        assert tree(published) == before
        assert visible(published, list(GOOD)) == GOOD

    def test_duplicate_destination_is_refused(self, sink: Sink, published: Path) -> None:
        """The same destination twice is ambiguous."""
        before = tree(published)
        with pytest.raises(ConfigError, match="given twice"):
            sink.publish([*outputs(GOOD), OutputFile(path="app.env", content=b"other")])
        assert tree(published) == before

    def test_file_that_is_also_a_folder_is_refused(self, sink: Sink, published: Path) -> None:
        """tls and tls/cert.pem cannot both be files."""
        before = tree(published)
        with pytest.raises(ConfigError, match="'tls' is a file and also the folder"):
            sink.publish(outputs({**GOOD, "tls": b"x"}))
        assert tree(published) == before

    @pytest.mark.parametrize("kind", ["file", "folder"])
    def test_foreign_entry_at_a_destination_is_refused(self, sink: Sink, published: Path, kind: str) -> None:
        """A real file or folder someone else put at a top-level name is named, and left alone."""
        foreign = published / "db.conf"
        if kind == "file":
            foreign.write_bytes(b"theirs")
        else:
            foreign.mkdir()
        os.chown(foreign, 4321, 4321)
        before = tree(published)
        with pytest.raises(OutputError, match=f"db.conf: {published}/db.conf is a {kind} injector did not create"):
            sink.publish(outputs({**GOOD, "db.conf": b"ours"}))
        assert tree(published) == before
        assert visible(published, list(GOOD)) == GOOD


class TestPlantedLinks:
    def test_link_to_a_file_outside_is_replaced_not_followed(
        self, sink: Sink, output_dir: Path, tmp_path: Path
    ) -> None:
        """app.env -> /etc/passwd-like target: the link is replaced and the target is untouched."""
        victim = tmp_path / "passwd"
        victim.write_bytes(b"root:x:0:0\n")
        os.symlink(str(victim), output_dir / "app.env")
        sink.publish(outputs({"app.env": b"A=1\n"}))
        assert victim.read_bytes() == b"root:x:0:0\n"
        assert os.readlink(output_dir / "app.env") == "..data/app.env"
        assert (output_dir / "app.env").read_bytes() == b"A=1\n"

    def test_link_to_a_folder_outside_is_replaced_not_written_into(
        self, sink: Sink, output_dir: Path, tmp_path: Path
    ) -> None:
        """tls -> /elsewhere: tls/cert.pem is written in the snapshot, never in /elsewhere."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.symlink(str(elsewhere), output_dir / "tls")
        sink.publish(outputs(GOOD))
        assert os.listdir(elsewhere) == []
        assert visible(output_dir, list(GOOD)) == GOOD

    def test_replaced_link_is_repaired_on_an_unchanged_publish(
        self, sink: Sink, published: Path, tmp_path: Path
    ) -> None:
        """Our link swapped for a foreign one is put back even when no file changed."""
        victim = tmp_path / "victim"
        victim.write_bytes(b"keep")
        (published / "app.env").unlink()
        os.symlink(str(victim), published / "app.env")
        sink.publish(outputs(GOOD))
        assert victim.read_bytes() == b"keep"
        assert (published / "app.env").read_bytes() == GOOD["app.env"]


class TestFullTmpfs:
    def test_enospc_is_reported_with_the_fix(self, small_out: Path) -> None:
        """A snapshot too big for the tmpfs names the file, the OS error and the sizeLimit."""
        sink = Sink(small_out)
        sink.publish(outputs(SMALL))
        with pytest.raises(
            OutputError, match=r"writing [\w/.]+: No space left on device .*raise the emptyDir sizeLimit"
        ):
            sink.publish(outputs({"a.txt": b"A" * 40_000, "b/c.txt": b"C" * 40_000}))

    def test_enospc_leaves_the_previous_snapshot_as_it_was(self, small_out: Path) -> None:
        """After ENOSPC the previous files are live and byte-identical, and no half folder or link is left."""
        sink = Sink(small_out)
        sink.publish(outputs(SMALL))
        before = tree(small_out)
        with pytest.raises(OutputError):
            sink.publish(outputs({"a.txt": b"A" * 40_000, "b/c.txt": b"C" * 40_000, "new.txt": b"n"}))
        assert tree(small_out) == before
        assert visible(small_out, list(SMALL)) == SMALL

    def test_smaller_files_publish_after_enospc(self, small_out: Path) -> None:
        """Once the files fit again, publishing works."""
        sink = Sink(small_out)
        sink.publish(outputs(SMALL))
        with pytest.raises(OutputError):
            sink.publish(outputs({"a.txt": b"A" * 40_000, "b/c.txt": b"C" * 40_000}))
        smaller = {"a.txt": b"A" * 16_000, "b/c.txt": b"C" * 16_000}
        assert sink.publish(outputs(smaller)).changed == frozenset(smaller)
        assert visible(small_out, list(smaller)) == smaller


class TestCheckFilesystem:
    def test_tmpfs_is_tmpfs(self, tmpfs: Path) -> None:
        """A tmpfs mount point reports tmpfs."""
        assert check_filesystem(tmpfs) == "tmpfs"

    def test_disk_is_not_tmpfs(self, tmp_path: Path) -> None:
        """pytest's tmp_path (on the disk here) does not report tmpfs."""
        assert check_filesystem(tmp_path) != "tmpfs"

    def test_a_folder_below_a_tmpfs_mount_point_is_tmpfs(self, tmpfs: Path) -> None:
        """A folder below a tmpfs mount point is on that tmpfs, not on the filesystem above."""
        (tmpfs / "a" / "b").mkdir(parents=True)
        assert check_filesystem(tmpfs / "a" / "b") == "tmpfs"

    def test_links_are_resolved_first(self, tmpfs: Path, tmp_path: Path) -> None:
        """A link on the disk pointing into a tmpfs is on tmpfs."""
        os.symlink(str(tmpfs), tmp_path / "link")
        assert check_filesystem(tmp_path / "link") == "tmpfs"

    def test_a_mount_point_with_a_space(self, tmp_path: Path) -> None:
        """A tmpfs mounted on a path with a space is tmpfs."""
        spaced = tmp_path / "with space"
        mount_tmpfs(spaced, size="1m")
        try:
            assert check_filesystem(spaced) == "tmpfs"
        finally:
            unmount(spaced)

    def test_an_open_folder_is_judged_by_itself_not_by_its_path(self, disk: Path) -> None:
        """A disk folder opened before a tmpfs is mounted over its path is still on the disk, and the reverse."""
        on_disk = check_filesystem(disk)
        fd = os.open(disk, os.O_RDONLY | os.O_DIRECTORY)
        mount_tmpfs(disk, size="1m")
        try:
            fd_over = os.open(disk, os.O_RDONLY | os.O_DIRECTORY)
            try:
                assert (filesystem_type(fd, "disk"), filesystem_type(fd_over, "disk")) == (on_disk, "tmpfs")
            finally:
                os.close(fd_over)
        finally:
            os.close(fd)
            unmount(disk)

    def test_unknown_filesystems_are_named_by_their_magic(self) -> None:
        """A filesystem without a name in the table is named by its statfs magic number."""
        fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert filesystem_type(fd, "/proc") == "a filesystem with magic 0x00009fa0"
        finally:
            os.close(fd)


def bind_mount(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """An empty folder on a disk-backed filesystem (pytest's tmp_path, unless that is in memory)."""
    if check_filesystem(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is in memory; these tests need a disk-backed folder")
    folder = tmp_path / "disk"
    folder.mkdir()
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root (run the suite as root, as CI does)")
class TestHiddenByAMount:
    def test_a_disk_folder_mounted_over_output_dir_later_is_refused(self, output_dir: Path, disk: Path) -> None:
        """A disk folder bind-mounted over output_dir between publishes gets nothing: publish refuses it."""
        sink = Sink(output_dir)
        sink.publish(outputs(GOOD))
        bind_mount(disk, output_dir)
        try:
            with pytest.raises(OutputError, match=f"output_dir {output_dir} is on {check_filesystem(disk)}, not tmpfs"):
                sink.publish(outputs({**GOOD, "app.env": b"A=2\n"}))
            assert os.listdir(disk) == []
        finally:
            unmount(output_dir)

    def test_tmpfs_hidden_by_a_disk_mount_above_it_is_refused(self, tmp_path: Path, disk: Path) -> None:
        """A tmpfs at base/t/out hidden by a disk folder mounted on base/t: output_dir base/t/out is the disk's."""
        out = tmp_path / "t" / "out"
        mount_tmpfs(out, size="1m")
        (disk / "out").mkdir()
        bind_mount(disk, tmp_path / "t")
        try:
            # /proc/self/mountinfo still lists the tmpfs at base/t/out, the longest matching mount point.
            with pytest.raises(OutputError, match=f"is on {check_filesystem(disk)}, not tmpfs"):
                Sink(out).prepare()
            assert os.listdir(disk / "out") == []
        finally:
            unmount(tmp_path / "t")
            unmount(out)

    def test_tmpfs_mounted_over_a_disk_mount_is_accepted(self, tmp_path: Path, disk: Path) -> None:
        """A disk folder at base/t/out hidden by a tmpfs mounted on base/t: output_dir base/t/out is on tmpfs."""
        out = tmp_path / "t" / "out"
        out.mkdir(parents=True)
        bind_mount(disk, out)
        mount_tmpfs(tmp_path / "t", size="1m")
        try:
            out.mkdir()
            sink = Sink(out)
            sink.publish(outputs(GOOD))
            assert visible(out, list(GOOD)) == GOOD
            assert os.listdir(disk) == []
        finally:
            unmount(tmp_path / "t")
            unmount(out)


class TestLogging:
    def test_publish_logs_counts_never_contents(self, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
        """The publish log line has the snapshot and counts, and no file content."""
        with caplog.at_level(logging.DEBUG, logger="injector"):
            result = sink.publish(outputs({"app.env": SENTINEL.encode(), "b.txt": b"b"}))
            sink.publish(outputs({"app.env": SENTINEL.encode(), "b.txt": b"b"}))
        assert f"published snapshot {result.snapshot} (2 files, 2 changed)" in caplog.messages
        assert "unchanged, skipped" in caplog.messages
        assert SENTINEL not in caplog.text

    def test_output_file_repr_hides_content(self) -> None:
        """An OutputFile in a traceback or log does not show its bytes."""
        assert SENTINEL not in repr(OutputFile(path="app.env", content=SENTINEL.encode()))


class TestWritePrivate:
    def test_creates_a_0700_folder_and_a_0600_file(self, tmp_path: Path) -> None:
        """A missing state_dir is created 0700 (parents too) and the file written 0600."""
        state = tmp_path / "run" / "injector"
        write_private(state, "token", b"t0k3n")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "token").stat().st_mode) == 0o600
        assert (state / "token").read_bytes() == b"t0k3n"

    def test_replaces_by_rename_and_leaves_no_temp_file(self, tmp_path: Path) -> None:
        """A rewrite is a new inode renamed into place, with no temporary file left."""
        write_private(tmp_path / "s", "token", b"one")
        inode = (tmp_path / "s" / "token").stat().st_ino
        write_private(tmp_path / "s", "token", b"two")
        assert (tmp_path / "s" / "token").read_bytes() == b"two"
        assert (tmp_path / "s" / "token").stat().st_ino != inode
        assert os.listdir(tmp_path / "s") == ["token"]

    def test_refuses_a_symlinked_folder(self, tmp_path: Path) -> None:
        """state_dir that is a symlink is refused and its target stays empty."""
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        os.symlink(str(real), tmp_path / "link")
        with pytest.raises(OutputError, match="is a symlink"):
            write_private(tmp_path / "link", "token", b"t")
        assert os.listdir(real) == []

    def test_replaces_a_planted_symlink_instead_of_following_it(self, tmp_path: Path) -> None:
        """A link planted at the file's name is replaced; its target keeps its bytes."""
        state = tmp_path / "s"
        state.mkdir(mode=0o700)
        victim = tmp_path / "victim"
        victim.write_bytes(b"keep")
        os.symlink(str(victim), state / "token")
        write_private(state, "token", b"t")
        assert victim.read_bytes() == b"keep"
        assert not (state / "token").is_symlink()

    def test_tightens_an_open_folder_we_own(self, tmp_path: Path) -> None:
        """Our own state_dir with mode 0755 becomes 0700."""
        state = tmp_path / "s"
        state.mkdir()
        state.chmod(0o755)
        write_private(state, "token", b"t")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700

    def test_refuses_an_open_folder_owned_by_someone_else(self, tmp_path: Path) -> None:
        """An open state_dir we do not own (an emptyDir root) is refused with the subfolder fix."""
        state = tmp_path / "s"
        state.mkdir()
        state.chmod(0o777)
        os.chown(state, 1234, 1234)
        with pytest.raises(OutputError, match="point state_dir at a subfolder"):
            write_private(state, "token", b"t")
        assert os.listdir(state) == []


class TestReadPrivate:
    def test_missing_folder_or_file_is_none(self, tmp_path: Path) -> None:
        """Nothing written yet reads as None."""
        assert read_private(tmp_path / "missing", "token") is None
        write_private(tmp_path / "s", "other", b"x")
        assert read_private(tmp_path / "s", "token") is None

    def test_reads_what_write_private_wrote(self, tmp_path: Path) -> None:
        """The round trip returns the bytes."""
        write_private(tmp_path / "s", "lease.json", b"{}")
        assert read_private(tmp_path / "s", "lease.json") == b"{}"

    def test_refuses_a_file_others_can_read(self, tmp_path: Path) -> None:
        """A group-readable file may have been planted: refused."""
        write_private(tmp_path / "s", "token", b"t")
        (tmp_path / "s" / "token").chmod(0o640)
        with pytest.raises(OutputError, match="readable by others"):
            read_private(tmp_path / "s", "token")

    def test_refuses_a_file_someone_else_owns(self, tmp_path: Path) -> None:
        """A file not owned by us is refused."""
        write_private(tmp_path / "s", "token", b"t")
        os.chown(tmp_path / "s" / "token", 1234, 1234)
        with pytest.raises(OutputError, match="owned by uid 1234"):
            read_private(tmp_path / "s", "token")

    def test_refuses_a_symlink(self, tmp_path: Path) -> None:
        """A link at the file's name is refused, not followed."""
        write_private(tmp_path / "s", "other", b"x")
        (tmp_path / "target").write_bytes(b"t")
        (tmp_path / "target").chmod(0o600)
        os.symlink(str(tmp_path / "target"), tmp_path / "s" / "token")
        with pytest.raises(OutputError, match="is a symlink"):
            read_private(tmp_path / "s", "token")
