"""A tiny, thread-safe Prometheus registry rendering the text exposition format 0.0.4.

No dependency: the sidecar needs counters, gauges and histograms with labels, and their text form,
nothing else. Metrics are created against a :class:`Registry` and rendered by ``/metrics``::

    registry = Registry()
    renders = Counter("injector_renders_total", "Templates rendered.", ("template",), registry=registry)
    renders.labels(template="app.env").inc()
    registry.render()

Label values are template destinations, source names and notifier descriptions, never secret
values: a label is public to anyone who can scrape the pod.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "InjectorMetrics",
    "Registry",
    "standard_metrics",
]

#: The Content-Type of :meth:`Registry.render`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The Prometheus client libraries' default buckets (seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _format_value(value: float) -> str:
    """Formats a sample value as the Go and Python clients do (``1.0``, ``+Inf``, ``NaN``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)) + "}"


class _Metric:
    """The parts every metric type shares: name, help, label names, children per label values."""

    kind = "untyped"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, registry: Registry | None = None
    ) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")
        labelnames = tuple(labelnames)
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}: expected [a-zA-Z_][a-zA-Z0-9_]*")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"{name}: duplicate label names in {labelnames!r}")
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], list[float]] = {}
        if not labelnames:
            self._children[()] = self._new_child()
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> list[float]:
        return [0.0]

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {sorted(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _child(self, key: tuple[str, ...]) -> list[float]:
        # Called with the lock held.
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _samples(self, key: tuple[str, ...], child: list[float]) -> Iterable[str]:
        yield f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(child[0])}"

    def render(self) -> str:
        """Returns this metric's HELP, TYPE and sample lines."""
        with self._lock:
            snapshot = [(key, list(child)) for key, child in self._children.items()]
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, child in snapshot:
            lines.extend(self._samples(key, child))
        return "\n".join(lines) + "\n"

    def clear(self) -> None:
        """Removes every labelled child (a template removed from the config, say)."""
        with self._lock:
            if self.labelnames:
                self._children.clear()

    def remove(self, **labels: object) -> None:
        """Removes the child with these label values, if any."""
        key = self._key(labels)
        with self._lock:
            self._children.pop(key, None)


class _CounterChild:
    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Counter, key: tuple[str, ...]) -> None:
        self._metric, self._key = metric, key

    def inc(self, amount: float = 1.0) -> None:
        """Adds ``amount`` (not negative) to the counter."""
        if amount < 0:
            raise ValueError(f"{self._metric.name}: a counter only goes up, got inc({amount})")
        with self._metric._lock:
            self._metric._child(self._key)[0] += amount

    def get(self) -> float:
        with self._metric._lock:
            return self._metric._child(self._key)[0]


class Counter(_Metric):
    """A value that only goes up; by convention its name ends in ``_total``."""

    kind = "counter"

    def labels(self, **labels: object) -> _CounterChild:
        """Returns the child for these label values (created at zero the first time)."""
        key = self._key(labels)
        with self._lock:
            self._child(key)
        return _CounterChild(self, key)

    def inc(self, amount: float = 1.0) -> None:
        """Increments an unlabelled counter."""
        self.labels().inc(amount)

    def get(self) -> float:
        return self.labels().get()


class _GaugeChild:
    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Gauge, key: tuple[str, ...]) -> None:
        self._metric, self._key = metric, key

    def set(self, value: float) -> None:
        with self._metric._lock:
            self._metric._child(self._key)[0] = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._metric._lock:
            self._metric._child(self._key)[0] += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def get(self) -> float:
        with self._metric._lock:
            return self._metric._child(self._key)[0]


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def labels(self, **labels: object) -> _GaugeChild:
        key = self._key(labels)
        with self._lock:
            self._child(key)
        return _GaugeChild(self, key)

    def set(self, value: float) -> None:
        self.labels().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)

    def get(self) -> float:
        return self.labels().get()


class _HistogramChild:
    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Histogram, key: tuple[str, ...]) -> None:
        self._metric, self._key = metric, key

    def observe(self, value: float) -> None:
        """Counts ``value`` in the first bucket whose bound is at least ``value``."""
        metric = self._metric
        with metric._lock:
            child = metric._child(self._key)
            # Layout: [count per bucket (non-cumulative)..., sum]; +Inf is the last bucket.
            for i, bound in enumerate(metric.buckets):
                if value <= bound:
                    child[i] += 1
                    break
            child[-1] += value


class Histogram(_Metric):
    """Observations counted in cumulative ``le`` buckets, with ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        registry: Registry | None = None,
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: a histogram cannot have a label named 'le'")
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds) or any(math.isnan(b) for b in bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers, got {list(buckets)!r}")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.buckets: tuple[float, ...] = tuple(bounds)
        super().__init__(name, help, labelnames, registry=registry)

    def _new_child(self) -> list[float]:
        return [0.0] * (len(self.buckets) + 1)

    def _samples(self, key: tuple[str, ...], child: list[float]) -> Iterable[str]:
        names = (*self.labelnames, "le")
        cumulative = 0.0
        for bound, count in zip(self.buckets, child, strict=False):
            cumulative += count
            labels = _labels_text(names, (*key, _format_value(bound)))
            yield f"{self.name}_bucket{labels} {_format_value(cumulative)}"
        plain = _labels_text(self.labelnames, key)
        yield f"{self.name}_sum{plain} {_format_value(child[-1])}"
        yield f"{self.name}_count{plain} {_format_value(cumulative)}"

    def labels(self, **labels: object) -> _HistogramChild:
        key = self._key(labels)
        with self._lock:
            self._child(key)
        return _HistogramChild(self, key)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class Registry:
    """The metrics one process exposes, rendered in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}
        self._hooks: list[Callable[[], None]] = []

    def register(self, metric: _Metric) -> None:
        """Adds ``metric``; a second metric with the same name is a programming error."""
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def before_render(self, hook: Callable[[], None]) -> None:
        """Calls ``hook`` at every render, first: for values computed at scrape time (data age)."""
        with self._lock:
            self._hooks.append(hook)

    def get(self, name: str) -> _Metric | None:
        with self._lock:
            return self._metrics.get(name)

    def render(self) -> str:
        """Returns every metric in the text exposition format 0.0.4."""
        with self._lock:
            hooks, metrics = list(self._hooks), list(self._metrics.values())
        for hook in hooks:
            hook()
        return "".join(metric.render() for metric in metrics)


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectorMetrics:
    """The metrics the sidecar exposes; :func:`standard_metrics` registers them."""

    renders: Counter
    render_errors: Counter
    backend_calls: Counter
    backend_errors: Counter
    fetch_duration: Histogram
    data_age: Gauge
    notifications: Counter
    ready: Gauge
    last_render: Gauge
    build_info: Gauge
    publish_errors: Counter


def standard_metrics(registry: Registry, *, version: str | None = None) -> InjectorMetrics:
    """Registers the sidecar's metrics on ``registry``; ``build_info`` is set to 1, ``ready`` to 0."""
    if version is None:
        from injector import __version__ as version
    metrics = InjectorMetrics(
        renders=Counter(
            "injector_renders_total",
            "Templates rendered (whether or not their bytes changed).",
            ("template",),
            registry=registry,
        ),
        render_errors=Counter(
            "injector_render_errors_total", "Template renders that failed.", ("template",), registry=registry
        ),
        backend_calls=Counter(
            "injector_backend_calls_total",
            "Calls made to a secret backend.",
            ("source", "operation"),
            registry=registry,
        ),
        backend_errors=Counter(
            "injector_backend_errors_total",
            "Backend calls that failed, by error kind.",
            ("source", "operation", "kind"),
            registry=registry,
        ),
        fetch_duration=Histogram(
            "injector_fetch_duration_seconds",
            "Time taken by one fetch from a backend.",
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
