"""The YAML config, parsed once into frozen dataclasses. Every error names the file and field path.

This module is the shape (the dataclasses); ``injector.config.load`` reads YAML into it.

Unknown keys are errors (with a "did you mean"), durations accept ``500ms``/``30s``/``5m``/``1h``,
and relative template sources and ``file:`` references resolve against the config file's folder.
Environment variables fill what the file leaves out (``INJECTOR_OUTPUT_DIR``, ``VAULT_ADDR`` …) and
``overrides`` (CLI flags) win over both. The README's config reference lists every key and default.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from injector.refs import Reference

__all__ = [
    "AwsConfig",
    "CommandNotify",
    "Config",
    "ExecConfig",
    "HealthConfig",
    "HttpNotify",
    "LimitsConfig",
    "NotifyConfig",
    "RefreshConfig",
    "SignalNotify",
    "TemplateConfig",
    "VaultAuthConfig",
    "VaultConfig",
    "WaitConfig",
]

DEFAULT_MODE = 0o440
K8S_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
AUTH_METHODS = ("token", "kubernetes", "approle", "jwt", "cert", "aws")


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultAuthConfig:
    method: str = "token"
    #: token: a file holding the token; without it, VAULT_TOKEN (never the token inline).
    token_file: Path | None = None
    #: kubernetes / jwt role; approle role name is not needed to log in.
    role: str | None = None
    #: auth mount path; default: the method's name.
    mount: str = "token"
    #: kubernetes: the service-account token, re-read at every login (kubelet rotates it).
    token_path: Path = K8S_TOKEN_PATH
    role_id: str | None = None
    role_id_file: Path | None = None
    secret_id_file: Path | None = None
    #: approle: the secret_id file holds a response-wrapping token created at this path
    #: (``auth/approle/role/ROLE/secret-id``); it is unwrapped once (Vault Agent's option name).
    secret_id_response_wrapping_path: str | None = None
    #: approle: delete the secret_id file once read (Vault Agent's default).
    remove_secret_id_file_after_reading: bool = True
    jwt_file: Path | None = None
    #: cert: the certificate role (``auth/cert/certs/NAME``); without it Vault tries every role.
    name: str | None = None
    #: aws (iam): the X-Vault-AWS-IAM-Server-ID header value the auth method requires, if any.
    header_value: str | None = None
    #: aws (iam): the STS region and endpoint the signed GetCallerIdentity names.
    region: str | None = None
    sts_endpoint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultConfig:
    address: str
    namespace: str | None = None
    ca_cert: Path | None = None
    #: A directory of CA certificates (VAULT_CAPATH), when ca_cert is not set.
    ca_path: Path | None = None
    #: The TLS client certificate and key sent to Vault (VAULT_CLIENT_CERT / VAULT_CLIENT_KEY);
    #: read again for each new connection, so a rotated pair is used from the next login on.
    client_cert: Path | None = None
    client_key: Path | None = None
    #: TLS is verified unless this is set; a warning is logged at start when it is.
    tls_skip_verify: bool = False
    timeout: float = 10.0
    auth: VaultAuthConfig = field(default_factory=VaultAuthConfig)
    #: Paths beyond KV reads that references may use (``*`` = one segment); None: the issuing
    #: endpoints of known engines (``injector.sources.vault_policy.ISSUING``).
    allowed_paths: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsConfig:
    region: str | None = None
    endpoint_url: str | None = None
    #: boto3 "adaptive" retry mode attempts per call (backoff with jitter inside botocore).
    max_attempts: int = 3
    timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalNotify:
    signal: int
    #: Alone: signal every process with this executable name. With ``pidfile``: the name the pid's
    #: process must have (the app writes its pidfile, so the pid in it is checked, not trusted).
    process: str | None = None
    pidfile: Path | None = None
    #: exec mode: signal the child injector started.
    child: bool = False
    #: Whose processes ``process``/``pidfile`` may signal: a UID, ``"any"``, or None for the
    #: injector's own effective UID (read when the notifier fires).
    user: int | Literal["any"] | None = None

    def describe(self) -> str:
        target = str(self.pidfile) if self.pidfile else (self.process or "child")
        return f"signal {signal.Signals(self.signal).name} → {target}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpNotify:
    url: str
    method: str = "POST"
    timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        # No user:password@ and no query string: either may carry a credential.
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"http {self.method} {parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandNotify:
    argv: tuple[str, ...]
    timeout: float = 30.0

    def describe(self) -> str:
        return f"command {self.argv[0]}"


NotifyConfig = SignalNotify | HttpNotify | CommandNotify


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateConfig:
    #: ``templates[i]``: the field path, for messages.
    where: str
    destination: str
    source: Path | None = None
    contents: str | None = None
    #: A reference written as the file's bytes, untemplated (binary secrets, keystores).
    secret: Reference | None = None
    mode: int = DEFAULT_MODE
    uid: int | None = None
    gid: int | None = None
    on_change: tuple[NotifyConfig, ...] = ()

    @property
    def name(self) -> str:
        """The label of this template in logs and metrics: its destination."""
        return self.destination


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitConfig:
    # 50 ms of quiet still coalesces a ConfigMap update's burst (it lands in one watcher report)
    # and keeps polled changes inside the interval + 100 ms budget (DESIGN §6; bench/README.md).
    min: float = 0.05
    max: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshConfig:
    interval: float = 300.0
    jitter: float = 0.1
    wait: WaitConfig = field(default_factory=WaitConfig)
    max_stale: float = 900.0
    #: retry backoff after a failed fetch: min doubles up to max, with full jitter.
    min_backoff: float = 1.0
    max_backoff: float = 60.0
    #: Spread a fleet: the first refresh after start (and after a recovery) at a random point of the
    #: interval, lease renewals and certificate re-issues over a wider window.
    splay: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    address: str | None = "0.0.0.0:8099"
    #: /healthz fails when one refresh pass runs longer than this, or the loop wakes up this much
    #: later than it planned to (a wedged loop gets the container restarted).
    watchdog: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    max_output_bytes: int = 8 * 1024 * 1024
    max_secret_bytes: int = 1024 * 1024
    #: How deep a value's arrays and objects may nest (JSON text, KV data, YAML files); checked by
    #: every source before the value is parsed or stored, so a hostile value cannot exhaust the stack.
    max_depth: int = 64
    render_timeout: float = 10.0
    max_concurrency: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecConfig:
    """``injector exec``: how the child is run (see the exec issue)."""

    env_allow: tuple[str, ...] = ()
    env_deny: tuple[str, ...] = ()
    kill_signal: int = signal.SIGTERM
    kill_timeout: float = 30.0
    splay: float = 0.0
    restart_min_backoff: float = 1.0
    restart_max_backoff: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    #: The file this came from (None for a config built in code); messages name it.
    path: Path | None
    #: The folder relative template sources and file: references resolve against.
    base_dir: Path
    output_dir: Path
    state_dir: Path | None = None
    #: Folders ``file:`` references may read beneath; empty: the config's folder and the
    #: folders of the templates' sources (``injector.sources.files``).
    file_roots: tuple[Path, ...] = ()
    allow_non_tmpfs: bool = False
    vault: VaultConfig | None = None
    aws: AwsConfig = field(default_factory=AwsConfig)
    secrets: Mapping[str, Reference] = field(default_factory=dict)
    templates: tuple[TemplateConfig, ...] = ()
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    env: Mapping[str, str] = field(default_factory=dict)
    exec: ExecConfig = field(default_factory=ExecConfig)
