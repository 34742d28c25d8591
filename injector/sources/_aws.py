"""What the Secrets Manager and SSM sources share: building botocore clients, running calls
concurrently, and mapping botocore errors onto ``injector.errors`` once, at the boundary.

botocore is imported inside the functions here, never at module level: importing an AWS source
module (for ``describe``, for ``injector validate``) costs nothing until a client is built, and a
config without AWS references never loads botocore at all (DESIGN.md §7). boto3 is not used: its
clients are botocore's, with the same credential chain.

Error mapping (``map_aws_error``, used through ``AwsContext.errors``):

=====================================================================  ======================
botocore says                                                          injector raises
=====================================================================  ======================
ResourceNotFoundException, ParameterNotFound, ParameterVersionNotFound  NotFoundError
AccessDenied(Exception), DecryptionFailure, KMS* (KMS refused)         AccessDeniedError
Throttling*, TooManyRequests*, 429, 5xx, connection errors, timeouts   UnavailableError
ExpiredToken*, UnrecognizedClient, InvalidClientTokenId, signature,    AuthError (names the
NoCredentialsError and other credential-chain failures                 credential source)
anything else                                                          SourceError
=====================================================================  ======================

Messages name the reference, the service, the AWS error code and AWS's own message (which never
contains a secret value); the raw botocore exception stays reachable as ``__cause__`` only.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from injector.errors import (
    AccessDeniedError,
    AuthError,
    ConfigError,
    NotFoundError,
    SourceError,
    UnavailableError,
)
from injector.sources import CallCounter, SourceDefaults
from injector.sources._limits import ValueLimits

if TYPE_CHECKING:
    from injector.config.model import Config
    from injector.refs import Reference

__all__ = [
    "ENDPOINT_SERVICES",
    "HANDLER_SERVICES",
    "AwsContext",
    "AwsSource",
    "as_records",
    "build_client",
    "chunked",
    "client_methods",
    "concerns_our_clients",
    "count_calls",
    "describe_credentials",
    "map_aws_error",
    "map_error_code",
    "relabel",
    "run_concurrently",
    "throttles",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: botocore's DEBUG log prints whole response bodies, SecretString included.
_LEAKY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")

_NOT_FOUND = frozenset({"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "DecryptionFailure",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "InvalidKeyId",
    }
)
#: The error codes of AWS's "slow down" answers (botocore's list for the services we call); a 429 is one too.
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
_UNAVAILABLE = _THROTTLED | frozenset(
    {
        "InternalServiceError",
        "InternalServiceErrorException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"})
_REJECTED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "AuthFailure",
        "InvalidAccessKeyId",
    }
)

#: ``Credentials.method`` → where boto3 found them, in the words of a pod spec.
_CREDENTIAL_SOURCES: Mapping[str, str] = {
    "env": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment",
    "assume-role-with-web-identity": "IRSA: AWS_ROLE_ARN and the token in AWS_WEB_IDENTITY_TOKEN_FILE",
    "container-role": "the container credentials endpoint (EKS Pod Identity or an ECS task role)",
    "iam-role": "the node's instance profile via IMDS",
    "shared-credentials-file": "the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)",
    "config-file": "the AWS config file (AWS_CONFIG_FILE or ~/.aws/config)",
    "assume-role": "a role assumed from an AWS profile",
    "sso": "AWS IAM Identity Center (SSO)",
    "custom-process": "a credential_process in the AWS config",
}
_CHAIN = "environment, IRSA web identity, EKS Pod Identity / ECS, ~/.aws files, instance metadata"
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


# --- clients -------------------------------------------------------------------------------------


_SESSION_LOCK = threading.Lock()
#: id(config) → (config, botocore session). The config is kept so its id cannot be reused by another.
_SESSIONS: dict[int, tuple[Config, Any]] = {}


def _shared_session(config: Config) -> Any:
    """One botocore session for both AWS sources of a config: each session walks botocore's
    endpoint data (1.2 MB of JSON) and caches credentials, so two would do both twice. botocore's
    own session, not boto3's: boto3 adds ~3 MiB of imports (s3transfer, resources) and nothing a
    client needs."""
    with _SESSION_LOCK:
        entry = _SESSIONS.get(id(config))
        if entry is None:
            session = _lean_session_class()()
            _lean_loader(session)
            entry = (config, session)
            _SESSIONS[id(config)] = entry
        return entry[1]


#: The services whose events a session's handlers listen to, as botocore names them in events
#: (the hyphenated service id: ``before-call.secrets-manager.GetSecretValue``): the clients the
#: sources build, and those credential providers build (STS for IRSA and role profiles; SSO and
#: SSO OIDC for IAM Identity Center; Sign-In for login profiles).
HANDLER_SERVICES = frozenset({"secrets-manager", "ssm", "sts", "sso", "sso-oidc", "signin"})


def concerns_our_clients(event_name: str) -> bool:
    """Whether a handler registered for ``event_name`` can run for a client of ``HANDLER_SERVICES``:
    an event of no service (``creating-client-class``), of every service (``before-call.*``) or of
    one of them. botocore names a client's events ``KIND.SERVICE_ID.OPERATION`` and calls a
    handler whose name is a prefix of it, so a handler of another service never runs here. The
    ``docs.…`` events are raised only while botocore writes documentation, never by a client."""
    parts = event_name.split(".", 2)
    if parts[0] == "docs":
        return False
    return len(parts) < 2 or parts[1] in HANDLER_SERVICES or parts[1] == "*"


@functools.cache
def _lean_session_class() -> type:
    """botocore's ``Session`` with only the built-in handlers ``concerns_our_clients``.

    A session registers botocore's 127 built-in handlers, most for S3, EC2, Glacier or RDS, and
    each client copies the session's handler tree: two clients and the session held about 0.2 MiB
    of handlers no call of ours reaches, and registering and copying them was 3–4 ms of each AWS
    start (bench/README.md). A test compares, for every event our clients raise, the handlers
    this session calls with those a plain session calls.
    """
    import botocore.session
    from botocore import handlers

    class LeanSession(botocore.session.Session):  # type: ignore[misc]  # botocore is untyped
        def _register_builtin_handlers(self, events: Any) -> None:
            # botocore's own loop over BUILTIN_HANDLERS, skipping other services' handlers.
            for spec in handlers.BUILTIN_HANDLERS:
                event_name, handler = spec[0], spec[1]
                if not concerns_our_clients(event_name):
                    continue
                register_type = spec[2] if len(spec) > 2 else None
                if register_type is handlers.REGISTER_FIRST:
                    events.register_first(event_name, handler)
                elif register_type is handlers.REGISTER_LAST:
                    events.register_last(event_name, handler)
                else:
                    self.register(event_name, handler)

    return LeanSession


def build_client(service: str, config: Config, calls: type) -> tuple[object, Callable[[], str]]:
    """Builds a botocore client for ``service`` from ``config.aws`` and ``config.limits``.

    ``calls`` is the Protocol of the client methods the source calls: the client has those
    operations only (``_lean_loader``), so the service's model costs no memory for the others.

    Credentials come from boto3's default chain, so IRSA and EKS Pod Identity work unchanged; the
    retry mode is "adaptive": standard's retries (exponential backoff with jitter, throttles and
    5xx retried) plus, once AWS has throttled, a client-side token bucket that slows this client's
    calls down (one client per service, so a throttled SSM slows SSM only). Chosen by measurement
    (bench/README.md, "Fleet"). Throttled answers are counted: ``throttles(client)``.

    Returns:
        The client, and a function naming the credential source for error messages.

    Raises:
        ConfigError: no region in ``aws.region``, ``AWS_REGION`` or the AWS config.
    """
    import botocore.config
    import botocore.exceptions

    from injector import __version__

    pin_loggers()
    aws = config.aws
    session = _shared_session(config)
    client_config = botocore.config.Config(
        retries={"mode": "adaptive", "total_max_attempts": aws.max_attempts},
        connect_timeout=aws.timeout,
        read_timeout=aws.timeout,
        max_pool_connections=max(10, config.limits.max_concurrency),
        user_agent_extra=f"injector/{__version__}",
    )
    try:
        # botocore sessions are not thread-safe, and the two AWS sources are built in two threads.
        with _SESSION_LOCK:
            session.get_component("data_loader").file_loader.keep_calls(service, client_methods(calls))
            client = session.create_client(
                service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=client_config
            )
    except botocore.exceptions.NoRegionError:
        raise ConfigError(
            "aws.region: no AWS region configured; set aws.region in the config or AWS_REGION in the environment"
        ) from None
    _share_tls(client)
    _THROTTLE_COUNTS[client] = counts = _ThrottleCounts()
    client.meta.events.register("needs-retry", counts.on_response)
    logger.debug(
        "built %s client (region %s, endpoint %s, %d attempts)",
        service,
        client.meta.region_name,
        aws.endpoint_url or "AWS default",
        aws.max_attempts,
    )
    return client, lambda: describe_credentials(session)


def _share_tls(client: Any) -> None:
    """Gives the client's connections the process's TLS context for its CA bundle (``_tls``).

    botocore gives each client an ``ssl.SSLContext`` of its own and loads the CA bundle into it
    again at each new connection (16 ms of CPU for certifi's). The client's HTTP session becomes a
    ``_SharedTLSSession``: its pools use the shared context, and a new connection loads nothing. A
    client of an http endpoint, one that skips verification or presents a client certificate, or
    a botocore whose HTTP session is not the one this was written for, is left as it is.
    """
    from botocore.httpsession import URLLib3Session, get_cert_path

    from injector.sources._tls import SHARED_TLS

    http: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if type(http) is not URLLib3Session or not hasattr(http, "_manager"):
        return
    if not str(client.meta.endpoint_url).startswith("https://"):
        return  # nothing to verify (and no bundle to load) against an http endpoint
    verify, cert = getattr(http, "_verify", False), getattr(http, "_cert_file", None)
    context = SHARED_TLS.context(get_cert_path(verify), None) if verify is not False and not cert else None
    pools = getattr(http._manager, "connection_pool_kw", None)
    if context is None or not isinstance(pools, dict) or http._manager.pools:
        return
    http.__class__ = _shared_tls_session()
    http.shared_context = context
    pools["ssl_context"] = context


@functools.cache
def _shared_tls_session() -> type:
    from botocore.httpsession import URLLib3Session

    class _SharedTLSSession(URLLib3Session):  # type: ignore[misc]  # botocore has no type hints
        """botocore's HTTP session, its pools verifying with ``shared_context`` (``_share_tls``)."""

        shared_context: Any

        def _get_ssl_context(self) -> Any:  # a proxy's pools, made later
            return self.shared_context

        def _setup_ssl_cert(self, conn: Any, url: str, verify: Any) -> None:
            super()._setup_ssl_cert(conn, url, verify)
            if conn.conn_kw.get("ssl_context") is self.shared_context:
                conn.ca_certs = None  # already in the shared context

    return _SharedTLSSession


def client_methods(protocol: type) -> list[str]:
    """The client methods a source's Protocol names (``get_parameters`` …): the operations it calls."""
    return [name for name in vars(protocol) if not name.startswith("_")]


def count_calls(client: Any) -> CallCounter:
    """Counts every HTTP request ``client`` sends (each attempt of a retried call) by API name."""
    calls = CallCounter()

    def sent(event_name: str, **kwargs: object) -> None:
        # A handler of before-send that returned a response would replace the request: never.
        calls.add("fetch", event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-send.*", sent)
    return calls


#: The services whose endpoint data a session keeps: ours, and those credential providers call
#: (IRSA and role profiles: STS; IAM Identity Center: SSO). Any other service would still resolve,
#: through its partition's default endpoint pattern.
ENDPOINT_SERVICES = frozenset({"secretsmanager", "ssm", "sts", "sso", "sso-oidc"})


def _lean_loader(session: Any) -> None:
    """Gives ``session`` the data loader of ``_botodata``: it keeps the endpoint data of
    ``ENDPOINT_SERVICES`` only, and of a service built by ``build_client`` only the operations its
    source calls. Search paths (``AWS_DATA_PATH``) are botocore's own."""
    from injector.sources._botodata import lean_loader

    data_path = session.get_config_variable("data_path")
    paths = [] if not data_path else [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    session.register_component("data_loader", lean_loader(paths, ENDPOINT_SERVICES))


def pin_loggers() -> None:
    """Keeps botocore, boto3 and urllib3 at WARNING or above whatever the root level says."""
    for name in _LEAKY_LOGGERS:
        log = logging.getLogger(name)
        if log.level < logging.WARNING:
            log.setLevel(logging.WARNING)


def describe_credentials(session: object) -> str:
    """Returns where ``session`` found its credentials, e.g. ``env (AWS_ACCESS_KEY_ID … )``."""
    import botocore.exceptions

    get_credentials = getattr(session, "get_credentials", None)
    try:
        credentials = get_credentials() if callable(get_credentials) else None
    except botocore.exceptions.BotoCoreError as exc:
        return f"nowhere: resolving them failed ({type(exc).__name__})"
    if credentials is None:
        return f"nowhere: boto3 found no credentials (searched {_CHAIN})"
    method = str(getattr(credentials, "method", None) or "unknown")
    return f"{method} ({_CREDENTIAL_SOURCES.get(method, 'see the boto3 credential chain')})"


def as_records(value: object) -> list[Mapping[str, object]]:
    """Returns the dicts in a response list (``SecretValues``, ``Parameters`` …), skipping anything else."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


# --- concurrency ---------------------------------------------------------------------------------


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Splits ``items`` into consecutive slices of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_concurrently(tasks: Sequence[Callable[[], T]], max_workers: int) -> list[T]:
    """Runs ``tasks`` on at most ``max_workers`` threads; results come back in task order.

    boto3 clients (not sessions) are thread-safe, so the tasks share one client.
    """
    if len(tasks) <= 1 or max_workers <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(tasks)), thread_name_prefix="injector-aws") as pool:
        futures = [pool.submit(task) for task in tasks]
        return [future.result() for future in futures]


# --- the sources' common part ------------------------------------------------------------------


class _Client(Protocol):
    def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Client)


class AwsSource(SourceDefaults, Generic[ClientT]):
    """What the Secrets Manager and SSM sources share: their client, its size and depth limits, the
    context its errors are named with, the count of requests it sends, a lock for what their fetch
    threads change, and closing the client."""

    #: The service as error messages name it: "Secrets Manager", "SSM Parameter Store".
    service: ClassVar[str]

    def __init__(
        self,
        *,
        client: ClientT,
        max_concurrency: int = 16,
        max_secret_bytes: int = 1024 * 1024,
        max_depth: int = 64,
        credentials: Callable[[], str] | None = None,
    ) -> None:
        """Wraps ``client``; ``credentials`` names the credential source in AuthError messages."""
        self.client = client
        self._max_concurrency = max_concurrency
        self._max_bytes = max_secret_bytes
        self._limits = ValueLimits(max_bytes=max_secret_bytes, max_depth=max_depth)
        self._ctx = AwsContext.of(self.service, client, credentials)
        self.calls = count_calls(client)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Closes the client's connection pool."""
        self.client.close()

    def throttles(self) -> dict[str, int]:
        return throttles(self.client)


# --- errors --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsContext:
    """What an error message needs to know about the client that failed."""

    #: "Secrets Manager", "SSM Parameter Store".
    service: str
    region: str | None = None
    endpoint: str | None = None
    #: Names the credential source; called only when credentials were refused.
    credentials: Callable[[], str] | None = None

    @classmethod
    def of(cls, service: str, client: object, credentials: Callable[[], str] | None) -> AwsContext:
        """Reads region and endpoint from a boto3 client's ``meta``."""
        meta = getattr(client, "meta", None)
        region = getattr(meta, "region_name", None)
        endpoint = getattr(meta, "endpoint_url", None)
        return cls(
            service=service,
            region=str(region) if region else None,
            endpoint=str(endpoint) if endpoint else None,
            credentials=credentials,
        )

    @contextmanager
    def errors(self, label: str = "") -> Iterator[None]:
        """Maps any botocore exception raised inside onto a ``SourceError`` prefixed ``label: ``."""
        import botocore.exceptions

        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise map_aws_error(exc, self, label) from exc
        except RecursionError:
            # botocore parses the answer's JSON itself: a hostile endpoint's deep nesting ends here.
            prefix = f"{label}: " if label else ""
            raise SourceError(f"{prefix}{self.service}'s answer nests too deeply to parse") from None

    def credential_source(self) -> str:
        if self.credentials is None:
            return "an unknown source (the client was built outside injector)"
        return self.credentials()


def map_aws_error(exc: Exception, ctx: AwsContext, label: str = "") -> SourceError:
    """Returns the ``SourceError`` for a botocore exception (the caller raises it ``from exc``)."""
    import botocore.exceptions as bce

    if isinstance(exc, bce.ClientError):
        code, message, status, attempts = _client_error_fields(exc)
        return map_error_code(code, message, ctx, label=label, status=status, attempts=attempts)
    prefix = f"{label}: " if label else ""
    where = ctx.endpoint or f"the {ctx.region or 'default'} regional endpoint"
    if isinstance(exc, bce.ConnectionError | bce.HTTPClientError):
        return UnavailableError(
            f"{prefix}cannot reach {ctx.service} at {where} ({type(exc).__name__}: {_clean(str(exc))}); "
            "check the network path (NetworkPolicy, proxy, VPC endpoint) and aws.endpoint_url; will retry",
            ref=label or None,
        )
    if isinstance(
        exc,
        bce.NoCredentialsError | bce.PartialCredentialsError | bce.CredentialRetrievalError | bce.TokenRetrievalError,
    ):
        return AuthError(
            f"{prefix}no usable AWS credentials ({type(exc).__name__}: {_clean(str(exc))}); boto3 searched "
            f"{_CHAIN}. Give the pod a role: IRSA (service account annotation eks.amazonaws.com/role-arn) or an "
            "EKS Pod Identity association",
            ref=label or None,
        )
    return SourceError(
        f"{prefix}{ctx.service} request failed: {type(exc).__name__}: {_clean(str(exc))}", ref=label or None
    )


def map_error_code(
    code: str,
    message: str,
    ctx: AwsContext,
    *,
    label: str = "",
    status: int | None = None,
    attempts: int = 0,
) -> SourceError:
    """Returns the ``SourceError`` for an AWS error code (a ClientError, or an entry of a batch ``Errors`` list)."""
    prefix = f"{label}: " if label else ""
    ref = label or None
    aws_says = f"{code}: {message}" if message else code
    region = ctx.region or "the default region"
    if code in _NOT_FOUND or (status == 404 and code not in _DENIED):
        return NotFoundError(
            f"{prefix}not found in {ctx.service} in {region} ({aws_says}); check the name or ARN and aws.region",
            ref=ref,
        )
    if code in _EXPIRED or code in _REJECTED or status == 401:
        advice = (
            "they expired: static keys must be replaced, while IRSA and EKS Pod Identity credentials are "
            "refreshed by boto3 (check the service account's role annotation or pod identity association)"
            if code in _EXPIRED
            else "check the access key pair, that it belongs to this partition/region, and the system clock"
        )
        return AuthError(
            f"{prefix}{ctx.service} refused the credentials ({aws_says}); boto3 got them from "
            f"{ctx.credential_source()}; {advice}",
            ref=ref,
        )
    if code in _DENIED or code.startswith("KMS") or status == 403:
        return AccessDeniedError(
            f"{prefix}access denied by {ctx.service} ({aws_says}); the role needs "
            f"{_permission_hint(ctx.service)} on this resource (and kms:Decrypt on its KMS key if it uses a "
            "customer-managed key)",
            ref=ref,
        )
    if code in _UNAVAILABLE or status == 429 or (status is not None and status >= 500):
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        return UnavailableError(f"{prefix}{ctx.service} is unavailable{tries} ({aws_says}); will retry", ref=ref)
    return SourceError(f"{prefix}{ctx.service} refused the request ({aws_says})", ref=ref)


def relabel(exc: SourceError, ref: Reference) -> SourceError:
    """Returns a copy of an unlabelled error (one failed batch call) naming ``ref``, for each ref of the batch."""
    copy = type(exc)(f"{ref}: {exc.args[0] if exc.args else exc}", ref=str(ref))
    copy.__cause__ = exc.__cause__
    return copy


def _permission_hint(service: str) -> str:
    if service.startswith("SSM"):
        return "ssm:GetParameters / ssm:GetParametersByPath"
    return "secretsmanager:GetSecretValue (and secretsmanager:BatchGetSecretValue to batch)"


def _client_error_fields(exc: Exception) -> tuple[str, str, int | None, int]:
    """Returns (code, message, HTTP status, attempts) of a ClientError.

    botocore's JSON parser leaves an XML error body (moto and LocalStack auth errors, some proxies)
    in ``Message`` with the HTTP status as ``Code``; the real code is read out of it.
    """
    response = getattr(exc, "response", None)
    response = response if isinstance(response, dict) else {}
    error = response.get("Error")
    error = error if isinstance(error, dict) else {}
    meta = response.get("ResponseMetadata")
    meta = meta if isinstance(meta, dict) else {}
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")
    if (not code or code.isdigit()) and "<Code>" in message:
        found = _XML_CODE.search(message)
        text = _XML_MESSAGE.search(message)
        code = found.group(1) if found else code
        message = text.group(1) if text else ""
    status = meta.get("HTTPStatusCode")
    retries = meta.get("RetryAttempts")
    return (
        code or "UnknownError",
        _clean(message),
        status if isinstance(status, int) else None,
        (retries if isinstance(retries, int) else 0) + 1,
    )


def _clean(text: str, limit: int = 300) -> str:
    """One line, bounded: AWS messages go into our messages, never a page of XML or HTML."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- throttling ----------------------------------------------------------------------------------


class _ThrottleCounts:
    """Throttled answers per API operation of one client: every attempt, retried or final."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def on_response(self, response: Any = None, operation: Any = None, **_: Any) -> None:
        """botocore's ``needs-retry`` hook (one call per attempt); returns None so retrying is unchanged."""
        if not isinstance(response, tuple) or len(response) != 2:
            return  # a connection error: nothing was answered
        http, parsed = response
        error = parsed.get("Error") if isinstance(parsed, dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
        if code in _THROTTLED or getattr(http, "status_code", None) == 429:
            with self._lock:
                self.counts[str(getattr(operation, "name", "unknown"))] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


#: client → its counts; a client built outside ``build_client`` has none.
_THROTTLE_COUNTS: weakref.WeakKeyDictionary[object, _ThrottleCounts] = weakref.WeakKeyDictionary()


def throttles(client: object) -> dict[str, int]:
    """Throttled answers so far per API operation of a client from ``build_client``, e.g.
    ``{"GetParameters": 3}``: every throttled attempt counts, including those botocore then retried."""
    counts = _THROTTLE_COUNTS.get(client)
    return {} if counts is None else counts.snapshot()
