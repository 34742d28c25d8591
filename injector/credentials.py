"""The names of the injector's own credential and setting variables, in one place.

A leaf module (it imports nothing of injector): the template functions (``env()``), the ``env:``
source and the environment of an ``exec`` child all read these lists, so that a name added here is
refused to templates and kept from children at once.
"""

from __future__ import annotations

import fnmatch

__all__ = ["AWS_CREDENTIAL_VARIABLES", "CONTROL_VARIABLES", "CREDENTIAL_VARIABLES", "is_credential"]

#: The injector's own Vault token and configuration: never readable by a template, never inherited
#: by an ``exec`` child (``fnmatch`` globs).
CONTROL_VARIABLES = ("VAULT_TOKEN", "INJECTOR_*")
#: Static AWS credentials: never readable by a template; an ``exec`` child inherits them only when
#: ``exec.env_allow`` names them exactly.
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)
#: Every variable a template may not read: the above, the Vault auth settings an operator may keep
#: in the environment, and where the AWS SDK finds a token (a template has no use for the path).
CREDENTIAL_VARIABLES = (
    *CONTROL_VARIABLES,
    *AWS_CREDENTIAL_VARIABLES,
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_UNWRAP_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


def is_credential(name: str) -> bool:
    """Whether ``name`` is one of the injector's own credential or setting variables."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in CREDENTIAL_VARIABLES)
