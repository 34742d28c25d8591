"""deploy/webhook (rendered by ``kubectl kustomize``) and the annotated examples the README uses.

Built-in kinds validate strictly against Kubernetes 1.29 and the newest schema. cert-manager's
Issuer and Certificate are CRDs that kubernetes-validate has no schema for: they are skipped by
kind, explicitly (``CRD_KINDS``), and checked by hand below (names, DNS names, the CA injection).
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from injector.cli import cli
from injector.config.load import load_config
from injector.modes.validate import validate_config
from injector.webhook.admission import DEFAULT_EXCLUDED
from injector.webhook.keys import INJECT_LABEL, STATUS, load_defaults
from tests.webhook.support import K8S_VERSIONS, admission, applied, restricted_violations, review, schema_errors

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK = ROOT / "deploy" / "webhook"
EXAMPLES = sorted((WEBHOOK / "examples").glob("*.yaml"))
CRD_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
NAMESPACE = "injector-system"


@functools.cache
def _rendered() -> tuple[dict[str, Any], ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(WEBHOOK)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in _rendered() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return copy.deepcopy(doc)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_manifests_are_schema_valid(version: str) -> None:
    """Every built-in object validates strictly; only cert-manager's CRD kinds are skipped."""
    skipped = set()
    for doc in _rendered():
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            skipped.add((doc["apiVersion"], doc["kind"]))
            continue
        assert schema_errors(doc, version) == [], f"{doc['kind']}/{doc['metadata']['name']}"
    assert skipped == CRD_KINDS


def test_webhook_configuration() -> None:
    """CREATE pods only, label-selected, system namespaces out, None side effects, 5 s, Fail, IfNeeded."""
    (hook,) = _one("MutatingWebhookConfiguration")["webhooks"]
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["objectSelector"] == {"matchLabels": {INJECT_LABEL: "true"}}
    (expression,) = hook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "NotIn"
    assert set(expression["values"]) == {*DEFAULT_EXCLUDED, NAMESPACE}
    assert hook["sideEffects"] == "None" and hook["timeoutSeconds"] == 5
    assert hook["failurePolicy"] == "Fail" and hook["reinvocationPolicy"] == "IfNeeded"
    assert "v1" in hook["admissionReviewVersions"]
    (condition,) = hook["matchConditions"]
    assert STATUS in condition["expression"] and "'injected'" in condition["expression"]


def test_webhook_reaches_the_service_and_trusts_the_certificate() -> None:
    """clientConfig names the Service and its port; cert-manager injects the CA of the serving Certificate."""
    configuration = _one("MutatingWebhookConfiguration")
    (hook,) = configuration["webhooks"]
    service = _one("Service")
    assert hook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": service["metadata"]["namespace"],
        "path": "/mutate",
        "port": service["spec"]["ports"][0]["port"],
    }
    namespace, name = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    certificate = _one("Certificate", name)
    assert certificate["metadata"]["namespace"] == namespace
    host = f"{service['metadata']['name']}.{namespace}.svc"
    assert host in certificate["spec"]["dnsNames"]
    issuer = _one("Issuer", certificate["spec"]["issuerRef"]["name"])
    ca = _one("Certificate", "injector-webhook-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"] and ca["spec"]["isCA"] is True
    volumes = {v["name"]: v for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]


def test_deployment_is_highly_available() -> None:
    """Two replicas spread by anti-affinity, and a PDB that keeps one."""
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == labels
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == labels


def test_webhook_container_runs_injector_webhook_with_real_flags() -> None:
    """The command is `injector webhook` with options the CLI has, its own namespace excluded, HTTPS probes."""
    pod = _one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["injector", "webhook"]
    options = {opt for param in cli.commands["webhook"].params if isinstance(param, click.Option) for opt in param.opts}
    flags = [token for token in command[2:] if token.startswith("--")]
    assert set(flags) <= options, set(flags) - options
    assert command[command.index("--exclude-namespace") + 1] == NAMESPACE
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"]["path"] == path and container[probe]["httpGet"]["scheme"] == "HTTPS"
    assert restricted_violations({"metadata": {}, "spec": pod}) == []


def test_no_rbac_and_no_api_token() -> None:
    """The webhook never calls the API: no Role or binding, and no service-account token mounted."""
    kinds = {d["kind"] for d in _rendered()}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert _one("ServiceAccount")["automountServiceAccountToken"] is False
    assert _one("Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_defaults_file_loads() -> None:
    """defaults.yaml holds only pod-wide annotation keys the webhook accepts."""
    defaults = load_defaults(WEBHOOK / "defaults.yaml")
    assert defaults["vault-address"].startswith("https://")


# --- examples ---------------------------------------------------------------------------------------


def _example_pods(path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, the pod its controller would create) for each workload in an example file."""
    out = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc and doc["kind"] in ("Deployment", "Job"):
            template = copy.deepcopy(doc["spec"]["template"])
            template["metadata"]["generateName"] = doc["metadata"]["name"] + "-"
            template["metadata"]["namespace"] = doc["metadata"]["namespace"]
            pod = {"apiVersion": "v1", "kind": "Pod", **template}
            out.append((doc, pod))
    return out


def _example_namespace(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["namespace"])


def _defaults() -> dict[str, str]:
    return load_defaults(WEBHOOK / "defaults.yaml")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_injected_into_a_valid_restricted_pod(path: Path, version: str) -> None:
    """Each example's pod is allowed; the patched pod is schema-valid and passes the restricted PSS."""
    examples = _example_pods(path)
    assert examples
    for workload, pod in examples:
        assert schema_errors(workload, version) == []
        answer = admission(defaults=_defaults()).answer(review(pod, _example_namespace(pod)))
        assert answer["response"]["allowed"], answer["response"].get("status")
        injected = applied(pod, answer)
        assert schema_errors(injected, version) == []
        assert restricted_violations(injected) == []


def test_deployment_example_has_a_native_sidecar_that_sighups_nginx() -> None:
    """The Deployment example gets the native sidecar, a shared PID namespace, and runs as nginx's user."""
    ((_, pod),) = _example_pods(WEBHOOK / "examples" / "deployment-native-sighup.yaml")
    injected = applied(pod, admission(defaults=_defaults()).answer(review(pod, "shop")))
    spec = injected["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["injector-init", "injector"]
    assert spec["initContainers"][1]["restartPolicy"] == "Always"
    assert spec["shareProcessNamespace"] is True
    assert spec["initContainers"][1]["securityContext"]["runAsUser"] == 101


def test_job_example_runs_init_only() -> None:
    """The Job example gets injector-init and no sidecar."""
    ((_, pod),) = _example_pods(WEBHOOK / "examples" / "job-init-only.yaml")
    injected = applied(pod, admission(defaults=_defaults()).answer(review(pod, "reports")))
    assert [c["name"] for c in injected["spec"]["initContainers"]] == ["injector-init"]
    assert [c["name"] for c in injected["spec"]["containers"]] == ["report"]


def test_config_configmap_example_is_a_valid_config_in_the_pod(tmp_path: Path) -> None:
    """The example ConfigMap's injector.yaml, with the flags and env the webhook gives, passes validate."""
    path = WEBHOOK / "examples" / "deployment-config-configmap.yaml"
    (configmap,) = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d["kind"] == "ConfigMap"]
    config_file = tmp_path / "injector.yaml"
    config_file.write_text(configmap["data"]["injector.yaml"], encoding="utf-8")
    config = load_config(
        config_file,
        overrides={"output_dir": "/run/secrets/app", "health.address": "0.0.0.0:8099"},
        environ={"INJECTOR_STATE_DIR": "/run/injector/state"},
    )
    assert str(config.state_dir) == "/run/injector/state"
    validate_config(config)


def test_readme_uses_every_example() -> None:
    """The README's annotation section links each example file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES:
        assert f"deploy/webhook/examples/{path.name}" in readme, path.name
