"""A pod's ``injector.tmpfs.dev/`` annotations → its injection ``Plan`` (one schema, one validator).

The annotations, over the webhook's ``--defaults`` file (``keys``), compile to the config mapping a
YAML file would hold and are checked by the same parser and ``validate_config`` (``to_config``).
Every problem becomes a ``ConfigError`` whose lines each start with the annotation that caused it:
the pod is denied, never injected half-way. The rest of the plan (mode, sidecar kind, containers,
resources, volumes) is what ``patch`` needs to build the pod.

Annotation values are references and templates, never secret values, but they are still not logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from injector.errors import ConfigError
from injector.webhook.keys import DNS_LABEL, DNS_SUBDOMAIN, PREFIX, Reader
from injector.webhook.to_config import config_mapping, validate

__all__ = ["Plan", "compile_annotations"]

#: Keys that describe the config, refused beside config-configmap (the ConfigMap holds all of it).
_CONFIG_KEYS = ("vault-address", "vault-role", "vault-auth-mount", "vault-namespace", "aws-region",
                "refresh-interval", "max-stale")  # fmt: skip
_MAX_CONFIG_BYTES = 128 * 1024
#: libyaml's emitter where PyYAML has it: the pure-Python one was 1.5 ms of a 7 ms review (bench/webhook.py).
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to inject into one pod: the webhook's side of the annotations (the config is inside)."""

    mode: str
    #: "native", "classic", or "" (the webhook's default for its Kubernetes version).
    sidecar: str
    #: Containers (or init containers placed after ours) that get the files; None: every container.
    containers: tuple[str, ...] | None
    init_after: tuple[str, ...]
    secrets_path: str
    secrets_size: str
    #: None: the pod's or the signalled container's user, else 65532 (see ``patch``).
    run_as_user: int | None
    run_as_group: int
    #: True / False as annotated; None: only when a signal notifier needs it.
    share_process_namespace: bool | None
    health_port: int
    resources: Mapping[str, Mapping[str, str]]
    vault_audience: str | None
    vault_ca_configmap: str | None
    templates_configmap: str | None
    config_configmap: str | None
    #: The compiled config as YAML (None with config-configmap).
    config_yaml: str | None
    #: A signal notifier is configured: the sidecar must see the app's processes.
    signals: bool
    warnings: tuple[str, ...] = ()


def compile_annotations(annotations: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> Plan:
    """Returns the injection plan of a pod, its config validated as ``injector validate`` would.

    Raises:
        ConfigError: one line per problem, each starting with the annotation to fix.
    """
    reader = Reader(annotations, defaults or {})
    config_configmap = reader.optional("config-configmap", DNS_SUBDOMAIN)
    templates_configmap = reader.optional("templates-configmap", DNS_SUBDOMAIN)
    secrets_path = reader.get("secrets-path")
    if not secrets_path.startswith("/") or ".." in secrets_path.split("/") or secrets_path.rstrip("/") in ("", "/"):
        raise reader.error(
            "secrets-path", f"expected an absolute folder such as /run/secrets/app, got {secrets_path!r}"
        )
    secrets_path = secrets_path.rstrip("/")
    mode = reader.choice("mode", ("both", "init-only", "sidecar-only"))
    warnings: list[str] = []
    config_yaml: str | None = None
    signals = False
    if config_configmap is not None:
        _refuse_beside_configmap(reader)
    else:
        data, provenance = config_mapping(reader, secrets_path, templates_configmap)
        signals = any("signal" in n for t in data["templates"] for n in t.get("on_change", []))
        warnings += validate(data, provenance)
        if mode == "init-only" and any(t.get("on_change") for t in data["templates"]):
            warnings.append(f"{PREFIX}mode: init-only runs no sidecar, so notify- annotations never fire")
        config_yaml = yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
        if len(config_yaml.encode()) > _MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{PREFIX}config: the compiled config is over {_MAX_CONFIG_BYTES // 1024} KiB; "
                f"move large templates to a ConfigMap ({PREFIX}templates-configmap)"
            )
    vault_used = config_configmap is not None or reader.uses_vault()
    audience = reader.get("vault-token-audience")
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for key, (group, name) in {
        "cpu-request": ("requests", "cpu"),
        "memory-request": ("requests", "memory"),
        "cpu-limit": ("limits", "cpu"),
        "memory-limit": ("limits", "memory"),
    }.items():
        value = reader.quantity(key)
        if value is not None:
            resources[group][name] = value
    containers = reader.names("containers", DNS_LABEL)
    return Plan(
        mode=mode,
        sidecar=reader.choice("sidecar", ("native", "classic", "")),
        containers=containers or None,
        init_after=reader.names("init-after", DNS_LABEL),
        secrets_path=secrets_path,
        secrets_size=reader.quantity("secrets-size") or "16Mi",
        run_as_user=reader.integer("run-as-user", 1, 2**31 - 1),
        run_as_group=reader.integer("run-as-group", 0, 2**31 - 1) or 0,
        share_process_namespace=reader.boolean("share-process-namespace"),
        health_port=reader.integer("health-port", 1, 65535) or 8099,
        resources={k: v for k, v in resources.items() if v},
        vault_audience=(audience or "vault") if vault_used else None,
        vault_ca_configmap=reader.optional("vault-ca-configmap", DNS_SUBDOMAIN),
        templates_configmap=templates_configmap,
        config_configmap=config_configmap,
        config_yaml=config_yaml,
        signals=signals,
        warnings=tuple(warnings),
    )


def _refuse_beside_configmap(reader: Reader) -> None:
    for prefix, named in reader.named.items():
        if named:
            name = sorted(named)[0]
            raise reader.error(
                f"{prefix}{name}", "cannot be combined with config-configmap (the ConfigMap holds the whole config)"
            )
    for key in _CONFIG_KEYS:
        if key in reader.given:
            raise reader.error(key, "cannot be combined with config-configmap (the ConfigMap holds the whole config)")
