"""state_dir's private files (the Vault token, the lease handoff): 0600 files in a 0700 folder,
written atomically and read through a directory fd, never following a symlink."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from injector.dirfd import NEW_FILE_FLAGS, READ_FLAGS, open_dir, os_error_message
from injector.errors import OutputError

__all__ = ["read_private", "write_private"]

logger = logging.getLogger(__name__)

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
        fd = os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
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
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
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
