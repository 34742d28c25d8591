"""The webhook's mutated pod, run end to end: what ``Admission.answer`` returns is what runs.

deploy/webhook/examples/deployment-native-sighup.yaml's pod template goes through the webhook as
the API server sends it (an AdmissionReview v1 for a Pod CREATE, with deploy/webhook/defaults.yaml
as ``--defaults``); its JSONPatch, applied by ``jsonpatch``, gives the pod that
tests/test_pod_simulation.py's ``run_pod`` then runs in real PID and mount namespaces: the
injector config from the ``injector.tmpfs.dev/config`` annotation through the downward API, the
``injector-vault`` volume's projected token and CA, ``injector-init`` to exit 0, the native
sidecar ``injector`` until its startupProbe passes, then the app.

The app is tests/helpers/pod_app.py named ``nginx``, as the container's command is: the example
only tells nginx by SIGHUP (``notify-tls_crt: SIGHUP nginx``) and gives it no config that serves
the files, so the stand-in records each SIGHUP (its sender, and the files it reads then).

One annotation is adjusted before admission: ``vault-ca-configmap`` is added, because the dev
Vault's certificate is signed by its own CA, which no image trusts (a cluster whose Vault has a
private CA needs the same annotation). The rest is run as the example has it: the certificates ask
for ``ttl=72h`` and Vault caps them at its PKI role's ``max_ttl`` (``CERT_MAX_TTL``), so that Vault
issues a new certificate while the test watches. What the simulation rewrites (the Vault address,
the ports, the users) is listed in tests/test_pod_simulation.py's docstring.
"""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from injector.webhook.keys import PREFIX
from tests.fixtures.sidecar import wait_for
from tests.test_pod_simulation import (
    CERT_MAX_TTL,
    Manifest,
    Pod,
    VaultSetup,
    _skip_reason,
    app_file_digest,
    check_probes,
    check_sigterm,
    run_pod,
)
from tests.webhook.support import admission, applied, review
from tests.webhook.test_manifests import WEBHOOK, _defaults, _example_pods

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.vault]

EXAMPLE = WEBHOOK / "examples" / "deployment-native-sighup.yaml"
#: The ConfigMap the added vault-ca-configmap annotation names (its ca.crt: the dev Vault's CA).
VAULT_CA_CONFIGMAP = "vault-ca"
#: What a Vault admin attaches to the example's role: the two paths its references use. Leases are
#: renewed under Vault's default policy.
POLICY = """\
path "pki/issue/web" {
  capabilities = ["update"]
}
path "database/creds/web" {
  capabilities = ["read"]
}
"""


def injected_manifest() -> Manifest:
    """The example's Deployment, its pod template replaced by the pod the webhook's patch makes."""
    ((workload, pod),) = _example_pods(EXAMPLE)
    pod["metadata"]["annotations"][PREFIX + "vault-ca-configmap"] = VAULT_CA_CONFIGMAP
    answer = admission(defaults=_defaults()).answer(review(pod, pod["metadata"]["namespace"]))
    assert answer["response"]["allowed"], answer["response"].get("status")
    mutated = applied(pod, answer)
    deployment = copy.deepcopy(workload)
    deployment["spec"]["template"] = {"metadata": mutated["metadata"], "spec": mutated["spec"]}
    return Manifest(
        variant=f"webhook:{EXAMPLE.name}",
        docs=[],
        workload=deployment,
        spec=mutated["spec"],
        vault_ca_configmap=VAULT_CA_CONFIGMAP,
    )


def vault_setup(manifest: Manifest) -> VaultSetup:
    """The Vault side of the example: its role, service account and namespace, the webhook's auth defaults."""
    defaults = _defaults()
    return VaultSetup(
        auth_mount=defaults["vault-auth-mount"],
        role=manifest.annotations[PREFIX + "vault-role"],
        service_account=manifest.spec["serviceAccountName"],
        namespace=manifest.namespace,
        audience=defaults["vault-token-audience"],
        policy=POLICY,
        engine_role="web",
    )


@pytest.fixture(scope="class")
def webhook_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The example's mutated pod, up (the app: tests/helpers/pod_app.py as nginx)."""
    if reason := _skip_reason():
        pytest.skip(reason)
    manifest = injected_manifest()
    work = tmp_path_factory.mktemp("webhook-native-sighup")
    with run_pod(manifest, work, real_nginx=False, vault_setup=vault_setup(manifest)) as pod:
        yield pod


def sighups(pod: Pod) -> list[dict[str, Any]]:
    """The SIGHUPs the stand-in app received: sender pid (in the pod) and the files it read then."""
    received: list[dict[str, Any]] = json.loads(pod.app_get("/sighups"))
    return received


class TestWebhookNativeSighup:
    """deploy/webhook/examples/deployment-native-sighup.yaml, mutated by the webhook, run.

    The tests share one pod and run in file order: the last one stops the sidecar.
    """

    def test_runs_the_containers_the_webhook_added(self, webhook_pod: Pod) -> None:
        """The pod that runs is the patched one: injector-init, then the native sidecar, then nginx."""
        spec = webhook_pod.manifest.spec
        assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [
            ("injector-init", None),
            ("injector", "Always"),
        ]
        assert [c.name for c in webhook_pod.sandbox.containers] == ["injector-init", "injector", "nginx"]

    def test_init_container_renders_every_file_and_exits_0(self, webhook_pod: Pod) -> None:
        """injector-init exits 0 with the annotations' files (tls.crt, tls.key, db.env) written."""
        assert webhook_pod.init_exit == 0, webhook_pod.init_output
        assert webhook_pod.files_after_init == {"tls.crt", "tls.key", "db.env"}

    def test_app_starts_after_the_startup_probe_with_every_file(self, webhook_pod: Pod) -> None:
        """When the sidecar's startupProbe lets nginx start, every file is in its volume."""
        assert webhook_pod.files_at_app_start == {t.destination for t in webhook_pod.config.templates}

    def test_probes_answer_as_declared(self, webhook_pod: Pod) -> None:
        """The sidecar's startup, liveness and readiness probes answer 200 at the port the patch declares."""
        check_probes(webhook_pod)

    def test_sidecar_adopts_the_database_lease_of_init(self, webhook_pod: Pod) -> None:
        """The sidecar adopts init's database credentials: one live lease, the one in db.env."""
        # db.env is for `set -a; . db.env`: shell-quoted values.
        text = webhook_pod.read_output("db.env").decode()
        env = dict(shlex.split(line)[0].split("=", 1) for line in text.splitlines() if line)
        assert len(webhook_pod.vault.active_leases("database/creds/web")) == 1, "init and sidecar each got a user"
        assert webhook_pod.vault.check_db_credentials(env["DB_USER"], env["DB_PASSWORD"])

    def test_reissued_certificate_is_read_by_the_app_on_the_sidecars_sighup(self, webhook_pod: Pod) -> None:
        """A certificate Vault issues anew (max_ttl CERT_MAX_TTL) is in place when the sidecar SIGHUPs nginx."""
        assert webhook_pod.sidecar is not None
        first = {name: app_file_digest(webhook_pod, name) for name in ("tls.crt", "tls.key")}

        def told_of_new_files() -> list[dict[str, Any]]:
            return [s for s in sighups(webhook_pod) if all(s["files"][n] != d for n, d in first.items())]

        wait_for(told_of_new_files, 4 * int(CERT_MAX_TTL.removesuffix("s")), "a SIGHUP after a new tls.crt")
        assert {s["from"] for s in sighups(webhook_pod)} == {webhook_pod.sidecar.pod_pid}

    def test_sidecar_exits_0_on_sigterm(self, webhook_pod: Pod) -> None:
        """SIGTERM, as kubelet sends it at shutdown, ends the sidecar with exit code 0."""
        check_sigterm(webhook_pod)
