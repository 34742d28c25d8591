"""Annotations → config: one schema, one validator, and every error names the annotation to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from injector.errors import ConfigError
from injector.webhook.annotations import compile_annotations
from injector.webhook.keys import GLOBAL_DEFAULTS, PREFIX, load_defaults
from tests.webhook.support import WEB_ANNOTATIONS, annotated


def _error(annotations: dict[str, str], defaults: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        compile_annotations(annotations, defaults)
    return str(caught.value)


def test_annotations_compile_to_the_config_yaml_would_be() -> None:
    """The compiled config is plain config YAML: secrets, templates, vault auth, health."""
    data = yaml.safe_load(compile_annotations(WEB_ANNOTATIONS).config_yaml or "")
    assert data["secrets"]["db_password"] == "vault:database/creds/web#password"
    templates = {t["destination"]: t for t in data["templates"]}
    assert templates["tls.crt"]["secret"].startswith("vault:pki/issue/web")
    assert templates["tls.crt"]["on_change"] == [{"signal": "SIGHUP", "process": "nginx"}]
    assert templates["app.env"]["mode"] == "0440"
    assert data["vault"]["auth"] == {
        "method": "kubernetes",
        "role": "web",
        "mount": "kubernetes",
        "token_path": "/var/run/secrets/injector/vault/token",
    }


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("template-app.env", "{{ secrets.db_password }", "template-app.env"),
        ("template-app.env", "{{ secrets.nope }}", "template-app.env"),
        ("secret-db_password", "vault:", "secret-db_password"),
        ("secret-db_password", "s3:bucket/key", "secret-db_password"),
        ("mode-app.env", "0999", "mode-app.env"),
        ("notify-tls_crt", "SIGNOPE nginx", "notify-tls_crt"),
        ("notify-tls_crt", "http ftp://x/reload", "notify-tls_crt"),
        ("notify-tls_crt", "page someone", "notify-tls_crt"),
        ("file-tls_crt", "../etc/passwd", "file-tls_crt"),
        ("vault-address", "vault.vault.svc", "vault-address"),
        ("refresh-interval", "soon", "refresh-interval"),
        ("owner-app.env", "root", "owner-app.env"),
        ("mode", "always", "mode"),
        ("memory-limit", "lots", "memory-limit"),
        ("run-as-user", "0", "run-as-user"),
    ],
)
def test_each_error_names_its_annotation(key: str, value: str, named: str) -> None:
    """A bad value denies the pod with a message that starts with the annotation to fix."""
    message = _error({**WEB_ANNOTATIONS, PREFIX + key: value})
    assert message.startswith(f"{PREFIX}{named}: "), message


def test_missing_role_names_the_role_annotation() -> None:
    """vault-address without vault-role fails in the config parser, reported as vault-role."""
    annotations = {k: v for k, v in WEB_ANNOTATIONS.items() if not k.endswith("vault-role")}
    assert _error(annotations).startswith(f"{PREFIX}vault-role: vault.auth.role: is required")


def test_vault_reference_without_a_role_names_vault_role() -> None:
    """A vault: reference with no vault-role is validate_config's error, named for vault-role."""
    annotations = {k: v for k, v in WEB_ANNOTATIONS.items() if "vault-" not in k}
    assert _error(annotations, {"vault-address": "https://v:8200"}).startswith(f"{PREFIX}vault-role: vault: references")


def test_default_vault_address_does_not_pull_vault_into_an_aws_pod() -> None:
    """With vault-address in the defaults, a pod that reads only AWS gets no vault section and no token."""
    plan = compile_annotations(annotated(**{"secret-k": "aws-ssm:/app/k"}), {"vault-address": "https://v:8200"})
    assert "vault" not in yaml.safe_load(plan.config_yaml or "") and plan.vault_audience is None


def test_every_problem_is_reported_once_each() -> None:
    """Two broken templates give two lines, each naming its own annotation."""
    message = _error({**WEB_ANNOTATIONS, PREFIX + "template-a": "{{ x", PREFIX + "template-b": "{% if %}"})
    lines = message.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{PREFIX}template-a", f"{PREFIX}template-b"]


@pytest.mark.parametrize("key", ["secrets-pth", "vault-adress", "secret", "template-", "injected", "notify"])
def test_unknown_annotation_denies(key: str) -> None:
    """A typo under the prefix is an error (fail closed), with a suggestion where one is close."""
    message = _error({**WEB_ANNOTATIONS, PREFIX + key: "x"})
    assert message.startswith(f"{PREFIX}{key}: unknown annotation")


def test_unknown_annotation_suggests_the_close_key() -> None:
    """vault-adress suggests vault-address."""
    assert "did you mean injector.tmpfs.dev/vault-address?" in _error({**WEB_ANNOTATIONS, PREFIX + "vault-adress": "x"})


def test_webhook_written_annotations_cannot_be_given() -> None:
    """A pod template carrying our config annotation (copied from an injected pod) is refused."""
    assert _error({**WEB_ANNOTATIONS, PREFIX + "config": "output_dir: /x"}).startswith(f"{PREFIX}config: is written")


def test_options_for_a_name_nobody_declared_deny() -> None:
    """notify-x without secret-x or template-x is an error, not ignored."""
    assert _error({**WEB_ANNOTATIONS, PREFIX + "notify-ghost": "SIGHUP nginx"}).startswith(f"{PREFIX}notify-ghost:")


def test_secret_name_must_be_an_identifier() -> None:
    """secret-db-password cannot be secrets.db-password in a template: denied with the reason."""
    assert "identifier" in _error(annotated(**{"secret-db-password": "vault:secret/a#b", "vault-address": "https://v"}))


def test_nothing_to_inject_denies() -> None:
    """A selected pod without any secret, template or config-configmap is denied."""
    assert "nothing to inject" in _error(annotated(**{"vault-role": "web"}))


def test_config_configmap_excludes_inline_config() -> None:
    """config-configmap with secret- annotations is ambiguous: denied."""
    message = _error({**WEB_ANNOTATIONS, PREFIX + "config-configmap": "web-injector"})
    assert "cannot be combined with config-configmap" in message


def test_template_source_needs_the_templates_configmap() -> None:
    """template-source-FILE names a key of templates-configmap, which must be given."""
    message = _error(annotated(**{"template-source-app.conf": "app.conf.j2"}))
    assert message.startswith(f"{PREFIX}template-source-app.conf: needs templates-configmap")


def test_template_source_is_checked_in_the_pod_not_here() -> None:
    """A ConfigMap template is not readable by the webhook: the config points at its mounted path."""
    plan = compile_annotations(annotated(**{"template-source-app.conf": "app.conf.j2", "templates-configmap": "tpl"}))
    data = yaml.safe_load(plan.config_yaml or "")
    assert data["templates"] == [{"source": "/etc/injector/templates/app.conf.j2", "destination": "app.conf"}]


def test_file_none_keeps_a_secret_out_of_its_own_file() -> None:
    """file-NAME: none declares the secret for templates without writing it alone."""
    plan = compile_annotations(
        annotated(**{"secret-pw": "env:PW", "file-pw": "none", "template-app.env": "PW={{ secrets.pw }}"})
    )
    data = yaml.safe_load(plan.config_yaml or "")
    assert [t["destination"] for t in data["templates"]] == ["app.env"]


def test_template_of_a_secrets_name_replaces_its_raw_file() -> None:
    """template-NAME beside secret-NAME renders the file NAME instead of the raw value."""
    plan = compile_annotations(annotated(**{"secret-pw": "env:PW", "template-pw": "{{ secrets.pw }}\n"}))
    (template,) = yaml.safe_load(plan.config_yaml or "")["templates"]
    assert template == {"contents": "{{ secrets.pw }}\n", "destination": "pw"}


def test_defaults_fill_what_the_pod_leaves_out(tmp_path: Path) -> None:
    """The --defaults file sets vault-address and init-after; the pod's annotation wins over it."""
    path = tmp_path / "defaults.yaml"
    path.write_text("vault-address: https://vault.example:8200\ninit-after: [mesh-init]\nhealth-port: 9000\n")
    defaults = load_defaults(path)
    plan = compile_annotations(
        annotated(**{"vault-role": "web", "secret-a": "vault:secret/a#b", "health-port": "9100"}), defaults
    )
    assert yaml.safe_load(plan.config_yaml or "")["vault"]["address"] == "https://vault.example:8200"
    assert plan.init_after == ("mesh-init",)
    assert plan.health_port == 9100


def test_defaults_file_refuses_unknown_keys(tmp_path: Path) -> None:
    """A typo in the defaults file stops the webhook at start, not silently at every pod."""
    path = tmp_path / "defaults.yaml"
    path.write_text("vault-adress: https://v\n")
    with pytest.raises(ConfigError, match=re.escape("did you mean injector.tmpfs.dev/vault-address")):
        load_defaults(path)


def test_every_global_key_is_in_the_readme() -> None:
    """The README's annotation reference lists every pod-wide key and per-name prefix."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Annotation-driven injection", 1)[1].split("\n## ", 1)[0]
    for key in [
        *GLOBAL_DEFAULTS,
        "secret-NAME",
        "template-FILE",
        "template-source-FILE",
        "file-NAME",
        "mode-NAME",
        "owner-NAME",
        "notify-NAME",
        "status",
        "config",
    ]:
        assert f"`{key}`" in section, key


def test_whole_secret_is_written_as_json() -> None:
    """secret-NAME without #KEY renders {{ secrets.NAME }} (a mapping prints as JSON); with #KEY it is raw."""
    plan = compile_annotations(annotated(**{"secret-db": "aws-sm:prod/db", "secret-pw": "aws-sm:prod/db#password"}))
    templates = {t["destination"]: t for t in yaml.safe_load(plan.config_yaml or "")["templates"]}
    assert templates["db"] == {"contents": "{{ secrets.db }}", "destination": "db"}
    assert templates["pw"] == {"secret": "aws-sm:prod/db#password", "destination": "pw"}
