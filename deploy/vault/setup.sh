#!/usr/bin/env bash
# Configures Vault for the manifests in deploy/: the kubernetes auth method, the `app` policy and
# role, and the secrets engines the example configs read. Run it once, as a Vault admin:
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=…   # an admin token
#   deploy/vault/setup.sh
#
# Every step can be re-run. Set SKIP_ENGINES=1 when the pki, database and kv engines exist already.
set -euo pipefail

NAMESPACE=${NAMESPACE:-injector-demo}     # where the overlays deploy the app
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-app}   # deploy/base/serviceaccount.yaml
AUTH_MOUNT=${AUTH_MOUNT:-kubernetes}      # vault.auth.mount in injector.yaml
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. The kubernetes auth method. `vault auth enable` fails when the mount exists: enable it only
#    when it is missing, so that a real error still stops the script.
if ! vault auth list -format=json | grep "\"${AUTH_MOUNT}/\"" >/dev/null; then
  vault auth enable -path="$AUTH_MOUNT" kubernetes
fi

# 2. How Vault reaches the Kubernetes API to review the tokens pods log in with.
#    Vault running IN the cluster: it uses its own pod's service-account token and CA, so the API
#    address is all it needs; its service account must be bound to system:auth-delegator
#    (auth-delegator.yaml explains which account, and when the Helm chart already does it).
if [ -z "${K8S_HOST:-}" ]; then
  vault write "auth/${AUTH_MOUNT}/config" kubernetes_host="https://kubernetes.default.svc"
else
  #  Vault OUTSIDE the cluster: give it the API address, the cluster CA and a reviewer token:
  #    kubectl -n vault create serviceaccount vault-token-reviewer
  #    kubectl create clusterrolebinding vault-token-reviewer --clusterrole=system:auth-delegator \
  #      --serviceaccount=vault:vault-token-reviewer
  #    export REVIEWER_JWT=$(kubectl -n vault create token vault-token-reviewer --duration=8760h)
  #    export K8S_CA_FILE=ca.crt   # kubectl get cm kube-root-ca.crt -o jsonpath='{.data.ca\.crt}'
  vault write "auth/${AUTH_MOUNT}/config" \
    kubernetes_host="$K8S_HOST" \
    kubernetes_ca_cert=@"${K8S_CA_FILE:?set K8S_CA_FILE to the cluster CA file}" \
    token_reviewer_jwt="${REVIEWER_JWT:?set REVIEWER_JWT to the reviewer account token}"
fi

# 3. The policy: what the injector may read (app-policy.hcl).
vault policy write app "$HERE/app-policy.hcl"

# 4. The role the injector logs in with (vault.auth.role: app). Only the `app` service account of
#    the app's namespace may use it, and only with a token whose audience is "vault": the
#    projected token in deployment.yaml, not a general-purpose Kubernetes API token.
#    token_ttl is short because the sidecar renews the token; token_max_ttl bounds a stolen one.
vault write "auth/${AUTH_MOUNT}/role/app" \
  bound_service_account_names="$SERVICE_ACCOUNT" \
  bound_service_account_namespaces="$NAMESPACE" \
  audience=vault \
  token_policies=app \
  token_ttl=1h \
  token_max_ttl=24h

if [ -n "${SKIP_ENGINES:-}" ]; then
  exit 0
fi

# 5. The engines the example configs read. Skip what you have; these are for a demo Vault.
# (grep without -q reads all its input: with pipefail, an early exit could fail the pipe.)
enabled() { vault secrets list -format=json | grep "\"$1/\"" >/dev/null; }

#    PKI: the base's tls.crt/tls.key (pki/issue/app, common_name app.<namespace>.svc, ttl 72h).
if ! enabled pki; then
  vault secrets enable pki
  vault secrets tune -max-lease-ttl=8760h pki
  vault write -field=certificate pki/root/generate/internal common_name="injector-demo CA" ttl=8760h >/dev/null
fi
vault write pki/roles/app \
  allowed_domains="${NAMESPACE}.svc" \
  allow_subdomains=true \
  max_ttl=72h

#    KV v2: overlays/http-reload's scrape password.
if ! enabled secret; then
  vault secrets enable -path=secret kv-v2
fi
if ! vault kv get secret/prometheus >/dev/null 2>&1; then
  vault kv put secret/prometheus scrape_password="$(head -c 24 /dev/urandom | base64)" >/dev/null
fi

#    Database: the base's db.env (database/creds/app). It needs a real PostgreSQL; set PG_URL to
#    e.g. postgresql://{{username}}:{{password}}@postgres.injector-demo.svc:5432/app and
#    PG_ADMIN_USER / PG_ADMIN_PASSWORD to an account allowed to create roles.
if [ -n "${PG_URL:-}" ]; then
  enabled database || vault secrets enable database
  vault write database/config/app \
    plugin_name=postgresql-database-plugin \
    allowed_roles=app \
    connection_url="$PG_URL" \
    username="${PG_ADMIN_USER:?}" \
    password="${PG_ADMIN_PASSWORD:?}"
  # default_ttl is what each renewal extends the lease by; max_ttl is when the injector must fetch
  # a new user (and the app re-read db.env).
  vault write database/roles/app \
    db_name=app \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT CONNECT ON DATABASE app TO \"{{name}}\";" \
    default_ttl=1h \
    max_ttl=24h
else
  echo "PG_URL not set: skipped the database engine (database/creds/app)" >&2
fi
