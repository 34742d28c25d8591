"""A pod's ``injector.tmpfs.dev/`` annotations → the injector config (one schema, one validator).

The annotations, over the webhook's ``--defaults`` file, compile to the config mapping a YAML file
would hold; ``injector.config.load.parse_config`` and ``injector.modes.validate.validate_config``
check it exactly as ``injector validate`` would. Every problem becomes a ``ConfigError`` whose lines
each start with the annotation that caused it (``injector.tmpfs.dev/template-app.env: templates[0]
(app.env): line 2: …``): the pod is denied, never injected half-way. Unknown annotations under the
prefix are errors too (fail closed: a typo must not silently drop a secret).

Keys (README, "Annotation-driven injection", lists each with its default):

* pod-wide: the keys of ``GLOBAL_DEFAULTS``; the ``--defaults`` file may set any of them;
* per secret ``secret-NAME: REFERENCE`` (NAME an identifier: it is ``secrets.NAME`` in templates;
  the value is also written, untemplated, to the file NAME unless ``file-NAME: none``);
* per file ``template-FILE: JINJA2`` or ``template-source-FILE: KEY`` (a key of
  ``templates-configmap``), and ``file-`` (destination), ``mode-``, ``owner-``, ``notify-`` of a
  secret's or template's name;
* written by the webhook: ``status`` (``injected``) and ``config`` (the compiled YAML, which the
  injector containers read as a file through the downward API).

Annotation values are references and templates, never secret values, but they are still not logged.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from injector.config.load import parse_config
from injector.errors import ConfigError, InjectorError
from injector.refs import parse_reference

__all__ = [
    "CONFIG",
    "CONFIG_DIR",
    "CONFIG_FILE",
    "GLOBAL_DEFAULTS",
    "INJECTED",
    "INJECT_LABEL",
    "PER_NAME",
    "PREFIX",
    "STATE_DIR",
    "STATUS",
    "TEMPLATES_DIR",
    "VAULT_DIR",
    "Plan",
    "compile_annotations",
    "load_defaults",
]

PREFIX = "injector.tmpfs.dev/"
#: The label the MutatingWebhookConfiguration's objectSelector matches (value "true").
INJECT_LABEL = PREFIX + "inject"
STATUS = PREFIX + "status"
CONFIG = PREFIX + "config"
INJECTED = "injected"

STATE_DIR = "/run/injector"
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
    "memory-request": "96Mi",
    "memory-limit": "160Mi",
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
_WRITTEN = ("status", "config")
#: Keys that describe the config, refused beside config-configmap (the ConfigMap holds all of it).
_CONFIG_KEYS = ("vault-address", "vault-role", "vault-auth-mount", "vault-namespace", "aws-region",
                "refresh-interval", "max-stale")  # fmt: skip

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
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


class _Reader:
    """The annotations of one pod, split into pod-wide values and per-name ones, unknowns refused."""

    def __init__(self, annotations: Mapping[str, str], defaults: Mapping[str, str]) -> None:
        self.given: dict[str, str] = {}
        self.named: dict[str, dict[str, str]] = {p: {} for p in PER_NAME}
        for full, value in annotations.items():
            if not full.startswith(PREFIX):
                continue
            key = full[len(PREFIX) :]
            if key in _WRITTEN:
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
        if value and not _QUANTITY.fullmatch(value):
            raise self.error(key, f"expected a Kubernetes quantity such as 100m or 64Mi, got {value!r}")
        return value or None

    def optional(self, key: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.get(key)
        if value and pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r} is not a valid name")
        return value or None


def compile_annotations(annotations: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> Plan:
    """Returns the injection plan of a pod, its config validated as ``injector validate`` would.

    Raises:
        ConfigError: one line per problem, each starting with the annotation to fix.
    """
    reader = _Reader(annotations, defaults or {})
    config_configmap = reader.optional("config-configmap", _DNS_SUBDOMAIN)
    templates_configmap = reader.optional("templates-configmap", _DNS_SUBDOMAIN)
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
        data, provenance = _compile_config(reader, secrets_path, templates_configmap)
        signals = any("signal" in n for t in data["templates"] for n in t.get("on_change", []))
        warnings += _validate(data, provenance)
        if mode == "init-only" and any(t.get("on_change") for t in data["templates"]):
            warnings.append(f"{PREFIX}mode: init-only runs no sidecar, so notify- annotations never fire")
        config_yaml = yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
        if len(config_yaml.encode()) > _MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{PREFIX}config: the compiled config is over {_MAX_CONFIG_BYTES // 1024} KiB; "
                f"move large templates to a ConfigMap ({PREFIX}templates-configmap)"
            )
    vault_used = config_configmap is not None or _uses_vault(reader)
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
    containers = reader.names("containers", _DNS_LABEL)
    return Plan(
        mode=mode,
        sidecar=reader.choice("sidecar", ("native", "classic", "")),
        containers=containers or None,
        init_after=reader.names("init-after", _DNS_LABEL),
        secrets_path=secrets_path,
        secrets_size=reader.quantity("secrets-size") or "16Mi",
        run_as_user=reader.integer("run-as-user", 1, 2**31 - 1),
        run_as_group=reader.integer("run-as-group", 0, 2**31 - 1) or 0,
        share_process_namespace=reader.boolean("share-process-namespace"),
        health_port=reader.integer("health-port", 1, 65535) or 8099,
        resources={k: v for k, v in resources.items() if v},
        vault_audience=(audience or "vault") if vault_used else None,
        vault_ca_configmap=reader.optional("vault-ca-configmap", _DNS_SUBDOMAIN),
        templates_configmap=templates_configmap,
        config_configmap=config_configmap,
        config_yaml=config_yaml,
        signals=signals,
        warnings=tuple(warnings),
    )


def _refuse_beside_configmap(reader: _Reader) -> None:
    for prefix, named in reader.named.items():
        if named:
            name = sorted(named)[0]
            raise reader.error(
                f"{prefix}{name}", "cannot be combined with config-configmap (the ConfigMap holds the whole config)"
            )
    for key in _CONFIG_KEYS:
        if key in reader.given:
            raise reader.error(key, "cannot be combined with config-configmap (the ConfigMap holds the whole config)")


def _compile_config(
    reader: _Reader, secrets_path: str, templates_configmap: str | None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Returns the config mapping and (config field path, annotation key) pairs for messages."""
    provenance: list[tuple[str, str]] = [("output_dir", "secrets-path")]
    data: dict[str, Any] = {"output_dir": secrets_path, "state_dir": STATE_DIR}
    secrets, files = _files(reader, templates_configmap, provenance)
    data["secrets"] = secrets
    data["templates"] = [
        _template(reader, f"templates[{index}]", name, body, provenance)
        for index, (name, body) in enumerate(sorted(files.items()))
    ]
    data.update(_backends(reader, provenance))
    refresh = {k: reader.get(a) for k, a in (("interval", "refresh-interval"), ("max_stale", "max-stale"))}
    if any(refresh.values()):
        data["refresh"] = {k: v for k, v in refresh.items() if v}
        provenance += [("refresh.interval", "refresh-interval"), ("refresh.max_stale", "max-stale")]
    data["health"] = {"address": f"0.0.0.0:{reader.integer('health-port', 1, 65535) or 8099}"}
    return data, provenance


def _files(
    reader: _Reader, templates_configmap: str | None, provenance: list[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The secrets map and each file's body (secret, contents or source), by name."""
    files: dict[str, dict[str, Any]] = {}
    secrets: dict[str, str] = {}
    for name, ref in sorted(reader.named["secret-"].items()):
        if not _IDENTIFIER.fullmatch(name):
            raise reader.error(
                f"secret-{name}",
                "the name must be an identifier (letters, digits, _): templates use it as secrets.NAME",
            )
        secrets[name] = ref
        provenance.append((f"secrets.{name}", f"secret-{name}"))
        if reader.named["file-"].get(name, "").strip() != "none":
            files[name] = {"secret": ref} if _has_key(ref) else {"contents": f"{{{{ secrets.{name} }}}}"}
    sourced = reader.named["template-source-"]
    for name, text in sorted(reader.named["template-"].items()):
        if name in sourced:
            raise reader.error(f"template-{name}", f"give template-{name} or template-source-{name}, not both")
        files[name] = {"contents": text}
    for name, key in sorted(sourced.items()):
        if templates_configmap is None:
            raise reader.error(
                f"template-source-{name}", "needs templates-configmap: NAME (the ConfigMap with the key)"
            )
        if not _FILE_NAME.fullmatch(key.strip()):
            raise reader.error(f"template-source-{name}", f"expected a ConfigMap key, got {key!r}")
        files[name] = {"source": f"{TEMPLATES_DIR}/{key.strip()}"}
    for prefix in ("file-", "mode-", "owner-", "notify-"):
        for name in reader.named[prefix]:
            if name not in files and not (prefix == "file-" and name in secrets):
                raise reader.error(f"{prefix}{name}", f"no secret-{name} or template-{name} to apply it to")
    if not files and not secrets:
        raise ConfigError(
            f"{INJECT_LABEL}: nothing to inject: add {PREFIX}secret-NAME or {PREFIX}template-FILE "
            f"annotations, or {PREFIX}config-configmap"
        )
    return secrets, files


def _template(
    reader: _Reader, where: str, name: str, body: dict[str, Any], provenance: list[tuple[str, str]]
) -> dict[str, Any]:
    kind = "secret" if "secret" in body else "template" if "contents" in body else "template-source"
    origin = f"{kind}-{name}"
    provenance.append((where, origin))
    if not _FILE_NAME.fullmatch(name):
        raise reader.error(origin, f"{name!r} is not a file name (letters, digits, '-', '_', '.')")
    template: dict[str, Any] = {**body, "destination": reader.named["file-"].get(name, name).strip()}
    provenance.append((f"{where}.destination", f"file-{name}" if name in reader.named["file-"] else origin))
    if name in reader.named["mode-"]:
        template["mode"] = reader.named["mode-"][name].strip()
        provenance.append((f"{where}.mode", f"mode-{name}"))
    if name in reader.named["owner-"]:
        template.update(_owner(reader, name))
    if name in reader.named["notify-"]:
        template["on_change"] = _notifiers(reader, name)
        provenance.append((f"{where}.on_change", f"notify-{name}"))
    return template


def _backends(reader: _Reader, provenance: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _uses_vault(reader):
        auth = {
            "method": "kubernetes",
            "role": reader.get("vault-role") or None,
            "mount": reader.get("vault-auth-mount") or "kubernetes",
            "token_path": f"{VAULT_DIR}/token",
        }
        vault: dict[str, Any] = {"address": reader.get("vault-address") or None, "auth": auth}
        if reader.get("vault-namespace"):
            vault["namespace"] = reader.get("vault-namespace")
        if reader.get("vault-ca-configmap"):
            vault["ca_cert"] = f"{VAULT_DIR}/ca.crt"
        out["vault"] = vault
    if reader.get("aws-region"):
        out["aws"] = {"region": reader.get("aws-region")}
    provenance += [
        ("vault.auth.role", "vault-role"),
        ("vault.auth.mount", "vault-auth-mount"),
        ("vault.auth", "vault-role"),
        ("vault.namespace", "vault-namespace"),
        ("vault.address", "vault-address"),
        ("vault", "vault-role"),
        ("aws.region", "aws-region"),
        ("aws", "aws-region"),
    ]
    return out


def _has_key(text: str) -> bool:
    """A ``#KEY`` reference is one value (written raw, binary-safe); a whole secret is printed as JSON.

    An unparsable reference counts as keyed: the config parser then reports it for its annotation.
    """
    try:
        return parse_reference(text).key is not None
    except ConfigError:
        return True


def _uses_vault(reader: _Reader) -> bool:
    """A vault-role (the pod's or the defaults'), or a vault-address on the pod itself.

    A default vault-address alone does not make an AWS-only pod need Vault.
    """
    return bool(reader.get("vault-role")) or bool(reader.given.get("vault-address", "").strip())


def _owner(reader: _Reader, name: str) -> dict[str, int]:
    text = reader.named["owner-"][name].strip()
    user, _, group = text.partition(":")
    if not user.isdigit() or (group and not group.isdigit()):
        raise reader.error(f"owner-{name}", f"expected UID or UID:GID (numbers), got {text!r}")
    return {"uid": int(user), **({"gid": int(group)} if group else {})}


def _notifiers(reader: _Reader, name: str) -> list[dict[str, Any]]:
    """``SIGHUP nginx`` | ``SIGHUP /run/app.pid`` | ``http [METHOD] URL`` | ``command ARGV…``, one a line."""
    key = f"notify-{name}"
    out: list[dict[str, Any]] = []
    for line in reader.named["notify-"][name].splitlines():
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise reader.error(key, f"cannot split {line!r}: {exc}") from None
        if not words:
            continue
        kind = words[0]
        if kind.upper().startswith("SIG") and len(words) == 2:
            target = words[1]
            out.append(
                {"signal": kind.upper(), **({"pidfile": target} if target.startswith("/") else {"process": target})}
            )
        elif kind == "http" and len(words) in (2, 3):
            out.append({"http": words[-1], **({"method": words[1].upper()} if len(words) == 3 else {})})
        elif kind == "command" and len(words) >= 2:
            out.append({"command": words[1:]})
        else:
            raise reader.error(
                key,
                f"expected 'SIGNAL PROCESS', 'SIGNAL /PIDFILE', 'http [METHOD] URL' or 'command ARGV…', got {line!r}",
            )
    if not out:
        raise reader.error(key, "is empty")
    return out


def _validate(data: dict[str, Any], provenance: list[tuple[str, str]]) -> list[str]:
    """Runs the config parser and ``validate_config``; returns the warnings, raises named errors."""
    from injector.modes.validate import validate_config

    try:
        config = parse_config(data, base_dir=Path(CONFIG_DIR), environ={})
        # Templates from the ConfigMap are only readable in the pod: checked by `injector init` there.
        checkable = replace(
            config,
            templates=tuple(
                replace(t, source=None, contents="") if t.source is not None else t for t in config.templates
            ),
        )
        report = validate_config(checkable)
    except InjectorError as exc:
        raise ConfigError(_name_annotations(str(exc), provenance)) from None
    return [w for w in report.warnings if "is on" not in w]


def _name_annotations(message: str, provenance: list[tuple[str, str]]) -> str:
    """Starts each line of a config error with the annotation its field path came from."""
    by_length = sorted(provenance, key=lambda p: len(p[0]), reverse=True)
    lines = []
    for line in message.splitlines():
        text = line.removeprefix("config: ")
        key = next(
            (
                a
                for path, a in by_length
                if text.startswith(path) and text[len(path) : len(path) + 1] in (":", ".", "[", " ")
            ),
            None,
        )
        lines.append(f"{PREFIX}{key}: {text}" if key else f"{PREFIX}*: {text}")
    return "\n".join(lines)
