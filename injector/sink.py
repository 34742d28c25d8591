"""Publishes the rendered files into output_dir as one snapshot, in kubelet's AtomicWriter layout.

```
output_dir/
  ..2026_11_21_04_47_00.3141592653/   one folder per snapshot, never changed once ..data points to it
      app.env
      tls/cert.pem
  ..data -> ..2026_11_21_04_47_00.3141592653
  app.env -> ..data/app.env           one relative link per top-level entry
  tls -> ..data/tls
```

Every user-visible path resolves through ``..data``, so renaming that one symlink switches every
file at once: an app never opens a half-written file, and a certificate never meets the previous
key. Tools that watch ConfigMap volumes (they wait for ``..data`` to change) work unchanged.
Names starting with ``..`` are ours (destinations may not start with ``..``), which is what lets
``prepare()`` clean up after a crash without touching anything someone else put in output_dir.

``Sink.publish`` — the steps are tagged ``(1)``…``(5)`` in the code:

1. Validate every destination and refuse a top-level name held by a real file or folder. Nothing
   is written before this passes, so a refusal leaves the output exactly as it was.
2. Write every file into a fresh snapshot folder: temp name, write, fsync, chown, chmod, rename.
   Nothing points to the folder yet, so on any failure (ENOSPC …) deleting it undoes everything.
3. Link the top-level names that are new (``name -> ..data/name``). They dangle until (4), which
   to a reader is the same as absent; linking before the swap makes them appear with the data.
4. Point ``..data_tmp`` at the new folder and rename it over ``..data``: the commit, atomic.
5. Remove the links of names that are gone and the previous snapshot folder. A failure here only
   leaves litter: it is logged, and the next publish or ``prepare()`` removes it.

A SIGKILL anywhere leaves the previous snapshot complete and pointed to, plus litter that
``prepare()`` recognises by name. Inside output_dir, everything is reached through directory file
descriptors opened with O_NOFOLLOW and written only inside the folder made in (2): a symlink planted
at a top-level name is replaced by a rename, never followed.

Publishing needs room for two copies (the previous snapshot stays until the new one is live), so
the emptyDir sizeLimit must be at least twice the size of the files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from injector.dirfd import (
    MEMORY_FILESYSTEMS,
    FileState,
    check_filesystem,
    filesystem_type,
    link_target,
    lstat_at,
    open_dir,
    os_error_message,
    read_tree,
    remove_at,
    write_new_file,
)
from injector.errors import ConfigError, OutputError
from injector.private import read_private, write_private

__all__ = ["OutputFile", "PublishResult", "Sink", "check_filesystem", "read_private", "write_private"]

logger = logging.getLogger(__name__)

_DATA = "..data"
_DATA_TMP = "..data_tmp"
_LINK_TMP = "..link_tmp."
_LINK_TMP_RE = re.compile(r"\.\.link_tmp\.[0-9a-f]+")
#: kubelet's snapshot name: Go's MkdirTemp with the prefix "..2006_01_02_15_04_05.".
_SNAPSHOT_RE = re.compile(r"\.\.\d{4}(?:_\d{2}){5}\.\d+")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFile:
    """One rendered file: where it goes in output_dir, its bytes, and who may read it."""

    #: Relative destination such as ``app.env`` or ``tls/cert.pem`` (validated again on publish).
    path: str
    content: bytes = field(repr=False)
    mode: int = 0o440
    #: None: the process's uid; for gid, output_dir's group when it is setgid (as fsGroup makes it).
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    """What a publish did."""

    #: Destinations added, removed, or whose bytes, mode or owner changed.
    changed: frozenset[str]
    #: The new snapshot folder's name; None when nothing changed and nothing was written.
    snapshot: str | None


class Sink:
    """The output directory of one injector: one publisher at a time, any number of readers.

    Args:
        output_dir: an existing folder, on tmpfs unless ``allow_non_tmpfs``.
        dir_mode: mode of the snapshot folders; the app must be able to enter them (0750 works
            when the app shares output_dir's group, as with fsGroup).
    """

    def __init__(self, output_dir: Path, *, allow_non_tmpfs: bool = False, dir_mode: int = 0o750) -> None:
        if not 0 <= dir_mode <= 0o7777 or dir_mode & 0o700 != 0o700:
            raise ConfigError(f"dir_mode 0{dir_mode:o}: the owner needs rwx (0700) to write the snapshot")
        self.output_dir = Path(output_dir)
        self.allow_non_tmpfs = allow_non_tmpfs
        self.dir_mode = dir_mode
        self._where = f"output_dir {self.output_dir}"
        self._prepared = False
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Checks output_dir (exists, is tmpfs) and removes what an interrupted publish left.

        Removes ``..data_tmp``, temporary links, snapshot folders ``..data`` does not point to and
        links to names the live snapshot lacks, and restores missing links; never anything else.

        Raises:
            OutputError: output_dir is missing, not a folder, not tmpfs, or not ours to clean.
        """
        with self._lock:
            self._prepare()

    def current(self) -> dict[str, bytes]:
        """Returns destination -> bytes of the live snapshot ({} if none), e.g. what ``init`` wrote."""
        if not self.output_dir.is_dir():
            return {}
        with self._opened() as out:
            return {path: stored.content for path, stored in self._scan(out).items()}

    def diff(self, files: Sequence[OutputFile]) -> frozenset[str]:
        """Returns the destinations ``publish(files)`` would change, writing nothing (dry runs)."""
        wanted = _validate(files)
        if not self.output_dir.is_dir():
            return frozenset(wanted)
        with self._opened() as out:
            return frozenset(self._changes(out, wanted, self._scan(out)))

    def publish(self, files: Sequence[OutputFile]) -> PublishResult:
        """Publishes ``files`` — the full set, every time — as one new snapshot, if anything changed.

        Follows the numbered steps of the module docstring.

        Raises:
            ConfigError: a destination is invalid (absolute, ``..``, reserved, duplicate, clashing).
            OutputError: anything else; the previous snapshot is left complete and live.
        """
        wanted = _validate(files)  # (1)
        with self._lock:
            if not self._prepared:
                self._prepare()
            with self._opened(lock=True) as out:
                # Again at every publish: a mount over output_dir since prepare() must not get the files.
                self._check_memory(out, warn=False)  # (1)
                self._check_top_level(out, wanted)  # (1)
                stored = self._scan(out)
                changed = self._changes(out, wanted, stored)
                if not changed:
                    logger.debug("unchanged, skipped")
                    # Writes nothing unless a top-level link was deleted or replaced behind our back.
                    self._link(out, sorted({_top(path) for path in wanted}), [])
                    return PublishResult(changed=frozenset(), snapshot=None)
                new = self._commit(out, wanted, keep={_top(path) for path in stored})  # (2)-(4)
                self._remove_stale(out, new, {_top(path) for path in wanted})  # (5)
        logger.info("published snapshot %s (%d files, %d changed)", new, len(wanted), len(changed))
        return PublishResult(changed=frozenset(changed), snapshot=new)

    # --- publishing ------------------------------------------------------------------------------

    def _commit(self, out: int, wanted: dict[str, OutputFile], *, keep: set[str]) -> str:
        """Steps (2)-(4); on any failure, removes what they made and re-raises."""
        with self._failing("creating the snapshot folder"):
            new = self._new_folder(out)  # (2)
        linked: list[str] = []
        try:
            self._write_snapshot(out, new, wanted)  # (2)
            self._link(out, sorted({_top(path) for path in wanted}), linked)  # (3)
            with self._failing("switching ..data to the new snapshot"):  # (4)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_DATA_TMP, dir_fd=out)
                os.symlink(new, _DATA_TMP, dir_fd=out)
                os.rename(_DATA_TMP, _DATA, src_dir_fd=out, dst_dir_fd=out)
        except BaseException:
            self._rollback(out, new, linked, keep)
            raise
        return new

    def _new_folder(self, out: int) -> str:
        for _ in range(100):
            name = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(secrets.randbits(32))
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=out)
                return name
        raise OutputError(f"creating the snapshot folder: no free name in {self._where}")

    def _write_snapshot(self, out: int, new: str, wanted: dict[str, OutputFile]) -> None:
        folders: dict[str, int] = {}
        try:
            with self._failing(f"creating {new}"):
                folders[""] = open_dir(new, dir_fd=out)
                self._set_dir_mode(folders[""])
            for path in sorted(wanted):
                parent, _, leaf = path.rpartition("/")
                with self._failing(f"creating folder {parent}"):
                    folder = self._folder(folders, parent)
                f = wanted[path]
                with self._failing(f"writing {path}"):
                    write_new_file(folder, leaf, f.content, mode=f.mode, uid=f.uid, gid=f.gid, label=path)
            with self._failing(f"syncing {new}"):
                for fd in folders.values():
                    os.fsync(fd)
        finally:
            for fd in folders.values():
                os.close(fd)

    def _folder(self, folders: dict[str, int], rel: str) -> int:
        """Returns an fd of the snapshot's sub-folder ``rel``, creating it (and its parents)."""
        if rel not in folders:
            parent, _, leaf = rel.rpartition("/")
            parent_fd = self._folder(folders, parent)
            os.mkdir(leaf, 0o700, dir_fd=parent_fd)
            folders[rel] = open_dir(leaf, dir_fd=parent_fd)
            self._set_dir_mode(folders[rel])
        return folders[rel]

    def _set_dir_mode(self, fd: int) -> None:
        # Keep the setgid bit inherited from output_dir (fsGroup): files then get the pod's group.
        os.fchmod(fd, self.dir_mode | (os.fstat(fd).st_mode & stat.S_ISGID))

    def _link(self, out: int, names: list[str], linked: list[str]) -> None:
        """Step (3): points each top-level name at ``..data/name``, replacing (never following) links."""
        for name in names:
            target = f"{_DATA}/{name}"
            previous = link_target(out, name)
            if previous == target:
                continue
            if previous is not None:
                logger.warning("replacing symlink %s -> %s in %s (not followed)", name, previous, self._where)
            tmp = _LINK_TMP + secrets.token_hex(4)
            with self._failing(f"linking {name}"):
                os.symlink(target, tmp, dir_fd=out)
                try:
                    os.rename(tmp, name, src_dir_fd=out, dst_dir_fd=out)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=out)
                    raise
            linked.append(name)

    def _rollback(self, out: int, new: str, linked: list[str], keep: set[str]) -> None:
        """Undoes (2)-(3) unless (4) happened; links of names the live snapshot has stay valid."""
        try:
            live = self._current_name(out)
        except (OSError, OutputError):
            return  # cannot tell whether the swap happened: leave everything to prepare()
        if live == new:
            return
        for name in linked:
            if name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=out)
        with contextlib.suppress(OSError):
            os.unlink(_DATA_TMP, dir_fd=out)
        with contextlib.suppress(OSError):
            remove_at(out, new)

    def _remove_stale(self, out: int, new: str, names: set[str]) -> None:
        """Step (5): removes links of names that are gone and every snapshot folder but ``new``."""
        try:
            os.fsync(out)  # the swap is durable before what it replaced goes
            for name in sorted(os.listdir(out)):
                if _SNAPSHOT_RE.fullmatch(name) and name != new:
                    remove_at(out, name)
                elif name not in names and link_target(out, name) == f"{_DATA}/{name}":
                    os.unlink(name, dir_fd=out)
        except OSError as exc:
            logger.warning("published snapshot %s, but %s", new, os_error_message("cleaning up", exc, self._where))

    # --- reading and checking --------------------------------------------------------------------

    def _prepare(self) -> None:
        with self._opened(lock=True) as out:
            self._check_memory(out, warn=True)
            with self._failing("cleaning up"):
                self._clean(out)
        self._prepared = True

    def _check_memory(self, out: int, *, warn: bool) -> None:
        """Refuses an output_dir fd that is not on tmpfs/ramfs, unless allow_non_tmpfs (then warns if ``warn``)."""
        fstype = filesystem_type(out, self._where)
        if fstype in MEMORY_FILESYSTEMS:
            return
        if not self.allow_non_tmpfs:
            raise OutputError(
                f"{self._where} is on {fstype}, not tmpfs: mount an emptyDir with medium: Memory there, "
                "or set allow_non_tmpfs: true"
            )
        if warn:
            logger.warning("%s is on %s, not tmpfs: secrets may reach a disk (allow_non_tmpfs)", self._where, fstype)

    def _clean(self, out: int) -> None:
        live = self._current_name(out)
        entries: set[str] = set()
        if live is not None and (st := lstat_at(out, live)) is not None and stat.S_ISDIR(st.st_mode):
            fd = open_dir(live, dir_fd=out)
            try:
                entries = set(os.listdir(fd))
            finally:
                os.close(fd)
        removed = []
        for name in sorted(os.listdir(out)):
            if name == _DATA_TMP or _LINK_TMP_RE.fullmatch(name) or (_SNAPSHOT_RE.fullmatch(name) and name != live):
                remove_at(out, name)
            elif name not in entries and link_target(out, name) == f"{_DATA}/{name}":
                os.unlink(name, dir_fd=out)
            else:
                continue
            removed.append(name)
        restored = []
        for name in sorted(entries):
            if lstat_at(out, name) is None:
                os.symlink(f"{_DATA}/{name}", name, dir_fd=out)
                restored.append(name)
        if removed:
            logger.info("removed leftovers of an interrupted publish from %s: %s", self._where, ", ".join(removed))
        if restored:
            logger.info("restored links in %s: %s", self._where, ", ".join(restored))

    def _current_name(self, out: int) -> str | None:
        """Returns the snapshot folder ``..data`` points to, None if there is no ``..data``."""
        try:
            target = os.readlink(_DATA, dir_fd=out)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise OutputError(f"{self.output_dir / _DATA} is not a symlink injector made: move it away") from exc
            raise OutputError(os_error_message(f"reading {_DATA}", exc, self._where)) from exc
        if not _SNAPSHOT_RE.fullmatch(target):
            raise OutputError(f"{self.output_dir / _DATA} points to {target!r}, not to a snapshot folder: remove it")
        return target

    def _scan(self, out: int) -> dict[str, FileState]:
        live = self._current_name(out)
        if live is None:
            return {}
        with self._failing(f"reading snapshot {live}"):
            try:
                fd = open_dir(live, dir_fd=out)
            except FileNotFoundError:
                logger.warning("%s points to %s, which is missing: everything counts as new", _DATA, live)
                return {}
            try:
                return read_tree(fd, "")
            finally:
                os.close(fd)

    def _changes(self, out: int, wanted: dict[str, OutputFile], stored: dict[str, FileState]) -> set[str]:
        uid = os.geteuid()
        st = os.fstat(out)
        gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
        changed = {
            path
            for path, f in wanted.items()
            if stored.get(path)
            != FileState(
                content=f.content,
                mode=f.mode,
                uid=uid if f.uid is None else f.uid,
                gid=gid if f.gid is None else f.gid,
            )
        }
        return changed | (stored.keys() - wanted.keys())

    def _check_top_level(self, out: int, wanted: dict[str, OutputFile]) -> None:
        for name in sorted({_top(path) for path in wanted}):
            with self._failing(f"checking {name}"):
                st = lstat_at(out, name)
            if st is not None and not stat.S_ISLNK(st.st_mode):
                kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
                raise OutputError(
                    f"{name}: {self.output_dir / name} is a {kind} injector did not create: "
                    "move it away or choose another destination"
                )

    @contextlib.contextmanager
    def _opened(self, *, lock: bool = False) -> Iterator[int]:
        try:
            fd = open_dir(self.output_dir, follow=True)
        except FileNotFoundError as exc:
            raise OutputError(
                f"{self._where} does not exist: mount the emptyDir there, or create the folder "
                "(injector does not, so that a missing mount cannot go unnoticed)"
            ) from exc
        except NotADirectoryError as exc:
            raise OutputError(f"{self._where} is not a folder") from exc
        except OSError as exc:
            raise OutputError(os_error_message("opening it", exc, self._where)) from exc
        try:
            if lock:
                # One publisher per output_dir: prepare() must never clean up another one's folder.
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise OutputError(os_error_message(what, exc, self._where)) from exc


def _validate(files: Sequence[OutputFile]) -> dict[str, OutputFile]:
    """Step (1): returns the files by destination, or raises ConfigError for a destination that is
    absolute, leaves output_dir, is reserved (``..*``), not normalised, duplicated, or both a file
    and another file's folder. config.check_destination checked these already; this is the
    second line of defence, written independently."""
    wanted: dict[str, OutputFile] = {}
    for f in files:
        path = f.path
        parts = path.split("/")
        if not path or "\x00" in path or "\\" in path:
            raise ConfigError(f"destination {path!r} is empty or contains a NUL or backslash")
        if path.startswith("/"):
            raise ConfigError(f"destination {path!r} is absolute; destinations are relative to output_dir")
        if ".." in parts:
            raise ConfigError(f"destination {path!r} leaves output_dir ('..' is not allowed)")
        if "" in parts or "." in parts:
            raise ConfigError(f"destination {path!r} is not a normalised path")
        if path.startswith(".."):
            raise ConfigError(f"destination {path!r}: names starting with '..' are reserved for the snapshot layout")
        if path in wanted:
            raise ConfigError(f"destination {path!r} is given twice")
        if not 0 <= f.mode <= 0o7777 or (f.uid is not None and f.uid < 0) or (f.gid is not None and f.gid < 0):
            raise ConfigError(f"destination {path!r}: invalid mode, uid or gid")
        wanted[path] = f
    folders = {"/".join(p.split("/")[:i]) for p in wanted for i in range(1, p.count("/") + 1)}
    if clashes := sorted(folders & wanted.keys()):
        raise ConfigError(f"destination {clashes[0]!r} is a file and also the folder of another destination")
    return wanted


def _top(path: str) -> str:
    return path.split("/", 1)[0]
