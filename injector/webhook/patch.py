"""The mutated pod, and the JSONPatch from the original to it (computed by ``jsonpatch``, never by hand).

What an injected pod gets (names fixed, so a second pass recognises them):

1. volumes ``injector-secrets`` (the files; ``emptyDir: {medium: Memory}``), ``injector-state``
   (token and leases, only in the injector's containers), ``injector-config`` (the compiled config
   from the ``config`` annotation through the downward API, or the config-configmap),
   ``injector-vault`` (a projected service-account token for Vault, and its CA) and
   ``injector-templates`` (templates-configmap);
2. the init container ``injector-init`` first, or right after the last init container named in
   init-after (a service mesh's, whose network rules it needs);
3. the sidecar ``injector``: native (an init container with ``restartPolicy: Always`` right after
   ``injector-init``, a startupProbe on /readyz gating the containers after it) or classic (the
   last container);
4. ``injector-secrets`` mounted read-only into the containers that asked (all by default);
5. a hardened securityContext on our containers that passes the ``restricted`` Pod Security
   Standard; ``fsGroup`` on the pod when it has none (the files are group-readable, mode 0440);
   ``shareProcessNamespace`` only when a signal notifier needs it;
6. the ``status: injected`` annotation: a second review of the pod changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from injector.errors import ConfigError
from injector.webhook.annotations import Plan
from injector.webhook.keys import (
    CONFIG,
    CONFIG_DIR,
    CONFIG_FILE,
    INJECTED,
    PREFIX,
    STATE_DIR,
    STATE_MOUNT,
    STATUS,
    TEMPLATES_DIR,
    VAULT_DIR,
)

__all__ = ["CONTAINER_NAMES", "VOLUME_NAMES", "Settings", "json_patch", "mutate"]

INIT_NAME = "injector-init"
SIDECAR_NAME = "injector"
CONTAINER_NAMES = (INIT_NAME, SIDECAR_NAME)
VOLUME_NAMES = ("injector-secrets", "injector-state", "injector-config", "injector-vault", "injector-templates")
DEFAULT_USER = 65532


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The webhook's own flags that shape every patch."""

    image: str
    #: (major, minor) of the cluster: native sidecars by default from (1, 29).
    kubernetes_version: tuple[int, int] = (1, 29)
    image_pull_policy: str = "IfNotPresent"


def json_patch(original: Mapping[str, Any], mutated: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``original`` into ``mutated``, computed by ``jsonpatch``.

    Both sides are first cut down to the object members that differ (recursively through objects;
    a list that differs is kept whole, so its indices hold): members equal on both sides would add
    no operation, and jsonpatch serialises every list item it compares, which made the whole-pod
    diff 70 % of a review's time (bench/webhook.py). The operations are the same either way.
    """
    ops: list[dict[str, Any]] = jsonpatch.make_patch(_differing(original, mutated), _differing(mutated, original)).patch
    return ops


def _differing(side: Any, other: Any) -> Any:
    """``side`` without the object members that ``other`` has with an equal value."""
    if not isinstance(side, Mapping) or not isinstance(other, Mapping):
        return side
    return {
        key: _differing(value, other[key]) if key in other else value
        for key, value in side.items()
        if key not in other or other[key] != value
    }


def mutate(pod: Mapping[str, Any], plan: Plan, settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """Returns the injected copy of ``pod`` and warnings for the user; ``pod`` is not changed.

    Raises:
        ConfigError: the pod cannot take the injection (a name is taken, a container named in an
            annotation does not exist, a classic sidecar in a pod that must end …), naming why.
    """
    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    inits: list[dict[str, Any]] = spec.setdefault("initContainers", [])
    containers: list[dict[str, Any]] = spec.setdefault("containers", [])
    warnings: list[str] = []
    _check_free(spec)
    native = plan.sidecar == "native" or (plan.sidecar == "" and settings.kubernetes_version >= (1, 29))
    with_init = plan.mode in ("both", "init-only")
    with_sidecar = plan.mode in ("both", "sidecar-only")
    if with_sidecar and not native and spec.get("restartPolicy", "Always") != "Always":
        raise ConfigError(
            f"{PREFIX}sidecar: a classic sidecar would keep this pod (restartPolicy "
            f"{spec['restartPolicy']}) running forever; use {PREFIX}mode: init-only or {PREFIX}sidecar: native"
        )
    position = _init_position(inits, plan)
    targets = _targets(inits, containers, plan, position)
    user = _user(spec, containers, plan, targets, warnings)
    ours: list[dict[str, Any]] = []
    if with_init:
        ours.append(_container(INIT_NAME, "init", plan, settings, user))
    if with_sidecar:
        sidecar = _container(SIDECAR_NAME, "sidecar", plan, settings, user)
        _probes(sidecar, plan.health_port, native, serving=spec.get("restartPolicy", "Always") == "Always")
        if native:
            sidecar["restartPolicy"] = "Always"
            ours.append(sidecar)
        else:
            containers.append(sidecar)
    inits[position:position] = ours
    for container in targets:
        if any(m.get("mountPath") == plan.secrets_path for m in container.get("volumeMounts", [])):
            raise ConfigError(
                f"{PREFIX}secrets-path: container {container['name']} already mounts something at {plan.secrets_path}"
            )
        container.setdefault("volumeMounts", []).append(
            {"name": "injector-secrets", "mountPath": plan.secrets_path, "readOnly": True}
        )
    spec.setdefault("volumes", []).extend(_volumes(plan))
    _pod_security(spec, plan, with_sidecar, warnings)
    if not inits:
        del spec["initContainers"]
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[STATUS] = INJECTED
    if plan.config_yaml is not None:
        annotations[CONFIG] = plan.config_yaml
    return out, warnings


def _check_free(spec: Mapping[str, Any]) -> None:
    for volume in spec.get("volumes", []):
        if volume.get("name") in VOLUME_NAMES:
            raise ConfigError(
                f"{PREFIX}inject: the pod already has a volume named {volume['name']}; the injector needs the "
                f"names {', '.join(VOLUME_NAMES)}: rename the pod's volume"
            )
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if container.get("name") in CONTAINER_NAMES:
            raise ConfigError(
                f"{PREFIX}inject: the pod already has a container named {container['name']} but no "
                f"{STATUS}: {INJECTED} annotation; rename the container"
            )


def _init_position(inits: list[dict[str, Any]], plan: Plan) -> int:
    after = [i for i, c in enumerate(inits) if c.get("name") in plan.init_after]
    return after[-1] + 1 if after else 0


def _targets(
    inits: list[dict[str, Any]], containers: list[dict[str, Any]], plan: Plan, position: int
) -> list[dict[str, Any]]:
    if plan.containers is None:
        return list(containers)
    by_name = {c.get("name"): c for c in [*inits, *containers]}
    before = {c.get("name") for c in inits[:position]}
    targets = []
    for name in plan.containers:
        if name not in by_name:
            known = ", ".join(str(n) for n in by_name)
            raise ConfigError(f"{PREFIX}containers: no container named {name!r} in the pod (containers: {known})")
        if name in before:
            raise ConfigError(
                f"{PREFIX}containers: init container {name} runs before {INIT_NAME} (see {PREFIX}init-after), "
                "so the files are not there yet"
            )
        targets.append(by_name[name])
    return targets


def _run_as_user(spec: Mapping[str, Any], container: Mapping[str, Any]) -> int | None:
    for context in (container.get("securityContext") or {}, spec.get("securityContext") or {}):
        if isinstance(context.get("runAsUser"), int):
            return int(context["runAsUser"])
    return None


def _user(
    spec: Mapping[str, Any],
    containers: list[dict[str, Any]],
    plan: Plan,
    targets: list[dict[str, Any]],
    warnings: list[str],
) -> int:
    """The injector's UID: as annotated; with a signal notifier, the app's (signals need the same UID)."""
    if plan.run_as_user is not None:
        return plan.run_as_user
    if not plan.signals:
        return DEFAULT_USER
    for container in targets or containers:
        uid = _run_as_user(spec, container)
        if uid:
            return uid
    warnings.append(
        f"{PREFIX}run-as-user: a signal notifier needs the injector to run as the app's user; the app's "
        f"runAsUser is not set, so the injector runs as {DEFAULT_USER} and the signal may fail (EPERM)"
    )
    return DEFAULT_USER


def _container(name: str, command: str, plan: Plan, settings: Settings, user: int) -> dict[str, Any]:
    argv = ["injector", command, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    env = [{"name": "INJECTOR_LOG_FORMAT", "value": "json"}, {"name": "TMPDIR", "value": STATE_MOUNT}]
    if plan.config_configmap is not None:
        # The ConfigMap's config does not know this pod's layout: flags and env put it in place.
        argv += ["--output-dir", plan.secrets_path]
        env.append({"name": "INJECTOR_STATE_DIR", "value": STATE_DIR})
        if command == "sidecar":
            argv += ["--health-address", f"0.0.0.0:{plan.health_port}"]
    mounts = [
        {"name": "injector-secrets", "mountPath": plan.secrets_path},
        {"name": "injector-state", "mountPath": STATE_MOUNT},
        {"name": "injector-config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    if plan.templates_configmap is not None:
        mounts.append({"name": "injector-templates", "mountPath": TEMPLATES_DIR, "readOnly": True})
    if plan.vault_audience is not None:
        mounts.append({"name": "injector-vault", "mountPath": VAULT_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": argv,
        "env": env,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": plan.run_as_group,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if plan.resources:
        container["resources"] = {k: dict(v) for k, v in plan.resources.items()}
    return container


def _probes(sidecar: dict[str, Any], port: int, native: bool, *, serving: bool) -> None:
    sidecar["ports"] = [{"name": "injector-http", "containerPort": port}]
    if native:
        # kubelet starts the containers after a native sidecar once this passed: after the first render.
        sidecar["startupProbe"] = {
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 1,
            "failureThreshold": 60,
        }
    sidecar["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": port},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    if serving:
        # A sidecar's readiness counts for the pod's: secrets older than refresh.max_stale take the pod
        # out of its Service's endpoints. Nothing routes traffic to a Job, so it gets none.
        sidecar["readinessProbe"] = {**sidecar["livenessProbe"], "httpGet": {"path": "/readyz", "port": port}}


def _volumes(plan: Plan) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "injector-secrets", "emptyDir": {"medium": "Memory", "sizeLimit": plan.secrets_size}},
        {"name": "injector-state", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
    ]
    if plan.config_configmap is not None:
        volumes.append({"name": "injector-config", "configMap": {"name": plan.config_configmap}})
    else:
        field = f"metadata.annotations['{CONFIG}']"
        volumes.append(
            {
                "name": "injector-config",
                "downwardAPI": {"items": [{"path": CONFIG_FILE, "fieldRef": {"fieldPath": field}}]},
            }
        )
    if plan.templates_configmap is not None:
        volumes.append({"name": "injector-templates", "configMap": {"name": plan.templates_configmap}})
    if plan.vault_audience is not None:
        sources: list[dict[str, Any]] = [
            {"serviceAccountToken": {"audience": plan.vault_audience, "expirationSeconds": 3600, "path": "token"}}
        ]
        if plan.vault_ca_configmap is not None:
            sources.append(
                {"configMap": {"name": plan.vault_ca_configmap, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
            )
        volumes.append({"name": "injector-vault", "projected": {"sources": sources}})
    return volumes


def _pod_security(spec: dict[str, Any], plan: Plan, with_sidecar: bool, warnings: list[str]) -> None:
    context = spec.setdefault("securityContext", {})
    if "fsGroup" not in context:
        # The files are 0440 by default: the app (another user) reads them through this group.
        context["fsGroup"] = plan.run_as_group
        context.setdefault("fsGroupChangePolicy", "OnRootMismatch")
    share = plan.share_process_namespace
    if share is None:
        share = plan.signals and with_sidecar
        if share and spec.get("shareProcessNamespace") is False:
            raise ConfigError(
                f"{PREFIX}notify-: a signal notifier needs shareProcessNamespace, which the pod sets to false"
            )
    if share:
        spec["shareProcessNamespace"] = True
    elif plan.share_process_namespace is False and plan.signals:
        warnings.append(f"{PREFIX}share-process-namespace: false: signal notifiers cannot see the app's processes")
