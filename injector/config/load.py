"""Validating the config: field by field, every error naming its field path.

``injector.config.document`` reads the file and parses its YAML into plain values;
``injector.config.model`` holds the dataclasses; this module holds the entry points
(``load_config``, ``parse_config``) and the machinery: ``_Fields`` (typed access that refuses
unknown keys) and the per-section parsers.
"""

from __future__ import annotations

import os
import posixpath
import signal
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from injector.config.document import check_yaml, load_yaml, parse_text, read_tree, read_tree_elsewhere
from injector.config.model import (
    AUTH_METHODS,
    DEFAULT_MODE,
    K8S_TOKEN_PATH,
    AwsConfig,
    CommandNotify,
    Config,
    ExecConfig,
    HealthConfig,
    HttpNotify,
    LimitsConfig,
    NotifyConfig,
    RefreshConfig,
    SignalNotify,
    TemplateConfig,
    VaultAuthConfig,
    VaultConfig,
    WaitConfig,
)
from injector.errors import ConfigError
from injector.refs import Reference, parse_reference
from injector.units import parse_duration, parse_mode

__all__ = ["apply_env", "build_config", "check_destination", "check_yaml", "load_yaml", "parse_signal", "set_dotted"]


def apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Fills keys the file leaves out from the environment (file wins, flags win over both)."""
    simple = {
        "output_dir": "INJECTOR_OUTPUT_DIR",
        "state_dir": "INJECTOR_STATE_DIR",
        "health.address": "INJECTOR_HEALTH_ADDRESS",
    }
    for dotted, var in simple.items():
        if var in env and _get_dotted(data, dotted) is None:
            set_dotted(data, dotted, env[var])
    if "INJECTOR_ALLOW_NON_TMPFS" in env and "allow_non_tmpfs" not in data:
        data["allow_non_tmpfs"] = env["INJECTOR_ALLOW_NON_TMPFS"].lower() in ("1", "true", "yes")
    vault = data.get("vault")
    if isinstance(vault, dict):
        if env.get("VAULT_SKIP_VERIFY", "").strip().lower() not in ("", "0", "false", "no"):
            raise ConfigError(
                "VAULT_SKIP_VERIFY is set: injector never turns off TLS verification of Vault from the "
                "environment (the token would go to whoever answers); trust Vault's CA with VAULT_CACERT "
                "or vault.ca_cert instead"
            )
        for key, var in (
            ("address", "VAULT_ADDR"),
            ("namespace", "VAULT_NAMESPACE"),
            ("ca_cert", "VAULT_CACERT"),
            ("ca_path", "VAULT_CAPATH"),
            ("client_cert", "VAULT_CLIENT_CERT"),
            ("client_key", "VAULT_CLIENT_KEY"),
        ):
            if env.get(var) and vault.get(key) is None:
                vault[key] = env[var]
    aws = data.get("aws")
    if isinstance(aws, dict) and aws.get("endpoint_url") is None and "AWS_ENDPOINT_URL" in env:
        aws["endpoint_url"] = env["AWS_ENDPOINT_URL"]
    return data


def _get_dotted(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _url(fields: _Fields, key: str, value: str) -> str:
    """Returns ``value`` if it is an http(s) URL with a host, else a ConfigError naming ``key``."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # urllib validates the port (and a bracketed IPv6 host) only when asked
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise fields.error(key, f"expected an http:// or https:// URL, got {value!r}")
    return value


def _check_path_text(fields: _Fields, key: str, value: str) -> str:
    if "\x00" in value:
        raise fields.error(key, "a path cannot contain a NUL character")
    return value


class _Fields:
    """Typed access to one mapping of the config that remembers which keys were read.

    ``done()`` refuses the keys nobody read, so a typo is an error instead of a silent default.
    """

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where or 'config'}: expected a mapping, got {_kind(raw)}")
        self.raw: dict[str, Any] = raw
        self.where = where
        self._seen: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str) -> Any:
        self._seen.add(key)
        return self.raw.get(key)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path(key)}: {message}")

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool) or str(value) == "":
            raise self.error(key, f"expected a non-empty string, got {_kind(value)}")
        return str(value)

    def required(self, key: str, hint: str) -> str:
        value = self.string(key)
        if value is None:
            raise self.error(key, f"is required; {hint}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(key, f"expected a number from {low:g} to {high:g}, got {_kind(value)}")
        return float(value)

    def integer(self, key: str, default: int | None, *, low: int = 0, high: int = 2**31) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"expected a whole number from {low} to {high}, got {_kind(value)}")
        return value

    def file_path(self, key: str, base: Path, default: Path | None = None) -> Path | None:
        value = self.string(key)
        if value is None:
            return default
        _check_path_text(self, key, value)
        return (base / os.path.expanduser(value)) if not os.path.isabs(value) else Path(value)

    def section(self, key: str) -> _Fields:
        value = self.get(key)
        return _Fields({} if value is None else value, self.path(key))

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"expected a list of strings, got {_kind(value)}")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self._seen, key=str)
        if unknown:
            key = str(unknown[0])
            import difflib  # only for this error: 0.2 MiB a running sidecar need not hold

            close = difflib.get_close_matches(key, sorted(self._seen), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(self._seen))}"
            raise ConfigError(f"{self.path(key)}: unknown key{hint}")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) <= 40 else "a long string"
    return type(value).__name__ if not isinstance(value, bool | int | float) else repr(value)


class _Parser:
    def __init__(self, base: Path, env: Mapping[str, str]) -> None:
        self.base = base
        self.env = env

    def config(self, data: dict[str, Any]) -> Config:
        top = _Fields(data, "")
        output = top.required(
            "output_dir", "set it to the in-memory volume shared with the app, or set INJECTOR_OUTPUT_DIR"
        )
        state = top.string("state_dir")
        secrets = self.secrets(top)
        templates = self.templates(top)
        config = Config(
            path=None,
            base_dir=self.base,
            output_dir=self.abs_dir(top, "output_dir", output),
            state_dir=self.abs_dir(top, "state_dir", state) if state else None,
            file_roots=self.file_roots(top),
            allow_non_tmpfs=top.boolean("allow_non_tmpfs", False),
            vault=self.vault(top),
            aws=self.aws(top.section("aws")),
            secrets=secrets,
            templates=templates,
            refresh=self.refresh(top.section("refresh")),
            health=self.health(top.section("health")),
            limits=self.limits(top.section("limits")),
            env=self.env_map(top),
            exec=self.exec(top.section("exec")),
        )
        top.done()
        if config.state_dir is not None and _inside(config.state_dir, config.output_dir):
            raise ConfigError("state_dir: must not be inside output_dir (the app must not read the token)")
        if config.state_dir is not None:
            for root in config.file_roots:
                if _inside(root, config.state_dir):
                    raise ConfigError(f"file_roots: {root} is inside state_dir (the token is never readable)")
        return config

    def file_roots(self, top: _Fields) -> tuple[Path, ...]:
        roots = tuple(Path(os.path.normpath(self.base / p)) for p in top.string_list("file_roots"))
        for root in roots:
            _check_path_text(top, "file_roots", str(root))
        return roots

    def abs_dir(self, fields: _Fields, key: str, value: str) -> Path:
        _check_path_text(fields, key, value)
        if not os.path.isabs(value):
            raise fields.error(key, f"must be an absolute path, got {value!r}")
        return Path(value)

    def vault(self, top: _Fields) -> VaultConfig | None:
        if top.get("vault") is None:
            return None
        fields = top.section("vault")
        address = fields.required("address", "the Vault URL, e.g. https://vault.vault:8200 (or set VAULT_ADDR)")
        if (fields.raw.get("client_cert") is None) != (fields.raw.get("client_key") is None):
            raise fields.error(
                "client_key", "client_cert and client_key come together (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY)"
            )
        _url(fields, "address", address)
        auth = self.vault_auth(fields.section("auth"))
        config = VaultConfig(
            address=address.rstrip("/"),
            namespace=fields.string("namespace"),
            ca_cert=fields.file_path("ca_cert", self.base),
            ca_path=fields.file_path("ca_path", self.base),
            client_cert=fields.file_path("client_cert", self.base),
            client_key=fields.file_path("client_key", self.base),
            tls_skip_verify=fields.boolean("tls_skip_verify", False),
            timeout=fields.duration("timeout", 10.0),
            auth=auth,
            allowed_paths=self.vault_allowed_paths(fields),
        )
        if auth.method == "cert" and config.client_cert is None:
            raise fields.error(
                "client_cert", "auth method cert needs client_cert and client_key (or VAULT_CLIENT_CERT)"
            )
        fields.done()
        return config

    def vault_allowed_paths(self, fields: _Fields) -> tuple[str, ...] | None:
        if fields.get("allowed_paths") is None:
            return None
        paths = tuple(p.strip("/") for p in fields.string_list("allowed_paths"))
        for path in paths:
            top = path.split("/", 1)[0]
            if not path or top in ("auth", "sys", "identity", "cubbyhole"):
                raise fields.error(
                    "allowed_paths", f"{path!r} can never be allowed (auth/, sys/, identity/, cubbyhole/)"
                )
        return paths

    def vault_auth(self, fields: _Fields) -> VaultAuthConfig:
        method = fields.string("method", "token") or "token"
        if method not in AUTH_METHODS:
            raise fields.error("method", f"expected one of {', '.join(AUTH_METHODS)}, got {method!r}")
        if fields.get("token") is not None:
            raise fields.error("token", "a token is never written in the config; use token_file, or VAULT_TOKEN")
        auth = VaultAuthConfig(
            method=method,
            token_file=fields.file_path("token_file", self.base),
            role=fields.string("role"),
            mount=(fields.string("mount") or method).strip("/"),
            token_path=fields.file_path("token_path", self.base, K8S_TOKEN_PATH) or K8S_TOKEN_PATH,
            role_id=fields.string("role_id"),
            role_id_file=fields.file_path("role_id_file", self.base),
            secret_id_file=fields.file_path("secret_id_file", self.base),
            jwt_file=fields.file_path("jwt_file", self.base),
            secret_id_response_wrapping_path=(fields.string("secret_id_response_wrapping_path") or "").strip("/")
            or None,
            remove_secret_id_file_after_reading=fields.boolean("remove_secret_id_file_after_reading", True),
            name=fields.string("name"),
            header_value=fields.string("header_value"),
            region=fields.string("region"),
            sts_endpoint=fields.string("sts_endpoint"),
        )
        if auth.sts_endpoint is not None:
            _url(fields, "sts_endpoint", auth.sts_endpoint)
        needs = {
            "kubernetes": ("role",),
            "jwt": ("role", "jwt_file"),
            "approle": (),
            "token": (),
            "cert": (),
            "aws": ("role",),
        }[method]
        for key in needs:
            if getattr(auth, key) is None:
                raise fields.error(key, f"is required for method {method}")
        if method == "approle" and auth.role_id is None and auth.role_id_file is None:
            raise fields.error("role_id_file", "approle needs role_id_file (or role_id)")
        if auth.secret_id_response_wrapping_path is not None and auth.secret_id_file is None:
            raise fields.error(
                "secret_id_file", "secret_id_response_wrapping_path needs the file holding the wrapping token"
            )
        fields.done()
        return auth

    def aws(self, fields: _Fields) -> AwsConfig:
        endpoint = fields.string("endpoint_url")
        if endpoint is not None:
            _url(fields, "endpoint_url", endpoint)
        aws = AwsConfig(
            region=fields.string("region"),
            endpoint_url=endpoint,
            max_attempts=fields.integer("max_attempts", 3, low=1, high=20) or 3,
            timeout=fields.duration("timeout", 10.0),
        )
        fields.done()
        return aws

    def secrets(self, top: _Fields) -> dict[str, Reference]:
        raw = top.get("secrets")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise top.error("secrets", f"expected a mapping of name: reference, got {_kind(raw)}")
        out: dict[str, Reference] = {}
        for name, text in raw.items():
            where = f"secrets.{name}"
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"{where}: a secret name must be an identifier (letters, digits, _)")
            if not isinstance(text, str):
                raise ConfigError(f"{where}: expected a reference string, got {_kind(text)}")
            out[name] = parse_reference(text, where=where)
        return out

    def templates(self, top: _Fields) -> tuple[TemplateConfig, ...]:
        raw = top.get("templates")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise top.error("templates", f"expected a list, got {_kind(raw)}")
        templates = tuple(self.template(_Fields(item, f"templates[{i}]")) for i, item in enumerate(raw))
        seen: dict[str, str] = {}
        for tpl in templates:
            for other_dest, other_where in seen.items():
                a, b = sorted((tpl.destination, other_dest))
                if a == b or b.startswith(a + "/"):
                    raise ConfigError(f"{tpl.where}.destination: {tpl.destination!r} collides with {other_where}")
            seen[tpl.destination] = tpl.where
        return templates

    def template(self, fields: _Fields) -> TemplateConfig:
        source = fields.file_path("source", self.base)
        contents = fields.get("contents")
        secret_text = fields.string("secret")
        given = [k for k, v in (("source", source), ("contents", contents), ("secret", secret_text)) if v is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise ConfigError(f"{fields.where}: give exactly one of source, contents or secret (got {what})")
        if contents is not None and not isinstance(contents, str):
            raise fields.error("contents", f"expected a string, got {_kind(contents)}")
        destination = check_destination(
            fields.required("destination", "a path relative to output_dir"), fields.path("destination")
        )
        mode = DEFAULT_MODE
        if fields.get("mode") is not None:
            try:
                mode = parse_mode(fields.get("mode"))
            except ValueError as exc:
                raise fields.error("mode", str(exc)) from None
        on_change = fields.get("on_change") or []
        if not isinstance(on_change, list):
            raise fields.error("on_change", f"expected a list of notifiers, got {_kind(on_change)}")
        template = TemplateConfig(
            where=fields.where,
            destination=destination,
            source=source,
            contents=contents,
            secret=parse_reference(secret_text, where=fields.path("secret")) if secret_text else None,
            mode=mode,
            uid=fields.integer("uid", None),
            gid=fields.integer("gid", None),
            on_change=tuple(
                self.notifier(_Fields(n, f"{fields.path('on_change')}[{i}]")) for i, n in enumerate(on_change)
            ),
        )
        fields.done()
        return template

    def notifier(self, fields: _Fields) -> NotifyConfig:
        kinds = [k for k in ("signal", "http", "command") if fields.raw.get(k) is not None]
        if len(kinds) != 1:
            raise ConfigError(
                f"{fields.where}: give exactly one of signal, http or command, e.g. {{signal: SIGHUP, process: nginx}}"
            )
        notifier: NotifyConfig
        if kinds[0] == "signal":
            notifier = self.signal_notifier(fields)
        elif kinds[0] == "http":
            url = fields.required("http", "the reload URL")
            _url(fields, "http", url)
            headers = fields.get("headers") or {}
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise fields.error("headers", "expected a mapping of header: value strings")
            notifier = HttpNotify(
                url=url,
                method=(fields.string("method", "POST") or "POST").upper(),
                timeout=fields.duration("timeout", 5.0),
                headers={str(k): v for k, v in headers.items()},
            )
        else:
            argv = fields.get("command")
            if isinstance(argv, str):
                raise fields.error("command", 'expected a list such as ["/bin/sh", "-c", "..."], not a string')
            notifier = CommandNotify(argv=fields.string_list("command"), timeout=fields.duration("timeout", 30.0))
            if not notifier.argv:
                raise fields.error("command", "expected a non-empty list of strings")
        fields.done()
        return notifier

    def signal_notifier(self, fields: _Fields) -> SignalNotify:
        number = parse_signal(fields.get("signal"), fields.path("signal"))
        process = fields.string("process")
        pidfile = fields.file_path("pidfile", self.base)
        child = fields.boolean("child", False)
        if sum((process is not None and pidfile is None, pidfile is not None, child)) != 1:
            raise ConfigError(
                f"{fields.where}: a signal needs exactly one target: process: NAME, pidfile: PATH (with "
                "process: NAME) or child: true"
            )
        if pidfile is not None and process is None:
            raise fields.error(
                "process",
                "is required with pidfile: the executable name the pid in it must have (the app can write "
                f"its pidfile), e.g. {{signal: SIGHUP, pidfile: {pidfile}, process: nginx}}",
            )
        user = self.signal_user(fields)
        if child and user is not None:
            raise fields.error("user", "applies to process: and pidfile: targets, not to child: true")
        return SignalNotify(signal=number, process=process, pidfile=pidfile, child=child, user=user)

    def signal_user(self, fields: _Fields) -> int | Literal["any"] | None:
        value = fields.get("user")
        if value is None:
            return None
        if value == "any":
            return "any"
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
            raise fields.error(
                "user", f"expected a numeric UID such as 101, or any, got {value!r} (user names are not resolved)"
            )
        return value

    def refresh(self, fields: _Fields) -> RefreshConfig:
        wait_fields = fields.section("wait")
        wait = WaitConfig(min=wait_fields.duration("min", 0.05), max=wait_fields.duration("max", 1.0))
        wait_fields.done()
        if wait.max < wait.min:
            raise ConfigError(f"{fields.path('wait')}.max: must be at least wait.min")
        refresh = RefreshConfig(
            interval=fields.duration("interval", 300.0),
            jitter=fields.number("jitter", 0.1, low=0.0, high=0.5),
            wait=wait,
            max_stale=fields.duration("max_stale", 900.0),
            min_backoff=fields.duration("min_backoff", 1.0),
            max_backoff=fields.duration("max_backoff", 60.0),
            splay=fields.boolean("splay", True),
        )
        if refresh.interval <= 0:
            raise fields.error("interval", "must be more than 0")
        if refresh.max_backoff < refresh.min_backoff:
            raise fields.error("max_backoff", "must be at least min_backoff")
        fields.done()
        return refresh

    def health(self, fields: _Fields) -> HealthConfig:
        address = fields.get("address")
        if address is not None and address is not False:
            address = str(address)
            _host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise fields.error("address", f"expected HOST:PORT such as 0.0.0.0:8099, got {_kind(address)}")
        health = HealthConfig(
            address=None if address is False else (address or HealthConfig().address),
            watchdog=fields.duration("watchdog", 300.0),
        )
        if health.watchdog <= 0:
            raise fields.error("watchdog", "must be more than 0")
        fields.done()
        return health

    def limits(self, fields: _Fields) -> LimitsConfig:
        limits = LimitsConfig(
            max_output_bytes=fields.integer("max_output_bytes", 8 * 1024 * 1024, low=1) or 1,
            max_secret_bytes=fields.integer("max_secret_bytes", 1024 * 1024, low=1) or 1,
            max_depth=fields.integer("max_depth", 64, low=1, high=512) or 64,
            render_timeout=fields.duration("render_timeout", 10.0),
            max_concurrency=fields.integer("max_concurrency", 16, low=1, high=256) or 16,
        )
        fields.done()
        return limits

    def env_map(self, top: _Fields) -> dict[str, str]:
        raw = top.get("env")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise top.error("env", f"expected a mapping of NAME: reference or template, got {_kind(raw)}")
        out: dict[str, str] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise ConfigError(f"env.{name}: not an environment variable name")
            if not isinstance(value, str):
                raise ConfigError(f"env.{name}: expected a reference or template string, got {_kind(value)}")
            if "{{" not in value and "{%" not in value:
                parse_reference(value, where=f"env.{name}")
            out[name] = value
        return out

    def exec(self, fields: _Fields) -> ExecConfig:
        kill = fields.get("kill_signal")
        config = ExecConfig(
            env_allow=fields.string_list("env_allow"),
            env_deny=fields.string_list("env_deny"),
            kill_signal=signal.SIGTERM if kill is None else parse_signal(kill, fields.path("kill_signal")),
            kill_timeout=fields.duration("kill_timeout", 30.0),
            splay=fields.duration("splay", 0.0),
            restart_min_backoff=fields.duration("restart_min_backoff", 1.0),
            restart_max_backoff=fields.duration("restart_max_backoff", 60.0),
        )
        fields.done()
        return config


def parse_signal(value: object, where: str) -> int:
    """Returns the signal number for ``SIGHUP``, ``HUP`` or ``1``."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(signal.Signals(value))
        except ValueError:
            pass
    elif isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise ConfigError(f"{where}: expected a signal name such as SIGHUP, got {_kind(value)}")


def check_destination(value: str, where: str) -> str:
    """Returns the normalised relative destination, or raises if it could leave output_dir.

    Names starting with ``..`` are reserved for the snapshot layout (``..data``, ``..2026_…``).
    """
    if "\x00" in value or "\\" in value:
        raise ConfigError(f"{where}: {value!r} contains a NUL or backslash")
    if value.startswith("/"):
        raise ConfigError(f"{where}: {value!r} is absolute; destinations are relative to output_dir")
    parts = value.split("/")
    if ".." in parts:
        raise ConfigError(f"{where}: {value!r} leaves output_dir ('..' is not allowed)")
    normal = posixpath.normpath(value)
    if normal in (".", "") or value.endswith("/"):
        raise ConfigError(f"{where}: {value!r} is not a file name")
    if normal.startswith(".."):
        raise ConfigError(f"{where}: names starting with '..' are reserved for the snapshot layout")
    return normal


def _inside(child: Path, parent: Path) -> bool:
    child_text, parent_text = os.path.normpath(child), os.path.normpath(parent)
    return child_text == parent_text or child_text.startswith(parent_text.rstrip("/") + "/")


def build_config(data: dict[str, Any], base: Path, env: Mapping[str, str]) -> Config:
    """Validates ``data`` (environment and overrides already applied) into a Config."""
    return _Parser(base, env).config(data)


# --- entry points ---------------------------------------------------------------------------------


def load_config(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    elsewhere: bool = False,
) -> Config:
    """Reads and validates the YAML config at ``path``.

    Args:
        overrides: dotted keys (``output_dir``, ``health.address``) from CLI flags; they win.
        environ: the environment to read ``INJECTOR_*`` / ``VAULT_*`` from (default: os.environ).
        elsewhere: read and parse the file's YAML in a child process, so that this one never
            imports PyYAML (``injector.config.document``: what a long-lived sidecar does).

    Raises:
        ConfigError: ``FILE: field.path: what is wrong`` — one error, the first found.
    """
    path = Path(path)
    raw = read_tree_elsewhere(path) if elsewhere else read_tree(path)
    return parse_config(raw, path=path, overrides=overrides, environ=environ)


def load_config_text(
    text: str,
    *,
    path: Path,
    base_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """``load_config`` of a config already read: ``path`` only names it (a ConfigMap key's mount path).

    ``base_dir`` (default: ``path``'s folder) is where relative sources and ``file:`` references resolve.
    """
    raw = parse_text(text, path)
    return parse_config(raw, path=path, base_dir=base_dir, overrides=overrides, environ=environ)


def parse_config(
    raw: object,
    *,
    path: Path | None = None,
    base_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validates an already-parsed config mapping (``load_config`` without the file)."""
    label = str(path) if path is not None else "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: the config must be a mapping of keys, got {type(raw).__name__}")
    env = os.environ if environ is None else environ
    data = apply_env(dict(raw), env)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, dotted, value)
    base = base_dir or (path.parent.resolve() if path is not None else Path.cwd())
    try:
        config = build_config(data, base, env)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    return replace(config, path=path)
