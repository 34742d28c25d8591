"""The AWS auth method, IAM type only: ``config/client``, ``role/{name}``, ``roles``, ``login``.

A login carries a signed ``sts:GetCallerIdentity`` request (method, base64 URL, body and JSON
headers, as ``vault login -method=aws`` and hvac's ``iam_login`` build it). The server checks
``X-Vault-AWS-IAM-Server-ID`` (present, equal and signed) when ``iam_server_id_header_value`` is
configured, forwards the request unchanged (``Host`` included) to ``sts_endpoint`` (default
``https://sts.amazonaws.com``; a moto server on loopback in tests), and matches the caller's
canonical ARN against the role's ``bound_iam_principal_arn`` (exact, or ``*`` globs). As in Vault,
``arn:aws:sts::ACCT:assumed-role/NAME/SESSION`` is canonically ``arn:aws:iam::ACCT:role/NAME``
and a missing ``role`` defaults to the principal's friendly name. Not implemented: the ec2 type,
``resolve_aws_unique_ids`` lookups (the ARN is compared as is), STS roles across accounts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devvault.kubernetes import glob_match
from devvault.mounts import Mount, unsupported_op
from devvault.params import get_bool, get_list, get_str
from devvault.role_auth import RoleAuthBackend
from devvault.tokens import TokenParams, auth_block
from devvault.wire import Reply, Request, VaultError, new_uuid, no_content, ok

__all__ = ["AWSBackend", "canonical_arn"]

SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"
_CONFIG_FIELDS = ("access_key", "endpoint", "iam_endpoint", "sts_endpoint", "sts_region",
                  "iam_server_id_header_value")
_ARN = re.compile(r"arn:(?P<partition>[^:]+):(?P<service>iam|sts)::(?P<account>\d*):"
                  r"(?P<type>[^/]+)/(?P<rest>.+)")


@dataclass(slots=True, kw_only=True)
class _Role:
    role_id: str = field(default_factory=new_uuid)
    auth_type: str = "iam"
    bound_iam_principal_arn: list[str] = field(default_factory=list)
    resolve_aws_unique_ids: bool = True
    token: TokenParams = field(default_factory=TokenParams)

    def data(self) -> dict[str, Any]:
        return {
            "allow_instance_migration": False,
            "auth_type": self.auth_type,
            "bound_account_id": [],
            "bound_ami_id": [],
            "bound_ec2_instance_id": None,
            "bound_iam_instance_profile_arn": [],
            "bound_iam_principal_arn": self.bound_iam_principal_arn,
            "bound_iam_principal_id": [],
            "bound_iam_role_arn": [],
            "bound_region": [],
            "bound_subnet_id": [],
            "bound_vpc_id": [],
            "disallow_reauthentication": False,
            "inferred_aws_region": "",
            "inferred_entity_type": "",
            "resolve_aws_unique_ids": self.resolve_aws_unique_ids,
            "role_id": self.role_id,
            "role_tag": "",
            **self.token.data(),
        }


def canonical_arn(arn: str) -> tuple[str, str, str]:
    """Returns (canonical ARN, friendly name, account) of an IAM or STS principal ARN."""
    match = _ARN.fullmatch(arn)
    if match is None:
        raise VaultError(400, f"unable to parse entity's ARN {arn!r}")
    kind, parts = match["type"], match["rest"].split("/")
    if kind == "assumed-role":
        kind, name = "role", parts[0]
    elif kind in ("user", "role", "federated-user"):
        name = parts[-1]
    else:
        raise VaultError(400, f"unrecognized principal type: {kind!r}")
    return f"arn:{match['partition']}:iam::{match['account']}:{kind}/{name}", name, match[
        "account"]


def _b64(data: dict[str, Any], name: str) -> str:
    try:
        return base64.b64decode(get_str(data, name), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise VaultError(400, f"failed to base64 decode {name}") from exc


def _headers(data: dict[str, Any]) -> dict[str, str]:
    text = _b64(data, "iam_request_headers")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise VaultError(400, "error parsing iam_request_headers") from exc
    if not isinstance(raw, dict):
        raise VaultError(400, "error parsing iam_request_headers")
    return {str(k): ",".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in raw.items()}


def _check_server_id(headers: dict[str, str], required: str) -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    provided = lower.get(SERVER_ID_HEADER.lower(), "")
    problem = ""
    if not provided:
        problem = f'missing header "{SERVER_ID_HEADER}"'
    elif provided != required:
        problem = f'expected "{required}" but got "{provided}"'
    else:
        signed = re.search(r"SignedHeaders=([^,\s]+)", lower.get("authorization", ""))
        if signed is None or SERVER_ID_HEADER.lower() not in signed.group(1).split(";"):
            problem = "vault header wasn't signed"
    if problem:
        raise VaultError(400, f"error validating {SERVER_ID_HEADER} header: {problem}")


def _caller_identity(endpoint: str, method: str, url: str, body: str,
                     headers: dict[str, str]) -> tuple[str, str, str]:
    """Sends the signed request to ``endpoint``; returns (Arn, UserId, Account)."""
    import urllib.error
    import urllib.request
    from xml.etree import ElementTree

    parsed = urlsplit(url)
    target = endpoint.rstrip("/") + (parsed.path or "/") + (f"?{parsed.query}"
                                                           if parsed.query else "")
    if not target.startswith(("http://", "https://")):
        raise VaultError(400, f"error making upstream request: invalid sts_endpoint {endpoint!r}")
    request = urllib.request.Request(target, data=body.encode() if body else None,  # noqa: S310
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise VaultError(400, f"error making upstream request: received error code "
                              f"{exc.code} from STS: {detail}") from exc
    except OSError as exc:
        raise VaultError(400, f"error making upstream request: {exc}") from exc
    try:
        root = ElementTree.fromstring(payload)  # noqa: S314 - the configured STS endpoint's reply
    except ElementTree.ParseError as exc:
        raise VaultError(400, "error parsing STS response") from exc
    found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    if not found.get("Arn"):
        raise VaultError(400, "error parsing STS response: no Arn")
    return found["Arn"], found.get("UserId", ""), found.get("Account", "")


class AWSBackend(RoleAuthBackend[dict[str, str], _Role]):
    """One ``aws`` auth mount (IAM logins)."""

    routes = [  # noqa: RUF012 - the class's fixed route table
        (r"login", "login"),
        (r"config/client", "config"),
        (r"roles?", "roles"),
        (r"role/(?P<name>[^/]+)", "role"),
    ]

    def _configure(self, req: Request) -> Reply:
        if req.op == "update":
            config = dict(self._config or {})
            for name in (*_CONFIG_FIELDS, "secret_key"):
                if req.data.get(name) is not None:
                    config[name] = get_str(req.data, name)
            self._config = config
            return no_content()
        if req.op == "read":
            if self._config is None:
                raise VaultError(404)
            return ok(req, {name: self._config.get(name, "") for name in _CONFIG_FIELDS})
        if req.op == "delete":
            self._config = None
            return no_content()
        raise unsupported_op()

    def _write_role(self, req: Request, name: str, old: _Role | None) -> _Role:
        role = replace(old) if old is not None else _Role()  # a refused write leaves the stored role alone
        role.auth_type = get_str(req.data, "auth_type", role.auth_type) or "iam"
        if role.auth_type != "iam":
            raise VaultError(400, f"dev server: auth_type {role.auth_type!r} is not supported "
                                  "(only iam)")
        role.bound_iam_principal_arn = get_list(req.data, "bound_iam_principal_arn",
                                                role.bound_iam_principal_arn)
        role.resolve_aws_unique_ids = get_bool(req.data, "resolve_aws_unique_ids",
                                               role.resolve_aws_unique_ids)
        role.token = TokenParams.parse(req.data, role.token)
        return role

    def _login(self, req: Request, mount: Mount) -> Reply:
        data, config = req.data, self._config or {}
        method = get_str(data, "iam_http_request_method")
        if not method:
            raise VaultError(400, "dev server: only iam logins are supported "
                                  "(missing iam_http_request_method)")
        if not get_str(data, "iam_request_url"):
            raise VaultError(400, "missing iam_request_url")
        url, body, headers = _b64(data, "iam_request_url"), _b64(
            data, "iam_request_body"), _headers(data)
        if method == "POST" and parse_qs(body).get("Action") != ["GetCallerIdentity"]:
            raise VaultError(400, "iam_request_body must have 'Action=GetCallerIdentity'")
        if config.get("iam_server_id_header_value"):
            _check_server_id(headers, config["iam_server_id_header_value"])
        endpoint = config.get("sts_endpoint") or "https://sts.amazonaws.com"
        arn, user_id, _ = _caller_identity(endpoint, method, url, body, headers)
        canonical, friendly, account = canonical_arn(arn)
        role_name = get_str(data, "role").lower() or friendly.lower()
        role = self._roles.get(role_name)
        if role is None:
            raise VaultError(400, f"entry for role {role_name} not found")
        if not glob_match(role.bound_iam_principal_arn, canonical):
            raise VaultError(400, f'IAM Principal "{arn}" does not belong to the role '
                                  f'"{role_name}"')
        token = self._core.tokens.issue_login(
            role.token, mount, display_name=friendly,
            meta={"account_id": account, "auth_type": "iam", "canonical_arn": canonical,
                  "client_arn": arn, "client_user_id": user_id, "inferred_aws_region": "",
                  "inferred_entity_id": "", "inferred_entity_type": "",
                  "role_id": role.role_id})
        return ok(req, None, auth=auth_block(token))
