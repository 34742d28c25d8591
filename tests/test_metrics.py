"""The sidecar's metrics: its own registry, the README's table, and backend calls counted for real."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from injector.metrics import Counter, Gauge, Histogram, Registry, standard_metrics
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
    def test_is_not_the_global_registry(self) -> None:
        """A metric on a Registry is not in prometheus-client's global one, nor its process metrics here."""
        registry = Registry()
        Counter("obs_isolated_total", "Isolated.", registry=registry).inc()
        text = registry.render()
        assert "obs_isolated_total 1.0\n" in text
        assert "process_" not in text
        assert "python_gc" not in text
        assert prometheus_client.REGISTRY.get_sample_value("obs_isolated_total") is None

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
