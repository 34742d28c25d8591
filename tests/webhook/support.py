"""Shared by the webhook tests: realistic pods, reviews, the patch applied, and the checks of the result.

``restricted_violations`` is the ``restricted`` Pod Security Standard (with ``baseline`` under it)
written from the Kubernetes document "Pod Security Standards", control by control.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
from kubernetes_validate.utils import latest_version

from injector.webhook.admission import Admission
from injector.webhook.keys import INJECT_LABEL, PREFIX
from injector.webhook.patch import Settings

K8S_VERSIONS = ("1.29", latest_version())
IMAGE = "registry.example.com/injector:0.1.0"


def admission(**kwargs: Any) -> Admission:
    return Admission(Settings(image=IMAGE), **kwargs)


def review(
    pod: dict[str, Any], namespace: str = "shop", *, api: str = "admission.k8s.io/v1", uid: str = "u-1"
) -> dict[str, Any]:
    """The AdmissionReview the API server sends for a Pod CREATE."""
    return {
        "apiVersion": api,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def applied(pod: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The pod the API server stores: the answer's JSONPatch applied by the jsonpatch library."""
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), patch_of(answer))
    return result


def inject(pod: dict[str, Any], namespace: str = "shop", **kwargs: Any) -> dict[str, Any]:
    answer = admission(**kwargs).answer(review(pod, namespace))
    assert answer["response"]["allowed"], answer["response"].get("status")
    return applied(pod, answer)


def schema_errors(pod: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"]
    return []


# --- realistic pods ----------------------------------------------------------------------------------

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    container = {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": copy.deepcopy(RESTRICTED),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "volumeMounts": [
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            }
        ],
    }
    container.update(extra)
    return container


def _api_access_volume() -> dict[str, Any]:
    """What the ServiceAccount admission plugin adds before webhooks run."""
    return {
        "name": "kube-api-access-x7k2p",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def annotated(**annotations: str) -> dict[str, str]:
    return {PREFIX + key: value for key, value in annotations.items()}


WEB_ANNOTATIONS = annotated(
    **{
        "vault-address": "https://vault.vault.svc:8200",
        "vault-role": "web",
        "secret-db_password": "vault:database/creds/web#password",
        "secret-tls_crt": "vault:pki/issue/web?common_name=web.shop.svc#certificate",
        "file-tls_crt": "tls.crt",
        "template-app.env": "DB_PASSWORD={{ secrets.db_password | dotenv_quote }}\n",
        "mode-app.env": "0440",
        "notify-tls_crt": "SIGHUP nginx",
    }
)


def deployment_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod as a ReplicaSet creates it: generateName and no name, two containers, an init container."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": "7d9f8b6c5d", INJECT_LABEL: "true"},
            "annotations": dict(WEB_ANNOTATIONS if annotations is None else annotations),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d9f8b6c5d",
                    "uid": "6d1c0c3e-1111-4b5a-9e0e-2f1f4c6d7e8f",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "web",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 101,
                "runAsGroup": 101,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [
                _container("migrate", "registry.example.com/web-migrate:2.3", command=["/migrate", "up"])
            ],
            "containers": [
                _container(
                    "nginx",
                    "docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
                    ports=[{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
                ),
                _container(
                    "exporter",
                    "docker.io/nginx/nginx-prometheus-exporter:1.3",
                    args=["--nginx.scrape-uri=http://127.0.0.1:8080/stub_status"],
                ),
            ],
            "volumes": [_api_access_volume(), {"name": "cache", "emptyDir": {}}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
    }


def mesh_pod() -> dict[str, Any]:
    """A pod an Istio (CNI mode) injector already handled: istio-validation, then istio-proxy native."""
    pod = deployment_pod()
    proxy = _container(
        "istio-proxy", "docker.io/istio/proxyv2:1.24.0", restartPolicy="Always", args=["proxy", "sidecar"]
    )
    proxy["securityContext"]["runAsUser"] = 1337
    validation = _container(
        "istio-validation", "docker.io/istio/proxyv2:1.24.0", args=["istio-iptables", "--run-validation"]
    )
    validation["securityContext"]["runAsUser"] = 1337
    pod["spec"]["initContainers"] = [validation, proxy, *pod["spec"]["initContainers"]]
    return pod


def job_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod as a Job creates it: restartPolicy Never, one container, the job labels."""
    pod = deployment_pod(
        annotations
        if annotations is not None
        else annotated(
            **{
                "mode": "init-only",
                "aws-region": "eu-west-1",
                "secret-api_key": "aws-sm:prod/report#api_key",
                "template-report.ini": "[api]\nkey = {{ secrets.api_key }}\n",
            }
        )
    )
    pod["metadata"]["generateName"] = "nightly-report-28912345-"
    pod["metadata"]["labels"] = {"batch.kubernetes.io/job-name": "nightly-report-28912345", INJECT_LABEL: "true"}
    pod["metadata"]["ownerReferences"][0].update(kind="Job", apiVersion="batch/v1", name="nightly-report-28912345")
    pod["spec"]["restartPolicy"] = "Never"
    pod["spec"]["initContainers"] = []
    pod["spec"]["containers"] = [_container("report", "registry.example.com/report:1.0")]
    return pod


# --- Pod Security Standards ---------------------------------------------------------------------------

_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every control of the ``restricted`` profile (baseline included) the pod breaks; [] if it passes."""
    spec = pod["spec"]
    pod_sc = spec.get("securityContext") or {}
    containers = [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]
    out: list[str] = []
    # baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"host namespaces: {key}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("HostProcess: pod")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            out.append(f"hostPath volume {volume['name']}")
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            out.append(f"volume type {sorted(kinds)} of {volume['name']}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in _SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl['name']}")
    for name, value in (pod["metadata"].get("annotations") or {}).items():
        if (
            name.startswith("container.apparmor.security.beta.kubernetes.io/")
            and value not in ("runtime/default",)
            and not value.startswith("localhost/")
        ):
            out.append(f"AppArmor annotation {name}")
    for context, where in [(pod_sc, "pod"), *((c.get("securityContext") or {}, c["name"]) for c in containers)]:
        if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
            out.append(f"AppArmor Unconfined: {where}")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            out.append(f"SELinux options: {where}")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"seccomp Unconfined: {where}")
        if context.get("runAsUser") == 0:
            out.append(f"runAsUser 0: {where}")
    # restricted, container by container
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"privileged: {name}")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"HostProcess: {name}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"procMount: {name}")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            out.append(f"hostPort: {name}")
        caps = sc.get("capabilities") or {}
        if not set(caps.get("add", [])) <= _BASELINE_CAPABILITIES:
            out.append(f"capabilities beyond baseline: {name}")
        if "ALL" not in caps.get("drop", []):
            out.append(f"capabilities: {name} does not drop ALL")
        if not set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}:
            out.append(f"capabilities: {name} adds more than NET_BIND_SERVICE")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"privilege escalation: {name} does not set allowPrivilegeEscalation: false")
        if sc.get("runAsNonRoot") is False or (not pod_non_root and sc.get("runAsNonRoot") is not True):
            out.append(f"running as non-root: {name}")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"seccomp: {name} sets {seccomp}")
        if seccomp is None and not pod_seccomp:
            out.append(f"seccomp: {name} has no RuntimeDefault or Localhost profile")
    return out
