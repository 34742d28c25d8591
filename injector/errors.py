"""The whole error hierarchy of injector, with one exit code per class.

Only ``injector.commands`` turns these into exit codes. Every other module raises them, and maps
third-party exceptions (hvac, botocore, OSError, jinja2) onto them once, at its own boundary, with
``raise ... from exc``. Exit codes start at 10, clear of click's 1 (abort) and 2 (usage), so that
an init container's exit code in ``kubectl describe pod`` says what kind of thing failed.

No message may contain a secret value: messages name references, paths, keys and field paths.

```
InjectorError                  10
├── ConfigError                11  bad config file, flag, env var or reference (field path first)
├── SourceError                12  a backend refused or failed (names the reference)
│   ├── NotFoundError          13  the path, key, version or parameter does not exist
│   ├── AccessDeniedError      14  the credentials are valid but not allowed (403, AccessDenied, KMS)
│   ├── UnavailableError       15  retryable: connection, timeout, 429, 5xx, sealed
│   └── AuthError              19  could not log in or the credentials expired
├── RenderError                16  a template failed (names the template; message redacted)
├── OutputError                17  the output or state directory could not be written
└── NotifyError                18  a reload notification failed
```
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AuthError",
    "ConfigError",
    "InjectorError",
    "NotFoundError",
    "NotifyError",
    "OutputError",
    "RenderError",
    "SourceError",
    "UnavailableError",
]


class InjectorError(Exception):
    """Base class: anything injector reports to its user."""

    exit_code: int = 10
    #: True when trying again later may succeed (network, throttling, a sealed Vault).
    retryable: bool = False


class ConfigError(InjectorError):
    """The configuration, a flag, an environment variable or a reference is invalid."""

    exit_code = 11


class SourceError(InjectorError):
    """A backend refused a request or answered with something unusable.

    ``ref`` is the log-safe text of the reference involved (never a value).
    """

    exit_code = 12

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


class NotFoundError(SourceError):
    """The secret, key, version or parameter does not exist."""

    exit_code = 13


class AccessDeniedError(SourceError):
    """The credentials were accepted but are not allowed to read this secret."""

    exit_code = 14


class UnavailableError(SourceError):
    """The backend could not be reached or is overloaded; retry with backoff."""

    exit_code = 15
    retryable = True


class AuthError(SourceError):
    """Logging in to the backend failed, or the credentials expired."""

    exit_code = 19


class RenderError(InjectorError):
    """A template failed to parse or render. The message is already redacted."""

    exit_code = 16


class OutputError(InjectorError):
    """Files could not be published to the output directory (or state written)."""

    exit_code = 17


class NotifyError(InjectorError):
    """A reload notification (signal, HTTP, command) failed."""

    exit_code = 18
