"""When each reference is next due, and what to do then (renew its lease, or fetch it again).

Every time here is on the monotonic clock: a step of the wall clock (NTP, a VM resume) moves no
schedule. The rules, per kind of value:

- renewable lease (database creds): renew at about 2/3 of the remaining time; when a renewal
  grants less than the lease asked for, its max TTL is near, so fetch a replacement at 80–90% of
  what is left (the app is notified and has time to reload before the old credentials die);
- non-renewable lease: fetch again at 85–95% of its duration (consul-template's rule);
- certificate (PKI issue): issue again at about 2/3 of its validity, counted from when it was
  fetched (Vault back-dates NotBefore);
- static values (KV, Secrets Manager, SSM, files): poll every ``refresh.interval`` (or the
  reference's ``?refresh=``). The jitter only ever shortens the wait, so a change is seen within
  ``interval`` (the propagation budget), and every static reference with the same interval
  shares ONE timer per cycle, so a cycle is one batched round (5 BatchGetSecretValue calls for
  100 secrets, not 100 calls at 100 random moments);
- a failed fetch keeps the last good value and is retried with backoff (full jitter over
  ``[min_backoff, cap]``, the cap doubling to ``max_backoff``); the static values of one interval
  group share one retry time, so a failed batch is retried as one batch; after ``max_stale``
  without success a value is stale;
- ``env:`` values never change while the process lives: they are not polled;
- nothing is fetched again sooner than ``min_backoff`` after a fetch, whatever its lifetime says.

A fleet (``refresh.splay``, on by default). Pods started together by a rollout would otherwise poll
in step for ever: the jitter only shortens each wait by up to ``jitter``, so a fleet's polls stay
within a few seconds of each other. With splay, an interval group's FIRST poll after start is at a
uniformly random point of ``[min_backoff, interval]``; later polls keep that phase: each is one
interval, less the jitter, after the last one was *due* (not after it finished: a stalled backend
would otherwise finish every pod's round at the same moment and put the fleet back in step). A
pod that restarts draws a new phase, so it never falls back into step. Renewals and certificate
re-issues are spread over 1/2–2/3 of the remaining time instead of 0.6–2/3. The references of a
group that recover together are splayed again over the interval, at one time per pod (one batch),
so the round that ends an outage does not put the fleet on one timer. (Why random and not a phase
hashed from the hostname: a Deployment's pod names carry random suffixes already, so both spread
the same; random also spreads pods whose names collide across namespaces.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from injector.backoff import Backoff
from injector.config.model import RefreshConfig
from injector.refs import Reference
from injector.sources import Fetched

__all__ = ["Due", "Entry", "Scheduler"]


@dataclass(slots=True)
class Entry:
    """The schedule of one base reference."""

    ref: Reference
    due: float
    action: str  # "fetch" | "renew"
    #: Seconds of the lease as first granted: a renewal granting less means the max TTL is near.
    lease_asked: float | None = None
    last_success: float = 0.0
    failures: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    #: True while it shares its interval group's timer.
    grouped: bool = False
    #: The interval of its polling group, for a static value (None: a lease, a certificate…).
    group: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """What the loop must do now: refs to renew one by one, and refs to fetch in one round."""

    renew: tuple[Reference, ...] = ()
    fetch: tuple[Reference, ...] = ()


class Scheduler:
    """Keeps one ``Entry`` per base reference. Times are ``clock()`` (``time.monotonic`` by default)."""

    def __init__(
        self,
        refresh: RefreshConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.refresh = refresh
        self.clock = clock
        self.rand = rand
        self.entries: dict[Reference, Entry] = {}
        #: interval → the next due time shared by the static references polled at that interval.
        self._groups: dict[float, float] = {}
        #: interval → the due time at which the group last fired: the next one keeps its phase.
        self._fired: dict[float, float] = {}
        #: interval → the shared retry time (and its backoff) of the group's failing references,
        #: so that a failed batch is retried as one batch.
        self._retry: dict[float, float] = {}
        self._retry_backoff: dict[float, Backoff] = {}
        #: interval → the shared (splayed) next poll of the references recovering in one wave.
        self._recovery: dict[float, float] = {}

    # --- planning -------------------------------------------------------------------------------

    def track(self, ref: Reference, fetched: Fetched, *, renewed: bool = False, polled: bool = True) -> Entry:
        """Schedules ``ref`` after a successful fetch (or renewal) of ``fetched``.

        ``polled`` is False for a source whose values cannot change (``Source.changes``).
        """
        now = self.clock()
        entry = self.entries.get(ref)
        if entry is None:
            entry = Entry(ref=ref, due=now, action="fetch")
            entry.backoff = self._backoff()
            self.entries[ref] = entry
        recovering = entry.failures > 0
        entry.last_success = now
        entry.failures = 0
        entry.backoff.reset()
        entry.grouped = False
        entry.group = None
        lease = fetched.lease
        if lease is not None and lease.duration > 0:
            if not renewed or entry.lease_asked is None:
                entry.lease_asked = lease.duration
            remaining = max(0.0, lease.expires_at - now)
            near_max = renewed and lease.duration < (entry.lease_asked or 0) * 0.99
            if lease.renewable and not near_max:
                entry.action = "renew"
                entry.due = now + remaining * (2 / 3) * self._spread()
            else:
                entry.action = "fetch"
                low, high = (0.80, 0.90) if near_max else (0.85, 0.95)
                entry.due = now + remaining * self._between(low, high)
        elif fetched.not_after is not None:
            # Vault back-dates NotBefore (30 s by default): counted from there, 2/3 of a short
            # TTL is already past when the certificate arrives. Count from the fetch instead.
            start = fetched.fetched_at
            lifetime = max(0.0, fetched.not_after - start)
            entry.action = "fetch"
            entry.due = start + lifetime * (2 / 3) * self._spread()
        elif not polled:
            entry.action = "fetch"
            entry.due = float("inf")
        else:
            entry.action = "fetch"
            interval = self.interval_of(ref)
            if fetched.ttl is not None and 0 < fetched.ttl < interval:
                # A KV v1 ttl shorter than the interval is the owner asking for fresher reads.
                entry.due = now + fetched.ttl * self._between(0.85, 0.95)
            elif recovering and self.refresh.splay:
                # The end of an outage: the wave recovering together polls next at one splayed
                # time (one batch), and joins the group's timer at its success after that.
                entry.group = interval
                entry.due = self._recovery_due(interval, now)
            else:
                entry.group = interval
                entry.grouped = True
                entry.due = self._group_due(interval, now)
        if entry.action == "fetch":
            # However short a value's life, never fetch it again sooner than min_backoff: a
            # computed time in the past must not become a request storm.
            entry.due = max(entry.due, now + self.refresh.min_backoff)
        return entry

    def failed(self, ref: Reference) -> Entry:
        """Schedules a retry of ``ref``; its last good value stays in use.

        The static values of one polling group share one retry time and backoff (a failed batch is
        retried as one batch); anything else retries on its own backoff.
        """
        now = self.clock()
        entry = self.entries.get(ref)
        if entry is None:
            entry = Entry(ref=ref, due=0.0, action="fetch", last_success=now)
            entry.backoff = self._backoff()
            self.entries[ref] = entry
        entry.failures += 1
        entry.grouped = False
        if entry.group is None:
            entry.due = now + entry.backoff.next()
            return entry
        due = self._retry.get(entry.group)
        if due is None or due <= now:
            backoff = self._retry_backoff.setdefault(entry.group, self._backoff())
            due = now + backoff.next()
            self._retry[entry.group] = due
        entry.due = due
        return entry

    def forget(self, refs: Iterable[Reference]) -> None:
        """Stops scheduling references no template uses any more."""
        for ref in refs:
            self.entries.pop(ref, None)

    def interval_of(self, ref: Reference) -> float:
        return ref.refresh or self.refresh.interval

    # --- the loop's questions -------------------------------------------------------------------

    def next_due(self) -> float | None:
        """Returns the earliest due time, or None when nothing is scheduled."""
        times = [e.due for e in self.entries.values() if e.due != float("inf")]
        return min(times) if times else None

    def take_due(self) -> Due:
        """Returns what is due now. Fetches are one round; renewals are per lease."""
        now = self.clock()
        renew: list[Reference] = []
        fetch: list[Reference] = []
        due_groups = set()
        for entry in self.entries.values():
            if entry.due <= now:
                (renew if entry.action == "renew" else fetch).append(entry.ref)
                if entry.grouped:
                    due_groups.add(self.interval_of(entry.ref))
        # A group is one timer: everything in it is fetched in the same round.
        for entry in self.entries.values():
            if entry.grouped and entry.due > now and self.interval_of(entry.ref) in due_groups:
                fetch.append(entry.ref)
        for interval in due_groups:
            fired = self._groups.pop(interval, None)
            if fired is not None:
                self._fired[interval] = fired
        return Due(renew=tuple(sorted(renew, key=str)), fetch=tuple(sorted(fetch, key=str)))

    def stale(self, max_stale: float | None = None) -> list[tuple[Reference, float]]:
        """Returns the failing references whose last success is older than ``max_stale``, with ages."""
        limit = self.refresh.max_stale if max_stale is None else max_stale
        now = self.clock()
        return sorted(
            (
                (e.ref, now - e.last_success)
                for e in self.entries.values()
                if e.failures and now - e.last_success > limit
            ),
            key=lambda item: str(item[0]),
        )

    # --- helpers --------------------------------------------------------------------------------

    def _group_due(self, interval: float, now: float) -> float:
        """The group's next poll: the first at a random phase (splay), then one interval (less the
        jitter) after the last one was DUE — not after it finished, so a slow round (a stalled
        backend) does not bring a spread fleet back into step."""
        due = self._groups.get(interval)
        if due is not None and due > now:
            return due
        floor = now + self.refresh.min_backoff
        fired = self._fired.get(interval)
        if fired is None and self.refresh.splay:
            # Drawn over [min_backoff, interval], not clamped: a clamp would put every pod that
            # drew below min_backoff on the same moment.
            due = floor + max(0.0, interval - self.refresh.min_backoff) * self.rand()
        else:
            due = (now if fired is None else fired) + interval * (1 - self.refresh.jitter * self.rand())
            while due <= now:  # rounds missed (a stall longer than the interval): skip them, keep the phase
                due += interval
        self._groups[interval] = due
        return due

    def _recovery_due(self, interval: float, now: float) -> float:
        self._retry.pop(interval, None)
        backoff = self._retry_backoff.get(interval)
        if backoff is not None:
            backoff.reset()
        due = self._recovery.get(interval)
        if due is None or due <= now:
            due = now + self.refresh.min_backoff + max(0.0, interval - self.refresh.min_backoff) * self.rand()
            self._recovery[interval] = due
        return due

    def _spread(self) -> float:
        """The fraction of 2/3 at which a lease is renewed or a certificate re-issued."""
        return self._between(0.75, 1.0) if self.refresh.splay else self._between(0.9, 1.0)

    def _backoff(self) -> Backoff:
        return Backoff(self.refresh.min_backoff, self.refresh.max_backoff, rand=self.rand, full_jitter=True)

    def _between(self, low: float, high: float) -> float:
        return low + (high - low) * self.rand()
