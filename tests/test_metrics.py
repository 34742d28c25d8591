"""The sidecar's metrics: its own registry, the README's table, and backend calls counted for real.

injector/metrics.py replaces prometheus-client at run time; here prometheus-client is the reference
it is checked against: its ``generate_latest`` for the same metrics and operations must write the
same bytes, and its parser must read back exactly the samples that were set.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.metrics_core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from injector.metrics import (
    DEFAULT_BUCKETS,
    BackendCalls,
    BackendThrottles,
    Counter,
    Gauge,
    Histogram,
    Registry,
    standard_metrics,
)
from injector.refs import parse_reference
from injector.sources import CallCounter, Fetched

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_metrics() -> dict[str, set[str]]:
    """Metric name → label names, from the metric table of the README's "Probes and metrics"."""
    text = README.read_text()
    section = text[text.index("## Probes and metrics") :]
    section = section[: section.index("\n## ", 1)]
    table = section[section.index("| metric | labels |") :].split("\n\n", 1)[0]
    documented: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        names_cell, labels_cell = row.strip("|").split("|", 1)
        # Label names come first in backticks; values in parentheses and prose after ':' are not names.
        labels_cell = re.sub(r"\([^)]*\)", "", labels_cell).split(":", 1)[0]
        labels = set(re.findall(r"`([a-z_]+)`", labels_cell))
        for name in re.findall(r"`([a-z_]+)`", names_cell):
            documented[name] = labels
    return documented


def exposed(registry: Registry) -> dict[str, set[str]]:
    """Family name (as scraped: counters with ``_total``) → label names seen on its samples."""
    families: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(registry.render()):
        name = family.name + "_total" if family.type == "counter" else family.name
        families[name] = {label for sample in family.samples for label in sample.labels if label != "le"}
    return families


class CountingSource:
    """A source that counted some calls, as VaultSource and the AWS sources do."""

    scheme = "vault"

    def __init__(self, *calls: tuple[str, str]) -> None:
        self.calls = CallCounter()
        for operation, kind in calls:
            self.calls.add(operation, kind)


class ThrottledCountingSource(CountingSource):
    """A source that also counted throttled answers, as the AWS sources do."""

    scheme = "aws-ssm"

    def throttles(self) -> dict[str, int]:
        return {"GetParameters": 2}


class TestRegistry:
    def test_nothing_is_registered_globally(self) -> None:
        """A Registry holds only its own metrics: none of another registry's, no process or GC ones."""
        registry, other = Registry(), Registry()
        Counter("obs_isolated_total", "Isolated.", registry=registry).inc()
        Counter("obs_isolated_total", "Isolated.", registry=other).inc(5)
        Gauge("obs_unregistered", "Registered nowhere.").set(1)
        text = registry.render()
        assert "obs_isolated_total 1.0\n" in text
        assert "obs_unregistered" not in text
        assert "process_" not in text
        assert "python_gc" not in text
        assert other.get_sample_value("obs_isolated_total") == 5

    def test_injector_never_imports_prometheus_client(self) -> None:
        """The sidecar, the health server and the webhook run without prometheus_client (a fresh interpreter)."""
        code = (
            "import sys, injector.modes.sidecar, injector.health, injector.webhook.admission\n"
            "print('prometheus_client' in sys.modules, sorted(m for m in sys.modules if m.startswith('prometheus')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, cwd=README.parent
        )
        assert result.stdout.strip() == "False []", result.stdout

    def test_before_render_hooks_run_first(self) -> None:
        """A before_render hook can set scrape-time values (such as data age)."""
        registry = Registry()
        age = Gauge("age_seconds", "Age.", registry=registry)
        registry.before_render(lambda: age.set(42))
        assert "age_seconds 42.0\n" in registry.render()

    def test_counters_have_no_created_series(self) -> None:
        """Counters render their value only, no ``_created`` series beside it."""
        registry = Registry()
        Counter("x_total", "X.", ("k",), registry=registry).labels(k="v").inc()
        assert "_created" not in registry.render()


@pytest.fixture(scope="module", autouse=True)
def _no_created_series_in_the_reference() -> Iterator[None]:
    """prometheus-client as the reference, writing no ``_created`` series (as ours never does)."""
    prometheus_client.disable_created_metrics()
    yield
    prometheus_client.enable_created_metrics()


#: Label values a config author could write as a destination or a notifier description.
ODD_LABELS = ['"', "\\", "\n", "} evil 1", 'a"} evil 1\nforged_total{x="y"} 2\\', "", "é ☃", "\r\t", "le", "x=1,y"]

label_values = st.one_of(st.sampled_from(ODD_LABELS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
finite_and_odd = st.one_of(
    st.sampled_from([0.0, -0.0, 0.1, 1e-9, 1e20, 1234567.0, 2.0**53 + 2, 1e16, 1e308, 5e-324]),
    st.floats(),
    st.integers(-(2**63), 2**63),
)
#: (metric, label values, method, amount): one call on the same metric in both clients.
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("counter"),
            st.tuples(label_values, label_values),
            st.just("inc"),
            st.one_of(st.floats(min_value=0), st.integers(0, 2**63)),
        ),
        st.tuples(st.just("plain_counter"), st.just(()), st.just("inc"), st.floats(min_value=0, max_value=1e6)),
        st.tuples(st.just("gauge"), st.tuples(label_values), st.sampled_from(["set", "inc", "dec"]), finite_and_odd),
        st.tuples(st.just("plain_gauge"), st.just(()), st.sampled_from(["set", "inc", "dec"]), finite_and_odd),
        st.tuples(st.just("histogram"), st.tuples(label_values), st.just("observe"), finite_and_odd),
        st.tuples(st.just("odd_buckets"), st.just(()), st.just("observe"), finite_and_odd),
        st.tuples(st.just("calls"), st.tuples(label_values, label_values), st.just("add"), st.integers(1, 3)),
        st.tuples(st.just("throttles"), st.tuples(label_values, label_values), st.just("add"), st.integers(1, 3)),
    ),
    max_size=40,
)


class ScrapedSource(CountingSource):
    """A source that counted calls and throttled answers, which the property test adds to."""

    def __init__(self) -> None:
        super().__init__()
        self.throttled: dict[str, int] = {}

    def throttles(self) -> dict[str, int]:
        return dict(self.throttled)


class ReferenceSourceCounters:
    """BackendCalls and BackendThrottles as they were written on prometheus-client (the reference)."""

    def __init__(self, sources: Callable[[], Mapping[str, ScrapedSource]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily]:
        calls = CounterMetricFamily(
            "injector_backend_calls_total", BackendCalls.family.documentation, labels=("source", "operation", "kind")
        )
        throttles = CounterMetricFamily(
            "injector_backend_throttles_total", BackendThrottles.family.documentation, labels=("source", "kind")
        )
        for scheme, source in sorted(self._sources().items()):
            for (operation, kind), count in sorted(source.calls.snapshot().items()):
                calls.add_metric([scheme, operation, kind], count)
            for kind, count in sorted(source.throttles().items()):
                throttles.add_metric([scheme, kind], count)
        yield from (calls, throttles)


def both(module: Any, registry: Any, sources: Callable[[], Mapping[str, ScrapedSource]]) -> dict[str, Any]:
    """One of every kind, labelled and not, on ``registry`` of ``module`` (ours or prometheus_client)."""
    metrics = {
        "counter": module.Counter(
            "t_events_total", "Events\\ with a backslash\nand a newline.", ("b", "a"), registry=registry
        ),
        "plain_counter": module.Counter("t_plain", "A counter named without _total.", registry=registry),
        "gauge": module.Gauge("t_level", "A gauge.", ("template",), registry=registry),
        "plain_gauge": module.Gauge("t_plain_level", "", registry=registry),
        "histogram": module.Histogram("t_seconds", "Default buckets.", ("source",), registry=registry),
        "odd_buckets": module.Histogram(
            "t_odd",
            "Negative, tiny and huge bounds.",
            registry=registry,
            buckets=(-1e20, -1, 0, 1e-9, 0.1, 1234567, 1e20),
        ),
    }
    if module is prometheus_client:
        registry.register(ReferenceSourceCounters(sources))
    else:
        registry.register(BackendCalls(sources))
        registry.register(BackendThrottles(sources))
    return metrics


def apply(metrics: dict[str, Any], sources: dict[str, ScrapedSource], ops: list[tuple[Any, ...]]) -> None:
    for name, labels, method, amount in ops:
        if name == "calls":
            sources.setdefault(labels[0], ScrapedSource()).calls.add(labels[1], str(amount))
            continue
        if name == "throttles":
            throttled = sources.setdefault(labels[0], ScrapedSource()).throttled
            throttled[labels[1]] = throttled.get(labels[1], 0) + amount
            continue
        metric = metrics[name].labels(*labels) if labels else metrics[name]
        getattr(metric, method)(amount)


class TestSameAsPrometheusClient:
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=operations)
    @example(
        ops=[
            ("counter", ('"', "\\"), "inc", 1),
            ("gauge", ("} evil 1",), "set", math.nan),
            ("gauge", ("\n",), "dec", math.inf),
            ("histogram", ("",), "observe", 0.1),
            ("odd_buckets", (), "observe", -5),
            ("plain_gauge", (), "set", 1e-9),
            ("plain_counter", (), "inc", 10**6),
            ("calls", ("vault", "fetch"), "add", 1),
            ("throttles", ("aws-ssm", "GetParameters"), "add", 2),
        ]
    )
    def test_render_is_byte_for_byte_generate_latest(self, ops: list[tuple[Any, ...]]) -> None:
        """For the same metrics and calls, render() writes exactly what prometheus-client writes."""
        ours_sources: dict[str, ScrapedSource] = {}
        theirs_sources: dict[str, ScrapedSource] = {}
        ours_registry, theirs_registry = Registry(), prometheus_client.CollectorRegistry()
        ours = both(sys.modules["injector.metrics"], ours_registry, lambda: ours_sources)
        theirs = both(prometheus_client, theirs_registry, lambda: theirs_sources)
        apply(ours, ours_sources, ops)
        apply(theirs, theirs_sources, ops)
        assert ours_registry.render() == prometheus_client.generate_latest(theirs_registry).decode()

    @pytest.mark.parametrize(
        "value",
        [
            0.0,
            -0.0,
            1,
            0.1,
            1e-9,
            1e20,
            1e21,
            2**53 + 1,
            10**30,
            999999.0,
            1000000.0,
            1234567.5,
            -1234567.5,
            -3.25,
            5e-324,
            1.7976931348623157e308,
            math.nan,
            math.inf,
            -math.inf,
        ],
    )
    def test_gauge_values_are_written_as_the_client_writes_them(self, value: float) -> None:
        """A gauge's value is formatted as floatToGoString does (``1.0``, ``+Inf``, ``NaN``, ``1e+20``)."""
        ours, theirs = Registry(), prometheus_client.CollectorRegistry()
        Gauge("g", "G.", registry=ours).set(value)
        prometheus_client.Gauge("g", "G.", registry=theirs).set(value)
        assert ours.render() == prometheus_client.generate_latest(theirs).decode()

    def test_default_buckets_are_the_clients(self) -> None:
        """A Histogram without buckets has prometheus-client's DEFAULT_BUCKETS."""
        assert DEFAULT_BUCKETS == prometheus_client.Histogram.DEFAULT_BUCKETS

    def test_families_in_registration_order_series_in_creation_order(self) -> None:
        """Families come in the order registered and series in the order first used, not sorted."""
        registry = Registry()
        z = Counter("z_total", "Z.", ("k",), registry=registry)
        Gauge("a", "A.", registry=registry)
        z.labels(k="b").inc()
        z.labels(k="a").inc()
        names = [(s.name, dict(s.labels)) for family in registry.collect() for s in family.samples]
        assert names == [("z_total", {"k": "b"}), ("z_total", {"k": "a"}), ("a", {})]


class TestEscaping:
    @pytest.mark.parametrize("value", ODD_LABELS)
    def test_a_label_value_cannot_forge_a_sample(self, value: str) -> None:
        """A label value with quotes, backslashes, newlines or ``} evil 1`` reads back as itself, one sample."""
        registry = Registry()
        Counter("injector_renders_total", "Renders.", ("template",), registry=registry).labels(template=value).inc()
        Gauge("injector_ready", "Ready.", registry=registry).set(0)
        parsed = [
            (family.name, family.type, [(s.name, s.labels, s.value) for s in family.samples])
            for family in text_string_to_metric_families(registry.render())
        ]
        assert parsed == [
            ("injector_renders", "counter", [("injector_renders_total", {"template": value}, 1.0)]),
            ("injector_ready", "gauge", [("injector_ready", {}, 0.0)]),
        ]

    def test_help_text_is_escaped(self) -> None:
        """A backslash and a newline in the help text are written ``\\\\`` and ``\\n``, on one HELP line."""
        registry = Registry()
        Gauge("g", "back\\slash\nnext line", registry=registry)
        assert registry.render() == "# HELP g back\\\\slash\\nnext line\n# TYPE g gauge\ng 0.0\n"

    def test_values_by_position_or_by_name_are_the_same_series(self) -> None:
        """labels("a", "b") and labels(x="a", y="b") are one series; values are str()ed as the client does."""
        registry = Registry()
        counter = Counter("c_total", "C.", ("x", "y"), registry=registry)
        counter.labels("a", 2).inc()
        counter.labels(y="2", x="a").inc()
        assert registry.get_sample_value("c_total", {"x": "a", "y": "2"}) == 2


class TestRules:
    def test_a_counter_refuses_a_negative_amount(self) -> None:
        """inc(-1) raises ValueError, labelled or not, and the value is unchanged."""
        registry = Registry()
        plain = Counter("p_total", "P.", registry=registry)
        labelled = Counter("l_total", "L.", ("k",), registry=registry)
        with pytest.raises(ValueError, match="only goes up"):
            plain.inc(-1)
        with pytest.raises(ValueError, match="only goes up"):
            labelled.labels(k="v").inc(-0.5)
        assert registry.get_sample_value("p_total") == 0
        assert registry.get_sample_value("l_total", {"k": "v"}) == 0

    @pytest.mark.parametrize(
        "use",
        [
            lambda r: Counter("c", "C.", ("template",), registry=r).inc(),
            lambda r: Gauge("g", "G.", ("template",), registry=r).set(1),
            lambda r: Histogram("h", "H.", ("template",), registry=r).observe(1),
        ],
        ids=["counter", "gauge", "histogram"],
    )
    def test_a_labelled_metric_needs_labels(self, use: Callable[[Registry], None]) -> None:
        """A metric with label names used without .labels() raises ValueError naming them."""
        with pytest.raises(ValueError, match=r"has labels \(template\); use \.labels\(\)"):
            use(Registry())

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            (lambda m: m.labels(templat="x"), "has labels template, source; got templat"),
            (lambda m: m.labels(template="x", source="y", extra="z"), "got extra, source, template"),
            (lambda m: m.labels("x"), "has labels template, source; got 1 values"),
            (lambda m: m.labels("x", source="y"), "by position or by name, not both"),
        ],
        ids=["wrong-name", "extra-name", "too-few", "mixed"],
    )
    def test_a_wrong_label_set_names_the_labels(self, call: Callable[[Counter], object], message: str) -> None:
        """Wrong label names or counts raise ValueError saying which labels the metric has."""
        metric = Counter("c_total", "C.", ("template", "source"), registry=Registry())
        with pytest.raises(ValueError, match=re.escape(message)):
            call(metric)

    def test_an_unlabelled_metric_takes_no_labels(self) -> None:
        """.labels() on a metric without label names raises ValueError."""
        with pytest.raises(ValueError, match="has no labels"):
            Gauge("g", "G.", registry=Registry()).labels("x")

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            (lambda r: Counter("x_total", "X.", registry=r), lambda r: Counter("x", "X.", registry=r)),
            (lambda r: Counter("x", "X.", registry=r), lambda r: Gauge("x_total", "X.", registry=r)),
            (lambda r: Histogram("h", "H.", registry=r), lambda r: Gauge("h_bucket", "H.", registry=r)),
            (lambda r: Gauge("g", "G.", registry=r), lambda r: Gauge("g", "G.", registry=r)),
            (
                lambda r: r.register(BackendCalls(dict)),
                lambda r: Counter("injector_backend_calls", "Again.", registry=r),
            ),
        ],
        ids=["counter-twice", "counter-gauge", "histogram-suffix", "gauge-twice", "collector"],
    )
    def test_duplicate_names_are_refused(
        self, first: Callable[[Registry], object], second: Callable[[Registry], object]
    ) -> None:
        """A name (or a sample name it writes) registered twice in one registry raises ValueError."""
        registry = Registry()
        first(registry)
        with pytest.raises(ValueError, match="already registered"):
            second(registry)

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda: Gauge("1abc", "G."), "invalid metric name"),
            (lambda: Gauge("a-b", "G."), "invalid metric name"),
            (lambda: Gauge("", "G."), "invalid metric name"),
            (lambda: Counter("_total", "C."), "invalid metric name"),
            (lambda: Gauge("g", "G.", ("a:b",)), "invalid label name"),
            (lambda: Gauge("g", "G.", ("1a",)), "invalid label name"),
            (lambda: Gauge("g", "G.", ("__name",)), "reserved"),
            (lambda: Histogram("h", "H.", ("le",)), "reserved"),
            (lambda: Histogram("h", "H.", buckets=(1, 0.5)), "increasing"),
            (lambda: Histogram("h", "H.", buckets=(math.inf,)), "at least one bucket"),
        ],
    )
    def test_invalid_names_and_buckets_are_refused(self, make: Callable[[], object], message: str) -> None:
        """Names and labels follow prometheus-client's rules (``__`` and a histogram's ``le`` reserved).

        Its legacy rules: newer clients also take UTF-8 names (written quoted); the injector never needs them.
        """
        with pytest.raises(ValueError, match=message):
            make()

    def test_colons_are_valid_in_metric_names(self) -> None:
        """A metric name may hold ``:`` (recording-rule style); the client's regex allows it."""
        registry = Registry()
        Gauge("job:ratio", "R.", registry=registry).set(0.5)
        assert registry.get_sample_value("job:ratio") == 0.5

    def test_a_lone_surrogate_fails_the_render(self) -> None:
        """A label value that is not UTF-8 raises in render() (so /metrics answers 500), not in the caller."""
        registry = Registry()
        Gauge("g", "G.", ("k",), registry=registry).labels(k="\udcff").set(1)
        with pytest.raises(UnicodeEncodeError):
            registry.render()


class TestThreads:
    def test_concurrent_updates_are_all_counted(self) -> None:
        """8 threads updating shared series lose no increment, and a histogram's count is its observations."""
        registry = Registry()
        counter = Counter("c_total", "C.", ("k",), registry=registry)
        gauge = Gauge("g", "G.", registry=registry)
        histogram = Histogram("h", "H.", ("k",), registry=registry)
        start = threading.Barrier(8)

        def work(n: int) -> None:
            start.wait()
            for i in range(5000):
                counter.labels(k=str(i % 3)).inc()
                gauge.inc(2)
                gauge.dec()
                histogram.labels(k="x").observe(i % 7 * 0.01)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(registry.get_sample_value("c_total", {"k": str(k)}) or 0 for k in range(3)) == 40000
        assert registry.get_sample_value("g") == 40000
        assert registry.get_sample_value("h_count", {"k": "x"}) == 40000
        assert registry.get_sample_value("h_bucket", {"k": "x", "le": "+Inf"}) == 40000


class TestStandardMetrics:
    def test_names_and_labels_are_those_of_the_readme(self) -> None:
        """Every metric and label of the README's table is exposed, and nothing else."""
        documented = readme_metrics()
        registry = Registry()
        source = CountingSource(("fetch", "GET"))
        ssm = ThrottledCountingSource(("fetch", "GetParameters"))
        metrics = standard_metrics(registry, version="1.2.3", sources=lambda: {"vault": source, "aws-ssm": ssm})
        by_name = {}
        for field in dataclasses.fields(metrics):
            metric = getattr(metrics, field.name)
            family = metric.describe()[0]
            by_name[family.name + ("_total" if family.type == "counter" else "")] = metric
        # Give each labelled metric a sample, with the README's label names (other names raise).
        for name, labels in documented.items():
            metric = by_name.get(name)
            if labels and hasattr(metric, "labels"):
                child = metric.labels(**dict.fromkeys(labels, "x"))
                child.observe(1) if isinstance(metric, Histogram) else child.inc()
        assert exposed(registry) == documented

    def test_throttles_are_read_from_the_sources(self) -> None:
        """injector_backend_throttles_total reports each throttled source's counts at scrape time."""
        registry = Registry()
        standard_metrics(registry, sources=lambda: {"aws-ssm": ThrottledCountingSource()})
        samples = {
            (s.labels["source"], s.labels["kind"]): s.value
            for family in registry.collect()
            if family.name == "injector_backend_throttles"
            for s in family.samples
        }
        assert samples == {("aws-ssm", "GetParameters"): 2}

    def test_build_info_and_ready(self) -> None:
        """build_info carries the version with the value 1; ready starts at 0."""
        registry = Registry()
        standard_metrics(registry, version="1.2.3")
        text = registry.render()
        assert 'injector_build_info{version="1.2.3"} 1.0\n' in text
        assert "injector_ready 0.0\n" in text

    def test_backend_calls_are_read_from_the_sources(self) -> None:
        """injector_backend_calls_total reports each source's counted calls at scrape time."""
        registry = Registry()
        sources: dict[str, object] = {"file": object()}
        standard_metrics(registry, sources=lambda: sources)
        assert "injector_backend_calls_total{" not in registry.render()
        sources["vault"] = CountingSource(("fetch", "GET"), ("fetch", "GET"), ("renew", "PUT"))
        text = registry.render()
        assert 'injector_backend_calls_total{kind="GET",operation="fetch",source="vault"} 2.0\n' in text
        assert 'injector_backend_calls_total{kind="PUT",operation="renew",source="vault"} 1.0\n' in text


@pytest.mark.vault
class TestVaultCalls:
    def test_each_read_is_one_call(self, make_vault_source: Any, vault_admin: Any, kv2_mount: str) -> None:
        """A round of 3 KV reads (mount already known) counts exactly 3 fetch calls."""
        for name in ("a", "b", "c"):
            vault_admin.secrets.kv.v2.create_or_update_secret(path=name, secret={"k": name}, mount_point=kv2_mount)
        source = make_vault_source()
        refs = [parse_reference(f"vault:{kv2_mount}/{name}") for name in ("a", "b", "c")]
        source.fetch(refs)
        before = source.calls.snapshot()
        source.fetch(refs)
        after = source.calls.snapshot()
        assert {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)} == {
            ("fetch", "GET"): 3
        }

    def test_a_renewal_is_one_renew_call(self, make_vault_source: Any, lease_role: str) -> None:
        """Renewing a lease counts one renew call (PUT sys/leases/renew)."""
        source = make_vault_source()
        reference = parse_reference(f"vault:{lease_role}")
        fetched = source.fetch([reference])[reference]
        assert isinstance(fetched, Fetched)
        before = source.calls.snapshot()
        source.renew(reference, fetched)
        after = source.calls.snapshot()
        assert {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)} == {
            ("renew", "PUT"): 1
        }


@pytest.mark.aws
class TestAwsCalls:
    def test_a_batch_of_25_is_two_calls(self, sm_source: Any, sm_client: Any) -> None:
        """25 secrets are fetched in 2 BatchGetSecretValue calls, and 2 are counted."""
        refs = []
        for i in range(25):
            sm_client.create_secret(Name=f"obs/s{i}", SecretString=str(i))
            refs.append(parse_reference(f"aws-sm:obs/s{i}"))
        results = sm_source.fetch(refs)
        assert all(isinstance(r, Fetched) for r in results.values())
        assert sm_source.calls.snapshot() == {("fetch", "BatchGetSecretValue"): 2}

    def test_parameters_by_name_count_per_call(self, ssm_source: Any, ssm_client: Any) -> None:
        """12 parameters by name take 2 GetParameters calls (10 names a call), and 2 are counted."""
        refs = []
        for i in range(12):
            ssm_client.put_parameter(Name=f"/obs/p{i}", Value=str(i), Type="String")
            refs.append(parse_reference(f"aws-ssm:/obs/p{i}"))
        ssm_source.fetch(refs)
        assert ssm_source.calls.snapshot() == {("fetch", "GetParameters"): 2}

    def test_each_retry_is_a_call(self, aws_config: Any) -> None:
        """A call retried 3 times against a closed port counts 3 requests sent."""
        from injector.sources.aws_secretsmanager import build_secretsmanager_source
        from tests.fixtures.aws import closed_port_url

        source = build_secretsmanager_source(aws_config(aws={"endpoint_url": closed_port_url(), "max_attempts": 3}))
        try:
            reference = parse_reference("aws-sm:obs/unreachable")
            source.fetch([reference])
            assert source.calls.snapshot() == {("fetch", "BatchGetSecretValue"): 3}
        finally:
            source.close()
