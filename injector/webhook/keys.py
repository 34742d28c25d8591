"""The webhook's annotation keys, their defaults, and ``Reader``: one pod's annotations, typed.

Keys (README, "Annotation-driven injection", lists each with its default and an example):

* pod-wide: the keys of ``GLOBAL_DEFAULTS``; the ``--defaults`` file may set any of them;
* per name, the prefixes of ``PER_NAME``: ``secret-NAME: REFERENCE`` (NAME an identifier: it is
  ``secrets.NAME`` in templates), ``template-FILE: JINJA2`` or ``template-source-FILE: KEY`` (a key
  of ``templates-configmap``), and ``file-`` (destination), ``mode-``, ``owner-``, ``notify-`` of a
  secret's or template's name;
* written by the webhook (``WRITTEN``): ``status`` (``injected``) and ``config`` (the compiled YAML,
  which the injector containers read as a file through the downward API).

Unknown keys under the prefix are errors (fail closed: a typo must not silently drop a secret).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from injector.errors import ConfigError

__all__ = [
    "CONFIG",
    "CONFIG_DIR",
    "CONFIG_FILE",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "FILE_NAME",
    "GLOBAL_DEFAULTS",
    "IDENTIFIER",
    "INJECTED",
    "INJECT_LABEL",
    "PER_NAME",
    "PREFIX",
    "STATE_DIR",
    "STATE_MOUNT",
    "STATUS",
    "TEMPLATES_DIR",
    "VAULT_DIR",
    "WRITTEN",
    "Reader",
    "load_defaults",
]

PREFIX = "injector.tmpfs.dev/"
#: The label the MutatingWebhookConfiguration's objectSelector matches (value "true").
INJECT_LABEL = PREFIX + "inject"
STATUS = PREFIX + "status"
CONFIG = PREFIX + "config"
INJECTED = "injected"

#: The injector containers' own in-memory volume (TMPDIR), and state_dir: a folder injector creates
#: 0700 inside it. Not the volume's root: kubelet makes an emptyDir root-owned and world-writable,
#: which injector refuses for the folder that holds its token.
STATE_MOUNT = "/run/injector"
STATE_DIR = "/run/injector/state"
CONFIG_DIR = "/etc/injector"
CONFIG_FILE = "injector.yaml"
TEMPLATES_DIR = "/etc/injector/templates"
#: The projected service-account token (audience vault-token-audience) and the Vault CA.
VAULT_DIR = "/var/run/secrets/injector/vault"

#: Pod-wide keys and their defaults ("" = unset, or decided per pod as the README says).
GLOBAL_DEFAULTS: Mapping[str, str] = {
    "inject": "true",
    "mode": "both",
    "sidecar": "",
    "containers": "",
    # A mesh's native-sidecar proxy and its CNI check: after them, the init container's traffic has
    # a running proxy. Not istio-init/linkerd-init: with a classic proxy container their iptables
    # rules would send it to a proxy that does not run yet (vault-k8s#41); before them, it goes out
    # directly.
    "init-after": "istio-validation,istio-proxy,linkerd-network-validator,linkerd-proxy",
    "secrets-path": "/run/secrets/app",
    "secrets-size": "16Mi",
    "run-as-user": "",
    "run-as-group": "65532",
    "share-process-namespace": "",
    "health-port": "8099",
    "cpu-request": "10m",
    "memory-request": "48Mi",
    "memory-limit": "96Mi",
    "cpu-limit": "",
    "vault-address": "",
    "vault-role": "",
    "vault-auth-mount": "kubernetes",
    "vault-namespace": "",
    "vault-token-audience": "vault",
    "vault-ca-configmap": "",
    "aws-region": "",
    "refresh-interval": "",
    "max-stale": "",
    "templates-configmap": "",
    "config-configmap": "",
}
#: Per-name key prefixes, longest first (``template-source-x`` is never template ``source-x``).
PER_NAME = ("template-source-", "template-", "secret-", "file-", "mode-", "owner-", "notify-")
WRITTEN = ("status", "config")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILE_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")


def load_defaults(path: Path) -> dict[str, str]:
    """Reads the ``--defaults`` YAML: pod-wide annotation keys (no prefix) → values."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the defaults file: {exc}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of annotation keys (without {PREFIX}) to values")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in GLOBAL_DEFAULTS or key == "inject":
            raise ConfigError(f"{path}: {key}: not a pod-wide annotation key{_did_you_mean(str(key))}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[key] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, [*GLOBAL_DEFAULTS, *(p + "NAME" for p in PER_NAME)], n=1)
    return f"; did you mean {PREFIX}{close[0]}?" if close else ""


class Reader:
    """The annotations of one pod, split into pod-wide values and per-name ones, unknowns refused."""

    def __init__(self, annotations: Mapping[str, str], defaults: Mapping[str, str]) -> None:
        self.given: dict[str, str] = {}
        self.named: dict[str, dict[str, str]] = {p: {} for p in PER_NAME}
        for full, value in annotations.items():
            if not full.startswith(PREFIX):
                continue
            key = full[len(PREFIX) :]
            if key in WRITTEN:
                raise ConfigError(f"{full}: is written by the webhook; remove it from the pod template")
            if key in GLOBAL_DEFAULTS:
                self.given[key] = value
                continue
            prefix = next((p for p in PER_NAME if key.startswith(p) and len(key) > len(p)), None)
            if prefix is None:
                raise ConfigError(f"{full}: unknown annotation{_did_you_mean(key)}")
            self.named[prefix][key[len(prefix) :]] = value
        self.values = {**GLOBAL_DEFAULTS, **defaults, **self.given}

    def get(self, key: str) -> str:
        return self.values[key].strip()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{PREFIX}{key}: {message}")

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.get(key)
        if value not in choices:
            shown = " or ".join(repr(c) for c in choices if c)
            raise self.error(key, f"expected {shown}, got {value!r}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.get(key).lower()
        if value == "":
            return None
        if value not in ("true", "false"):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value == "true"

    def integer(self, key: str, low: int, high: int) -> int | None:
        value = self.get(key)
        if value == "":
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            raise self.error(key, f"expected a whole number from {low} to {high}, got {value!r}")
        return int(value)

    def names(self, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        items = tuple(n.strip() for n in self.get(key).split(",") if n.strip())
        for item in items:
            if not pattern.fullmatch(item):
                raise self.error(key, f"{item!r} is not a valid name")
        return items

    def quantity(self, key: str) -> str | None:
        value = self.get(key)
        if value and not QUANTITY.fullmatch(value):
            raise self.error(key, f"expected a Kubernetes quantity such as 100m or 64Mi, got {value!r}")
        return value or None

    def optional(self, key: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.get(key)
        if value and pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r} is not a valid name")
        return value or None

    def uses_vault(self) -> bool:
        """A vault-role (the pod's or the defaults'), or a vault-address on the pod itself.

        A default vault-address alone does not make an AWS-only pod need Vault.
        """
        return bool(self.get("vault-role")) or bool(self.given.get("vault-address", "").strip())
