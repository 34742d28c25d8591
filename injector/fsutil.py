"""Filesystem helpers for sink.py: which filesystem a path is on, files read and written through
directory fds, OSError messages that say what to do, and state_dir's private files (Vault token,
lease handoff).

Everything here works on directory file descriptors opened with ``O_NOFOLLOW``: a symlink planted
inside a folder we manage is replaced or refused, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from injector.errors import OutputError

__all__ = [
    "MEMORY_FILESYSTEMS",
    "FileState",
    "check_filesystem",
    "link_target",
    "lstat_at",
    "open_dir",
    "os_error_message",
    "read_private",
    "read_tree",
    "remove_at",
    "write_new_file",
    "write_private",
]

logger = logging.getLogger(__name__)

#: Filesystems whose pages never reach a disk (swap aside): the only ones secrets may be written to.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})

_MOUNTINFO = Path("/proc/self/mountinfo")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file should be must not hang us.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def check_filesystem(path: Path) -> str:
    """Returns the type of the filesystem holding ``path`` ("tmpfs", "ext4", "overlay" …).

    The mount is the one in /proc/self/mountinfo whose mount point is the longest prefix of the
    resolved path; of several mounts on the same point, the last (the visible one) wins.

    Raises:
        OutputError: mountinfo cannot be read or has no mount for the path.
    """
    real = os.path.realpath(path)
    try:
        text = _MOUNTINFO.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise OutputError(f"cannot tell which filesystem {path} is on: reading {_MOUNTINFO}: {exc.strerror}") from exc
    best, fstype = -1, None
    for line in text.splitlines():
        # ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        mount_point = _unescape(fields[4])
        if _inside(real, mount_point) and len(mount_point) >= best:
            best, fstype = len(mount_point), fields[fields.index("-", 6) + 1]
    if fstype is None:
        raise OutputError(f"cannot tell which filesystem {path} is on: no mount in {_MOUNTINFO} holds {real}")
    return fstype


def _unescape(field: str) -> str:
    """Undoes mountinfo's octal escapes (``\\040`` is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _inside(path: str, mount_point: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point + "/")


def open_dir(path: str | Path, *, dir_fd: int | None = None, follow: bool = False) -> int:
    """Opens a directory for ``*at`` calls; unless ``follow``, refuses (ELOOP) if it is a symlink."""
    return os.open(path, _DIR_FLAGS | (0 if follow else os.O_NOFOLLOW), dir_fd=dir_fd)


def os_error_message(what: str, exc: OSError, folder: str) -> str:
    """Returns ``"what: reason (how to fix)"`` for an OSError; ``folder`` is e.g. ``output_dir /x``."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{what}: {reason} ({folder} is full: raise the emptyDir sizeLimit; "
            "publishing needs room for the previous and the new files at once)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{what}: {reason} ({folder}: injector runs as uid {os.geteuid()}, gid {os.getegid()})"
    if exc.errno == errno.EROFS:
        return f"{what}: {reason} ({folder} is mounted read-only)"
    return f"{what}: {reason}"


# --- working inside a folder, through its fd ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileState:
    """A file as it is on disk: bytes, permission bits and owner."""

    content: bytes = field(repr=False)
    mode: int
    uid: int
    gid: int


def read_tree(folder: int, prefix: str = "") -> dict[str, FileState]:
    """Returns every regular file under ``folder`` by relative path; symlinks are skipped, not followed."""
    found: dict[str, FileState] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                sub = open_dir(entry.name, dir_fd=folder)
                try:
                    found.update(read_tree(sub, rel + "/"))
                finally:
                    os.close(sub)
            elif entry.is_file(follow_symlinks=False):
                with open(os.open(entry.name, _READ_FLAGS, dir_fd=folder), "rb") as fh:
                    st = os.fstat(fh.fileno())
                    mode = stat.S_IMODE(st.st_mode)
                    found[rel] = FileState(content=fh.read(), mode=mode, uid=st.st_uid, gid=st.st_gid)
    return found


def write_new_file(
    folder: int, name: str, content: bytes, *, mode: int, uid: int | None, gid: int | None, label: str
) -> None:
    """Creates ``name`` in ``folder`` complete: temp name, write, fsync, chown, chmod, rename.

    Raises:
        OutputError: uid/gid are set and we may not give the file away (not root); ``label`` names it.
        OSError: anything else, for the caller to describe.
    """
    tmp = f"..{name}.{secrets.token_hex(4)}.tmp"
    with open(os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=folder), "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
        if uid is not None or gid is not None:
            try:
                os.fchown(fh.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            except PermissionError as exc:
                owner = f"{'' if uid is None else uid}:{'' if gid is None else gid}"
                raise OutputError(
                    f"writing {label}: cannot give it owner {owner}: {exc.strerror} (injector runs as uid "
                    f"{os.geteuid()}, not root: drop uid/gid from the template, or run injector as root)"
                ) from exc
        os.fchmod(fh.fileno(), mode)  # after fchown, which clears the setuid/setgid bits
    os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)


def lstat_at(folder: int, name: str) -> os.stat_result | None:
    """Returns the lstat of ``name`` in ``folder``, None if it does not exist."""
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def link_target(folder: int, name: str) -> str | None:
    """Returns where the symlink ``name`` points, None if it is missing or not a symlink."""
    try:
        return os.readlink(name, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            return None
        raise


def remove_at(folder: int, name: str) -> None:
    """Removes ``name`` in ``folder``, recursively if it is a real folder (never through a link)."""
    st = lstat_at(folder, name)
    if st is not None and stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=folder)
    else:
        os.unlink(name, dir_fd=folder)


# --- state_dir -----------------------------------------------------------------------------------


def write_private(directory: Path, name: str, data: bytes) -> None:
    """Writes ``directory/name`` atomically, mode 0600, in a folder only we can enter (0700).

    A missing folder is created 0700; one we own that others can enter is tightened to 0700; one
    owned by someone else that others can enter is refused (use a subfolder). The file goes to a
    temporary name in the same folder, is fsynced, then renamed over ``name`` — which replaces
    whatever is there (a planted symlink included) instead of writing through it.

    Raises:
        OutputError: the folder is a symlink, not private and not ours, or cannot be written.
    """
    _check_name(name)
    dir_fd = _private_dir(directory, create=True)
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        with open(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):  # never created, or already renamed
            os.unlink(tmp, dir_fd=dir_fd)
        raise OutputError(os_error_message(f"writing {directory / name}", exc, f"state_dir {directory}")) from exc
    finally:
        os.close(dir_fd)


def read_private(directory: Path, name: str) -> bytes | None:
    """Returns the bytes of ``directory/name``, or None if the folder or the file does not exist.

    Raises:
        OutputError: the file is a symlink, not a regular file, not ours, or readable by others —
            it may have been planted, so it is not trusted.
    """
    _check_name(name)
    try:
        dir_fd = _private_dir(directory, create=False)
    except FileNotFoundError:
        return None
    path = directory / name
    try:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(f"{path} is not a regular file: delete it (injector writes it)")
            if st.st_uid != os.geteuid():
                raise OutputError(
                    f"{path} is owned by uid {st.st_uid}, not by injector (uid {os.geteuid()}): delete it; "
                    "init and sidecar must run as the same user"
                )
            if st.st_mode & 0o077:
                raise OutputError(
                    f"{path} has mode 0{stat.S_IMODE(st.st_mode):o}, readable by others: delete it "
                    "(injector writes it 0600)"
                )
            return fh.read()
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise OutputError(f"{path} is a symlink: refusing to follow it; delete it") from exc
        raise OutputError(os_error_message(f"reading {path}", exc, f"state_dir {directory}")) from exc
    finally:
        os.close(dir_fd)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")


def _private_dir(directory: Path, *, create: bool) -> int:
    """Opens ``directory`` (no-follow), creating it 0700 if asked, and makes sure only we can enter it.

    Raises:
        FileNotFoundError: it does not exist and ``create`` is false.
    """
    where = f"state_dir {directory}"
    try:
        if create and not os.path.lexists(directory):
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # created meanwhile: checked below like any other
                os.mkdir(directory, 0o700)
        fd = open_dir(directory)
    except FileNotFoundError as exc:
        if not create:
            raise
        raise OutputError(os_error_message(f"creating {directory}", exc, where)) from exc
    except OSError as exc:
        # O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR (or ELOOP): tell the two cases apart.
        if exc.errno == errno.ELOOP or directory.is_symlink():
            raise OutputError(
                f"{where} is a symlink: refusing to follow it; point state_dir at the real folder"
            ) from exc
        if exc.errno == errno.ENOTDIR:
            raise OutputError(f"{where} is not a folder") from exc
        raise OutputError(os_error_message(f"opening {directory}", exc, where)) from exc
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if st.st_uid != os.geteuid():
            os.close(fd)
            raise OutputError(
                f"{where} has mode 0{mode:o} and is owned by uid {st.st_uid}, not by injector "
                f"(uid {os.geteuid()}): point state_dir at a subfolder, e.g. {directory / 'injector'}, "
                "which injector creates with mode 0700"
            )
        try:
            os.fchmod(fd, 0o700)
        except OSError as exc:
            os.close(fd)
            raise OutputError(os_error_message(f"making {directory} private (0700)", exc, where)) from exc
        logger.info("made %s private: mode 0%o -> 0700", where, mode)
    return fd
