"""An in-memory, thread-safe, Vault-HTTP-API-compatible dev server (tests, demo, local use).

Never production: no storage, no real crypto barrier, no audit. It implements the contract in
``reference/vault-http-api.md`` closely enough that hvac cannot tell the difference for the
routes below: envelopes, status codes, ``{"errors": [...]}`` bodies, ``Content-Type:
application/json`` exactly (also on 204s), ``Cache-Control: no-store``, Go-encoder JSON.

Usage::

    with DevVault().start() as vault:          # port 0 = a free port; loopback only
        client = hvac.Client(url=vault.address, token=vault.root_token)

    python -m devvault --port 8200 --root-token root [--latency 0.002] [--tls]

Routes (relative to ``/v1/``; PUT == POST; the LIST verb == ``GET ?list=true``; README.md has
the table of what is and is not supported)

- Response wrapping: ``X-Vault-Wrap-TTL`` on any 200; ``sys/wrapping/{wrap,unwrap,lookup,rewrap}``.

- KV v2 at ``secret/`` (and any ``kv``/``kv-v2`` mount): ``data/``, ``metadata/``, ``delete/``,
  ``undelete/``, ``destroy/``, ``config``; check-and-set, soft delete, destroy, max_versions.
- KV v1 (``kv_v1_mount="kv"`` or a ``kv`` mount with version 1): read with ``lease_duration``,
  write, delete, list.
- ``auth/token/``: ``create``, ``create-orphan``, ``create/{role}``, ``roles/{name}``,
  ``lookup(-self|-accessor)``, ``renew(-self)``, ``revoke(-self|-accessor)``.
- ``auth/approle/``, ``auth/kubernetes/``, ``auth/jwt/``, ``auth/cert/``, ``auth/aws/`` once
  enabled with ``sys/auth/{path}``: roles, config, login (kubernetes needs ``pem_keys``; jwt needs
  ``jwt_validation_pubkeys``; cert needs ``tls=True``; aws forwards to ``sts_endpoint``).
- ``database/``: ``config/{name}``, ``roles/{name}``, ``creds/{role}`` (leased users).
- ``pki/``: ``root/generate/{internal,exported}``, ``roles/{name}``, ``issue/{role}``,
  ``ca/pem``, ``ca``, ``cert/ca``, ``ca_chain``.
- ``sys/``: ``health`` (GET/HEAD, code overrides), ``seal-status``, ``seal``, ``unseal`` (any
  non-empty key), ``init``, ``leader``, ``mounts[/{path}[/tune]]``, ``auth[/{path}]``,
  ``policy[/{name}]``, ``policies/acl[/{name}]``, ``internal/ui/mounts/{path}`` and
  ``mounts-all/{path}`` (KV version detection), ``capabilities-self``, ``namespaces[/{path}]``,
  ``leases/renew``, ``leases/revoke``, ``leases/revoke-{prefix,force}/{prefix}``,
  ``leases/lookup[/{prefix}]``, ``renew``, ``revoke``.

Dev defaults (as ``vault server -dev`` has ``secret/``)

- root token ``root`` (``root_token=``), never expires; policies ``root`` and ``default``.
- ``secret/``: KV v2. ``kv_v1_mount="kv"`` adds a KV v1 mount.
- ``pki/``: tuned to max TTL 87600h, with a root CA ("injector devserver root CA", EC P-256,
  10 years) and role ``dev`` (any name, IP SANs, EC keys, ttl 24h, max_ttl 720h).
- ``database/``: connection ``dev`` and role ``dev`` (default_ttl 1h, max_ttl 24h).
- Mount and token TTLs default to Vault's 768h (2764800 s).

Namespaces (Enterprise semantics, see ``namespaces``): created with ``sys/namespaces``, chosen
by ``X-Vault-Namespace`` and/or a ``/v1/ns1/…`` path prefix; each has its own mounts (no
``secret/`` until mounted), auth methods, policies, tokens and leases.

Test knobs (thread-safe, immediate)

``trust_client_ca(pem)`` (TLS client certificates; cert roles do it themselves),
``set_latency(s)``, ``set_error_rate(rate, status=500, paths=None)`` (429 gets the quota body),
``set_outage(on)`` (connections closed unanswered: ``requests.ConnectionError``; such requests
are not counted), ``seal()`` / ``unseal()``, ``request_count(prefix)`` / ``reset_counts()`` /
``request_log`` (every answered request, injected failures included),
``advance_clock(s)`` (expiry without sleeping), ``lease_state(id)``, ``active_leases(prefix)``,
``check_db_credentials(user, password)``.

Not implemented: batch tokens, identity/entities, cubbyhole, OIDC/JWKS discovery, PKI CSR
signing/revocation/CRLs, HA/standby, the aws ec2 login type, Enterprise features beyond
namespaces.
"""

from __future__ import annotations

from devvault.server import DevVault

__all__ = ["DevVault"]
