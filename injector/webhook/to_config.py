"""Annotations → the config mapping a YAML file would hold, and its validation by the one validator.

``config_mapping`` builds the mapping and, beside it, which annotation each config field path came
from; ``validate`` runs ``injector.config.load.parse_config`` and
``injector.modes.validate.validate_config`` on it, as ``injector validate`` would, and starts each
line of an error with the annotation to fix (``injector.tmpfs.dev/template-app.env: templates[0]
(app.env): line 2: …``).
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from injector.config.load import parse_config
from injector.errors import ConfigError, InjectorError
from injector.refs import parse_reference
from injector.webhook.keys import (
    CONFIG_DIR,
    FILE_NAME,
    IDENTIFIER,
    INJECT_LABEL,
    PREFIX,
    STATE_DIR,
    TEMPLATES_DIR,
    VAULT_DIR,
    Reader,
)

__all__ = ["config_mapping", "validate"]


def config_mapping(
    reader: Reader, secrets_path: str, templates_configmap: str | None
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
    reader: Reader, templates_configmap: str | None, provenance: list[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The secrets map and each file's body (secret, contents or source), by name."""
    files: dict[str, dict[str, Any]] = {}
    secrets: dict[str, str] = {}
    for name, ref in sorted(reader.named["secret-"].items()):
        if not IDENTIFIER.fullmatch(name):
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
        if not FILE_NAME.fullmatch(key.strip()):
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
    reader: Reader, where: str, name: str, body: dict[str, Any], provenance: list[tuple[str, str]]
) -> dict[str, Any]:
    kind = "secret" if "secret" in body else "template" if "contents" in body else "template-source"
    origin = f"{kind}-{name}"
    provenance.append((where, origin))
    if not FILE_NAME.fullmatch(name):
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


def _backends(reader: Reader, provenance: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if reader.uses_vault():
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


def _owner(reader: Reader, name: str) -> dict[str, int]:
    text = reader.named["owner-"][name].strip()
    user, _, group = text.partition(":")
    if not user.isdigit() or (group and not group.isdigit()):
        raise reader.error(f"owner-{name}", f"expected UID or UID:GID (numbers), got {text!r}")
    return {"uid": int(user), **({"gid": int(group)} if group else {})}


def _notifiers(reader: Reader, name: str) -> list[dict[str, Any]]:
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


def validate(data: dict[str, Any], provenance: list[tuple[str, str]]) -> list[str]:
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
