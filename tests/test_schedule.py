"""Scheduling: when each kind of value is renewed or fetched again, with jitter and backoff."""

from __future__ import annotations

import itertools
import random

import pytest

from injector.config.model import RefreshConfig
from injector.refs import Secret, parse_reference
from injector.schedule import Scheduler
from injector.sources import Fetched, Lease


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def scheduler(rand: float = 0.5, **refresh: float | bool) -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(RefreshConfig(**refresh), clock=clock, rand=lambda: rand), clock  # type: ignore[arg-type]


def lease(clock: Clock, duration: float, renewable: bool = True) -> Fetched:
    return Fetched(
        value=Secret({"username": "u"}),
        lease=Lease(lease_id="database/creds/app/1", duration=duration, renewable=renewable, granted_at=clock.now),
        fetched_at=clock.now,
    )


KV = parse_reference("vault:secret/app")
DB = parse_reference("vault:database/creds/app")


class TestLeases:
    def test_renewable_lease_is_renewed_at_two_thirds(self) -> None:
        """A renewable lease is renewed at about 2/3 of its remaining time."""
        sched, clock = scheduler(rand=1.0)
        entry = sched.track(DB, lease(clock, 3600))
        assert entry.action == "renew"
        assert entry.due - clock.now == pytest.approx(2400)

    def test_renewal_granting_less_means_replace_before_max_ttl(self) -> None:
        """A renewal capped by the max TTL switches to fetching a replacement at 80–90% of what is left."""
        sched, clock = scheduler(rand=0.0)
        sched.track(DB, lease(clock, 3600))
        clock.now += 2400
        entry = sched.track(DB, lease(clock, 1000), renewed=True)
        assert entry.action == "fetch"
        assert entry.due - clock.now == pytest.approx(800)

    def test_full_renewal_keeps_renewing(self) -> None:
        """A renewal that grants the whole duration again stays on the renew path."""
        sched, clock = scheduler()
        sched.track(DB, lease(clock, 60))
        clock.now += 40
        assert sched.track(DB, lease(clock, 60), renewed=True).action == "renew"

    @pytest.mark.parametrize(("rand", "fraction"), [(0.0, 0.85), (1.0, 0.95)])
    def test_non_renewable_lease_is_fetched_at_85_to_95_percent(self, rand: float, fraction: float) -> None:
        """A non-renewable lease is fetched again at 85–95% of its duration."""
        sched, clock = scheduler(rand=rand)
        entry = sched.track(DB, lease(clock, 1000, renewable=False))
        assert entry.action == "fetch"
        assert entry.due - clock.now == pytest.approx(1000 * fraction)


class TestCertificatesAndStatic:
    def test_certificate_is_reissued_at_two_thirds_of_validity(self) -> None:
        """A certificate is issued again at about 2/3 of its validity, counted from the fetch."""
        sched, clock = scheduler(rand=1.0)
        cert = Fetched(value=Secret({}), not_after=clock.now + 3000, fetched_at=clock.now)
        entry = sched.track(parse_reference("vault:pki/issue/web?common_name=a"), cert)
        assert entry.due == pytest.approx(clock.now + 2000)

    def test_a_short_certificate_is_reissued_at_two_thirds_after_its_fetch(self) -> None:
        """A 6 s certificate is re-issued ~4 s after its fetch (Vault's back-dated NotBefore plays no part)."""
        sched, clock = scheduler(rand=1.0, min_backoff=0.1)
        cert = Fetched(value=Secret({}), not_after=clock.now + 6, fetched_at=clock.now)
        entry = sched.track(parse_reference("vault:pki/issue/web?common_name=a"), cert)
        assert entry.due == pytest.approx(clock.now + 4)

    def test_a_past_due_time_is_floored_at_min_backoff(self) -> None:
        """A value whose computed refresh is already past is fetched no sooner than min_backoff."""
        sched, clock = scheduler(min_backoff=2)
        cert = Fetched(value=Secret({}), not_after=clock.now - 1, fetched_at=clock.now - 50)
        entry = sched.track(parse_reference("vault:pki/issue/web?common_name=a"), cert)
        assert entry.due == pytest.approx(clock.now + 2)

    @pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
    def test_static_values_are_never_polled_later_than_the_interval(self, rand: float) -> None:
        """Jitter only shortens the wait, so a change is seen within the interval."""
        sched, clock = scheduler(rand=rand, interval=300, jitter=0.1, splay=False)
        entry = sched.track(KV, Fetched(value=Secret({})))
        assert 270 <= entry.due - clock.now <= 300

    def test_static_values_share_one_timer(self) -> None:
        """Every static reference with the same interval is due together: one batched round."""
        sched, clock = scheduler(interval=60)
        refs = [parse_reference(f"aws-sm:app/{i}") for i in range(100)]
        for i, ref in enumerate(refs):
            sched.rand = lambda i=i: (i % 7) / 7
            sched.track(ref, Fetched(value=Secret("v")))
        assert len({e.due for e in sched.entries.values()}) == 1
        clock.now += 60
        assert set(sched.take_due().fetch) == set(refs)

    def test_reference_refresh_overrides_interval(self) -> None:
        """?refresh= gives a reference its own interval."""
        sched, clock = scheduler(rand=0.0, interval=300, splay=False)
        entry = sched.track(parse_reference("vault:secret/app?refresh=10s"), Fetched(value=Secret({})))
        assert entry.due - clock.now == pytest.approx(10)

    def test_kv1_ttl_shorter_than_interval_is_honoured(self) -> None:
        """A KV v1 ttl below the interval refreshes at 85–95% of the ttl."""
        sched, clock = scheduler(rand=0.0, interval=300)
        entry = sched.track(parse_reference("vault:kv/app"), Fetched(value=Secret({}), ttl=100))
        assert entry.due - clock.now == pytest.approx(85)

    def test_env_values_are_not_polled(self) -> None:
        """env: values cannot change under a running process, so nothing is scheduled."""
        sched, _ = scheduler()
        sched.track(parse_reference("env:HOME"), Fetched(value=Secret("/root")), polled=False)
        assert sched.next_due() is None


class TestFailures:
    def test_failures_back_off_and_grow(self) -> None:
        """Each failure of a reference waits longer (full jitter above min_backoff, doubling to max_backoff)."""
        sched, clock = scheduler(rand=1.0, min_backoff=1, max_backoff=8)
        sched.track(KV, Fetched(value=Secret({})))
        gaps = []
        for _ in range(6):
            entry = sched.failed(KV)
            gaps.append(entry.due - clock.now)
        assert all(a <= b for a, b in itertools.pairwise(gaps))
        assert gaps[0] >= 0.5 and max(gaps) <= 8

    def test_stale_after_max_stale(self) -> None:
        """A reference failing for longer than max_stale is reported stale, with its age."""
        sched, clock = scheduler(max_stale=60)
        sched.track(KV, Fetched(value=Secret({})))
        clock.now += 30
        sched.failed(KV)
        assert sched.stale() == []
        clock.now += 31
        assert [ref for ref, _ in sched.stale()] == [KV]

    def test_success_clears_staleness(self) -> None:
        """One success makes a stale reference fresh again."""
        sched, clock = scheduler(max_stale=1)
        sched.failed(KV)
        clock.now += 5
        assert sched.stale()
        sched.track(KV, Fetched(value=Secret({})))
        assert sched.stale() == []

    def test_take_due_splits_renewals_and_fetches(self) -> None:
        """Due leases come back to renew, due static values to fetch."""
        sched, clock = scheduler(rand=0.0, interval=10, splay=False)
        sched.track(DB, lease(clock, 12))
        sched.track(KV, Fetched(value=Secret({})))
        clock.now += 100
        due = sched.take_due()
        assert due.renew == (DB,) and due.fetch == (KV,)


FLEET = 400
INTERVAL = 60.0


def fleet_phases(*, splay: bool, seed: int = 7) -> list[float]:
    """Where in the interval each pod of a fleet started in the same second polls, from the second
    interval on (seconds after the interval's start)."""
    rng = random.Random(seed)
    phases = []
    for _ in range(FLEET):
        clock = Clock()
        clock.now += rng.random()  # a rollout starts every pod within one second
        sched = Scheduler(RefreshConfig(interval=INTERVAL, jitter=0.1, splay=splay), clock=clock, rand=rng.random)
        sched.track(KV, Fetched(value=Secret({})))
        clock.now = sched.next_due() or clock.now
        sched.take_due()
        sched.track(KV, Fetched(value=Secret({})))
        phases.append((sched.entries[KV].due - 1_000_000.0) % INTERVAL)
    return phases


def busiest_share(phases: list[float], buckets: int = 60) -> float:
    """The busiest one-second bucket's share over the mean bucket (1.0 is perfectly flat)."""
    counts = [0] * buckets
    for phase in phases:
        counts[int(phase / INTERVAL * buckets) % buckets] += 1
    return max(counts) / (len(phases) / buckets)


class TestFleet:
    def test_without_splay_a_fleet_stays_in_step(self) -> None:
        """Pods started together poll within a few seconds of each other for ever (the old behaviour)."""
        phases = fleet_phases(splay=False)
        assert busiest_share(phases) > 8

    def test_splay_spreads_a_fleet_over_the_interval(self) -> None:
        """With splay the polls of pods started together are close to uniform over the interval.

        A chi-square test over 10 buckets at a fixed seed: below 21.7 (p = 0.01, 9 degrees of freedom).
        """
        phases = fleet_phases(splay=True)
        counts = [0] * 10
        for phase in phases:
            counts[int(phase / INTERVAL * 10) % 10] += 1
        expected = FLEET / 10
        chi2 = sum((c - expected) ** 2 / expected for c in counts)
        assert chi2 < 21.7, counts

    def test_the_first_poll_after_start_is_within_the_interval(self) -> None:
        """Splay places the first poll anywhere in the interval, never later than it."""
        for rand in (0.0, 0.5, 0.999):
            sched, clock = scheduler(rand=rand, interval=300, splay=True)
            entry = sched.track(KV, Fetched(value=Secret({})))
            assert entry.due - clock.now <= 300

    def test_renewals_of_one_ttl_spread(self) -> None:
        """Leases issued together with one TTL are renewed over 1/2–2/3 of it, not at one moment."""
        rng = random.Random(3)
        dues = []
        for _ in range(200):
            sched = Scheduler(RefreshConfig(splay=True), clock=Clock(), rand=rng.random)
            dues.append(sched.track(DB, lease(Clock(), 3600)).due - 1_000_000.0)
        assert min(dues) >= 1800 - 1 and max(dues) <= 2400 + 1
        assert max(dues) - min(dues) > 500

    def test_recovery_is_splayed_across_a_fleet_and_batched_within_a_pod(self) -> None:
        """Pods recovering from one outage poll next at spread times; each pod's references together."""
        rng = random.Random(5)
        refs = [parse_reference(f"vault:secret/app{i}") for i in range(10)]
        firsts = []
        for _ in range(50):
            sched = Scheduler(RefreshConfig(interval=60, splay=True), clock=Clock(), rand=rng.random)
            for ref in refs:
                sched.track(ref, Fetched(value=Secret({})))
                sched.failed(ref)
            dues = {sched.track(ref, Fetched(value=Secret({}))).due for ref in refs}
            assert len(dues) == 1  # one batch
            firsts.append(dues.pop() - 1_000_000.0)
        assert max(firsts) - min(firsts) > 30
        assert all(0 < due <= 60 for due in firsts)

    def test_a_failing_group_retries_as_one_batch(self) -> None:
        """The static values of one group that fail together share one retry time (one batch call)."""
        sched, clock = scheduler(interval=60)
        sched.rand = random.Random(9).random
        refs = [parse_reference(f"aws-ssm:/app/p{i}") for i in range(10)]
        for ref in refs:
            sched.track(ref, Fetched(value=Secret("v")))
        clock.now += 120
        for _ in range(3):
            dues = {sched.failed(ref).due for ref in refs}
            assert len(dues) == 1
            clock.now = dues.pop()

    def test_no_first_poll_is_clamped_to_min_backoff(self) -> None:
        """The splayed first poll is drawn over [min_backoff, interval]: no pile-up at min_backoff."""
        rng = random.Random(11)
        dues = []
        for _ in range(500):
            sched = Scheduler(RefreshConfig(interval=5, min_backoff=1, splay=True), clock=Clock(), rand=rng.random)
            dues.append(sched.track(KV, Fetched(value=Secret({}))).due - 1_000_000.0)
        assert min(dues) >= 1
        assert sum(1 for due in dues if due < 1.01) < 5

    def test_a_slow_round_keeps_the_phase(self) -> None:
        """A round that finishes late (a stalled backend) does not move the group's next poll."""
        sched, clock = scheduler(rand=0.5, interval=60, jitter=0.0)
        sched.track(KV, Fetched(value=Secret({})))
        first = sched.next_due()
        assert first is not None
        clock.now = first
        sched.take_due()
        clock.now = first + 3  # the round took 3 s
        entry = sched.track(KV, Fetched(value=Secret({})))
        assert entry.due == pytest.approx(first + 60)

    def test_an_interval_equal_to_min_backoff_polls_once_an_interval(self) -> None:
        """Keeping the phase never skips a round that is not yet past: polls stay ~1 interval apart."""
        sched, clock = scheduler(rand=0.5, interval=1, min_backoff=1, jitter=0.1)
        sched.track(KV, Fetched(value=Secret({})))
        polls = []
        for _ in range(10):
            due = sched.next_due()
            assert due is not None
            clock.now = due
            polls.append(due)
            sched.take_due()
            clock.now += 0.05  # the round's latency
            sched.track(KV, Fetched(value=Secret({})))
        gaps = [b - a for a, b in itertools.pairwise(polls)]
        assert max(gaps) <= 1.1, gaps
