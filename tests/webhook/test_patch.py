"""Realistic pods through the webhook: the JSONPatch applied gives a valid, restricted, injected pod."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from injector.config.load import parse_config
from injector.webhook.annotations import compile_annotations
from injector.webhook.keys import CONFIG, INJECTED, PREFIX, STATUS
from injector.webhook.patch import Settings, mutate
from tests.webhook.support import (
    K8S_VERSIONS,
    admission,
    annotated,
    applied,
    deployment_pod,
    inject,
    job_pod,
    mesh_pod,
    patch_of,
    restricted_violations,
    review,
    schema_errors,
)


def _config_configmap_pod() -> dict[str, Any]:
    return deployment_pod(annotated(**{"config-configmap": "web-injector", "templates-configmap": "web-templates"}))


def _only_nginx_pod() -> dict[str, Any]:
    return deployment_pod({**deployment_pod()["metadata"]["annotations"], PREFIX + "containers": "nginx"})


def _classic_pod() -> dict[str, Any]:
    return deployment_pod({**deployment_pod()["metadata"]["annotations"], PREFIX + "sidecar": "classic"})


PODS = {
    "deployment": deployment_pod,
    "service-mesh": mesh_pod,
    "job-init-only": job_pod,
    "config-configmap": _config_configmap_pod,
    "only-nginx": _only_nginx_pod,
    "classic-sidecar": _classic_pod,
}


def _names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", PODS)
def test_injected_pod_is_schema_valid(case: str, version: str) -> None:
    """The patched pod validates strictly (unknown fields fail) against Kubernetes 1.29 and the newest schema."""
    pod = inject(PODS[case]())
    assert schema_errors(pod, version) == []


@pytest.mark.parametrize("case", PODS)
def test_injected_pod_passes_the_restricted_pod_security_standard(case: str) -> None:
    """Our containers, volumes and pod settings keep a restricted pod restricted."""
    original = PODS[case]()
    assert restricted_violations(original) == []
    assert restricted_violations(inject(original)) == []


def test_restricted_check_catches_a_violation() -> None:
    """The PSS helper is not vacuous: a container without drop ALL and a hostPath volume fail it."""
    pod = deployment_pod()
    del pod["spec"]["containers"][0]["securityContext"]["capabilities"]
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/etc"}})
    problems = restricted_violations(pod)
    assert any("drop ALL" in p for p in problems) and any("hostPath" in p for p in problems)


@pytest.mark.parametrize("case", PODS)
def test_second_review_of_an_injected_pod_is_a_no_op(case: str) -> None:
    """A pod that carries status: injected is allowed with no patch (reinvocation changes nothing)."""
    pod = inject(PODS[case]())
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is True
    assert patch_of(answer) == []


def test_deployment_pod_layout() -> None:
    """init first, then the native sidecar, then the pod's own init containers; files in every container."""
    pod = inject(deployment_pod())
    spec = pod["spec"]
    assert _names(spec["initContainers"]) == ["injector-init", "injector", "migrate"]
    sidecar = spec["initContainers"][1]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert "restartPolicy" not in spec["initContainers"][0]
    for container in spec["containers"]:
        mount = next(m for m in container["volumeMounts"] if m["name"] == "injector-secrets")
        assert mount == {"name": "injector-secrets", "mountPath": "/run/secrets/app", "readOnly": True}
    assert not any(m["name"] == "injector-secrets" for m in spec["initContainers"][2]["volumeMounts"])
    assert pod["metadata"]["annotations"][STATUS] == INJECTED
    assert "name" not in pod["metadata"], "a generateName pod keeps having no name"


def test_secrets_live_in_memory_and_state_stays_private() -> None:
    """Both injector volumes are medium: Memory; the state volume is mounted only into our containers."""
    pod = inject(deployment_pod())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["injector-secrets"]["emptyDir"]["medium"] == "Memory"
    assert volumes["injector-state"]["emptyDir"]["medium"] == "Memory"
    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        has_state = any(m["name"] == "injector-state" for m in container.get("volumeMounts", []))
        assert has_state == container["name"].startswith("injector")


def test_signal_notifier_shares_the_process_namespace_and_runs_as_the_app() -> None:
    """SIGHUP nginx turns on shareProcessNamespace and runs the injector as the pod's runAsUser (101)."""
    pod = inject(deployment_pod())
    assert pod["spec"]["shareProcessNamespace"] is True
    for container in pod["spec"]["initContainers"][:2]:
        assert container["securityContext"]["runAsUser"] == 101


def test_no_signal_notifier_no_shared_process_namespace() -> None:
    """Without a signal notifier the pod's PID namespace is left alone and the injector runs as 65532."""
    annotations = {k: v for k, v in deployment_pod()["metadata"]["annotations"].items() if "notify-" not in k}
    pod = inject(deployment_pod(annotations))
    assert "shareProcessNamespace" not in pod["spec"]
    assert pod["spec"]["initContainers"][0]["securityContext"]["runAsUser"] == 65532


def test_mesh_init_containers_run_first() -> None:
    """injector-init goes after istio-validation and the istio-proxy native sidecar (its network is up)."""
    pod = inject(mesh_pod())
    assert _names(pod["spec"]["initContainers"]) == [
        "istio-validation",
        "istio-proxy",
        "injector-init",
        "injector",
        "migrate",
    ]


def test_init_after_is_configurable() -> None:
    """init-after names the init containers to follow; an empty list puts ours first."""
    pod = mesh_pod()
    pod["metadata"]["annotations"][PREFIX + "init-after"] = ""
    assert _names(inject(pod)["spec"]["initContainers"])[:2] == ["injector-init", "injector"]


def test_job_init_only_has_no_sidecar() -> None:
    """mode: init-only adds the init container alone; nothing keeps the Job's pod running."""
    pod = inject(job_pod())
    assert _names(pod["spec"]["initContainers"]) == ["injector-init"]
    assert _names(pod["spec"]["containers"]) == ["report"]


def test_classic_sidecar_is_the_last_container() -> None:
    """sidecar: classic appends the sidecar to containers, with no startupProbe gate and no restartPolicy."""
    pod = inject(_classic_pod())
    assert _names(pod["spec"]["containers"]) == ["nginx", "exporter", "injector"]
    assert "restartPolicy" not in pod["spec"]["containers"][-1]


def test_classic_sidecar_in_a_job_is_denied() -> None:
    """A classic sidecar would keep a Job's pod alive forever: denied, naming the annotation."""
    pod = job_pod(
        annotated(
            **{
                "sidecar": "classic",
                "secret-a": "vault:secret/a#b",
                "vault-address": "https://v:8200",
                "vault-role": "r",
            }
        )
    )
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"].startswith(f"{PREFIX}sidecar:")


def test_native_sidecar_default_follows_the_kubernetes_version() -> None:
    """Before 1.29 the default sidecar is classic; from 1.29 native."""
    plan = compile_annotations(deployment_pod()["metadata"]["annotations"])
    old, _ = mutate(deployment_pod(), plan, Settings(image="i", kubernetes_version=(1, 28)))
    new, _ = mutate(deployment_pod(), plan, Settings(image="i", kubernetes_version=(1, 29)))
    assert "injector" in _names(old["spec"]["containers"])
    assert "injector" in _names(new["spec"]["initContainers"])


def test_only_the_named_containers_get_the_files() -> None:
    """containers: nginx mounts the files into nginx and not into the exporter."""
    pod = inject(_only_nginx_pod())
    mounted = {
        c["name"] for c in pod["spec"]["containers"] if any(m["name"] == "injector-secrets" for m in c["volumeMounts"])
    }
    assert mounted == {"nginx"}


def test_config_reaches_the_pod_as_a_downward_api_file_that_injector_reads() -> None:
    """The config annotation, mounted as /etc/injector/injector.yaml, parses into the config the webhook checked."""
    pod = inject(deployment_pod())
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "injector-config"]
    (item,) = volume["downwardAPI"]["items"]
    assert item == {"path": "injector.yaml", "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG}']"}}
    config = parse_config(yaml.safe_load(pod["metadata"]["annotations"][CONFIG]), environ={})
    assert {t.destination for t in config.templates} == {"app.env", "db_password", "tls.crt"}
    assert config.vault is not None and config.vault.auth.role == "web"
    assert str(config.vault.auth.token_path) == "/var/run/secrets/injector/vault/token"


def test_config_configmap_mounts_the_configmap_and_sets_the_layout_by_flags() -> None:
    """config-configmap: the ConfigMap is the config; --output-dir and --health-address fit the pod."""
    pod = inject(_config_configmap_pod())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["injector-config"] == {"name": "injector-config", "configMap": {"name": "web-injector"}}
    assert volumes["injector-templates"]["configMap"]["name"] == "web-templates"
    sidecar = pod["spec"]["initContainers"][1]
    assert sidecar["command"][-4:] == ["--output-dir", "/run/secrets/app", "--health-address", "0.0.0.0:8099"]
    assert CONFIG not in pod["metadata"]["annotations"]


def test_volume_with_our_name_is_denied() -> None:
    """A pod that already has a volume named injector-secrets is denied, not silently merged."""
    pod = deployment_pod()
    pod["spec"]["volumes"].append({"name": "injector-secrets", "emptyDir": {}})
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is False
    assert "injector-secrets" in answer["response"]["status"]["message"]


def test_excluded_namespace_is_left_alone() -> None:
    """A pod in kube-system (or the webhook's own namespace) is allowed unchanged."""
    for namespace, kwargs in (("kube-system", {}), ("injector-system", {"excluded": ["injector-system"]})):
        answer = admission(**kwargs).answer(review(deployment_pod(), namespace))
        assert answer["response"]["allowed"] is True and patch_of(answer) == []


@pytest.mark.parametrize("case", PODS)
def test_patch_is_computed_not_written_by_hand(case: str) -> None:
    """Applying the answer's operations to the original gives exactly the mutated pod."""
    pod = PODS[case]()
    plan = compile_annotations(pod["metadata"]["annotations"])
    mutated, _ = mutate(pod, plan, Settings(image="registry.example.com/injector:0.1.0"))
    answer = admission().answer(review(copy.deepcopy(pod)))
    assert applied(pod, answer) == mutated


def test_mutate_leaves_the_original_alone() -> None:
    """mutate works on a copy: the request object is unchanged."""
    pod = deployment_pod()
    before = copy.deepcopy(pod)
    mutate(pod, compile_annotations(pod["metadata"]["annotations"]), Settings(image="i"))
    assert pod == before


def test_schema_check_sees_the_native_sidecar() -> None:
    """The strict check is not vacuous: restartPolicy on an init container is unknown before Kubernetes 1.28."""
    assert any("restartPolicy" in e for e in schema_errors(inject(deployment_pod()), "1.27"))


def test_sidecar_probes() -> None:
    """The sidecar's startupProbe and readinessProbe ask /readyz, its livenessProbe /healthz, on health-port."""
    sidecar = inject(deployment_pod())["spec"]["initContainers"][1]
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/readyz", "port": 8099}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8099}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8099}


def test_classic_mesh_iptables_init_runs_after_ours() -> None:
    """With istio-init and a classic istio-proxy container, injector-init goes first (no redirect yet)."""
    pod = deployment_pod()
    istio_init = copy.deepcopy(pod["spec"]["initContainers"][0])
    istio_init.update(name="istio-init", image="docker.io/istio/proxyv2:1.24.0")
    pod["spec"]["initContainers"].insert(0, istio_init)
    assert _names(inject(pod)["spec"]["initContainers"])[:3] == ["injector-init", "injector", "istio-init"]
