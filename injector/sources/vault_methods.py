"""The requests behind the newer auth methods: wrapped AppRole secret IDs, ``cert``, ``aws`` (iam).

``VaultAuthenticator`` (``vault_auth.py``) owns the token lifecycle; these functions make one login
(or unwrap) request each with the authenticator's hvac client and return Vault's answer. hvac
exceptions pass through to the authenticator, which maps them; what only these methods can get
wrong is an ``AuthError`` here. No token, secret ID or signature is logged or put in a message.

- Wrapped secret ID (Vault Agent's ``secret_id_response_wrapping_path``): ``sys/wrapping/lookup``
  first (it does not consume the token) to check the creation path, so a wrapping token minted
  for something else is never unwrapped; then ``sys/wrapping/unwrap`` with the wrapping token as
  ``X-Vault-Token`` (never also in the body, which would consume it twice).
- ``cert``: the TLS client certificate is the credential; the connection pool is emptied first so
  the login's handshake reads the key pair from disk again (rotation).
- ``aws`` (iam): an ``sts:GetCallerIdentity`` request signed with botocore's SigV4 signer and the
  pod's credentials (boto3's default chain: IRSA, env, instance profile), sent for Vault to forward.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac.exceptions

from injector.errors import AuthError

if TYPE_CHECKING:
    from injector.sources.vault_client import VaultClient

__all__ = ["STS_BODY", "aws_iam_login", "cert_login", "unwrap_secret_id"]

STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"


def _post(client: VaultClient, path: str, body: Mapping[str, Any]) -> Any:
    return client.adapter.post(f"/v1/{path}", json=dict(body))


def unwrap_secret_id(client: VaultClient, wrapping_token: str, *, expected_path: str, where: str, file: Path) -> str:
    """Checks where ``wrapping_token`` was created, unwraps it once and returns the secret ID.

    Raises:
        AuthError: the token was used, expired or never existed, was created at another path, or
            wrapped no ``secret_id``.
        hvac.exceptions.VaultError: anything else Vault answered (the caller maps it).
    """
    try:
        looked = _post(client, "sys/wrapping/lookup", {"token": wrapping_token})
    except hvac.exceptions.InvalidRequest as exc:
        raise AuthError(
            f"{where}: the wrapping token in {file} was already used, has expired or never existed; a wrapped "
            "secret_id is good for one unwrap: deliver a new one (and check who else could read the file)"
        ) from exc
    data = looked.get("data") if isinstance(looked, Mapping) else None
    created_at = str(data.get("creation_path") or "") if isinstance(data, Mapping) else ""
    if created_at.strip("/") != expected_path.strip("/"):
        raise AuthError(
            f"{where}: the wrapping token in {file} was created at {created_at or 'an unknown path'}, not "
            f"{expected_path} (secret_id_response_wrapping_path); refusing to unwrap it"
        )
    saved = client.adapter.token
    client.adapter.token = wrapping_token
    try:
        unwrapped = client.adapter.post("/v1/sys/wrapping/unwrap")
    except hvac.exceptions.InvalidRequest as exc:
        raise AuthError(
            f"{where}: the wrapping token in {file} was used by someone else between its lookup and its unwrap; "
            "deliver a new wrapped secret_id and find out who read it"
        ) from exc
    finally:
        client.adapter.token = saved
    inner = unwrapped.get("data") if isinstance(unwrapped, Mapping) else None
    secret_id = inner.get("secret_id") if isinstance(inner, Mapping) else None
    if not isinstance(secret_id, str) or not secret_id:
        raise AuthError(f"{where}: the wrapping token in {file} held no secret_id")
    return secret_id


def cert_login(client: VaultClient, *, mount: str, name: str | None) -> Any:
    """Logs in with the TLS client certificate (``vault.client_cert`` / ``client_key``)."""
    # A pooled connection keeps the key pair of its handshake; a new one reads the files again.
    client.adapter.session.close()
    return _post(client, f"auth/{mount}/login", {"name": name} if name else {})


def aws_iam_login(
    client: VaultClient,
    *,
    mount: str,
    role: str | None,
    header_value: str | None,
    region: str | None,
    sts_endpoint: str | None,
    where: str,
) -> Any:
    """Logs in with a signed ``sts:GetCallerIdentity`` built from the pod's AWS credentials.

    Raises:
        AuthError: no AWS credentials could be found.
    """
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    signing_region = region or "us-east-1"
    url = sts_endpoint or (f"https://sts.{region}.amazonaws.com/" if region else "https://sts.amazonaws.com/")
    credentials = botocore.session.get_session().get_credentials()  # the default chain, as boto3's
    if credentials is None:
        raise AuthError(
            f"{where}: no AWS credentials found (IRSA's AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ACCESS_KEY_ID, an "
            "instance profile …); the aws method signs sts:GetCallerIdentity with them"
        )
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if header_value:
        headers["X-Vault-AWS-IAM-Server-ID"] = header_value
    request = AWSRequest(method="POST", url=url, data=STS_BODY, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "sts", signing_region).add_auth(request)
    signed = {name: [str(value)] for name, value in request.headers.items()}
    body = {
        "iam_http_request_method": "POST",
        "iam_request_url": base64.b64encode(url.encode()).decode(),
        "iam_request_body": base64.b64encode(STS_BODY.encode()).decode(),
        "iam_request_headers": base64.b64encode(json.dumps(signed).encode()).decode(),
    }
    if role:
        body["role"] = role
    return _post(client, f"auth/{mount}/login", body)
