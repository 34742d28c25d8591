"""Notifiers: tell the app its files changed, by signal, HTTP request or command.

Each notifier makes ONE attempt per :meth:`Notifier.notify` and raises :class:`NotifyError` with a
message naming the target, what failed and what to check. Coalescing bursts of changes and retrying
with backoff is the job of ``injector.notify.dispatch.Dispatcher``.

Notifiers never see secret values: they get the config's target (process name, URL, argv) only.

Signal targets, in a pod (``shareProcessNamespace: true`` is needed for ``process:``):

* ``process: NAME`` signals every visible process whose executable name (``/proc/PID/comm``, or the
  basename of ``argv[0]``) is NAME, except ourselves and except processes whose parent also matches:
  nginx's master gets SIGHUP, its workers (children named nginx too) do not.
* ``pidfile: PATH`` signals the pid written in PATH.
* ``child: true`` (exec mode) signals the child injector started.

Commands run with the sidecar's own environment, unchanged (so anything in it, such as
``VAULT_TOKEN`` if you set one there, is visible to the command), stdin from /dev/null, in a new
session so that a timeout kills the whole process group.
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
