# What the injector of deploy/ may do in Vault, and nothing more. The role `app` (setup.sh) attaches
# this policy and Vault's `default` one, which already covers renewing leases (sys/leases/renew)
# and the token's own lookup, renewal and revocation.

# pki/issue creates a certificate: a write, hence "update".
path "pki/issue/app" {
  capabilities = ["update"]
}

# Dynamic database credentials (one lease per pod).
path "database/creds/app" {
  capabilities = ["read"]
}

# KV v2 keeps values under data/ (overlays/http-reload reads secret/prometheus).
path "secret/data/prometheus" {
  capabilities = ["read"]
}

# `injector sidecar --revoke-on-exit` (overlays/job) revokes its leases one by one, and
# sys/leases/revoke is not in the default policy. The path cannot be narrowed to this pod's
# leases; a lease ID is unguessable, so in practice a token revokes only leases it was given.
path "sys/leases/revoke" {
  capabilities = ["update"]
}
