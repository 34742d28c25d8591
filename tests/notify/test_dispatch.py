"""The Dispatcher's coalescing, retries and thread (fake clock, then real time), and build_notifier."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

from injector.config.model import CommandNotify, HttpNotify, SignalNotify, WaitConfig
from injector.errors import NotifyError
from injector.metrics import Registry
from injector.notify import build_notifier
from injector.notify.command import CommandNotifier
from injector.notify.dispatch import Dispatcher, NotifyMetrics
from injector.notify.http import HttpNotifier
from injector.notify.signal import SignalNotifier
from tests.fixtures.sidecar import wait_for
from tests.notify.support import AppServer


class TestBuildNotifier:
    @pytest.mark.parametrize(
        ("config", "kind"),
        [
            (SignalNotify(signal=signal.SIGHUP, process="nginx"), SignalNotifier),
            (HttpNotify(url="http://127.0.0.1:1/-/reload"), HttpNotifier),
            (CommandNotify(argv=("true",)), CommandNotifier),
        ],
        ids=["signal", "http", "command"],
    )
    def test_builds_the_notifier_for_each_config(self, config: object, kind: type) -> None:
        """Each on_change config kind builds its notifier, labelled by its describe()."""
        notifier = build_notifier(config)  # type: ignore[arg-type]
        assert isinstance(notifier, kind)
        assert notifier.describe() == config.describe()  # type: ignore[attr-defined]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A notifier recording when it fired; fails its first ``failures`` attempts (or always)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, name: str = "rec", failures: int = 0) -> None:
        self.clock, self.name, self.failures = clock, name, failures
        self.calls: list[float] = []

    def describe(self) -> str:
        return f"test {self.name}"

    def notify(self) -> None:
        self.calls.append(self.clock())
        if self.failures:
            self.failures -= 1
            raise NotifyError(f"test {self.name}: refused")


def run_until_idle(dispatcher: Dispatcher, clock: FakeClock, *, until: float = 1e9) -> None:
    """Jumps the fake clock from deadline to deadline, firing what is due, up to ``until``."""
    for _ in range(1000):
        deadline = dispatcher.next_deadline()
        if deadline is None or deadline > until:
            return
        clock.now = max(clock.now, deadline)
        dispatcher.fire_due()
    raise AssertionError("dispatcher did not go idle")


class TestDispatcher:
    def test_burst_fires_once(self) -> None:
        """100 changes in a burst make one notification per notifier."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), clock=clock)
        a, b = Recorder(clock, name="a"), Recorder(clock, name="b")
        d.register("a", a)
        d.register("b", b)
        for _ in range(100):
            d.changed(["a", "b"])
            clock.now += 0.001
        run_until_idle(d, clock)
        assert (len(a.calls), len(b.calls)) == (1, 1)

    def test_waits_for_min_quiet(self) -> None:
        """A notification fires wait.min after the last change, not before."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.25, max=2.0), clock=clock)
        d.register("a", rec := Recorder(clock))
        d.changed(["a"])
        clock.now = 0.5
        d.changed(["a"])
        clock.now = 0.7
        assert d.fire_due() == 0
        clock.now = 0.75
        assert d.fire_due() == 1
        assert rec.calls == [0.75]

    def test_max_bounds_the_delay_under_continuous_changes(self) -> None:
        """Changes every 0.1 s (never min=0.2 quiet) still notify every wait.max=1 s."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=1.0), clock=clock)
        d.register("a", rec := Recorder(clock))
        for step in range(35):
            clock.now = round(step * 0.1, 6)
            d.changed(["a"])
            d.fire_due()
        assert rec.calls == [1.0, 2.1, 3.2]

    def test_keys_fire_independently(self) -> None:
        """Each key has its own burst and fires on its own schedule."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.25, max=2.0), clock=clock)
        d.register("a", a := Recorder(clock, name="a"))
        d.register("b", b := Recorder(clock, name="b"))
        d.changed(["a"])
        clock.now = 0.125
        d.changed(["b"])
        run_until_idle(d, clock)
        assert (a.calls, b.calls) == ([0.25], [0.375])

    def test_shared_key_fires_once_for_all_its_templates(self) -> None:
        """Two templates registering the same key make one notification."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), clock=clock)
        first, second = Recorder(clock), Recorder(clock)
        d.register("nginx", first)
        d.register("nginx", second)
        d.changed(["nginx", "nginx"])
        run_until_idle(d, clock)
        assert (len(first.calls), len(second.calls)) == (1, 0)

    def test_failures_retry_with_growing_gaps_and_bounded_attempts(self) -> None:
        """A failing notifier is retried with doubling, capped gaps, max_attempts times in all."""
        clock = FakeClock()
        d = Dispatcher(
            WaitConfig(min=0.2, max=2.0), min_backoff=1, max_backoff=8, max_attempts=6, clock=clock, rand=lambda: 0.5
        )
        d.register("a", rec := Recorder(clock, failures=100))
        d.changed(["a"])
        run_until_idle(d, clock)
        gaps = [round(b - a, 6) for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
        assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert d.pending() == 0

    def test_backoff_is_fully_jittered(self) -> None:
        """Retry delays are drawn uniformly below the cap (full jitter), so may be short."""
        clock = FakeClock()
        draws = iter([0.0, 0.99])
        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, max_attempts=3, clock=clock, rand=lambda: next(draws))
        d.register("a", rec := Recorder(clock, failures=100))
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.0, 0.0, 1.98]

    def test_a_failing_notifier_does_not_hold_up_another(self) -> None:
        """While one notifier fails and retries, another fires on time, once."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), min_backoff=1, max_attempts=3, clock=clock, rand=lambda: 0.5)
        d.register("bad", bad := Recorder(clock, name="bad", failures=100))
        d.register("good", good := Recorder(clock, name="good"))
        d.changed(["bad"])
        clock.now = 0.3
        d.changed(["good"])
        run_until_idle(d, clock)
        assert good.calls == [0.5]
        assert len(bad.calls) == 3

    def test_change_while_retrying_merges_into_the_retry(self) -> None:
        """A change during the backoff wait does not add a notification: the retry carries it."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0.2, max=2.0), min_backoff=1, clock=clock, rand=lambda: 0.5)
        d.register("a", rec := Recorder(clock, failures=1))
        d.changed(["a"])
        clock.now = 0.2
        d.fire_due()
        clock.now = 0.3
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.2, 0.7]

    def test_gives_up_then_the_next_change_notifies_afresh(self) -> None:
        """After max_attempts the notification is dropped; a later change starts a new one."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, max_attempts=2, clock=clock, rand=lambda: 0.5)
        d.register("a", rec := Recorder(clock, failures=2))
        d.changed(["a"])
        run_until_idle(d, clock)
        clock.now = 10
        d.changed(["a"])
        run_until_idle(d, clock)
        assert rec.calls == [0.0, 0.5, 10.0]

    def test_unexpected_exception_counts_as_a_failure(self) -> None:
        """A notifier raising something other than NotifyError is retried like a failure."""
        clock = FakeClock()
        calls: list[float] = []

        class Broken:
            def describe(self) -> str:
                return "broken"

            def notify(self) -> None:
                calls.append(clock())
                if len(calls) == 1:
                    raise RuntimeError("bug")

        d = Dispatcher(WaitConfig(min=0, max=0), min_backoff=1, clock=clock, rand=lambda: 0.5)
        d.register("a", Broken())
        d.changed(["a"])
        run_until_idle(d, clock)
        assert calls == [0.0, 0.5]

    def test_pending_counts_waiting_notifications(self) -> None:
        """pending() counts the keys with a notification waiting, not the idle ones."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=5, max=10), clock=clock)
        for key in "abc":
            d.register(key, Recorder(clock, name=key))
        d.changed(["a", "b"])
        assert d.pending() == 2
        run_until_idle(d, clock)
        assert d.pending() == 0

    def test_unknown_key_is_an_error(self) -> None:
        """changed() with a key never registered raises KeyError."""
        d = Dispatcher(WaitConfig())
        with pytest.raises(KeyError, match="not registered"):
            d.changed(["nope"])

    def test_counts_results_in_metrics(self) -> None:
        """Successes, failed attempts and give-ups are counted per notifier description."""
        clock, registry = FakeClock(), Registry()
        metrics = NotifyMetrics.create(registry)
        d = Dispatcher(WaitConfig(min=0, max=0), max_attempts=2, clock=clock, metrics=metrics, rand=lambda: 0.5)
        d.register("ok", Recorder(clock, name="ok"))
        d.register("bad", Recorder(clock, name="bad", failures=100))
        d.changed(["ok", "bad"])
        run_until_idle(d, clock)
        text = registry.render()
        assert 'injector_notifications_total{notifier="test ok",result="success"} 1.0' in text
        assert 'injector_notifications_total{notifier="test bad",result="error"} 2.0' in text
        assert 'injector_notifications_total{notifier="test bad",result="gave_up"} 1.0' in text

    def test_failures_are_logged_at_warning_with_the_notifier(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each failed attempt is a WARNING naming the notifier and the error."""
        clock = FakeClock()
        d = Dispatcher(WaitConfig(min=0, max=0), max_attempts=2, clock=clock, rand=lambda: 0.5)
        d.register("a", Recorder(clock, name="app", failures=100))
        d.changed(["a"])
        with caplog.at_level("WARNING", logger="injector.notify.dispatch"):
            run_until_idle(d, clock)
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert messages == [
            "notify test app failed (attempt 1 of 2), retrying in 0.50s: test app: refused",
            "notify test app failed (attempt 2 of 2), giving up until the next change: test app: refused",
        ]


class TestDispatcherThread:
    def test_burst_fires_once_in_real_time(self) -> None:
        """With min 50 ms / max 200 ms, a burst of 100 changes fires once, at least 50 ms later."""
        d = Dispatcher(WaitConfig(min=0.05, max=0.2))
        d.register("a", rec := Recorder())
        d.start()
        try:
            started = time.monotonic()
            for _ in range(100):
                d.changed(["a"])
            wait_for(lambda: d.pending() == 0, what="notification sent")
        finally:
            d.stop()
        assert len(rec.calls) == 1
        assert rec.calls[0] - started >= 0.05

    def test_http_notify_is_retried_until_it_succeeds(self, http_app: AppServer) -> None:
        """A reload endpoint answering 500 twice is retried with backoff and then succeeds."""
        http_app.statuses = [500, 500]
        registry = Registry()
        d = Dispatcher(
            WaitConfig(min=0.01, max=0.05), min_backoff=0.02, max_backoff=0.1, metrics=NotifyMetrics.create(registry)
        )
        notifier = HttpNotifier(HttpNotify(url=http_app.url, timeout=2))
        d.register("http", notifier)
        d.start()
        try:
            d.changed(["http"])
            wait_for(lambda: d.pending() == 0, what="notification delivered")
        finally:
            d.stop()
        assert len(http_app.requests) == 3
        assert f'injector_notifications_total{{notifier="{notifier.describe()}",result="success"}} 1.0' in (
            registry.render()
        )

    def test_a_slow_notifier_does_not_block_another(self) -> None:
        """A notifier stuck in its attempt does not delay another key's notification."""
        release = threading.Event()

        class Slow(Recorder):
            def notify(self) -> None:
                super().notify()
                release.wait(5)

        d = Dispatcher(WaitConfig(min=0.01, max=0.05))
        d.register("slow", slow := Slow(name="slow"))
        d.register("fast", fast := Recorder(name="fast"))
        d.start()
        try:
            d.changed(["slow"])
            wait_for(lambda: slow.calls, what="slow notifier started")
            d.changed(["fast"])
            # Done means no longer pending: the fast one finishes while the slow one is still stuck.
            wait_for(lambda: fast.calls and d.pending() == 1, what="fast notifier done")
            assert len(slow.calls) == 1
            release.set()
            wait_for(lambda: d.pending() == 0, what="slow notifier done")
        finally:
            release.set()
            d.stop()

    def test_idle_thread_does_not_spin(self) -> None:
        """With nothing pending, the thread sleeps: it stops reading the clock."""
        reads = [0]

        def clock() -> float:
            reads[0] += 1
            return time.monotonic()

        d = Dispatcher(WaitConfig(min=0.01, max=0.05), clock=clock)
        d.register("a", Recorder())
        d.start()
        try:
            d.changed(["a"])
            wait_for(lambda: d.pending() == 0, what="notification sent")
            before = reads[0]
            time.sleep(0.2)  # observing idleness, not waiting for a condition
            assert reads[0] - before <= 2
        finally:
            d.stop()

    def test_stop_ends_the_thread(self) -> None:
        """stop() ends the background thread promptly."""
        d = Dispatcher(WaitConfig())
        d.start()
        [thread] = [t for t in threading.enumerate() if t.name == "injector-notify"]
        d.stop(timeout=2)
        assert not thread.is_alive()
