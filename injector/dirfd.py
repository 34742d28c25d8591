"""Filesystem helpers for the sink and state_dir: which filesystem a path is on, files read and
written through directory fds, OSError messages that say what to do.

Everything here works on directory file descriptors opened with ``O_NOFOLLOW``: a symlink planted
inside a folder we manage is replaced or refused, never followed.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from injector.errors import OutputError

__all__ = [
    "MEMORY_FILESYSTEMS",
    "NEW_FILE_FLAGS",
    "READ_FLAGS",
    "FileState",
    "check_filesystem",
    "filesystem_type",
    "link_target",
    "lstat_at",
    "open_dir",
    "os_error_message",
    "read_tree",
    "remove_at",
    "write_new_file",
]

logger = logging.getLogger(__name__)

#: Filesystems whose pages never reach a disk (swap aside): the only ones secrets may be written to.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file should be must not hang us.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def check_filesystem(path: Path) -> str:
    """Returns the type of the filesystem holding the folder ``path`` ("tmpfs", "ext4" …).

    Raises:
        OutputError: ``path`` cannot be opened or its filesystem cannot be asked.
    """
    try:
        fd = open_dir(path, follow=True)
    except OSError as exc:
        raise OutputError(os_error_message(f"cannot tell which filesystem {path} is on", exc, str(path))) from exc
    try:
        return filesystem_type(fd, str(path))
    finally:
        os.close(fd)


def filesystem_type(fd: int, label: str) -> str:
    """Returns the type of the filesystem the open file ``fd`` is on, asked with ``fstatfs(2)``.

    The kernel answers for the object the fd refers to, not for a path: a folder hidden by a later
    mount, or a path that resolves elsewhere by the time it is used, cannot mislead it (a path
    looked up in /proc/self/mountinfo could). ``label`` names the folder in errors.

    Raises:
        OutputError: fstatfs failed.
    """
    buf = _StatFs()
    if _libc().fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OutputError(f"cannot tell which filesystem {label} is on: fstatfs: {os.strerror(err)}")
    magic = buf.f_type & 0xFFFFFFFF
    return _FS_NAMES.get(magic, f"a filesystem with magic 0x{magic:08x}")


class _StatFs(ctypes.Structure):
    # struct statfs begins with f_type, a __fsword_t (a long; an unsigned int on s390x). The rest is
    # room for the largest struct statfs of any Linux ABI (120 bytes on x86_64 and arm64). The
    # machine comes from os.uname(), as platform.machine() reads it (importing platform: 1.4 ms).
    _fields_ = (
        ("f_type", ctypes.c_uint if os.uname().machine == "s390x" else ctypes.c_long),
        ("_rest", ctypes.c_char * 256),
    )


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


#: statfs(2) f_type magic numbers (linux/magic.h) of memory filesystems and of common others, for messages.
_FS_NAMES = {
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0xEF53: "ext2/ext3/ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x794C7630: "overlay",
    0x2FC12FC1: "zfs",
    0x6969: "nfs",
    0x65735546: "fuse",
    0x01021997: "9p",
}


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
                with open(os.open(entry.name, READ_FLAGS, dir_fd=folder), "rb") as fh:
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
    with open(os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=folder), "wb") as fh:
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
