"""Process hygiene at start-up: hardening before any token or secret is in memory, one malloc
arena for every thread, no cyclic garbage collection while the process builds what it keeps, and
memory released once the first render is done.

With ``shareProcessNamespace`` and the same UID, the app could otherwise read the injector's
memory and its ``/proc/PID/root`` (and so the token in ``state_dir``): ``PR_SET_DUMPABLE = 0``
makes the kernel own our ``/proc/PID`` entries as root and refuses ptrace from the same UID.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from typing import Any

__all__ = ["make_undumpable", "one_malloc_arena", "pause_collector", "release_memory", "resume_collector"]

logger = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4
_M_ARENA_MAX = -8


def make_undumpable() -> bool:
    """Marks this process non-dumpable (Linux); returns whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ok = int(_libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
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
        return int(_libc().mallopt(_M_ARENA_MAX, 1)) == 1
    except (OSError, AttributeError):
        return False


def pause_collector() -> None:
    """Turns the cyclic garbage collector off for start-up; ``resume_collector`` turns it back on.

    Start-up makes a few hundred thousand objects that live as long as the process (modules,
    functions, classes, the config, the compiled templates) and almost no cyclic garbage, but the
    collector counts new objects, not garbage: a 10-value ``init`` ran 68 passes, 9 ms of its
    start, which freed 571 objects in all (bench/README.md). Objects that are not in a cycle are
    still freed when their last reference goes.
    """
    gc.disable()


def resume_collector() -> None:
    """Turns the cyclic garbage collector back on (``pause_collector``): start-up is over and the
    first fetch begins. Fetching can fail and be retried for minutes, and a failure leaves cycles
    (an exception and its traceback), so the collector runs from then on.

    What start-up built is frozen first (``gc.freeze``): the collector's passes skip it, where
    otherwise the first pass would walk all of it at once, the cost the pause saved. A process
    that runs on gives it back to the collector once its first render is done
    (``release_memory``); ``init`` exits first. Harmless if the collector is on already.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def release_memory() -> None:
    """Returns freed heap to the kernel after start-up (glibc keeps freed arenas otherwise).

    Start-up parses JSON service models and renders every template; what it freed would stay in
    the sidecar's RSS for its whole life without this.
    """
    gc.unfreeze()
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            _libc().malloc_trim(0)


def _libc() -> Any:
    """The C library. ``ctypes`` is imported here, not with this module: ``injector.__main__``
    imports this module first of all, to pause the collector before the imports start."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)
