"""The notification dispatcher: coalesce bursts of changes, fire each notifier once, retry with backoff.

The sidecar loop calls :meth:`Dispatcher.changed` with the keys of the notifiers whose files'
bytes changed. For each key:

1. The first change starts a burst. The notification is due when ``wait.min`` seconds pass with no
   further change for that key, and never later than ``wait.max`` after the burst's first change.
2. When due, the notifier fires once, in its own short-lived thread, so a slow command or an app
   that does not answer never holds up another notifier.
3. A failure is retried after a delay drawn with full jitter from ``[0, cap)``, where the cap starts
   at ``min_backoff`` and doubles up to ``max_backoff``; after ``max_attempts`` failures in a row
   it gives up (the next change starts afresh). Every failure is logged at WARNING.
4. A change that arrives while a retry is waiting, or while an attempt is running that then fails,
   merges into the retry: still one notification.

The background thread sleeps on a condition until the next deadline, so an idle sidecar costs no
CPU. The clock is injectable; :meth:`Dispatcher.fire_due` runs step 2 synchronously for tests.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from injector.config.model import WaitConfig
from injector.errors import NotifyError
from injector.metrics import Counter, Registry

if TYPE_CHECKING:
    from injector.notify import Notifier

__all__ = ["Dispatcher", "NotifyMetrics"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyMetrics:
    """Counts notifications by notifier description and result: success, error, gave_up.

    ``error`` counts failed attempts; ``gave_up`` counts notifications dropped after the last one.
    """

    notifications: Counter

    @classmethod
    def create(cls, registry: Registry) -> NotifyMetrics:
        """Registers ``injector_notifications_total`` (when not using ``standard_metrics``)."""
        counter = Counter(
            "injector_notifications_total",
            "Reload notifications, by notifier and result (success, error, gave_up).",
            ("notifier", "result"),
            registry=registry,
        )
        return cls(notifications=counter)

    def record(self, notifier: str, result: str) -> None:
        self.notifications.labels(notifier=notifier, result=result).inc()


@dataclass(slots=True)
class _Entry:
    """The state of one key. ``firing`` excludes every other state; a retry excludes a burst."""

    key: str
    notifier: Notifier
    #: first and last change of the current burst (None: no burst).
    first: float | None = None
    last: float | None = None
    #: changes since the last attempt started, for the log line.
    changes: int = 0
    retry_at: float | None = None
    #: failures in a row of the current notification.
    attempts: int = 0
    firing: bool = False

    def due(self, wait: WaitConfig) -> float | None:
        if self.firing:
            return None
        if self.retry_at is not None:
            return self.retry_at
        if self.first is None or self.last is None:
            return None
        return min(self.last + wait.min, self.first + wait.max)


class Dispatcher:
    """Coalesces changes per key and fires each key's notifier once per burst, retrying failures.

    Args:
        wait: quiet period (``min``) and the longest delay from a burst's first change (``max``).
        min_backoff: the first retry's delay cap, in seconds; it doubles per failure.
        max_backoff: the largest delay cap.
        max_attempts: attempts per notification, the first included.
        clock: monotonic seconds; tests pass a fake one and call :meth:`fire_due`.
        metrics: counters to update, or None.
        rand: a ``[0, 1)`` random source for the jitter; tests pass a fixed one.
    """

    def __init__(
        self,
        wait: WaitConfig,
        *,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_attempts: int = 6,
        clock: Callable[[], float] = time.monotonic,
        metrics: NotifyMetrics | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if wait.min < 0 or wait.max < wait.min:
            raise ValueError(f"wait: need 0 <= min <= max, got min={wait.min} max={wait.max}")
        if min_backoff <= 0 or max_backoff < min_backoff:
            raise ValueError(f"need 0 < min_backoff <= max_backoff, got {min_backoff} and {max_backoff}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._wait = wait
        self._min_backoff, self._max_backoff, self._max_attempts = min_backoff, max_backoff, max_attempts
        self._clock = clock
        self._metrics = metrics
        self._rand = rand
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._stopping = False

    # --- the sidecar loop's side --------------------------------------------------------------

    def register(self, key: str, notifier: Notifier) -> None:
        """Adds a notifier under a stable key; registering a key again keeps the first notifier."""
        with self._cond:
            if key not in self._entries:
                self._entries[key] = _Entry(key=key, notifier=notifier)

    def changed(self, keys: Iterable[str]) -> None:
        """Records a change for each key (each must be registered); the notifications follow later.

        Raises:
            KeyError: for a key never registered (a bug in the caller).
        """
        now = self._clock()
        with self._cond:
            entries = []
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    raise KeyError(f"notifier {key!r} is not registered")
                entries.append(entry)
            for entry in entries:
                entry.changes += 1
                if entry.retry_at is not None:
                    continue  # merges into the retry already scheduled
                if entry.first is None:
                    entry.first = now
                entry.last = now
            self._cond.notify_all()

    def pending(self) -> int:
        """Returns how many keys have a notification waiting, retrying or in flight."""
        with self._cond:
            return sum(1 for e in self._entries.values() if e.firing or e.due(self._wait) is not None)

    def next_deadline(self) -> float | None:
        """Returns the clock time the next notification is due, or None when nothing waits."""
        with self._cond:
            return self._next_deadline()

    # --- firing -------------------------------------------------------------------------------

    def fire_due(self) -> int:
        """Fires, in this thread, every notification due now; returns how many fired."""
        with self._cond:
            due = self._take_locked(self._clock())
        for entry, changes in due:
            self._fire(entry, changes)
        return len(due)

    def start(self) -> None:
        """Starts the daemon thread that fires notifications when they are due."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="injector-notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Stops the thread and waits up to ``timeout`` seconds for attempts in flight.

        Waiting notifications are not fired.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                due = self._take_locked(self._clock())
                for entry, changes in due:
                    worker = threading.Thread(
                        target=self._fire_in_worker,
                        args=(entry, changes),
                        name=f"injector-notify:{entry.key}",
                        daemon=True,
                    )
                    self._workers.add(worker)
                    worker.start()
                if due:
                    continue
                deadline = self._next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                self._cond.wait(timeout)

    def _fire_in_worker(self, entry: _Entry, changes: int) -> None:
        try:
            self._fire(entry, changes)
        finally:
            with self._cond:
                self._workers.discard(threading.current_thread())

    def _take_locked(self, now: float) -> list[tuple[_Entry, int]]:
        """Marks every due entry as firing and returns them."""
        taken = []
        for entry in self._entries.values():
            due = entry.due(self._wait)
            if due is None or due > now:
                continue
            taken.append((entry, entry.changes))
            entry.firing = True
            entry.first = entry.last = entry.retry_at = None
            entry.changes = 0
        return taken

    def _next_deadline(self) -> float | None:
        dues = [d for d in (e.due(self._wait) for e in self._entries.values()) if d is not None]
        return min(dues, default=None)

    def _fire(self, entry: _Entry, changes: int) -> None:
        """Makes one attempt and schedules what follows; never raises."""
        label = entry.notifier.describe()
        error: str | None = None
        try:
            entry.notifier.notify()
        except NotifyError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not stop the dispatcher
            error = f"unexpected {type(exc).__name__}: {exc}"
        with self._cond:
            entry.firing = False
            if error is None:
                attempts, entry.attempts = entry.attempts + 1, 0
            else:
                entry.attempts += 1
                attempts = entry.attempts
                if attempts >= self._max_attempts:
                    entry.attempts = 0
                    delay = None
                else:
                    cap = min(self._max_backoff, self._min_backoff * 2 ** (attempts - 1))
                    delay = cap * self._rand()
                    entry.retry_at = self._clock() + delay
                    # A change made during this attempt merges into the retry.
                    entry.first = entry.last = None
                    entry.changes += changes
            self._cond.notify_all()
        if error is None:
            logger.info("notified %s (%d change%s)", label, changes, "" if changes == 1 else "s")
            self._record(label, "success")
            return
        self._record(label, "error")
        if delay is None:
            logger.warning(
                "notify %s failed (attempt %d of %d), giving up until the next change: %s",
                label,
                attempts,
                self._max_attempts,
                error,
            )
            self._record(label, "gave_up")
        else:
            logger.warning(
                "notify %s failed (attempt %d of %d), retrying in %.2fs: %s",
                label,
                attempts,
                self._max_attempts,
                delay,
                error,
            )

    def _record(self, label: str, result: str) -> None:
        if self._metrics is not None:
            self._metrics.record(label, result)
