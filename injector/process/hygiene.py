"""Process hygiene at start-up: hardening before any token or secret is in memory, one malloc
arena for every thread, and memory released once the first render is done.

With ``shareProcessNamespace`` and the same UID, the app could otherwise read the injector's
memory and its ``/proc/PID/root`` (and so the token in ``state_dir``): ``PR_SET_DUMPABLE = 0``
makes the kernel own our ``/proc/PID`` entries as root and refuses ptrace from the same UID.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys

__all__ = ["make_undumpable", "one_malloc_arena", "release_memory"]

logger = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4
_M_ARENA_MAX = -8


def make_undumpable() -> bool:
    """Marks this process non-dumpable (Linux); returns whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        ok = False
    if not ok:
        logger.warning("could not mark the process non-dumpable; same-UID processes may read its memory")
    return ok


def one_malloc_arena() -> bool:
    """Makes every thread allocate from glibc's main arena (``mallopt(M_ARENA_MAX, 1)``); returns
    whether the C library took it. Call it before the process starts threads.

    glibc gives each thread that allocates an arena of its own (up to eight per CPU), and each keeps
    pages of its own; the injector's threads (the fetch pool, health, notify, watch) allocate little
    and seldom at once, and Python's own allocator serves small objects under the GIL anyway. With
    one arena an idle sidecar holds about 0.3 MiB less (bench/README.md). Another C library
    (musl) ignores the call.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)) == 1
    except (OSError, AttributeError):
        return False


def release_memory() -> None:
    """Returns freed heap to the kernel after start-up (glibc keeps freed arenas otherwise).

    Start-up parses JSON service models and renders every template; what it freed would stay in
    the sidecar's RSS for its whole life without this.
    """
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)
