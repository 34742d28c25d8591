"""deploy/'s pods, run as kubelet would run them: real processes in one PID + mount namespace.

For an overlay's Deployment this file plays kubelet and the API server, from the rendered
manifests (tests/test_deploy.py's helpers); tests/webhook/test_pod_simulation_webhook.py runs a
pod the admission webhook mutated with the same machinery (``run_pod`` takes either ``Manifest``):

- tests/helpers/pod_sandbox.py holds the pod's namespaces (``unshare --mount --pid --fork
  --mount-proc``) and mounts its volumes: a real tmpfs for each ``emptyDir`` with ``medium:
  Memory``, the injector config (from its ConfigMap with the templates via ``materialize_config``,
  or the downward API's item from a pod annotation: the webhook's compiled config), the projected
  volume (a service-account JWT for the audience it names, signed with a key the dev Vault's
  Kubernetes auth trusts, and the CA that ``vault.ca_cert`` names);
- each container runs its manifest ``command``/``args`` through ``nsenter`` into those namespaces,
  in kubelet's order: the init container to exit 0, then the native sidecar until its startupProbe
  passes, then the app;
- the dev Vault runs in this process, with TLS as the manifests' https address needs, set up as
  deploy/vault/setup.sh sets up a real one (its own instance, not the suite's ``vault_server``:
  a real Vault could not check these tokens without a Kubernetes TokenReview API), except that
  ``pki/roles/app`` caps certificates at ``CERT_MAX_TTL`` instead of 72h, so that Vault issues a
  new one while the test watches.

What cannot be the same here, and is rewritten (each place says why): the Vault address, the ports
(this pod shares the host's network namespace), the content of the ConfigMap projected as the Vault
CA (``kube-root-ca.crt``), the app's image (nginx's image cannot run here: Debian's nginx with a
stand-in for the image's nginx.conf, or tests/helpers/pod_app.py under the image's process name),
and the users: every process runs as root, because the virtualenv's interpreter lives under /root
(mode 0700); test_deploy.py checks the manifests' users instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from devvault import DevVault
from injector.config.load import load_config
from injector.config.model import Config
from tests.fixtures.sidecar import free_port, wait_for
from tests.fixtures.vault import encode_jwt, public_pem, rsa_key
from tests.test_deploy import (
    CONFIG_DIR,
    DEPLOY,
    TEMPLATES_DIR,
    configmap_named,
    health_port,
    injector_containers,
    materialize_config,
    mount_of,
    probe_port,
    rendered,
    volume_named,
    workloads,
)

#: The checkout under test (its .venv runs the containers' commands).
PROJECT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.vault]

HELPERS = Path(__file__).resolve().parent / "helpers"
VENV_BIN = Path(sys.executable).parent
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
#: Test knobs on the Vault side (deploy/vault/setup.sh has max_ttl=72h): a certificate of the pod
#: lives this long, so Vault issues a new one while the test watches (the config asks for 72h;
#: Vault caps it at the role's max_ttl).
CERT_MAX_TTL = "6s"
#: How long the sandbox may live, whatever happens to the test.
POD_LIFETIME = 120


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "simulating a pod mounts tmpfs and creates namespaces: run as root (as CI does)"
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (util-linux)" if missing else None


# --- the sandbox ------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Container:
    """A container's process, started through nsenter (whose exit status is the container's)."""

    name: str
    nsenter: subprocess.Popen[bytes]
    log: Path
    _pid: int | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The container's process as this test sees it (nsenter's child)."""
        if self._pid is None:
            children: list[int] = wait_for(lambda: _children(self.nsenter.pid), 5, f"{self.name} to start")
            self._pid = children[0]
        return self._pid

    @property
    def pod_pid(self) -> int:
        """The same process as the pod sees it (its pid in the pod's PID namespace)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
        raise AssertionError(f"{self.name}: no NSpid in /proc/{self.pid}/status")

    def running(self) -> bool:
        return self.nsenter.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, as kubelet sends it, then the exit code (SIGKILL after ``timeout``)."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                return self.nsenter.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.nsenter.wait(timeout)


class Sandbox:
    """A pod's PID and mount namespaces, held by tests/helpers/pod_sandbox.py as their PID 1."""

    def __init__(self, workdir: Path, mounts: list[dict[str, Any]]) -> None:
        self.workdir = workdir
        plan = workdir / "pod-plan.json"
        plan.write_text(json.dumps({"lifetime": POD_LIFETIME, "mounts": mounts}, indent=2))
        self.containers: list[Container] = []
        with (workdir / "sandbox.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--kill-child",
                    sys.executable,
                    str(HELPERS / "pod_sandbox.py"),
                    str(plan),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"ready\n":
            self.proc.wait(10)
            pytest.fail(f"the pod sandbox did not start:\n{(workdir / 'sandbox.log').read_text()}")
        (self.pid,) = _children(self.proc.pid)

    def path(self, inside: str) -> Path:
        """A path of the pod's mount namespace, seen from here."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Container:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        container = Container(name=name, nsenter=proc, log=log)
        self.containers.append(container)
        return container

    def close(self) -> None:
        # Kubelet's shutdown order: containers first (the app, then the sidecar), the pod last.
        for container in reversed(self.containers):
            container.stop()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the manifests, read as kubelet and the API server read them -------------------------------------


@dataclass
class Manifest:
    """The pod of one overlay: its documents, workload, pod spec and containers."""

    variant: str
    docs: list[dict[str, Any]]
    workload: dict[str, Any]
    spec: dict[str, Any]
    #: The ConfigMap that a projected volume shows as the Vault CA (its content is the dev Vault's CA).
    vault_ca_configmap: str = "kube-root-ca.crt"

    @classmethod
    def of(cls, variant: str) -> Manifest:
        ((workload, spec),) = workloads(variant)
        return cls(variant=variant, docs=rendered(variant), workload=workload, spec=spec)

    @property
    def namespace(self) -> str:
        return str(self.workload["metadata"]["namespace"])

    @property
    def annotations(self) -> dict[str, str]:
        """The pod's annotations (the pod template's, as the controller copies them into each pod)."""
        return dict(self.workload["spec"]["template"]["metadata"].get("annotations") or {})

    def init_container(self) -> dict[str, Any]:
        (init,) = [c for c in injector_containers(self.spec) if c.get("restartPolicy") != "Always"]
        return init

    def sidecar(self) -> dict[str, Any]:
        (sidecar,) = [c for c in self.spec["initContainers"] if c.get("restartPolicy") == "Always"]
        return sidecar

    def app(self) -> dict[str, Any]:
        (app,) = self.spec["containers"]
        return app

    def mounts(self) -> list[tuple[str, dict[str, Any], bool]]:
        """(mountPath, volume, read-only) for every path any container mounts, parents first.

        All containers share ONE mount namespace here, so a volume one container mounts
        read-write (the injector's secrets) is read-write for all; kubelet gives each its own view.
        """
        found: dict[str, tuple[str, bool]] = {}
        for container in self.spec["initContainers"] + self.spec["containers"]:
            for mount in container.get("volumeMounts", []):
                name, readonly = found.get(mount["mountPath"], (mount["name"], True))
                assert name == mount["name"], f"{mount['mountPath']}: two volumes at one path"
                found[mount["mountPath"]] = (name, readonly and bool(mount.get("readOnly")))
        ordered = sorted(found, key=lambda path: len(Path(path).parts))
        return [(path, volume_named(self.spec, found[path][0]), found[path][1]) for path in ordered]


def _size(limit: str) -> str:
    """A Kubernetes quantity (16Mi) as a tmpfs size (16m)."""
    for unit, suffix in (("Ki", "k"), ("Mi", "m"), ("Gi", "g")):
        if limit.endswith(unit):
            return limit.removesuffix(unit) + suffix
    raise AssertionError(f"sizeLimit {limit}: the simulation knows Ki, Mi and Gi")


def projected_token(manifest: Manifest, source: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """What kubelet writes for a ``serviceAccountToken`` projection: a JWT the API server signed."""
    now = int(time.time())
    account = manifest.spec["serviceAccountName"]
    return encode_jwt(
        {
            "aud": [source["audience"]],
            "exp": now + int(source.get("expirationSeconds", 3600)),
            "iat": now,
            "nbf": now,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": f"system:serviceaccount:{manifest.namespace}:{account}",
            "kubernetes.io": {
                "namespace": manifest.namespace,
                "pod": {"name": f"{manifest.workload['metadata']['name']}-0", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
            },
        },
        key,
    )


# --- Vault --------------------------------------------------------------------------------------------


def vault_client(vault: DevVault, ca_file: Path) -> hvac.Client:
    return hvac.Client(url=vault.address, token=vault.root_token, verify=str(ca_file), timeout=10)


def setup_sh_defaults() -> dict[str, str]:
    """NAMESPACE, SERVICE_ACCOUNT and AUTH_MOUNT as deploy/vault/setup.sh defaults them."""
    text = (DEPLOY / "vault" / "setup.sh").read_text()
    return dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}", text, re.MULTILINE))


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultSetup:
    """The names deploy/vault/setup.sh configures a Vault with, for one pod's role.

    ``policy`` is the HCL text attached to the role; ``engine_role`` names both the PKI role and
    the database role the pod's references use (pki/issue/ROLE, database/creds/ROLE).
    """

    auth_mount: str
    role: str
    service_account: str
    namespace: str
    audience: str
    policy: str
    engine_role: str

    @classmethod
    def setup_sh(cls) -> VaultSetup:
        """deploy/vault/setup.sh's defaults and deploy/vault/app-policy.hcl, for the overlays' pods."""
        names = setup_sh_defaults()
        return cls(
            auth_mount=names["AUTH_MOUNT"],
            role="app",
            service_account=names["SERVICE_ACCOUNT"],
            namespace=names["NAMESPACE"],
            audience="vault",
            policy=(DEPLOY / "vault" / "app-policy.hcl").read_text(),
            engine_role="app",
        )

    def apply(self, vault: DevVault, ca_file: Path, key: rsa.RSAPrivateKey) -> None:
        """What deploy/vault/setup.sh does to a real Vault (its steps, numbered as there), to the dev Vault."""
        mount, namespace, role = self.auth_mount, self.namespace, self.engine_role
        admin = vault_client(vault, ca_file)
        try:
            # 1-2. Kubernetes auth. The dev Vault has no TokenReview API to call: it checks the JWT's
            #      signature against pem_keys, the public half of the key that signs the pod's token.
            admin.sys.enable_auth_method("kubernetes", path=mount)
            admin.write_data(
                f"auth/{mount}/config",
                data={"kubernetes_host": "https://kubernetes.default.svc", "pem_keys": [public_pem(key)]},
            )
            # 3-4. The policy, and the role.
            admin.sys.create_or_update_policy(self.role, self.policy)
            admin.write_data(
                f"auth/{mount}/role/{self.role}",
                data={
                    "bound_service_account_names": self.service_account,
                    "bound_service_account_namespaces": namespace,
                    "audience": self.audience,
                    "token_policies": self.role,
                    "token_ttl": "1h",
                    "token_max_ttl": "24h",
                },
            )
            # 5. Engines. The dev Vault starts with pki/ (and its root CA) and database/ mounted; the
            #    database connection is never dialled.
            admin.write_data(
                f"pki/roles/{role}",
                data={"allowed_domains": f"{namespace}.svc", "allow_subdomains": True, "max_ttl": CERT_MAX_TTL},
            )
            admin.write_data(
                f"database/config/{role}",
                data={
                    "plugin_name": "postgresql-database-plugin",
                    "allowed_roles": role,
                    "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@postgres.{namespace}.svc:5432/app",
                    "username": "vault-admin",
                    "password": "not-a-real-database",
                },
            )
            admin.write_data(f"database/roles/{role}", data={"db_name": role, "default_ttl": "1h", "max_ttl": "24h"})
        finally:
            admin.adapter.close()


# --- the pod ----------------------------------------------------------------------------------------


NGINX_IMAGE_CONF = """\
# Stand-in for /etc/nginx/nginx.conf of the nginx-unprivileged image (not part of deploy/): pid and
# temporary files in /tmp (the pod's nginx-tmp volume), logs on stderr, conf.d/*.conf included.
worker_processes 1;
error_log stderr notice;
pid /tmp/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    access_log off;
    include /etc/nginx/mime.types;
    include /etc/nginx/conf.d/*.conf;
}
"""


@dataclass
class Pod:
    """A running pod of one overlay, and what the simulated kubelet saw on the way up."""

    manifest: Manifest
    config: Config
    sandbox: Sandbox
    vault: DevVault
    #: Port in the manifest → port on 127.0.0.1 here.
    ports: dict[int, int]
    pki_ca_file: Path
    init_exit: int = -1
    init_output: str = ""
    files_after_init: set[str] = field(default_factory=set)
    files_at_app_start: set[str] = field(default_factory=set)
    sidecar: Container | None = None
    app: Container | None = None

    def probe(self, container: dict[str, Any], kind: str) -> int:
        """Runs ``container``'s ``kind`` probe (an httpGet) as kubelet does; returns the status (0: no answer)."""
        probe = container[kind]
        port = self.ports[probe_port(container, probe)]
        return _http_status(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", probe.get("timeoutSeconds", 1))

    @property
    def app_port(self) -> int:
        """The app's port in the manifest that says it is ready: its readinessProbe's, else its first."""
        app = self.manifest.app()
        if "readinessProbe" in app:
            return probe_port(app, app["readinessProbe"])
        return int(app["ports"][0]["containerPort"])

    @property
    def app_probe_path(self) -> str:
        probe = self.manifest.app().get("readinessProbe")
        return str(probe["httpGet"]["path"]) if probe else "/ready"

    def app_status(self, path: str) -> int:
        """The status of GET ``path`` at the app's port (0: no answer)."""
        return _http_status(f"http://127.0.0.1:{self.ports[self.app_port]}{path}", 1)

    def app_get(self, path: str) -> bytes:
        """The body of GET ``path`` at the app's port (the stand-in app's /files/NAME, /sighups)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[self.app_port]}{path}", timeout=5) as resp:
            body: bytes = resp.read()
            return body

    def output_files(self) -> set[str]:
        """The files in the secrets volume (as the app sees them at its mountPath)."""
        folder = self.sandbox.path(str(self.config.output_dir))
        return {p.name for p in folder.iterdir() if not p.name.startswith("..")}

    def read_output(self, name: str) -> bytes:
        return self.sandbox.path(str(self.config.output_dir / name)).read_bytes()


def _http_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _command(container: dict[str, Any]) -> list[str]:
    argv = list(container.get("command", [])) + list(container.get("args", []))
    # The images' PATH: the injector image's entry point is the virtualenv's console script.
    binaries = {"injector": str(VENV_BIN / "injector"), "nginx": NGINX or "nginx"}
    return [binaries.get(argv[0], argv[0]), *argv[1:]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: the manifest's ``env``, and nothing of this test's."""
    env = {"PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _config_file(manifest: Manifest, dest: Path) -> Path:
    """Writes what the injector sees at CONFIG_DIR to ``dest``; returns the file its ``--config`` names."""
    sidecar = manifest.sidecar()
    mount = mount_of(sidecar, CONFIG_DIR)
    assert mount is not None, f"{sidecar['name']}: nothing mounted at {CONFIG_DIR}"
    volume = volume_named(manifest.spec, mount["name"])
    if "downwardAPI" not in volume:
        return materialize_config(manifest.docs, manifest.workload, dest)
    # kubelet writes each item's field of the pod as a file: here the webhook's compiled config,
    # from the annotation the patch added.
    dest.mkdir(parents=True)
    for item in volume["downwardAPI"]["items"]:
        found = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", item["fieldRef"]["fieldPath"])
        assert found, f"{volume['name']}: the simulation writes annotations only, not {item['fieldRef']}"
        (dest / item["path"]).write_text(manifest.annotations[found.group(1)])
    command = sidecar["command"]
    return dest / Path(command[command.index("--config") + 1]).relative_to(CONFIG_DIR)


def _volume_folder(
    manifest: Manifest, volume: dict[str, Any], config_file: Path, work: Path, vault_ca: bytes, key: rsa.RSAPrivateKey
) -> Path:
    """A host folder with what kubelet would put in a configMap, downwardAPI or projected volume."""
    folder = work / "volumes" / volume["name"]
    injector_mounts = {m["name"]: m["mountPath"] for m in manifest.sidecar()["volumeMounts"]}
    if injector_mounts.get(volume["name"]) == CONFIG_DIR:
        # _config_file's folder (a ConfigMap's injector.yaml beside templates/, or the downward
        # API's items), the config in it already rewritten for this test.
        return config_file.parent
    if "configMap" in volume:
        if injector_mounts.get(volume["name"]) == TEMPLATES_DIR:
            return config_file.parent / "templates"
        data = configmap_named(manifest.docs, volume["configMap"]["name"], manifest.namespace)["data"]
        folder.mkdir(parents=True)
        for name, text in data.items():
            (folder / name).write_text(text)
        return folder
    folder.mkdir(parents=True)
    for source in volume["projected"]["sources"]:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            (folder / token["path"]).write_text(projected_token(manifest, token, key))
        elif source.get("configMap", {}).get("name") == manifest.vault_ca_configmap:
            # The overlays project kube-root-ca.crt, where the API server publishes the cluster CA.
            # The dev Vault's certificate is not signed by a cluster CA, so this holds Vault's CA
            # instead, as deploy/README.md says to do in that case ("project a ConfigMap with your
            # Vault CA there"). The webhook's injector-vault volume projects vault-ca-configmap.
            for item in source["configMap"]["items"]:
                (folder / item["path"]).write_bytes(vault_ca)
        else:
            raise AssertionError(f"{volume['name']}: the simulation does not project {source}")
    return folder


def _rewrite_config(config_file: Path, vault_address: str, health_address: str) -> None:
    data = yaml.safe_load(config_file.read_text())
    # Not the same in a test: no cluster DNS name resolves to the dev Vault, whose certificate is
    # for 127.0.0.1; scheme (https) and path stay. The same holds for the webhook's compiled config
    # (its vault-address is deploy/webhook/defaults.yaml's https://vault.vault.svc:8200).
    original = urlsplit(data["vault"]["address"])
    data["vault"]["address"] = original._replace(netloc=urlsplit(vault_address).netloc).geturl()
    # Not the same in a test: a pod has its own network namespace; this one shares the host's (so
    # that it reaches the dev Vault in this process), where a fixed 0.0.0.0:8099 may be taken and
    # every test server listens on 127.0.0.1.
    data["health"]["address"] = health_address
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))


def _rewrite_nginx_ports(folder: Path, ports: dict[int, int]) -> None:
    # The same reason as the health address: the host's network namespace, loopback, free ports.
    for conf in folder.glob("*.conf"):
        text = re.sub(r"listen\s+(\d+)", lambda m: f"listen 127.0.0.1:{ports[int(m.group(1))]}", conf.read_text())
        conf.write_text(text)


@contextmanager
def run_pod(
    manifest: Manifest,
    work: Path,
    *,
    real_nginx: bool,
    vault_setup: VaultSetup,
) -> Iterator[Pod]:
    """Starts ``manifest``'s pod as kubelet would and yields it; stops everything after.

    ``vault_setup`` names what the dev Vault is set up with for the pod (auth role, policy, engines).
    """
    with ExitStack() as stack:
        vault = DevVault(tls=True).start()
        stack.callback(vault.stop)
        ca_file = work / "vault-ca.pem"
        ca_file.write_text(vault.ca_pem or "")

        config_file = _config_file(manifest, work / "etc-injector")
        config = load_config(config_file, environ={})
        key = rsa_key()
        vault_setup.apply(vault, ca_file, key)
        pki_ca_file = work / "pki-ca.pem"
        client = vault_client(vault, ca_file)
        pki_ca_file.write_text(client.secrets.pki.read_ca_certificate())
        client.adapter.close()

        sidecar, app = manifest.sidecar(), manifest.app()
        ports = {health_port(sidecar, config): free_port()}
        ports |= {p["containerPort"]: free_port() for p in app.get("ports", [])}
        _rewrite_config(config_file, vault.address, f"127.0.0.1:{ports[health_port(sidecar, config)]}")
        config = load_config(config_file, environ={})

        # The container's root filesystem, then the pod's volumes.
        mounts: list[dict[str, Any]] = [
            # The image's /run: empty and in memory (and where /var/run/secrets gets mounted).
            {"kind": "tmpfs", "target": "/run", "options": "mode=0755"},
            # The image's /etc: the host's, with a writable layer for mount points (/etc/injector).
            {"kind": "overlay", "target": "/etc", "scratch": str(_mkdir(work / "etc-layer"))},
        ]
        if real_nginx:
            image_conf = work / "image" / "nginx.conf"
            image_conf.parent.mkdir()
            image_conf.write_text(NGINX_IMAGE_CONF)
            mounts.append(
                {"kind": "bind", "source": str(image_conf), "target": "/etc/nginx/nginx.conf", "readonly": True}
            )
        for path, volume, readonly in manifest.mounts():
            if volume.get("emptyDir", {}).get("medium") == "Memory":
                # kubelet: a tmpfs of sizeLimit, mode 0777 (the pod's fsGroup then owns it).
                size = _size(volume["emptyDir"].get("sizeLimit", "64Mi"))
                mounts.append({"kind": "tmpfs", "target": path, "options": f"size={size},mode=0777"})
            elif "emptyDir" in volume:
                folder = _mkdir(work / "volumes" / volume["name"])
                folder.chmod(0o777)
                if Path(path) in PROJECT.parents:
                    # The checkout is bound back below; its mount point lives in this volume.
                    (folder / PROJECT.relative_to(path)).mkdir(parents=True, exist_ok=True)
                mounts.append({"kind": "bind", "source": str(folder), "target": path, "readonly": readonly})
            else:
                folder = _volume_folder(manifest, volume, config_file, work, ca_file.read_bytes(), key)
                if real_nginx and mount_of(app, path) and "configMap" in volume:
                    _rewrite_nginx_ports(folder, ports)
                # kubelet mounts configMap and projected volumes read-only, whatever the container asks.
                mounts.append({"kind": "bind", "source": str(folder), "target": path, "readonly": True})

        # A volume may cover the project (CI clones under /tmp, and the manifest mounts an emptyDir
        # at /tmp): bind it back, so .venv/bin/injector and the code it imports stay reachable.
        if any(Path(m["target"]) == PROJECT or Path(m["target"]) in PROJECT.parents for m in mounts):
            mounts.append({"kind": "bind", "source": str(PROJECT), "target": str(PROJECT), "readonly": True})

        sandbox = Sandbox(work, mounts)
        stack.callback(sandbox.close)
        pod = Pod(manifest=manifest, config=config, sandbox=sandbox, vault=vault, ports=ports, pki_ca_file=pki_ca_file)

        # 1. The init container, to completion.
        init_spec = manifest.init_container()
        init = sandbox.start(init_spec["name"], _command(init_spec), _env(init_spec))
        pod.init_exit = init.nsenter.wait(60)
        pod.init_output = init.output()
        pod.files_after_init = pod.output_files()

        # 2. The native sidecar, until its startupProbe passes.
        pod.sidecar = sandbox.start(sidecar["name"], _command(sidecar), _env(sidecar))

        def started() -> bool:
            if not pod.sidecar or not pod.sidecar.running():
                pytest.fail(
                    f"the sidecar exited before its startupProbe passed:\n{pod.sidecar and pod.sidecar.output()}"
                )
            return pod.probe(sidecar, "startupProbe") == 200

        # Polled faster than its periodSeconds (which only slows kubelet down), within its budget.
        startup = sidecar["startupProbe"]
        wait_for(started, min(30, startup["periodSeconds"] * startup["failureThreshold"]), "the startupProbe")

        # 3. The app, only now.
        pod.files_at_app_start = pod.output_files()
        if real_nginx:
            pod.app = sandbox.start(app["name"], _command(app), _env(app))
        else:
            # nginx's image cannot run here: an app that reads the files at the app's mountPath, on
            # the port of its readinessProbe (or its first port), named as the image's process is
            # (a notifier may signal it by name).
            (secrets,) = [m["mountPath"] for m in app["volumeMounts"] if m["mountPath"] == str(config.output_dir)]
            argv = [
                sys.executable,
                str(HELPERS / "pod_app.py"),
                secrets,
                str(pod.ports[pod.app_port]),
                pod.app_probe_path,
                Path(app["command"][0]).name,
            ]
            pod.app = sandbox.start(app["name"], argv, _env(app))

        def app_ready() -> bool:
            if not pod.app or not pod.app.running():
                pytest.fail(f"the app exited:\n{pod.app and pod.app.output()}")
            return pod.app_status(pod.app_probe_path) == 200

        wait_for(app_ready, 10, "the app's readinessProbe")
        yield pod


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="class")
def native_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """overlays/native-sidecar's pod, up (the app: tests/helpers/pod_app.py)."""
    if reason := _skip_reason():
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("native-sidecar")
    with run_pod(
        Manifest.of("overlays/native-sidecar"), work, real_nginx=False, vault_setup=VaultSetup.setup_sh()
    ) as pod:
        yield pod


@pytest.fixture(scope="class")
def shared_pid_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """overlays/share-process-namespace's pod, up, with a real nginx as the app."""
    if reason := _skip_reason():
        pytest.skip(reason)
    if NGINX is None:
        pytest.skip("nginx is not installed (`make test` installs Debian's nginx-light)")
    work = tmp_path_factory.mktemp("share-process-namespace")
    with run_pod(
        Manifest.of("overlays/share-process-namespace"), work, real_nginx=True, vault_setup=VaultSetup.setup_sh()
    ) as pod:
        yield pod


# --- checks both variants share -----------------------------------------------------------------------


def check_init(pod: Pod) -> None:
    assert pod.init_exit == 0, pod.init_output
    assert pod.files_after_init == {t.destination for t in pod.config.templates}


def check_app_started_after_files(pod: Pod) -> None:
    assert pod.files_at_app_start == {t.destination for t in pod.config.templates}


def check_probes(pod: Pod) -> None:
    answers = {
        f"{container['name']}.{kind}": pod.probe(container, kind)
        for container in (pod.manifest.sidecar(), pod.manifest.app())
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    }
    assert answers and set(answers.values()) == {200}, answers


def check_one_database_lease(pod: Pod) -> None:
    # db.env is for `set -a; . db.env`: shell-quoted values.
    env = dict(shlex.split(line)[0].split("=", 1) for line in pod.read_output("db.env").decode().splitlines() if line)
    assert len(pod.vault.active_leases("database/creds/app")) == 1, "init and sidecar each got a database user"
    assert pod.vault.check_db_credentials(env["PGUSER"], env["PGPASSWORD"])


def check_sigterm(pod: Pod) -> None:
    assert pod.sidecar is not None
    assert pod.sidecar.stop() == 0, pod.sidecar.output()


def served_certificate(pod: Pod) -> x509.Certificate:
    """nginx's leaf on a fresh TLS connection, verified against the PKI's CA for the Service name."""
    context = ssl.create_default_context(cafile=str(pod.pki_ca_file))
    hostname = f"{pod.manifest.workload['metadata']['name']}.{pod.manifest.namespace}.svc"
    port = pod.ports[next(p["containerPort"] for p in pod.manifest.app()["ports"] if p["name"] == "https")]
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def app_file_digest(pod: Pod, name: str) -> str:
    """The SHA-256 of ``name`` as the stand-in app reads it at its mountPath now."""
    return pod.app_get(f"/files/{name}").decode()


# --- the tests --------------------------------------------------------------------------------------


class TestNativeSidecar:
    """overlays/native-sidecar: init, native sidecar, an app that re-reads its files.

    The tests share one pod and run in file order: the last one stops the sidecar.
    """

    def test_init_container_renders_every_file_and_exits_0(self, native_pod: Pod) -> None:
        """The init container's command exits 0, having written every template's file."""
        check_init(native_pod)

    def test_app_starts_after_the_startup_probe_with_every_file(self, native_pod: Pod) -> None:
        """When the sidecar's startupProbe lets the app start, every file is in its volume."""
        check_app_started_after_files(native_pod)

    def test_probes_answer_as_declared(self, native_pod: Pod) -> None:
        """Every httpGet probe of the sidecar and the app answers 200 at its declared path and port."""
        check_probes(native_pod)

    def test_sidecar_adopts_the_database_lease_of_init(self, native_pod: Pod) -> None:
        """The sidecar adopts init's database credentials: one live lease, the one in db.env."""
        check_one_database_lease(native_pod)

    def test_reissued_certificate_reaches_the_app(self, native_pod: Pod) -> None:
        """A certificate Vault issues anew replaces tls.crt where the app reads it."""
        before = app_file_digest(native_pod, "tls.crt")
        wait_for(lambda: app_file_digest(native_pod, "tls.crt") != before, 20, "a new tls.crt in the app's mount")

    def test_sidecar_exits_0_on_sigterm(self, native_pod: Pod) -> None:
        """SIGTERM, as kubelet sends it at shutdown, ends the sidecar with exit code 0."""
        check_sigterm(native_pod)


class TestSharedProcessNamespace:
    """overlays/share-process-namespace: the same pod, with nginx reloaded by SIGHUP.

    The tests share one pod and run in file order: the last one stops the sidecar.
    """

    def test_init_container_renders_every_file_and_exits_0(self, shared_pid_pod: Pod) -> None:
        """The init container's command exits 0, having written every template's file."""
        check_init(shared_pid_pod)

    def test_app_starts_after_the_startup_probe_with_every_file(self, shared_pid_pod: Pod) -> None:
        """When the sidecar's startupProbe lets nginx start, every file is in its volume."""
        check_app_started_after_files(shared_pid_pod)

    def test_probes_answer_as_declared(self, shared_pid_pod: Pod) -> None:
        """Every httpGet probe of the sidecar and nginx answers 200 at its declared path and port."""
        check_probes(shared_pid_pod)

    def test_sidecar_adopts_the_database_lease_of_init(self, shared_pid_pod: Pod) -> None:
        """The sidecar adopts init's database credentials: one live lease, the one in db.env."""
        check_one_database_lease(shared_pid_pod)

    def test_nginx_serves_the_reissued_certificate_after_sighup(self, shared_pid_pod: Pod) -> None:
        """A certificate Vault issues anew is served on a fresh TLS connection by the same nginx master."""
        assert shared_pid_pod.app is not None
        master = shared_pid_pod.app.pid
        before = served_certificate(shared_pid_pod).serial_number
        wait_for(lambda: served_certificate(shared_pid_pod).serial_number != before, 20, "a new certificate served")
        assert shared_pid_pod.app.running() and shared_pid_pod.app.pid == master, "nginx restarted, not reloaded"

    def test_sighup_comes_from_the_sidecar_by_process_name(self, shared_pid_pod: Pod) -> None:
        """nginx's reloads are the sidecar's SIGHUPs, sent through the shared PID namespace, and all succeed."""
        app, sidecar = shared_pid_pod.app, shared_pid_pod.sidecar
        assert app is not None and sidecar is not None

        def senders() -> set[int]:
            return {int(pid) for pid in re.findall(r"signal 1 \(SIGHUP\) received from (\d+)", app.output())}

        wait_for(senders, 20, "nginx to log a SIGHUP")
        assert senders() == {sidecar.pod_pid}
        assert re.findall(r"\[(?:emerg|alert|crit)\].*", app.output()) == []

    def test_sidecar_exits_0_on_sigterm(self, shared_pid_pod: Pod) -> None:
        """SIGTERM, as kubelet sends it at shutdown, ends the sidecar with exit code 0."""
        check_sigterm(shared_pid_pod)
