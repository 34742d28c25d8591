"""The PKI engine: one root CA per mount, roles, and ``issue/{role}`` returning real certificates.

Reference: vault-http-api.md §5.4. Roles default like Vault's (``key_type`` rsa 2048,
``allow_localhost`` and ``allow_ip_sans`` on, ``generate_lease`` off, so an issued certificate has
``lease_id: ""``). A role with ``generate_lease: true`` issues under a lease
``{mount}/issue/{role}/{id}`` (not renewable, ``lease_duration`` = the certificate's TTL) that
``sys/leases`` can look up and revoke. Generating a new root replaces the mount's CA. Times use
the server clock.

Every certificate issued (but a ``no_store`` role's) and the root are stored by serial, as Vault
stores them, for ``revoke`` (by ``serial_number`` or by ``certificate``) and ``LIST
certs/revoked``. ``revoke`` answers as Vault's ``pathRevokeWrite``/``revokeCert`` do: the time
(the first one again for a certificate already revoked), a warning and no data for one already
expired, and errors for an unknown serial, the issuer's own certificate, neither or both fields.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devvault.certs import CA, issue, make_ca, new_key, private_pem, serial_text
from devvault.mounts import Mount, route, unsupported_op
from devvault.params import get_bool, get_duration, get_int, get_list, get_str, go_duration, rfc3339
from devvault.wire import Reply, Request, VaultError, new_uuid, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["PKIBackend", "Role"]

_ROUTES = [
    (r"root/generate/(?P<kind>internal|exported)", "generate-root"),
    (r"root", "root"),
    (r"roles", "roles"),
    (r"roles/(?P<name>[^/]+)", "role"),
    (r"issue/(?P<name>[^/]+)", "issue"),
    (r"ca/pem", "ca-pem"),
    (r"ca_chain|cert/ca_chain", "ca-chain"),
    (r"ca", "ca-der"),
    (r"cert/ca", "cert-ca"),
    (r"config/urls", "config-urls"),
    (r"revoke", "revoke"),
    (r"certs/revoked/?", "revoked"),
]
_KEY_TYPES = ("rsa", "ec", "ed25519")


@dataclass(slots=True, kw_only=True)
class Role:
    allowed_domains: list[str] = field(default_factory=list)
    allow_subdomains: bool = False
    allow_bare_domains: bool = False
    allow_glob_domains: bool = False
    allow_any_name: bool = False
    allow_localhost: bool = True
    allow_ip_sans: bool = True
    require_cn: bool = True
    server_flag: bool = True
    client_flag: bool = True
    generate_lease: bool = False
    no_store: bool = False
    key_type: str = "rsa"
    key_bits: int = 0
    ttl: int = 0
    max_ttl: int = 0

    def update(self, data: dict[str, Any]) -> None:
        self.allowed_domains = get_list(data, "allowed_domains", self.allowed_domains)
        for name in ("allow_subdomains", "allow_bare_domains", "allow_glob_domains",
                     "allow_any_name", "allow_localhost", "allow_ip_sans", "require_cn",
                     "server_flag", "client_flag", "generate_lease", "no_store"):
            setattr(self, name, get_bool(data, name, getattr(self, name)))
        self.key_type = get_str(data, "key_type", self.key_type)
        self.key_bits = get_int(data, "key_bits", self.key_bits)
        self.ttl = get_duration(data, "ttl", self.ttl)
        self.max_ttl = get_duration(data, "max_ttl", self.max_ttl)
        if self.key_type not in (*_KEY_TYPES, "any"):
            raise VaultError(400, f"unknown key_type {self.key_type!r}")
        if self.max_ttl and self.ttl > self.max_ttl:
            raise VaultError(400, '"ttl" value must be less than "max_ttl" value')

    def data(self) -> dict[str, Any]:
        return {
            "allow_any_name": self.allow_any_name,
            "allow_bare_domains": self.allow_bare_domains,
            "allow_glob_domains": self.allow_glob_domains,
            "allow_ip_sans": self.allow_ip_sans,
            "allow_localhost": self.allow_localhost,
            "allow_subdomains": self.allow_subdomains,
            "allowed_domains": self.allowed_domains,
            "client_flag": self.client_flag,
            "generate_lease": self.generate_lease,
            "key_bits": self.key_bits or {"rsa": 2048, "ec": 256}.get(self.key_type, 0),
            "key_type": self.key_type,
            "max_ttl": self.max_ttl,
            "no_store": self.no_store,
            "require_cn": self.require_cn,
            "server_flag": self.server_flag,
            "ttl": self.ttl,
        }

    def allows(self, name: str) -> bool:
        """Vault's name checks: any name, localhost, bare domain, subdomain, glob."""
        if self.allow_any_name or (self.allow_localhost and name in ("localhost",
                                                                     "localdomain")):
            return True
        base = name[2:] if name.startswith("*.") else name
        for domain in self.allowed_domains:
            if self.allow_bare_domains and base == domain:
                return True
            if self.allow_subdomains and (base.endswith("." + domain) or (
                    base == domain and base != name)):
                return True
            if self.allow_glob_domains and "*" in domain and re.fullmatch(
                    ".*".join(re.escape(part) for part in domain.split("*")), name):
                return True
        return False


@dataclass(slots=True)
class _Stored:
    """A certificate kept by serial, and when it was revoked (server clock; None: not revoked)."""

    cert: x509.Certificate
    revoked_at: float | None = None


def _serial_key(serial: str) -> str:
    """Vault accepts a serial with colons or hyphens, in either case."""
    return serial.strip().lower().replace("-", ":")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class PKIBackend:
    """One PKI mount."""

    unauthenticated_paths = frozenset({"ca/pem", "ca", "ca_chain", "cert/ca", "cert/ca_chain"})

    def __init__(self, core: Core) -> None:
        self._core = core
        self.ca: CA | None = None
        self.issuer_id = ""
        self.roles: dict[str, Role] = {}
        self.stored: dict[str, _Stored] = {}

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, _ROUTES)
        if name == "roles" or (name == "role" and req.op == "list"):
            if req.op != "list" or not self.roles:
                raise VaultError(404) if req.op == "list" else unsupported_op()
            return ok(req, {"keys": sorted(self.roles)})
        if name == "role":
            return self._role(req, args["name"])
        if name == "generate-root" and req.op == "update":
            return self._generate_root(req, mount, exported=args["kind"] == "exported")
        if name == "root" and req.op == "delete":
            self.ca = None
            return no_content()
        if name == "issue" and req.op == "update":
            return self._issue(req, args["name"], mount)
        if name == "config-urls" and req.op == "update":
            return no_content()
        if name == "revoke" and req.op == "update":
            return self._revoke(req)
        if name == "revoked" and req.op == "list":
            keys = sorted(serial for serial, entry in self.stored.items() if entry.revoked_at is not None)
            if not keys:
                raise VaultError(404)
            return ok(req, {"keys": keys})
        if name in ("ca-pem", "ca-chain", "ca-der", "cert-ca") and req.op in ("read", "head"):
            return self._read_ca(req, name)
        raise unsupported_op()

    def generate_root(self, common_name: str, ttl: int, key_type: str = "ec",
                      key_bits: int = 0) -> CA:
        self.ca = make_ca(common_name, now=self._core.clock.now(), ttl=ttl, key_type=key_type,
                          bits=key_bits)
        self.issuer_id = new_uuid()
        self.stored[serial_text(self.ca.cert.serial_number)] = _Stored(self.ca.cert)
        return self.ca

    def _role(self, req: Request, name: str) -> Reply:
        if req.op == "read":
            role = self.roles.get(name)
            if role is None:
                raise VaultError(404)
            return ok(req, role.data())
        if req.op == "update":
            role = self.roles.get(name) or Role()
            role.update(req.data)
            self.roles[name] = role
            return no_content()
        if req.op == "delete":
            self.roles.pop(name, None)
            return no_content()
        raise unsupported_op()

    def _generate_root(self, req: Request, mount: Mount, *, exported: bool) -> Reply:
        common_name = get_str(req.data, "common_name")
        if not common_name:
            raise VaultError(400, "the common_name field is required")
        key_type = get_str(req.data, "key_type", "rsa")
        if key_type not in _KEY_TYPES:
            raise VaultError(400, f"unknown key_type {key_type!r}")
        ttl = min(get_duration(req.data, "ttl") or mount.max_ttl, mount.max_ttl)
        ca = self.generate_root(common_name, ttl, key_type, get_int(req.data, "key_bits"))
        data: dict[str, Any] = {
            "certificate": ca.pem,
            "expiration": int(ca.not_after),
            "issuer_id": self.issuer_id,
            "issuer_name": "",
            "issuing_ca": ca.pem,
            "key_id": new_uuid(),
            "key_name": "",
            "serial_number": serial_text(ca.cert.serial_number),
        }
        if exported:
            data["private_key"] = private_pem(ca.key)
            data["private_key_type"] = key_type
        return ok(req, data)

    def _read_ca(self, req: Request, name: str) -> Reply:
        if self.ca is None:
            if name == "cert-ca":
                raise VaultError(404)
            return Reply(status=204, content_type="application/pem-certificate-chain")
        if name == "cert-ca":
            return ok(req, {"certificate": self.ca.pem, "revocation_time": 0})
        if name == "ca-der":
            return Reply(status=200, content_type="application/pkix-cert",
                         body=self.ca.cert.public_bytes(serialization.Encoding.DER))
        return Reply(status=200, content_type="application/pem-certificate-chain",
                     body=self.ca.pem.encode())

    def _issue(self, req: Request, role_name: str, mount: Mount) -> Reply:
        role = self.roles.get(role_name)
        if role is None:
            raise VaultError(400, f"unknown role: {role_name}")
        if self.ca is None:
            raise VaultError(400, "no default issuer currently configured")
        if role.key_type == "any":
            raise VaultError(400, 'role key type "any" not allowed for issuing certificates, '
                                  "only signing")
        data = req.data
        fmt = get_str(data, "format", "pem")
        if fmt != "pem":
            raise VaultError(400, f"dev server: format {fmt!r} is not supported (only pem)")
        common_name = get_str(data, "common_name")
        if not common_name and role.require_cn:
            raise VaultError(400, 'the common_name field is required, or must be provided in a '
                                  'CSR with "use_csr_common_name" set to true, unless '
                                  '"require_cn" is set to false')
        if common_name and not _is_ip(common_name) and not role.allows(common_name):
            raise VaultError(400, f"common name {common_name} not allowed by this role")
        dns_names = [] if get_bool(data, "exclude_cn_from_sans") or not common_name or _is_ip(
            common_name) else [common_name]
        for name in get_list(data, "alt_names"):
            if not role.allows(name):
                raise VaultError(400, f"subject alternate name {name} not allowed by this role")
            if name not in dns_names:
                dns_names.append(name)
        ip_sans = get_list(data, "ip_sans") + ([common_name] if _is_ip(common_name) else [])
        for ip in ip_sans:
            if not role.allow_ip_sans:
                raise VaultError(400, "IP Subject Alternative Names are not allowed in this "
                                      f"role, but was provided {ip}")
            if not _is_ip(ip):
                raise VaultError(400, f'the value "{ip}" is not a valid IP address')
        ttl, warnings = self._ttl(data, role, mount)
        now = self._core.clock.now()
        if now + ttl > self.ca.not_after:
            raise VaultError(400, f"cannot satisfy request, as TTL would result in notAfter of "
                                  f"{rfc3339(now + ttl)} that is beyond the expiration of the "
                                  f"CA certificate at {rfc3339(self.ca.not_after)}")
        key = new_key(role.key_type, role.key_bits)
        cert = issue(self.ca, common_name=common_name, dns_names=dns_names, ip_sans=ip_sans,
                     now=now, ttl=ttl, key=key, server=role.server_flag,
                     client=role.client_flag)
        lease = self._lease(req, role_name, ttl, mount) if role.generate_lease else {}
        self._store(cert, role)
        return ok(req, {
            "ca_chain": [self.ca.pem],
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "expiration": int(cert.not_valid_after_utc.timestamp()),
            "issuing_ca": self.ca.pem,
            "private_key": private_pem(key),
            "private_key_type": "rsa" if isinstance(key, rsa.RSAPrivateKey) else role.key_type,
            "serial_number": serial_text(cert.serial_number),
        }, warnings=warnings, **lease)

    def _store(self, cert: x509.Certificate, role: Role) -> None:
        if not role.no_store:
            self.stored[serial_text(cert.serial_number)] = _Stored(cert)

    def _revoke(self, req: Request) -> Reply:
        data = req.data
        have_serial, have_cert = "serial_number" in data, "certificate" in data
        if not have_serial and not have_cert:
            raise VaultError(400, "The serial number or certificate to revoke must be provided.")
        if have_serial and have_cert:
            raise VaultError(400, "Must provide either the certificate or the serial to revoke; not both.")
        entry = self._presented(get_str(data, "certificate")) if have_cert else self._by_serial(data)
        if self.ca is not None and entry.cert.serial_number == self.ca.cert.serial_number:
            raise VaultError(400, f"adding issuer (id: {self.issuer_id}) to its own CRL is not allowed")
        if entry.revoked_at is None:
            now = self._core.clock.now()
            if entry.cert.not_valid_after_utc.timestamp() < now + 2:
                colon = serial_text(entry.cert.serial_number)
                return ok(req, None, warnings=[f"certificate with serial {colon} already expired; "
                                               "refusing to add to CRL"])
            entry.revoked_at = now
        return ok(req, {
            "revocation_time": int(entry.revoked_at),
            "revocation_time_rfc3339": rfc3339(entry.revoked_at),
            "state": "revoked",
        })

    def _by_serial(self, data: dict[str, Any]) -> _Stored:
        serial = get_str(data, "serial_number")
        if not serial:
            raise VaultError(400, "The serial number must be provided")
        entry = self.stored.get(_serial_key(serial))
        if entry is None:
            raise VaultError(400, f"certificate with serial {serial} not found.")
        return entry

    def _presented(self, pem: str) -> _Stored:
        """The stored entry of a certificate given in PEM (stored now if this CA signed it)."""
        if len(pem) < 75:
            raise VaultError(400, "provided certificate data was too short; perhaps a path was passed "
                                  "to the API rather than the contents of a PEM file")
        if "-----BEGIN" not in pem:
            raise VaultError(400, "certificate contains no PEM data")
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            raise VaultError(400, f"certificate could not be parsed: {exc}") from None
        serial = serial_text(cert.serial_number)
        entry = self.stored.get(serial)
        if entry is not None:
            if entry.cert != cert:
                raise VaultError(500, "certificate with same serial but unequal value already present "
                                      "in this cluster's storage; refusing to revoke")
            return entry
        unverified = VaultError(400, "unable to verify signature on presented cert from any present "
                                     "issuer in this mount; certificates from previous CAs will need to "
                                     "have their issuing CA and key re-imported if revocation is necessary")
        if self.ca is None:
            raise unverified
        try:
            cert.verify_directly_issued_by(self.ca.cert)
        except (ValueError, TypeError, InvalidSignature):
            raise unverified from None
        self.stored[serial] = entry = _Stored(cert)
        return entry

    def _lease(self, req: Request, role_name: str, ttl: int, mount: Mount) -> dict[str, Any]:
        """A ``generate_lease`` role's lease: not renewable, as long as the certificate."""
        token = req.token_entry
        created = self._core.leases.create(
            f"{mount.path}issue/{role_name}", ttl=ttl, max_ttl=ttl, renewable=False,
            token_accessor=token.accessor if token is not None and not token.root else None,
            namespace=mount.namespace, namespace_id=self._core.namespace_id(mount.namespace))
        return {"lease_id": created.id, "lease_duration": ttl}

    @staticmethod
    def _ttl(data: dict[str, Any], role: Role, mount: Mount) -> tuple[int, list[str]]:
        max_ttl = role.max_ttl or mount.max_ttl
        ttl = get_duration(data, "ttl") or role.ttl or mount.default_ttl
        if ttl <= max_ttl:
            return ttl, []
        return max_ttl, [f'TTL "{go_duration(ttl)}" is longer than permitted maxTTL '
                         f'"{go_duration(max_ttl)}", so maxTTL is being used']
