"""The Prometheus registry: exact text exposition, validation, thread safety, the standard set."""

from __future__ import annotations

import threading

import pytest

from injector.metrics import Counter, Gauge, Histogram, Registry, standard_metrics


class TestExposition:
    def test_counter_text(self) -> None:
        """A labelled counter renders HELP, TYPE and one sample per label set, in creation order."""
        registry = Registry()
        requests = Counter("app_requests_total", "Requests handled.", ("code",), registry=registry)
        requests.labels(code="200").inc()
        requests.labels(code="200").inc(2)
        requests.labels(code="500").inc()
        assert registry.render() == (
            "# HELP app_requests_total Requests handled.\n"
            "# TYPE app_requests_total counter\n"
            'app_requests_total{code="200"} 3.0\n'
            'app_requests_total{code="500"} 1.0\n'
        )

    def test_gauge_text(self) -> None:
        """An unlabelled gauge renders its current value; it starts at 0."""
        registry = Registry()
        ready = Gauge("app_ready", "1 when ready.", registry=registry)
        assert registry.render().endswith("app_ready 0.0\n")
        ready.set(1)
        ready.inc(2)
        ready.dec()
        assert registry.render() == "# HELP app_ready 1 when ready.\n# TYPE app_ready gauge\napp_ready 2.0\n"

    def test_histogram_text(self) -> None:
        """A histogram renders cumulative le buckets ending in +Inf, then _sum and _count."""
        registry = Registry()
        duration = Histogram("app_seconds", "Duration.", ("op",), buckets=(1, 0.25), registry=registry)
        for value in (0.125, 0.5, 2.0):
            duration.labels(op="get").observe(value)
        assert registry.render() == (
            "# HELP app_seconds Duration.\n"
            "# TYPE app_seconds histogram\n"
            'app_seconds_bucket{op="get",le="0.25"} 1.0\n'
            'app_seconds_bucket{op="get",le="1.0"} 2.0\n'
            'app_seconds_bucket{op="get",le="+Inf"} 3.0\n'
            'app_seconds_sum{op="get"} 2.625\n'
            'app_seconds_count{op="get"} 3.0\n'
        )

    def test_label_values_are_escaped(self) -> None:
        """Backslash, double quote and newline in label values are escaped."""
        registry = Registry()
        c = Counter("x_total", "X.", ("path",), registry=registry)
        c.labels(path='a\\b"c\nd').inc()
        assert 'x_total{path="a\\\\b\\"c\\nd"} 1.0\n' in registry.render()

    def test_help_is_escaped(self) -> None:
        """Backslash and newline in HELP text are escaped."""
        registry = Registry()
        Gauge("g", "line one\nback\\slash", registry=registry)
        assert "# HELP g line one\\nback\\\\slash\n" in registry.render()

    def test_labelled_metric_without_samples_renders_only_headers(self) -> None:
        """A labelled metric nobody has used yet renders HELP and TYPE only."""
        registry = Registry()
        Counter("y_total", "Y.", ("a",), registry=registry)
        assert registry.render() == "# HELP y_total Y.\n# TYPE y_total counter\n"

    def test_before_render_hooks_run_first(self) -> None:
        """A before_render hook can set scrape-time values (such as data age)."""
        registry = Registry()
        age = Gauge("age_seconds", "Age.", registry=registry)
        registry.before_render(lambda: age.set(42))
        assert "age_seconds 42.0\n" in registry.render()


class TestValidation:
    @pytest.mark.parametrize("name", ["", "1abc", "has-dash", "sp ace"], ids=["empty", "digit", "dash", "space"])
    def test_invalid_metric_names_are_refused(self, name: str) -> None:
        """Metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*."""
        with pytest.raises(ValueError, match="invalid metric name"):
            Counter(name, "h")

    @pytest.mark.parametrize("label", ["__reserved", "has-dash", "1x"], ids=["reserved", "dash", "digit"])
    def test_invalid_label_names_are_refused(self, label: str) -> None:
        """Label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __."""
        with pytest.raises(ValueError, match="invalid label name"):
            Counter("ok_total", "h", (label,))

    def test_histogram_refuses_le_label(self) -> None:
        """A histogram cannot have its own le label."""
        with pytest.raises(ValueError, match="'le'"):
            Histogram("h_seconds", "h", ("le",))

    def test_wrong_label_set_is_refused(self) -> None:
        """labels() needs exactly the declared label names."""
        c = Counter("z_total", "Z.", ("a", "b"))
        with pytest.raises(ValueError, match="expected labels"):
            c.labels(a="1")

    def test_counter_cannot_go_down(self) -> None:
        """inc() with a negative amount is refused on a counter."""
        with pytest.raises(ValueError, match="only goes up"):
            Counter("w_total", "W.").inc(-1)

    def test_duplicate_registration_is_refused(self) -> None:
        """Registering two metrics with one name is an error."""
        registry = Registry()
        Counter("dup_total", "D.", registry=registry)
        with pytest.raises(ValueError, match="already registered"):
            Counter("dup_total", "D.", registry=registry)


class TestThreadSafety:
    def test_concurrent_increments_are_not_lost(self) -> None:
        """8 threads incrementing one child 5,000 times each sum to 40,000."""
        registry = Registry()
        c = Counter("t_total", "T.", ("k",), registry=registry)
        h = Histogram("t_seconds", "T.", registry=registry)

        def work() -> None:
            for _ in range(5000):
                c.labels(k="v").inc()
                h.observe(0.01)
            registry.render()

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert c.labels(k="v").get() == 40000
        assert "t_seconds_count 40000.0\n" in registry.render()


class TestStandardMetrics:
    def test_registers_the_sidecar_metrics(self) -> None:
        """standard_metrics registers exactly the documented names, with build_info set to 1."""
        registry = Registry()
        standard_metrics(registry, version="1.2.3")
        text = registry.render()
        names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
        assert names == [
            "injector_renders_total",
            "injector_render_errors_total",
            "injector_backend_calls_total",
            "injector_backend_errors_total",
            "injector_fetch_duration_seconds",
            "injector_template_data_age_seconds",
            "injector_notifications_total",
            "injector_ready",
            "injector_last_render_timestamp_seconds",
            "injector_build_info",
            "injector_publish_errors_total",
        ]
        assert 'injector_build_info{version="1.2.3"} 1.0\n' in text
        assert "injector_ready 0.0\n" in text

    def test_labels_match_the_design(self) -> None:
        """Each standard metric has the label names the sidecar and dashboards rely on."""
        m = standard_metrics(Registry())
        assert m.renders.labelnames == ("template",)
        assert m.backend_calls.labelnames == ("source", "operation")
        assert m.backend_errors.labelnames == ("source", "operation", "kind")
        assert m.fetch_duration.labelnames == ("source",)
        assert m.data_age.labelnames == ("template",)
        assert m.notifications.labelnames == ("notifier", "result")
