"""Injector configs in Kubernetes manifests: found through the pod's mounts, checked with their templates.

The scan is pure (YAML text in); the CLI tests run `injector validate --manifests/--kustomize` in a
fresh process. deploy/'s own folders are checked the same way in test_deploy.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.errors import ConfigError, RenderError
from injector.modes.manifests import check, check_all, scan
from tests.fixtures.cli import run

CONFIG = """\
output_dir: /run/secrets/app
secrets:
  password: "vault:secret/app#password"
vault:
  address: https://vault:8200
templates:
  - source: templates/app.env.j2
    destination: app.env
"""
TEMPLATE = "PASSWORD={{ secrets.password }}\n"


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": data}


def container(name: str, command: list[str] | None, mounts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    found = {"name": name, "image": "injector", "volumeMounts": mounts, **extra}
    if command is not None:
        found["command"] = command
    return found


MOUNTS = [
    {"name": "config", "mountPath": "/etc/injector", "readOnly": True},
    {"name": "templates", "mountPath": "/etc/injector/templates", "readOnly": True},
]
VOLUMES = [
    {"name": "config", "configMap": {"name": "injector-config"}},
    {"name": "templates", "configMap": {"name": "injector-templates"}},
]


def deployment(containers: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pod = {"initContainers": containers, "containers": [{"name": "app", "image": "app"}], "volumes": volumes or VOLUMES}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"template": {"spec": pod}},
    }


def manifests(
    *docs: dict[str, Any], config: str = CONFIG, templates: dict[str, str] | None = None, containers: Any = None
) -> str:
    """A Deployment running injector-init and the sidecar with deploy/'s layout, plus ``docs``."""
    if containers is None:
        config_flag = ["--config", "/etc/injector/injector.yaml"]
        containers = [
            container("injector-init", ["injector", "init", *config_flag], MOUNTS),
            container("injector", ["injector", "sidecar", *config_flag], MOUNTS, restartPolicy="Always"),
        ]
    base = [
        configmap("injector-config", {"injector.yaml": config}),
        configmap("injector-templates", templates if templates is not None else {"app.env.j2": TEMPLATE}),
        deployment(containers),
    ]
    return yaml.safe_dump_all([*base, *docs])


# --- finding configs --------------------------------------------------------------------------------


def test_config_and_templates_are_found_through_the_mounts() -> None:
    """--config's path leads to the config's ConfigMap key; every mounted key is a file at its pod path."""
    (found,) = scan(manifests()).configs
    assert found.config.configmap == "injector-config" and found.config.key == "injector.yaml"
    assert found.config_path == "/etc/injector/injector.yaml"
    assert found.files["/etc/injector/templates/app.env.j2"].text == TEMPLATE
    assert found.files["/etc/injector/templates/app.env.j2"].origin == "ConfigMap injector-templates, key app.env.j2"


def test_init_and_sidecar_with_the_same_files_are_checked_once() -> None:
    """Containers of one pod that see the same config and files give one config, naming both."""
    (found,) = scan(manifests()).configs
    assert "(injector-init, injector)" in found.where
    assert "ConfigMap injector-config, key injector.yaml" in found.where


def test_a_deeper_mount_hides_the_shallower_volume() -> None:
    """A file the config volume maps under templates/ is hidden by the templates volume mounted there."""
    volumes = [
        {
            "name": "config",
            "configMap": {
                "name": "injector-config",
                "items": [
                    {"key": "injector.yaml", "path": "injector.yaml"},
                    {"key": "stale", "path": "templates/app.env.j2"},
                ],
            },
        },
        VOLUMES[1],
    ]
    text = yaml.safe_dump_all(
        [
            configmap("injector-config", {"injector.yaml": CONFIG, "stale": "{{ broken"}),
            configmap("injector-templates", {"app.env.j2": TEMPLATE}),
            deployment([container("i", ["injector", "init", "-c", "/etc/injector/injector.yaml"], MOUNTS)], volumes),
        ]
    )
    (found,) = scan(text).configs
    assert found.files["/etc/injector/templates/app.env.j2"].configmap == "injector-templates"
    assert check(found)[0].startswith("ok:")


def test_items_subpath_and_projected_volumes_map_paths_as_kubelet_does() -> None:
    """items rename keys, a subPath mount is one file, a projected volume merges its ConfigMaps."""
    mounts = [
        {"name": "config", "mountPath": "/config/main.yaml", "subPath": "renamed.yaml"},
        {"name": "all", "mountPath": "/config/templates"},
    ]
    volumes = [
        {
            "name": "config",
            "configMap": {"name": "injector-config", "items": [{"key": "injector.yaml", "path": "renamed.yaml"}]},
        },
        {
            "name": "all",
            "projected": {
                "sources": [
                    {"configMap": {"name": "injector-templates"}},
                    {"serviceAccountToken": {"path": "token", "audience": "vault"}},
                ]
            },
        },
    ]
    text = yaml.safe_dump_all(
        [
            configmap("injector-config", {"injector.yaml": CONFIG}),
            configmap("injector-templates", {"app.env.j2": TEMPLATE}),
            deployment([container("i", ["/usr/bin/injector", "init", "--config=/config/main.yaml"], mounts)], volumes),
        ]
    )
    (found,) = scan(text).configs
    assert found.config_path == "/config/main.yaml"
    assert set(found.files) == {"/config/main.yaml", "/config/templates/app.env.j2"}
    assert check(found)[0].startswith("ok:")


def test_args_without_command_run_the_images_entrypoint() -> None:
    """A container with only args (the image's ENTRYPOINT is injector) and INJECTOR_CONFIG is found."""
    env = [{"name": "INJECTOR_CONFIG", "value": "/etc/injector/injector.yaml"}]
    containers = [container("sidecar", None, MOUNTS, args=["sidecar"], env=env)]
    (found,) = scan(manifests(containers=containers)).configs
    assert found.config_path == "/etc/injector/injector.yaml"


def test_other_containers_are_not_taken_for_the_injector() -> None:
    """An app with a --config flag of its own into a ConfigMap is not an injector container."""
    containers = [container("app", ["prometheus", "--config", "/etc/injector/injector.yaml"], MOUNTS)]
    found = scan(manifests(containers=containers))
    # Only the ConfigMap with an injector.yaml key is found, without a pod to follow.
    (config,) = found.configs
    assert config.by_name and "no injector container mounts it" in config.where


def test_the_containers_literal_env_fills_the_config() -> None:
    """INJECTOR_OUTPUT_DIR in the container's env applies, as in the pod."""
    config = CONFIG.replace("output_dir: /run/secrets/app\n", "")
    env = [{"name": "INJECTOR_OUTPUT_DIR", "value": "/from/env"}]
    containers = [container("i", ["injector", "init", "--config", "/etc/injector/injector.yaml"], MOUNTS, env=env)]
    (found,) = scan(manifests(config=config, containers=containers)).configs
    assert check(found)[0].endswith("output_dir /from/env")


def test_a_configmap_the_manifests_do_not_hold_is_a_warning() -> None:
    """A config in a ConfigMap created elsewhere cannot be checked: a warning names it, nothing fails."""
    text = yaml.safe_dump_all(
        [deployment([container("i", ["injector", "init", "-c", "/etc/injector/injector.yaml"], MOUNTS)])]
    )
    found = scan(text)
    assert not found.configs and not found.errors
    (warning,) = found.warnings
    assert "volume config is a ConfigMap these manifests do not contain" in warning


def test_a_config_path_the_configmap_lacks_is_an_error() -> None:
    """--config naming a key the mounted ConfigMap does not have is an error: the pod would fail."""
    containers = [container("i", ["injector", "init", "--config", "/etc/injector/other.yaml"], MOUNTS)]
    found = scan(manifests(containers=containers))
    (error,) = found.errors
    assert "--config /etc/injector/other.yaml: no ConfigMap mounted into the container has this file" in error


def test_an_unmounted_config_resolves_sources_by_file_name() -> None:
    """A ConfigMap holding injector.yaml and its templates, with no workload, is checked by key names."""
    text = yaml.safe_dump_all([configmap("standalone", {"injector.yaml": CONFIG, "app.env.j2": TEMPLATE})])
    lines, _ = check_all(text)
    (line,) = lines
    assert "ConfigMap ns/standalone, key injector.yaml" in line and "ok: 1 template(s)" in line


def test_no_injector_config_at_all_is_a_config_error() -> None:
    """Manifests with no injector config fail: checking nothing must not pass."""
    with pytest.raises(ConfigError, match="no injector config in these manifests"):
        check_all(yaml.safe_dump_all([configmap("other", {"a": "b"})]))


# --- checking them -----------------------------------------------------------------------------------


def test_a_bad_embedded_config_names_its_configmap_key() -> None:
    """A config error in the embedded config names the workload, the ConfigMap and the key."""
    with pytest.raises(ConfigError) as info:
        check_all(manifests(config=CONFIG + "outptu_dir: /x\n"))
    message = str(info.value)
    assert message.startswith("Deployment ns/app (injector-init, injector): /etc/injector/injector.yaml")
    assert "(ConfigMap injector-config, key injector.yaml)" in message and "outptu_dir: unknown key" in message


def test_a_missing_template_is_a_config_error_listing_the_files() -> None:
    """A source no mounted ConfigMap has is a ConfigError naming the path and the files there are."""
    with pytest.raises(ConfigError) as info:
        check_all(manifests(templates={"other.j2": TEMPLATE}))
    message = str(info.value)
    assert "template file not found: /etc/injector/templates/app.env.j2" in message
    assert "/etc/injector/templates/other.j2" in message


def test_a_broken_template_names_its_configmap_key() -> None:
    """A syntax error in a template names the config, the template's ConfigMap and key, and the line."""
    with pytest.raises(RenderError) as info:
        check_all(manifests(templates={"app.env.j2": "A={{ x }}\n{% if %}\n"}))
    message = str(info.value)
    assert "ConfigMap injector-config, key injector.yaml" in message
    assert "[ConfigMap injector-templates, key app.env.j2]" in message and "line 2" in message


def test_an_undeclared_secret_name_fails_as_in_the_pod() -> None:
    """Templates are checked against the embedded config's secrets: map."""
    with pytest.raises(RenderError, match=r"secrets\.nope"):
        check_all(manifests(templates={"app.env.j2": "X={{ secrets.nope }}\n"}))


# --- the CLI -----------------------------------------------------------------------------------------


def test_cli_checks_manifests_from_a_file(tmp_path: Path) -> None:
    """`injector validate --manifests FILE` exits 0 and prints one ok line per config."""
    path = tmp_path / "all.yaml"
    path.write_text(manifests(), encoding="utf-8")
    result = run(["validate", "--manifests", str(path)])
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("Deployment ns/app (injector-init, injector)") and "ok: 1 template(s)" in line


def test_cli_reads_manifests_from_stdin() -> None:
    """`--manifests -` reads stdin (kubectl kustomize DIR | injector validate -f -)."""
    result = run(["validate", "-f", "-"], stdin=manifests())
    assert result.returncode == 0, result.stderr


def test_cli_broken_template_exits_16_naming_the_key() -> None:
    """A broken template in a ConfigMap: exit 16 (render error) and a message naming the ConfigMap key."""
    result = run(["validate", "-f", "-"], stdin=manifests(templates={"app.env.j2": "{% if %}"}))
    assert result.returncode == 16
    assert "ConfigMap injector-templates, key app.env.j2" in result.stderr


def test_cli_missing_template_exits_11() -> None:
    """A template the ConfigMaps do not have is a config error: exit 11."""
    result = run(["validate", "-f", "-"], stdin=manifests(templates={}))
    assert result.returncode == 11
    assert "template file not found: /etc/injector/templates/app.env.j2" in result.stderr


def test_cli_missing_template_file_exits_11(tmp_path: Path) -> None:
    """`validate --config FILE` whose source file does not exist: exit 11, naming the file."""
    config = tmp_path / "injector.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    result = run(["validate", "-c", str(config)])
    assert result.returncode == 11
    assert f"template file not found: {tmp_path}/templates/app.env.j2" in result.stderr


def test_cli_refuses_two_inputs(tmp_path: Path) -> None:
    """--config with --manifests is a usage error (exit 2): which one to check is ambiguous."""
    path = tmp_path / "all.yaml"
    path.write_text(manifests(), encoding="utf-8")
    result = run(["validate", "-c", str(path), "-f", str(path)])
    assert result.returncode == 2 and "give one of --config, --kustomize and --manifests" in result.stderr


def test_cli_without_kubectl_says_to_render_elsewhere(tmp_path: Path) -> None:
    """--kustomize without kubectl or kustomize: exit 11, saying to pass rendered manifests instead."""
    result = run(["validate", "--kustomize", str(tmp_path)], env={"PATH": str(tmp_path / "empty")})
    assert result.returncode == 11
    assert "neither is installed" in result.stderr and "--manifests" in result.stderr


needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed"
)


@needs_kubectl
def test_cli_kustomizes_a_folder_given_as_config(tmp_path: Path) -> None:
    """`validate -c DIR` renders DIR with kubectl kustomize and checks the generated ConfigMaps."""
    (tmp_path / "injector.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "app.env.j2").write_text(TEMPLATE, encoding="utf-8")
    text = manifests()
    workload = [d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment"]
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump_all(workload), encoding="utf-8")
    kustomization = {
        "namespace": "ns",
        "resources": ["deployment.yaml"],
        "configMapGenerator": [
            {"name": "injector-config", "files": ["injector.yaml"]},
            {"name": "injector-templates", "files": ["app.env.j2"]},
        ],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    result = run(["validate", "-c", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "(ConfigMap injector-config-" in result.stdout  # the name kustomize gave it, hash and all


@needs_kubectl
def test_cli_kustomize_failure_is_a_config_error(tmp_path: Path) -> None:
    """A folder kustomize cannot build: exit 11 with kustomize's own reason."""
    result = run(["validate", "--kustomize", str(tmp_path)])
    assert result.returncode == 11
    assert "kubectl kustomize" in result.stderr and "kustomization.yaml" in result.stderr
