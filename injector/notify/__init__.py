"""Notifiers: tell the app its files changed, by signal, HTTP request or command.

Each notifier makes ONE attempt per :meth:`Notifier.notify` and raises :class:`NotifyError` with a
message naming the target, what failed and what to check. Coalescing bursts of changes and retrying
with backoff is the job of ``injector.notify.dispatch.Dispatcher``.

Notifiers never see secret values: they get the config's target (process name, URL, argv) only.

Signal targets, in a pod (``shareProcessNamespace: true`` is needed for ``process:``):

* ``process: NAME`` signals every visible process whose executable name (``/proc/PID/comm``, or the
  basename of ``argv[0]``) is NAME and that runs as the expected user, except ourselves and except
  processes whose parent also matches: nginx's master gets SIGHUP, its workers (children named nginx
  too) do not. Processes it may not signal are skipped; the others still get the signal.
* ``pidfile: PATH`` with ``process: NAME`` signals the pid written in PATH, if that process is named
  NAME and runs as the expected user (the app writes its pidfile: the pid is checked, not trusted).
* ``user: UID`` is the expected user (default: the injector's own effective UID; ``user: any``).
* ``child: true`` (exec mode) signals the child injector started.

Commands run with the environment the caller passes (the sidecar's own, without injector's
credentials and settings), stdin from /dev/null, in a new session so that a timeout kills the whole
process group. HTTP requests have one deadline for the whole attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from injector.config.model import HttpNotify, NotifyConfig, SignalNotify

__all__ = ["Notifier", "build_notifier"]


class Notifier(Protocol):
    """**Protocol:** one way to tell the app to reload."""

    def describe(self) -> str:
        """Returns a log-safe label: ``signal SIGHUP → nginx``, ``http POST http://…/-/reload``."""
        ...

    def notify(self) -> None:
        """Makes one attempt; raises :class:`NotifyError` saying what failed and what to check."""
        ...


def build_notifier(
    config: NotifyConfig,
    *,
    child: Callable[[], int | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Notifier:
    """Returns the notifier for one ``on_change`` entry; ``child`` gives exec mode's child pid,
    ``environ`` the environment of command notifiers (default: the sidecar's own)."""
    from injector.notify.command import CommandNotifier
    from injector.notify.http import HttpNotifier
    from injector.notify.signal import SignalNotifier

    if isinstance(config, SignalNotify):
        return SignalNotifier(config, child=child)
    if isinstance(config, HttpNotify):
        return HttpNotifier(config)
    return CommandNotifier(config, environ=environ)
