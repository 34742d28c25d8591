"""Process hygiene at start-up: hardening before any token or secret is in memory, and memory
released once the first render is done.

With ``shareProcessNamespace`` and the same UID, the app could otherwise read the injector's
memory and its ``/proc/PID/root`` (and so the token in ``state_dir``): ``PR_SET_DUMPABLE = 0``
makes the kernel own our ``/proc/PID`` entries as root and refuses ptrace from the same UID.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys

__all__ = ["make_undumpable", "release_memory"]

logger = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4


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
