"""The TLS certificate auth method (``cert``): CA roles and login by the connection's client cert.

``certs/{name}`` holds a PEM CA (``certificate``), optional ``allowed_common_names`` globs and the
usual ``token_*`` fields. ``login`` takes no credentials in the body: it reads the client
certificate presented on the TLS connection, and succeeds for the named role (``name``) or the
first role (by name) whose CA directly issued the certificate, inside its validity on the server
clock, with an allowed common name. Writing a role also makes the TLS listener accept client
certificates from its CA (``DevVault.trust_client_ca``). Errors are Vault's: 400 ``tls connection
required`` over plain HTTP, ``client certificate must be supplied``, ``invalid certificate or no
client certificate supplied``. Not implemented: intermediate chains sent by the client, CRLs,
OCSP, the other ``allowed_*`` constraints and ``required_extensions``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from devvault.kubernetes import glob_match
from devvault.mounts import Mount, unsupported_op
from devvault.params import get_list, get_str
from devvault.role_auth import RoleAuthBackend
from devvault.tokens import TokenParams, auth_block
from devvault.wire import Reply, Request, VaultError, no_content, ok

__all__ = ["CertBackend"]

_INVALID = "invalid certificate or no client certificate supplied"


@dataclass(slots=True, kw_only=True)
class _Role:
    name: str
    certificate: str
    cas: list[x509.Certificate]
    display_name: str = ""
    allowed_common_names: list[str] = field(default_factory=list)
    token: TokenParams = field(default_factory=TokenParams)

    def data(self) -> dict[str, Any]:
        return {
            "allowed_common_names": self.allowed_common_names,
            "allowed_dns_sans": [],
            "allowed_email_sans": [],
            "allowed_metadata_extensions": [],
            "allowed_organizational_units": [],
            "allowed_uri_sans": [],
            "certificate": self.certificate,
            "display_name": self.display_name,
            "required_extensions": [],
            **self.token.data(),
        }

    def accepts(self, cert: x509.Certificate, now: float) -> bool:
        if not (cert.not_valid_before_utc.timestamp() <= now
                <= cert.not_valid_after_utc.timestamp()):
            return False
        if self.allowed_common_names and not glob_match(self.allowed_common_names,
                                                        _common_name(cert)):
            return False
        for ca in self.cas:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _hex(data: bytes | None) -> str:
    return ":".join(f"{byte:02x}" for byte in data or b"")


def _key_ids(cert: x509.Certificate) -> tuple[bytes | None, bytes | None]:
    subject = authority = None
    with contextlib.suppress(x509.ExtensionNotFound):
        subject = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    with contextlib.suppress(x509.ExtensionNotFound):
        authority = cert.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier
    return subject, authority


class CertBackend(RoleAuthBackend[dict[str, Any], _Role]):
    """One ``cert`` auth mount."""

    routes = [  # noqa: RUF012 - the class's fixed route table
        (r"login", "login"),
        (r"config", "config"),
        (r"certs", "roles"),
        (r"certs/(?P<name>[^/]+)", "role"),
    ]

    def _configure(self, req: Request) -> Reply:
        if req.op == "update":
            self._config = dict(req.data)
            return no_content()
        if req.op == "read":
            return ok(req, {"disable_binding": False, "enable_identity_alias_metadata": False,
                            "ocsp_cache_size": 100, **(self._config or {})})
        raise unsupported_op()

    def _write_role(self, req: Request, name: str, role: _Role | None) -> _Role:
        pem = get_str(req.data, "certificate") or (role.certificate if role else "")
        try:
            cas = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            cas = []
        if not cas:
            raise VaultError(400, "failed to parse certificate")
        written = _Role(
            name=name, certificate=pem, cas=cas,
            display_name=get_str(req.data, "display_name", role.display_name if role else ""),
            allowed_common_names=get_list(req.data, "allowed_common_names",
                                          role.allowed_common_names if role else []),
            token=TokenParams.parse(req.data, role.token if role else None),
        )
        if self._core.on_client_ca is not None:
            for ca in cas:
                self._core.on_client_ca(ca.public_bytes(Encoding.PEM).decode())
        return written

    def _login(self, req: Request, mount: Mount) -> Reply:
        if not req.tls:
            raise VaultError(400, "tls connection required")
        if req.client_cert is None:
            raise VaultError(400, "client certificate must be supplied")
        cert = x509.load_der_x509_certificate(req.client_cert)
        wanted = get_str(req.data, "name").lower()
        candidates = [self._roles[wanted]] if wanted in self._roles else [] if wanted else [
            self._roles[name] for name in sorted(self._roles)]
        now = self._core.clock.now()
        role = next((r for r in candidates if r.accepts(cert, now)), None)
        if role is None:
            raise VaultError(400, _INVALID)
        subject_id, authority_id = _key_ids(cert)
        token = self._core.tokens.issue_login(
            role.token, mount, display_name=role.display_name or role.name,
            meta={"authority_key_id": _hex(authority_id), "cert_name": role.name,
                  "common_name": _common_name(cert), "serial_number": str(cert.serial_number),
                  "subject_key_id": _hex(subject_id)})
        return ok(req, None, auth=auth_block(token))

