"""The sidecar's Prometheus metrics: counters, gauges and histograms on a registry of its own.

Each :class:`~injector.modes.sidecar.Sidecar` owns a :class:`Registry` and renders it on ``/metrics``::

    metrics = standard_metrics(registry := Registry(), sources=lambda: engine.sources)
    metrics.renders.labels(template="app.env").inc()
    registry.render()

Hand-written rather than prometheus-client because a measurement says so: in a fresh interpreter that
had imported ``jinja2.sandbox``, ``yaml``, ``hvac``, ``botocore.session`` and ``http.server`` (which
the health server needs anyway), ``import prometheus_client`` added 0.75 MiB of VmRSS to each pod (0.9
MiB without ``http.server``): wsgiref, urllib.request, mmap, timeit, collectors and a global registry
the sidecar never uses. This module adds 0.12 MiB, measured the same way after ``injector.sources``.
To measure again, after ``python -m compileall -q injector`` (stale bytecode would count)::

    python -c 'import sys; sys.modules["charset_normalizer"] = sys.modules["chardet"] = None
    import jinja2.sandbox, yaml, hvac, botocore.session, http.server
    rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
    before = rss(); import prometheus_client; print(rss() - before, "KiB")'

Interface and output are prometheus-client's: ``labels``, ``inc``, ``set``, ``dec``, ``observe``, its
name rules, and the text format 0.0.4 byte for byte as its ``generate_latest`` writes it without
``_created`` series (no dashboard reads them). tests/test_metrics.py checks ours against it.

Label values are template destinations, source schemes, operation names and notifier descriptions,
never secret values: a label is public to anyone who can scrape the pod. They are written escaped
(backslash, ``"``, newline), so a config author's odd destination cannot forge a sample.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, Protocol, Self

from injector.sources import CountedSource, ThrottledSource

__all__ = [
    "CONTENT_TYPE", "DEFAULT_BUCKETS", "BackendCalls", "BackendThrottles", "Counter", "Family", "Gauge",
    "Histogram", "InjectorMetrics", "Registry", "Sample", "standard_metrics",
]

#: The Content-Type of :meth:`Registry.render`'s output, the text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Histogram buckets (seconds) when none are given: prometheus-client's ``DEFAULT_BUCKETS``.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: The sample names each kind adds to its family name (a clash with any of them is a duplicate).
_SUFFIXES: dict[str, tuple[str, ...]] = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
_LABEL_ESCAPES = {ord("\\"): r"\\", ord("\n"): r"\n", ord('"'): r"\""}

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the exposition: a sample name (with its suffix), its labels, its value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """A metric family as collected. A counter's ``name`` has no ``_total`` (its samples have it)."""

    name: str
    documentation: str
    type: Kind
    samples: tuple[Sample, ...] = ()


class Collector(Protocol):
    """What a registry holds: the families it will have (names only) and, at each scrape, their samples."""

    def describe(self) -> Iterable[Family]: ...

    def collect(self) -> Iterable[Family]: ...


class Registry:
    """The metrics of one sidecar (or webhook), with hooks that set scrape-time values before each render."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: list[Collector] = []
        self._names: set[str] = set()
        self._hooks: list[Callable[[], None]] = []

    def before_render(self, hook: Callable[[], None]) -> None:
        """Calls ``hook`` first at every render: for values computed at scrape time (data age)."""
        self._hooks.append(hook)

    def register(self, collector: Collector) -> None:
        """Adds ``collector``; ValueError if a name it describes is invalid or already registered."""
        names: set[str] = set()
        for family in collector.describe():
            _check_metric_name(family.name)
            names.update(family.name + suffix for suffix in ("", *_SUFFIXES.get(family.type, ())))
        with self._lock:
            if taken := names & self._names:
                raise ValueError(f"metric names already registered: {', '.join(sorted(taken))}")
            self._names |= names
            self._collectors.append(collector)

    def collect(self) -> Iterator[Family]:
        """Runs the hooks, then yields every family, in the order they were registered."""
        for hook in list(self._hooks):
            hook()
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            yield from collector.collect()

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of the sample ``name`` with exactly ``labels``, or None (for tests)."""
        samples = (sample for family in self.collect() for sample in family.samples)
        return next((s.value for s in samples if s.name == name and dict(s.labels) == dict(labels or {})), None)

    def render(self) -> str:
        """Returns every metric in the text exposition format 0.0.4."""
        out: list[str] = []
        for family in self.collect():
            name = family.name + "_total" if family.type == "counter" else family.name
            documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {documentation}\n# TYPE {name} {family.type}\n")
            for sample in family.samples:
                labels = ",".join(f'{k}="{v.translate(_LABEL_ESCAPES)}"' for k, v in sorted(sample.labels.items()))
                out.append(f"{sample.name}{{{labels}}}" if labels else sample.name)
                out.append(f" {_format_value(sample.value)}\n")
        text = "".join(out)
        text.encode("utf-8")  # a lone surrogate raises here, where the health server answers 500
        return text


def _format_value(value: float) -> str:
    """``value`` as prometheus-client writes it: ``1.0``, ``+Inf``, ``NaN``, Go's exponents for large ones."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    # Go's shortest %g switches to an exponent at 1e6, Python's repr at 1e16: 1234567.0 is written
    # 1.234567e+06 by both clients (only positives matter to the client, for ``le`` bounds).
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _check_metric_name(name: str) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: it must match {_METRIC_NAME.pattern}")


class _Metric:
    """A metric family. Without label names it is its only series; with, its series are made by
    :meth:`labels`: copies sharing its name and its one lock (so a scrape sees a consistent family).
    """

    kind: ClassVar[Kind]
    _suffix: ClassVar[str] = ""
    _reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self: Self, name: str, documentation: str, labelnames: Iterable[str] = (), *, registry: Registry | None = None
    ) -> None:
        self.name = name.removesuffix(self._suffix)
        _check_metric_name(self.name)
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL_NAME.fullmatch(label):
                raise ValueError(f"{self.name}: invalid label name {label!r}: it must match {_LABEL_NAME.pattern}")
            if label.startswith("__") or label in self._reserved:
                raise ValueError(f"{self.name}: label name {label!r} is reserved")
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], Self] = {} if self.labelnames else {(): self}
        self._reset()
        if registry is not None:
            registry.register(self)

    def _reset(self) -> None:
        self._value = 0.0

    def _samples(self, labels: dict[str, str]) -> list[Sample]:  # with the lock held
        return [Sample(self.name + self._suffix, labels, self._value)]

    def labels(self, /, *values: object, **named: object) -> Self:
        """The series of these label values (by position or by name), created at first use."""
        what = f"{self.kind} {self.name}"
        if not self.labelnames:
            raise ValueError(f"{what} has no labels (or they are set); use it without .labels()")
        if values and named:
            raise ValueError(f"{what}: give label values by position or by name, not both")
        if named:
            if sorted(named) != sorted(self.labelnames):
                raise ValueError(f"{what} has labels {', '.join(self.labelnames)}; got {', '.join(sorted(named))}")
            values = tuple(named[label] for label in self.labelnames)
        elif len(values) != len(self.labelnames):
            raise ValueError(f"{what} has labels {', '.join(self.labelnames)}; got {len(values)} values")
        key = tuple(str(value) for value in values)
        with self._lock:
            if (series := self._series.get(key)) is None:
                series = self._series[key] = copy.copy(self)
                series.labelnames, series._series = (), {}
                series._reset()
            return series

    def _series_lock(self) -> threading.Lock:
        """The lock to update this series under; ValueError if this is a labelled metric's parent."""
        if self.labelnames:
            raise ValueError(f"{self.kind} {self.name} has labels ({', '.join(self.labelnames)}); use .labels()")
        return self._lock

    def describe(self) -> list[Family]:
        return [Family(name=self.name, documentation=self.documentation, type=self.kind)]

    def collect(self) -> list[Family]:
        with self._lock:
            series = [(dict(zip(self.labelnames, key, strict=True)), one) for key, one in self._series.items()]
            samples = tuple(sample for labels, one in series for sample in one._samples(labels))
        return [replace(family, samples=samples) for family in self.describe()]


class Counter(_Metric):
    """A count that only goes up; written ``NAME_total`` (a trailing ``_total`` in ``name`` is not doubled)."""

    kind = "counter"
    _suffix = "_total"

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up; inc({amount}) is negative")
        with self._series_lock():
            self._value += amount


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float) -> None:
        with self._series_lock():
            self._value = float(value)

    def inc(self, amount: float = 1) -> None:
        with self._series_lock():
            self._value += amount

    def dec(self, amount: float = 1) -> None:
        self.inc(-amount)


class Histogram(_Metric):
    """Observations counted in cumulative buckets (``le``, ending with ``+Inf``), with their count and sum."""

    kind = "histogram"
    _reserved = frozenset({"le"})

    def __init__(
        self, name: str, documentation: str, labelnames: Iterable[str] = (), *, registry: Registry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"{name}: buckets are not in increasing order: {bounds}")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError(f"{name}: a histogram needs at least one bucket below +Inf")
        self._bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry=registry)

    def _reset(self) -> None:
        self._counts = [0] * len(self._bounds)  # per bucket; cumulated when collected
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        """Counts ``amount`` in the first bucket that holds it (a NaN in none, as prometheus-client)."""
        with self._series_lock():
            self._sum += amount
            for i, bound in enumerate(self._bounds):
                if amount <= bound:
                    self._counts[i] += 1
                    break

    def _samples(self, labels: dict[str, str]) -> list[Sample]:
        samples: list[Sample] = []
        total = 0
        for bound, count in zip(self._bounds, self._counts, strict=True):
            total += count
            samples.append(Sample(self.name + "_bucket", {**labels, "le": _format_value(bound)}, float(total)))
        samples.append(Sample(self.name + "_count", labels, float(total)))
        if self._bounds[0] >= 0:  # a sum of negative observations is no counter: left out, as the client does
            samples.append(Sample(self.name + "_sum", labels, self._sum))
        return samples


class _FromSources(ABC):
    """A counter family read from the sources at scrape time: :meth:`_counts` reads one source."""

    family: ClassVar[Family]

    def __init__(self, sources: Callable[[], Mapping[str, object]]) -> None:
        self._sources = sources

    @abstractmethod
    def _counts(self, scheme: str, source: object) -> list[tuple[dict[str, str], float]]:
        """The (labels, count) pairs of one source; none for a source that does not count."""

    def describe(self) -> list[Family]:
        return [self.family]

    def collect(self) -> list[Family]:
        counts = [count for scheme, source in sorted(self._sources().items()) for count in self._counts(scheme, source)]
        return [replace(self.family, samples=tuple(Sample(self.family.name + "_total", *count) for count in counts))]


class BackendCalls(_FromSources):
    """``injector_backend_calls_total``, not incremented by the sidecar but read at scrape time from
    each source's :class:`~injector.sources.CallCounter`: the HTTP requests its client really sent
    (a batch of 20 secrets is one call; a retry is another).
    """

    family = Family(name="injector_backend_calls", type="counter",
                    documentation="HTTP requests sent to a secret backend (retries included), by what they were for.")

    def _counts(self, scheme: str, source: object) -> list[tuple[dict[str, str], float]]:
        calls = sorted(source.calls.snapshot().items()) if isinstance(source, CountedSource) else []
        return [({"source": scheme, "operation": operation, "kind": kind}, float(n)) for (operation, kind), n in calls]


class BackendThrottles(_FromSources):
    """``injector_backend_throttles_total``: throttled answers each source counted, read at scrape time."""

    family = Family(name="injector_backend_throttles", type="counter", documentation="Answers from a secret "
                    "backend that throttled us (retried ones included), by API operation.")

    def _counts(self, scheme: str, source: object) -> list[tuple[dict[str, str], float]]:
        throttles = sorted(source.throttles().items()) if isinstance(source, ThrottledSource) else []
        return [({"source": scheme, "kind": kind}, float(n)) for kind, n in throttles]


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

    def counter(name: str, documentation: str, *labelnames: str) -> Counter:
        return Counter(name, documentation, labelnames, registry=registry)

    def gauge(name: str, documentation: str, *labelnames: str) -> Gauge:
        return Gauge(name, documentation, labelnames, registry=registry)

    # Registered, so written on /metrics, in this order.
    renders = counter("injector_renders_total", "Templates rendered (whether or not their bytes changed).", "template")
    render_errors = counter("injector_render_errors_total", "Template renders that failed.", "template")
    registry.register(backend_calls := BackendCalls(sources))
    registry.register(BackendThrottles(sources))
    metrics = InjectorMetrics(
        renders=renders,
        render_errors=render_errors,
        backend_calls=backend_calls,
        backend_errors=counter("injector_backend_errors_total",
                               "Fetches and renewals of a reference that failed, by error kind.",
                               "source", "operation", "kind"),
        fetch_duration=Histogram("injector_fetch_duration_seconds",
                                 "Time taken by one round of fetches from a backend.", ("source",), registry=registry),
        data_age=gauge("injector_template_data_age_seconds",
                       "Age of the oldest value a template was last rendered with.", "template"),
        notifications=counter("injector_notifications_total",
                              "Reload notifications, by notifier and result (success, error, gave_up).",
                              "notifier", "result"),
        ready=gauge("injector_ready", "1 when every template is rendered and fresh, else 0."),
        last_render=gauge("injector_last_render_timestamp_seconds", "Unix time of the last successful render."),
        build_info=gauge("injector_build_info", "Always 1; the version as a label.", "version"),
        publish_errors=counter("injector_publish_errors_total",
                               "Snapshots that could not be published (a full or unwritable output volume)."),
    )
    metrics.build_info.labels(version=version).set(1)
    return metrics
