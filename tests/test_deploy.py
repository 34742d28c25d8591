"""The Kubernetes manifests in deploy/: schema-valid, hardened, and consistent with the injector.

Each kustomization is rendered by ``kubectl kustomize`` (kubectl's built-in kustomize), the tool a
user runs; where kubectl is not installed, every test that needs a rendered kustomization skips and
says so. Files under deploy/ are still checked one by one without it.

Helpers for other tests (the pod simulation reads the manifests through them):
``load_manifests(path)`` (YAML documents of a file or folder), ``rendered(variant)``,
``pod_specs(docs)``, ``injector_containers(pod)``, ``materialize_config(docs, workload, dest)``.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, latest_version

import injector
from injector.cli import cli
from injector.config.load import load_config, parse_config
from injector.config.model import Config
from tests.fixtures.cli import run

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
KUSTOMIZATIONS = [DEPLOY / "base", *OVERLAYS]

CONFIG_PATH = "/etc/injector/injector.yaml"
CONFIG_DIR = "/etc/injector"
TEMPLATES_DIR = "/etc/injector/templates"
#: The oldest version with native sidecars on by default (beta in 1.29), and the newest schema shipped.
K8S_VERSIONS = ("1.29", latest_version())
#: The API server publishes this ConfigMap in every namespace (since 1.21); nothing here creates it.
AUTO_CONFIGMAPS = {"kube-root-ca.crt"}


# --- loading and rendering -------------------------------------------------------------------------


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Returns the YAML documents of a file, or of every ``*.yaml`` under a folder (sorted).

    YAML anchors (deployment.yaml shares the injector containers' settings through them) load as
    one shared object; each document is rebuilt so that changing one container changes no other.
    """
    files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    docs = [doc for file in files for doc in yaml.safe_load_all(file.read_text(encoding="utf-8"))]
    return [_unshared(doc) for doc in docs if doc is not None]


def _unshared(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


# --- reading pods ------------------------------------------------------------------------------


def _pod_specs_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Returns (workload, pod spec) for every workload in ``docs``."""
    return [(doc, spec) for doc in docs for spec in _pod_specs_of(doc)]


def _configmap_refs(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            yield volume["configMap"]
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                yield source["configMap"]
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for env in container.get("env", []):
            if "configMapKeyRef" in env.get("valueFrom", {}):
                yield env["valueFrom"]["configMapKeyRef"]
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield source["configMapRef"]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def injector_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run the injector (their command starts with ``injector``)."""
    return [c for c in all_containers(pod) if c.get("command", [""])[0] == "injector"]


def app_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in all_containers(pod) if c not in injector_containers(pod)]


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    return next((m for m in container.get("volumeMounts", []) if m["mountPath"] == path), None)


def mount_holding(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The mount ``path`` lies in: mounted there, or in a folder below the deepest mount above it."""
    holding = [m for m in container.get("volumeMounts", []) if Path(path).is_relative_to(m["mountPath"])]
    return max(holding, key=lambda m: len(Path(m["mountPath"]).parts), default=None)


def _mount_name(container: dict[str, Any], path: str) -> str:
    mount = mount_holding(container, path)
    assert mount is not None, f"{container['name']}: nothing mounted at {path}"
    return str(mount["name"])


def volume_named(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (volume,) = [v for v in pod.get("volumes", []) if v["name"] == name]
    return volume


def configmap_named(docs: list[dict[str, Any]], name: str, namespace: str | None) -> dict[str, Any]:
    (doc,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name and d["metadata"].get("namespace") == namespace
    ]
    return doc


def materialize_config(docs: list[dict[str, Any]], workload: dict[str, Any], dest: Path) -> Path:
    """Writes what the injector sees under /etc/injector (config and templates) to ``dest``.

    Returns the path of the config file, the ``--config`` of the injector's command.
    """
    pod = _pod_specs_of(workload)[0]
    container = injector_containers(pod)[0]
    namespace = workload["metadata"].get("namespace")
    for path in (CONFIG_DIR, TEMPLATES_DIR):
        mount = mount_of(container, path)
        assert mount is not None, f"{workload['metadata']['name']}: nothing mounted at {path}"
        name = volume_named(pod, mount["name"])["configMap"]["name"]
        folder = dest / Path(path).relative_to(CONFIG_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        for key, text in configmap_named(docs, name, namespace).get("data", {}).items():
            (folder / key).write_text(text, encoding="utf-8")
    return dest / Path(CONFIG_PATH).relative_to(CONFIG_DIR)


KUBECTL = shutil.which("kubectl")
NO_KUBECTL = "kubectl is not installed: rendering a kustomization needs `kubectl kustomize`"


@functools.cache
def _kustomize(folder: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {folder} failed: {done.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def rendered(variant: str) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize deploy/<variant>`` renders (cached: do not modify them).

    Skips the calling test when kubectl is not installed.
    """
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL)
    return _kustomize(DEPLOY / variant)


def workloads(variant: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = pod_specs(rendered(variant))
    assert found, f"{variant}: no workload"
    return found


def config_of(docs: list[dict[str, Any]], workload: dict[str, Any], tmp: Path) -> Config:
    """The injector config this workload runs with, loaded from its materialized /etc/injector."""
    return load_config(materialize_config(docs, workload, tmp), environ={})


def _variant_files() -> tuple[set[Path], set[Path]]:
    """(patch files, generator input files) named by the kustomizations under deploy/."""
    patches: set[Path] = set()
    inputs: set[Path] = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        patches |= {kustomization.parent / p["path"] for p in spec.get("patches", [])}
        inputs |= {kustomization.parent / f for g in spec.get("configMapGenerator", []) for f in g["files"]}
    return patches, inputs


def resource_files() -> list[Path]:
    """Every YAML file under deploy/ that holds Kubernetes objects (not kustomizations, patches or inputs)."""
    patches, inputs = _variant_files()
    return [
        path
        for path in sorted(DEPLOY.rglob("*.yaml"))
        if path.name != "kustomization.yaml" and path not in patches and path not in inputs
    ]


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as kubelet applies it: the container's, else the pod's."""
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def health_port(container: dict[str, Any], config: Config) -> int:
    """The port ``injector sidecar`` listens on: --health-address, else INJECTOR_HEALTH_ADDRESS, else the config."""
    address = config.health.address
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    address = env.get("INJECTOR_HEALTH_ADDRESS") or address
    command = container["command"]
    for i, token in enumerate(command):
        if token == "--health-address":
            address = command[i + 1]
        elif token.startswith("--health-address="):
            address = token.split("=", 1)[1]
    assert address, "the sidecar has no health address, but its probes need one"
    return int(address.rpartition(":")[2])


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


VARIANTS = [str(folder.relative_to(DEPLOY)) for folder in KUSTOMIZATIONS]


# --- schemas -------------------------------------------------------------------------------------


def _validate(doc: dict[str, Any], version: str, where: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where}: {doc['kind']}/{doc['metadata']['name']} at {path or '(top)'}: {exc.message}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_file_is_schema_valid(path: Path, version: str) -> None:
    """Every Kubernetes object in a YAML file under deploy/ validates strictly (unknown fields fail)."""
    docs = load_manifests(path)
    assert docs, f"{path}: no document"
    for doc in docs:
        _validate(doc, version, str(path.relative_to(DEPLOY)))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_variant_is_schema_valid(variant: str, version: str) -> None:
    """Every object of a rendered kustomization validates strictly against the Kubernetes schemas."""
    for doc in rendered(variant):
        _validate(doc, version, variant)


def test_classic_sidecar_validates_on_the_oldest_schema() -> None:
    """classic-sidecar uses nothing newer than the oldest Kubernetes the validator knows (1.25)."""
    for doc in rendered("overlays/classic-sidecar"):
        _validate(doc, all_versions()[0], "overlays/classic-sidecar")


def test_native_sidecar_is_an_unknown_field_before_1_28() -> None:
    """The strict check does see container fields: restartPolicy does not exist before Kubernetes 1.28."""
    (deployment,) = [d for d in rendered("base") if d["kind"] == "Deployment"]
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


# --- the injector's containers ------------------------------------------------------------------


def _check_flags(command: list[str], name: str) -> None:
    sub = cli.commands[name]
    options = {opt: param for param in sub.params if isinstance(param, click.Option) for opt in param.opts}
    tokens = iter(command[2:])
    for token in tokens:
        flag = token.split("=", 1)[0]
        assert flag in options, f"{command}: `injector {name}` has no option {flag}"
        if not options[flag].is_flag and "=" not in token:
            next(tokens)


@pytest.mark.parametrize("variant", VARIANTS)
def test_commands_are_injector_init_and_sidecar_with_the_mounted_config(variant: str) -> None:
    """Each pod runs `injector init|sidecar --config /etc/injector/injector.yaml`, with flags the CLI has."""
    for _, pod in workloads(variant):
        commands = sorted(c["command"][1] for c in injector_containers(pod))
        assert commands == ["init", "sidecar"]
        for container in injector_containers(pod):
            command = container["command"]
            assert command[2:4] == ["--config", CONFIG_PATH], command
            _check_flags(command, command[1])
            sub = cli.commands[command[1]]
            envvars = {var for p in sub.params for var in ([p.envvar] if isinstance(p.envvar, str) else p.envvar or [])}
            for env in container.get("env", []):
                if env["name"].startswith("INJECTOR_"):
                    assert env["name"] in envvars, f"`injector {command[1]}` reads no {env['name']}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_injector_logs_json(variant: str) -> None:
    """The injector containers log JSON for the cluster's log pipeline."""
    for _, pod in workloads(variant):
        for container in injector_containers(pod):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("INJECTOR_LOG_FORMAT") == "json", container["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_completes_before_the_sidecar_starts(variant: str) -> None:
    """init is a plain init container listed before the sidecar; the sidecar is native unless classic."""
    for _, pod in workloads(variant):
        inits = pod.get("initContainers", [])
        (init,) = [c for c in inits if c.get("command", [""])[:2] == ["injector", "init"]]
        assert "restartPolicy" not in init, "injector init must run to completion"
        (sidecar,) = [c for c in injector_containers(pod) if c["command"][1] == "sidecar"]
        if variant == "overlays/classic-sidecar":
            assert sidecar in pod["containers"] and "restartPolicy" not in sidecar
        else:
            assert sidecar in inits, "the sidecar must be a native sidecar (an init container)"
            assert sidecar.get("restartPolicy") == "Always"
            assert inits.index(init) < inits.index(sidecar), "init must come first: the sidecar adopts its output"


@pytest.mark.parametrize("variant", VARIANTS)
def test_sidecar_probes_use_the_health_endpoints_of_its_config(variant: str, tmp_path: Path) -> None:
    """startupProbe and readinessProbe on /readyz, livenessProbe on /healthz, at health.address's port."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        (sidecar,) = [c for c in injector_containers(pod) if c["command"][1] == "sidecar"]
        port = health_port(sidecar, config)
        expected = {"startupProbe": "/readyz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        if workload["kind"] == "Job":
            del expected["readinessProbe"]  # nothing routes traffic to a Job
        for probe_name, path in expected.items():
            probe = sidecar.get(probe_name)
            assert probe is not None, f"{variant}: the sidecar has no {probe_name}"
            assert probe["httpGet"]["path"] == path, probe_name
            assert probe_port(sidecar, probe) == port, f"{probe_name} port != health.address port {port}"
        assert port in [p["containerPort"] for p in sidecar.get("ports", [])]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_is_hardened(variant: str) -> None:
    """Non-root numeric user, no privilege escalation, read-only root, no capabilities, RuntimeDefault."""
    for _, pod in workloads(variant):
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert isinstance(pod["securityContext"].get("fsGroup"), int), "fsGroup lets the app read 0440 files"
        assert pod.get("automountServiceAccountToken") is False
        for container in all_containers(pod):
            ctx = container.get("securityContext", {})
            name = container["name"]
            assert ctx.get("runAsNonRoot") is True, name
            assert ctx.get("allowPrivilegeEscalation") is False, name
            assert ctx.get("readOnlyRootFilesystem") is True, name
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not ctx.get("capabilities", {}).get("add"), name
            assert not ctx.get("privileged"), name
            user = effective(pod, container, "runAsUser")
            assert isinstance(user, int) and user > 0, f"{name}: runAsUser must be numeric and not root"
        assert not any("hostPath" in v for v in pod.get("volumes", []))


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_and_state_dirs_are_in_memory_volumes(variant: str, tmp_path: Path) -> None:
    """output_dir and state_dir are emptyDir medium Memory with a sizeLimit, mounted where the config says."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        assert config.state_dir is not None, "init hands its token to the sidecar through state_dir"
        for container in injector_containers(pod):
            state_mount = mount_holding(container, str(config.state_dir))
            assert state_mount is not None and str(config.state_dir) != state_mount["mountPath"], (
                "state_dir is a folder injector creates inside its emptyDir: kubelet makes the volume's "
                "root root-owned and world-writable, which injector refuses for the folder of its token"
            )
            for path in (config.output_dir, config.state_dir):
                mount = mount_holding(container, str(path))
                assert mount is not None, f"{container['name']}: {path} is not mounted"
                assert not mount.get("readOnly"), f"{container['name']} must write {path}"
                empty_dir = volume_named(pod, mount["name"]).get("emptyDir")
                assert empty_dir is not None, f"{path} must be an emptyDir"
                assert empty_dir.get("medium") == "Memory", f"{path} must be tmpfs"
                assert empty_dir.get("sizeLimit"), f"{path} needs a sizeLimit"


@pytest.mark.parametrize("variant", VARIANTS)
def test_app_reads_secrets_read_only_and_never_sees_the_token(variant: str, tmp_path: Path) -> None:
    """The app mounts output_dir read-only; state_dir and the Vault token only in the injector containers."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        sidecar = injector_containers(pod)[0]
        state_volume = _mount_name(sidecar, str(config.state_dir))
        secrets_volume = _mount_name(sidecar, str(config.output_dir))
        assert config.vault is not None
        token_mount = next(
            m for m in sidecar["volumeMounts"] if str(config.vault.auth.token_path).startswith(m["mountPath"] + "/")
        )
        apps = app_containers(pod)
        assert apps
        for app in apps:
            mounted = {m["name"]: m for m in app.get("volumeMounts", [])}
            assert state_volume not in mounted, f"{app['name']} must not see state_dir"
            assert token_mount["name"] not in mounted, f"{app['name']} must not see the Vault token"
            assert mounted[secrets_volume].get("readOnly") is True, f"{app['name']} must mount secrets read-only"


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_and_templates_are_whole_configmap_mounts(variant: str) -> None:
    """Config and templates are ConfigMap volumes without subPath; only the templates keep a fixed name.

    A subPath mount never updates, and a hashed name turns every template edit into a rollout: the
    templates ConfigMap must be updated in place for the sidecar's hot reload. The config ConfigMap
    is hashed, so a config edit rolls the pods (the sidecar reads its config once).
    """
    for _, pod in workloads(variant):
        for container in injector_containers(pod):
            config_mount = mount_of(container, CONFIG_DIR)
            templates_mount = mount_of(container, TEMPLATES_DIR)
            assert config_mount is not None and templates_mount is not None
            for mount in (config_mount, templates_mount):
                assert "subPath" not in mount and "subPathExpr" not in mount
                assert mount.get("readOnly") is True
            assert volume_named(pod, templates_mount["name"])["configMap"]["name"] == "injector-templates"
            assert re.fullmatch(
                r"injector-config-[a-z0-9]{10}", volume_named(pod, config_mount["name"])["configMap"]["name"]
            )


@pytest.mark.parametrize("variant", VARIANTS)
def test_embedded_injector_configs_parse(variant: str) -> None:
    """Every injector.yaml in a rendered ConfigMap is a valid config, read as the pod reads it."""
    configs = [
        doc["data"]["injector.yaml"]
        for doc in rendered(variant)
        if doc["kind"] == "ConfigMap" and "injector.yaml" in doc.get("data", {})
    ]
    assert configs
    for text in configs:
        config = parse_config(yaml.safe_load(text), base_dir=Path(CONFIG_DIR), environ={})
        assert config.vault is not None and config.vault.auth.method == "kubernetes"
        assert config.vault.auth.role == "app"
        assert str(config.output_dir) == "/run/secrets/app" and str(config.state_dir) == "/run/injector/state"
        for template in config.templates:
            assert template.source is not None and template.source.parent == Path(TEMPLATES_DIR)


@pytest.mark.parametrize("variant", VARIANTS)
def test_embedded_configs_validate_with_their_templates(variant: str, tmp_path: Path) -> None:
    """`injector validate` passes on the pod's /etc/injector: templates compile, every name is declared."""
    from injector.modes.validate import validate_config

    docs = rendered(variant)
    for workload, _ in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        report = validate_config(config)
        assert report.summary.startswith("ok:"), report.summary


@pytest.mark.skipif(KUBECTL is None, reason=NO_KUBECTL)
@pytest.mark.parametrize("variant", VARIANTS)
def test_injector_validate_passes_on_the_folder(variant: str) -> None:
    """`injector validate --kustomize deploy/<variant>` exits 0, one ok line per workload's config."""
    result = run(["validate", "--kustomize", str(DEPLOY / variant)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(workloads(variant)), lines
    assert all(": ok: " in line for line in lines), lines


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_injector_mounts_what_its_config_reads(variant: str, tmp_path: Path) -> None:
    """The Vault token and CA paths of the config are inside volumes of the injector containers."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        assert config.vault is not None
        for path in (config.vault.auth.token_path, config.vault.ca_cert):
            for container in injector_containers(pod):
                mounts = [m["mountPath"] for m in container["volumeMounts"]]
                assert any(str(path).startswith(m + "/") for m in mounts), f"{container['name']}: {path}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_vault_token_is_projected_for_vault_only(variant: str, tmp_path: Path) -> None:
    """The injector logs in with a projected token of audience "vault", not an API token."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        assert config.vault is not None
        sidecar = injector_containers(pod)[0]
        token_path = config.vault.auth.token_path
        mount = next(m for m in sidecar["volumeMounts"] if str(token_path).startswith(m["mountPath"] + "/"))
        sources = volume_named(pod, mount["name"])["projected"]["sources"]
        (token,) = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
        assert token["audience"] == "vault"
        assert token["path"] == str(token_path.relative_to(mount["mountPath"]))


def _awkward(name: str) -> str:
    """A value for secret ``name`` with every character a careless template would mangle."""
    return f'{name} it\'s "q" $HOME `id` #: x \\ y\ttab'


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _lookup(values: dict[Any, dict[str, str]], base: Any) -> Any:
    from injector.refs import Secret

    return Secret(values[base])


@pytest.mark.parametrize("variant", VARIANTS)
def test_templates_render_what_the_app_reads(variant: str, tmp_path: Path) -> None:
    """Rendered with awkward values, each file gives them back whole to its reader (sh, a YAML parser)."""
    from injector.template.render import Renderer

    docs = rendered(variant)
    for workload, _ in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        values: dict[Any, dict[str, str]] = {}
        for name, ref in config.secrets.items():
            assert ref.key is not None, f"secrets.{name}: give the #KEY, so the template gets one string"
            values.setdefault(ref.base, {})[ref.key] = _awkward(name)
        awkward = {_awkward(name) for name in config.secrets}
        renderer = Renderer(secrets=config.secrets, limits=config.limits)
        for template in config.templates:
            result = renderer.render(renderer.compile(template), functools.partial(_lookup, values))
            assert not result.missing
            text = result.content.decode()
            if template.destination.endswith(".env"):
                path = tmp_path / template.destination
                path.write_text(text, encoding="utf-8")
                names = re.findall(r"^([A-Z_][A-Z0-9_]*)=", text, re.MULTILINE)
                script = f'set -a; . "{path}"; set +a; env -0'
                out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, env={}).stdout
                read = dict(line.split("=", 1) for line in out.split("\0") if "=" in line)
                found = [read.get(name, "") for name in names]
            elif template.destination.endswith((".yml", ".yaml")):
                found = [leaf for leaf in _leaves(yaml.safe_load(text)) if isinstance(leaf, str)]
            else:
                found = [value for value in awkward if value in text]
            secret_like = [value for value in found if "it's" in value]
            assert secret_like, f"{template.destination} uses no secret"
            assert set(secret_like) <= awkward, f"{template.destination}: a value came back altered"


# --- consistency inside each pod -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_references_resolve(variant: str) -> None:
    """Names the API server does not check at admission resolve: mounts, ConfigMaps, service accounts."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        namespace = workload["metadata"].get("namespace")
        names = [c["name"] for c in all_containers(pod)]
        assert len(names) == len(set(names)), f"duplicate container names: {names}"
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for container in all_containers(pod):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"
        for ref in _configmap_refs(pod):
            if ref["name"] not in AUTO_CONFIGMAPS:
                configmap_named(docs, ref["name"], namespace)
        accounts = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"].get("namespace") == namespace]
        assert pod["serviceAccountName"] in [a["metadata"]["name"] for a in accounts]


@pytest.mark.parametrize("variant", VARIANTS)
def test_api_server_rules_the_schema_does_not_check(variant: str) -> None:
    """restartPolicy only on init containers; probes on an init container only if it is a sidecar."""
    for _, pod in workloads(variant):
        for container in pod.get("containers", []):
            assert "restartPolicy" not in container, container["name"]
        for container in pod.get("initContainers", []):
            if container.get("restartPolicy") != "Always":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe", "lifecycle"):
                    assert probe not in container, f"{container['name']}: {probe} needs restartPolicy Always"
        for container in all_containers(pod):
            for port in container.get("ports", []):
                assert len(port.get("name", "")) <= 15, f"port name {port['name']} is longer than 15"


@pytest.mark.parametrize("variant", VARIANTS)
def test_signals_come_with_a_shared_pid_namespace_and_uid(variant: str, tmp_path: Path) -> None:
    """A signal notifier needs shareProcessNamespace and the app under the injector's UID; else keep them apart."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        signals = [n for t in config.templates for n in t.on_change if hasattr(n, "signal")]
        injector_uid = {effective(pod, c, "runAsUser") for c in injector_containers(pod)}
        app_uids = {effective(pod, c, "runAsUser") for c in app_containers(pod)}
        if signals:
            assert pod.get("shareProcessNamespace") is True
            assert app_uids == injector_uid, "a process can signal only processes of its own UID"
        else:
            assert not pod.get("shareProcessNamespace"), "no signal to send: keep the PID namespaces apart"
            assert not app_uids & injector_uid, "the app must not run as the injector's UID"


@pytest.mark.parametrize("variant", VARIANTS)
def test_http_notifiers_reach_a_container_of_the_pod(variant: str, tmp_path: Path) -> None:
    """An http notifier targets the pod's loopback, at a port an app container declares."""
    docs = rendered(variant)
    for workload, pod in workloads(variant):
        config = config_of(docs, workload, tmp_path / workload["metadata"]["name"])
        for template in config.templates:
            for notifier in template.on_change:
                if not hasattr(notifier, "url"):
                    continue
                url = urlsplit(notifier.url)
                assert url.hostname in ("127.0.0.1", "localhost", "::1"), notifier.url
                ports = {p["containerPort"] for c in app_containers(pod) for p in c.get("ports", [])}
                assert url.port in ports, f"{notifier.url}: no app container listens on {url.port}"


# --- consistency across variants ------------------------------------------------------------------


def test_injector_image_and_resources_are_the_same_everywhere() -> None:
    """One image (tagged with injector's version) and one sizing for every injector container."""
    images = set()
    sizings = set()
    for variant in VARIANTS:
        for _, pod in workloads(variant):
            for container in injector_containers(pod):
                images.add(container["image"])
                sizings.add(json.dumps(container["resources"], sort_keys=True))
    assert images == {f"registry.example.com/injector:{injector.__version__}"}
    assert len(sizings) == 1, f"injector resources differ between variants: {sizings}"
    (sizing,) = [json.loads(s) for s in sizings]
    assert {"cpu", "memory"} <= set(sizing["requests"]) and "memory" in sizing["limits"]


def test_injector_resources_point_at_the_benchmark() -> None:
    """Each file that sizes injector containers says where the numbers come from."""
    for path in sorted(DEPLOY.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if re.search(r'\["injector", "(init|sidecar)"', text) and "resources:" in text:
            assert "# sized from bench/README.md" in text, path


def test_job_sidecar_does_not_block_completion() -> None:
    """In the Job, the sidecar is native (init container, restartPolicy Always) and revokes on exit."""
    ((job, pod),) = workloads("overlays/job")
    assert job["kind"] == "Job" and pod["restartPolicy"] == "Never"
    assert not [c for c in pod["containers"] if c in injector_containers(pod)]
    (sidecar,) = [c for c in injector_containers(pod) if c["command"][1] == "sidecar"]
    assert sidecar.get("restartPolicy") == "Always" and "--revoke-on-exit" in sidecar["command"]


def test_aws_variant_uses_irsa_and_aws_references(tmp_path: Path) -> None:
    """The AWS variant annotates the service account for IRSA, keeps AWS credentials from the app, reads aws-sm."""
    docs = rendered("overlays/aws")
    ((workload, pod),) = workloads("overlays/aws")
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    skipped = workload["spec"]["template"]["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert set(skipped.split(",")) == {c["name"] for c in app_containers(pod)}
    config = config_of(docs, workload, tmp_path)
    assert "aws-sm" in {ref.scheme for ref in config.secrets.values()}
    json.loads((DEPLOY / "overlays/aws/iam-policy.json").read_text(encoding="utf-8"))


# --- Vault and docs -----------------------------------------------------------------------------


def test_vault_setup_matches_the_manifests(tmp_path: Path) -> None:
    """setup.sh's role, service account, namespace, mount and audience are the ones the pods use."""
    script = DEPLOY / "vault" / "setup.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    defaults = dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}", text, re.MULTILINE))
    docs = rendered("overlays/native-sidecar")
    ((workload, pod),) = workloads("overlays/native-sidecar")
    config = config_of(docs, workload, tmp_path)
    assert config.vault is not None
    assert defaults["NAMESPACE"] == workload["metadata"]["namespace"]
    assert defaults["SERVICE_ACCOUNT"] == pod["serviceAccountName"]
    assert defaults["AUTH_MOUNT"] == config.vault.auth.mount
    assert f'"auth/${{AUTH_MOUNT}}/role/{config.vault.auth.role}"' in text
    assert "audience=vault" in text


def test_vault_policy_covers_every_vault_reference(tmp_path: Path) -> None:
    """Each Vault path any variant reads has a rule in app-policy.hcl (KV v2 under data/)."""
    policy = set(
        re.findall(r'^path "([^"]+)"', (DEPLOY / "vault" / "app-policy.hcl").read_text(encoding="utf-8"), re.MULTILINE)
    )
    for variant in VARIANTS:
        docs = rendered(variant)
        for workload, _ in workloads(variant):
            config = config_of(docs, workload, tmp_path / variant / workload["metadata"]["name"])
            for ref in config.secrets.values():
                if ref.scheme == "vault":
                    mount, _, rest = ref.path.partition("/")
                    assert {ref.path, f"{mount}/data/{rest}"} & policy, f"{variant}: no policy for {ref}"
    assert "sys/leases/revoke" in policy, "--revoke-on-exit revokes leases one by one"


def test_auth_delegator_goes_to_the_vault_server_account() -> None:
    """The token reviewer binding names system:auth-delegator and Vault's service account, not the app's."""
    (binding,) = load_manifests(DEPLOY / "vault" / "auth-delegator.yaml")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vault", "namespace": "vault"}]


def test_readme_covers_every_variant() -> None:
    """deploy/README.md explains each overlay and how to apply it."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "kubectl apply -k deploy/overlays/native-sidecar" in readme
    for folder in OVERLAYS:
        assert f"overlays/{folder.name}" in readme, folder.name
