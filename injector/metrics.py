"""The sidecar's Prometheus metrics, on prometheus-client with a registry of its own.

Each :class:`~injector.modes.sidecar.Sidecar` owns a :class:`Registry` (never the client's global
one, which also carries process and GC collectors nobody asked for) and renders it on ``/metrics``::

    registry = Registry()
    metrics = standard_metrics(registry, sources=lambda: engine.sources)
    metrics.renders.labels(template="app.env").inc()
    registry.render()

``injector_backend_calls_total`` is not incremented by the sidecar: it is read at scrape time from
each source's :class:`~injector.sources.CallCounter`, which counts the HTTP requests the source's
client really sent (a batch of 20 secrets is one call; a retry is another).

Label values are template destinations, source schemes, operation names and notifier
descriptions, never secret values: a label is public to anyone who can scrape the pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from injector.sources import CountedSource, ThrottledSource

__all__ = [
    "CONTENT_TYPE",
    "BackendCalls",
    "BackendThrottles",
    "Counter",
    "Gauge",
    "Histogram",
    "InjectorMetrics",
    "Registry",
    "standard_metrics",
]

#: The Content-Type of :meth:`Registry.render`'s output: ``generate_latest`` writes the text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A ``_created`` sample per counter and histogram child doubles the series and no dashboard of
# ours reads it. The switch is process-wide in prometheus-client; this process is the injector.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Registry(CollectorRegistry):
    """A registry of one sidecar, with hooks that set scrape-time values before each render."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []

    def before_render(self, hook: Callable[[], None]) -> None:
        """Calls ``hook`` first at every render: for values computed at scrape time (data age)."""
        self._hooks.append(hook)

    def collect(self) -> Iterator[Metric]:
        for hook in list(self._hooks):
            hook()
        yield from super().collect()

    def render(self) -> str:
        """Returns every metric in the text exposition format 0.0.4."""
        return generate_latest(self).decode("utf-8")


class BackendCalls:
    """``injector_backend_calls_total``: the calls each source counted, read at scrape time."""

    name = "injector_backend_calls_total"
    help = "HTTP requests sent to a secret backend (retries included), by what they were for."
    labelnames = ("source", "operation", "kind")

    def __init__(self, sources: Callable[[], Mapping[str, object]]) -> None:
        self._sources = sources

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.help, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for scheme, source in sorted(dict(self._sources()).items()):
            if isinstance(source, CountedSource):
                for (operation, kind), count in sorted(source.calls.snapshot().items()):
                    family.add_metric([scheme, operation, kind], count)
        yield family


class BackendThrottles:
    """``injector_backend_throttles_total``: throttled answers each source counted, read at scrape time."""

    name = "injector_backend_throttles_total"
    help = "Answers from a secret backend that throttled us (retried ones included), by API operation."
    labelnames = ("source", "kind")

    def __init__(self, sources: Callable[[], Mapping[str, object]]) -> None:
        self._sources = sources

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.help, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for scheme, source in sorted(dict(self._sources()).items()):
            if isinstance(source, ThrottledSource):
                for kind, count in sorted(source.throttles().items()):
                    family.add_metric([scheme, kind], count)
        yield family


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectorMetrics:
    """The metrics the sidecar exposes; :func:`standard_metrics` registers them."""

    renders: Counter
    render_errors: Counter
    backend_calls: BackendCalls
    backend_errors: Counter
    fetch_duration: Histogram
    data_age: Gauge
    notifications: Counter
    ready: Gauge
    last_render: Gauge
    build_info: Gauge
    publish_errors: Counter


def standard_metrics(
    registry: Registry,
    *,
    version: str | None = None,
    sources: Callable[[], Mapping[str, object]] = lambda: {},
) -> InjectorMetrics:
    """Registers the sidecar's metrics on ``registry``; ``build_info`` is set to 1, ``ready`` to 0.

    Args:
        sources: returns the sources built so far (scheme → source); the calls of those that
            count them (:class:`~injector.sources.CountedSource`) are exported at each scrape.
    """
    if version is None:
        from injector import __version__ as version
    renders = Counter(
        "injector_renders_total",
        "Templates rendered (whether or not their bytes changed).",
        ("template",),
        registry=registry,
    )
    render_errors = Counter(
        "injector_render_errors_total", "Template renders that failed.", ("template",), registry=registry
    )
    backend_calls = BackendCalls(sources)
    registry.register(backend_calls)
    registry.register(BackendThrottles(sources))
    metrics = InjectorMetrics(
        renders=renders,
        render_errors=render_errors,
        backend_calls=backend_calls,
        backend_errors=Counter(
            "injector_backend_errors_total",
            "Fetches and renewals of a reference that failed, by error kind.",
            ("source", "operation", "kind"),
            registry=registry,
        ),
        fetch_duration=Histogram(
            "injector_fetch_duration_seconds",
            "Time taken by one round of fetches from a backend.",
            ("source",),
            registry=registry,
        ),
        data_age=Gauge(
            "injector_template_data_age_seconds",
            "Age of the oldest value a template was last rendered with.",
            ("template",),
            registry=registry,
        ),
        notifications=Counter(
            "injector_notifications_total",
            "Reload notifications, by notifier and result (success, error, gave_up).",
            ("notifier", "result"),
            registry=registry,
        ),
        ready=Gauge("injector_ready", "1 when every template is rendered and fresh, else 0.", registry=registry),
        last_render=Gauge(
            "injector_last_render_timestamp_seconds",
            "Unix time of the last successful render.",
            registry=registry,
        ),
        build_info=Gauge("injector_build_info", "Always 1; the version as a label.", ("version",), registry=registry),
        publish_errors=Counter(
            "injector_publish_errors_total",
            "Snapshots that could not be published (a full or unwritable output volume).",
            registry=registry,
        ),
    )
    metrics.build_info.labels(version=version).set(1)
    return metrics
