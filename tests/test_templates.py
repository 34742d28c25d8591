"""The starter templates in templates/: each renders with known values into a file its reader parses."""

from __future__ import annotations

import configparser
import io
import json
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from injector.config.load import parse_config
from injector.config.model import LimitsConfig, TemplateConfig
from injector.refs import Reference, Secret, parse_reference
from injector.template.render import Renderer
from tests.template.test_filters import read_dotenv_compose

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

SECRETS = {
    "db": "vault:database/creds/app",
    "app": "vault:secret/app",
    "aws": "vault:aws/creds/app",
    "tls": "vault:pki/issue/web?common_name=web.example.com&ttl=72h",
}
# Values chosen to break naive quoting: quotes, $, #, :, /, @, %, backslashes, newlines, non-ASCII.
DB = {"username": "v-kubernetes-app-x7Qz", "password": 'p@ss:w/o"rd #1 $HOME %41 \\ é'}
APP = {"api_key": "k-'123'", "session_secret": "line1\nline2 ${X}", "features": {"beta": True, "mode": "no"}}
CERT = "-----BEGIN CERTIFICATE-----\nMIIleaf\n-----END CERTIFICATE-----"
CA = "-----BEGIN CERTIFICATE-----\nMIIca\n-----END CERTIFICATE-----"
TLS = {"certificate": CERT, "issuing_ca": CA, "ca_chain": [CA], "private_key": "KEY", "serial_number": "1a:2b:3c"}
AWS = {"access_key": "AKIAEXAMPLE", "secret_key": "wJalr/K7MDENG+bPxRfiCY%x", "security_token": "FwoGZX//token=="}
VALUES: Mapping[str, Any] = {"db": DB, "app": APP, "aws": AWS, "tls": TLS}


def render_template(
    name: str, values: Mapping[str, Any] = VALUES, environ: Mapping[str, str] | None = None
) -> tuple[str, frozenset[Reference]]:
    """Renders templates/NAME against ``values`` (by secrets: name); returns the text and static refs."""
    refs = {key: parse_reference(text) for key, text in SECRETS.items()}
    table = {refs[key].base: Secret(value) for key, value in values.items()}
    renderer = Renderer(secrets=refs, limits=LimitsConfig(), environ=environ or {})
    compiled = renderer.compile(TemplateConfig(where="templates[0]", destination=name, source=TEMPLATES / name))
    result = renderer.render(compiled, table.__getitem__)
    assert not result.missing
    return result.content.decode("utf-8"), renderer.static_refs(compiled)


def names(*keys: str) -> frozenset[Reference]:
    return frozenset(parse_reference(SECRETS[key]).base for key in keys)


STARTERS = sorted(path.name for path in TEMPLATES.glob("*.j2"))


class TestStarterTemplates:
    @pytest.mark.parametrize("name", STARTERS)
    def test_starts_with_expectations_comment(self, name: str) -> None:
        """Each template opens with a comment saying which secrets it expects."""
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        assert text.startswith("{#-")
        comment = text[: text.index("#}")]
        assert "Expects in the injector config" in comment and "secrets:" in comment

    @pytest.mark.parametrize("name", STARTERS)
    def test_listed_in_readme(self, name: str) -> None:
        """templates/README.md lists every template."""
        assert f"`{name}`" in (TEMPLATES / "README.md").read_text(encoding="utf-8")

    def test_every_template_has_a_test(self) -> None:
        """Adding a template without a test here fails."""
        tested = {
            "app.env.j2",
            "app-config.json.j2",
            "app-config.yaml.j2",
            "database-url.j2",
            "aws-credentials.ini.j2",
            "nginx-tls.conf.j2",
            "tls-fullchain.pem.j2",
        }
        assert set(STARTERS) == tested


class TestAppEnv:
    EXPECTED: ClassVar[dict[str, str]] = {
        "DB_HOST": "postgres",
        "DB_NAME": "app",
        "DB_USERNAME": DB["username"],
        "DB_PASSWORD": DB["password"],
        "API_KEY": APP["api_key"],
        "SESSION_SECRET": APP["session_secret"],
    }

    def test_compose_reads_it_back(self) -> None:
        """docker compose (compose-go rules) reads every value back unchanged."""
        text, refs = render_template("app.env.j2")
        assert read_dotenv_compose(text) == self.EXPECTED
        assert refs == names("db", "app")

    def test_python_dotenv_reads_it_back(self) -> None:
        """python-dotenv reads every value back unchanged (values without $ use its escapes)."""
        dotenv = pytest.importorskip("dotenv")
        values = {
            **VALUES,
            "db": {**DB, "password": 'p@ss:w/o"rd #1 %41 \\ é\n'},
            "app": {**APP, "session_secret": "a\nb"},
        }
        text, _ = render_template("app.env.j2", values)
        expected = {**self.EXPECTED, "DB_PASSWORD": values["db"]["password"], "SESSION_SECRET": "a\nb"}
        assert dict(dotenv.dotenv_values(stream=io.StringIO(text))) == expected

    def test_environment_overrides_defaults(self) -> None:
        """DB_HOST and DB_NAME come from the injector's environment when set."""
        text, _ = render_template("app.env.j2", environ={"DB_HOST": "db.internal", "DB_NAME": "prod"})
        assert read_dotenv_compose(text)["DB_HOST"] == "db.internal"


class TestAppConfig:
    def test_json(self) -> None:
        """app-config.json.j2 is valid JSON holding the values."""
        text, refs = render_template("app-config.json.j2")
        assert json.loads(text) == {
            "database": {"host": "postgres", "port": 5432, "username": DB["username"], "password": DB["password"]},
            "api_key": APP["api_key"],
            "features": APP["features"],
        }
        assert refs == names("db", "app")

    def test_json_without_optional_features(self) -> None:
        """A secret without the optional features key gives an empty object."""
        text, _ = render_template("app-config.json.j2", {**VALUES, "app": {"api_key": "k"}})
        assert json.loads(text)["features"] == {}

    def test_yaml(self) -> None:
        """app-config.yaml.j2 is valid YAML holding the values, with "no" kept a string."""
        text, refs = render_template("app-config.yaml.j2", environ={"DB_PORT": "6432"})
        assert yaml.safe_load(text) == {
            "database": {"host": "postgres", "port": 6432, "username": DB["username"], "password": DB["password"]},
            "api_key": APP["api_key"],
            "features": APP["features"],
        }
        assert refs == names("db", "app")

    def test_yaml_without_optional_features(self) -> None:
        """A secret without the optional features key gives an empty mapping."""
        text, _ = render_template("app-config.yaml.j2", {**VALUES, "app": {"api_key": "k"}})
        assert yaml.safe_load(text)["features"] == {}


class TestDatabaseUrl:
    def test_url_keeps_credentials(self) -> None:
        """The URL parses back into the exact user and password, whatever characters they hold."""
        text, refs = render_template("database-url.j2", environ={"DB_HOST": "pg.internal", "DB_NAME": "orders"})
        assert text.endswith("\n") and text.count("\n") == 1
        url = urllib.parse.urlsplit(text.strip())
        assert url.scheme == "postgresql"
        assert urllib.parse.unquote(url.username or "") == DB["username"]
        assert urllib.parse.unquote(url.password or "") == DB["password"]
        assert (url.hostname, url.port, url.path, url.query) == ("pg.internal", 5432, "/orders", "sslmode=require")
        assert refs == names("db")


class TestAwsCredentials:
    def parse(self, text: str) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text)
        return parser

    def test_sts_credentials(self) -> None:
        """An assumed-role lease gives the key pair and the session token."""
        text, refs = render_template("aws-credentials.ini.j2")
        section = self.parse(text)["default"]
        assert dict(section) == {
            "aws_access_key_id": AWS["access_key"],
            "aws_secret_access_key": AWS["secret_key"],
            "aws_session_token": AWS["security_token"],
        }
        assert refs == names("aws")

    def test_iam_user_has_no_session_token(self) -> None:
        """An iam_user lease (security_token null) writes no aws_session_token line."""
        text, _ = render_template("aws-credentials.ini.j2", {**VALUES, "aws": {**AWS, "security_token": None}})
        assert "aws_session_token" not in self.parse(text)["default"]

    def test_profile_from_environment(self) -> None:
        """AWS_PROFILE names the section."""
        text, _ = render_template("aws-credentials.ini.j2", environ={"AWS_PROFILE": "app"})
        assert self.parse(text).sections() == ["app"]


class TestNginxTls:
    SSL = re.compile(r"^\s*(ssl_certificate|ssl_certificate_key)\s+(\S+);\s*$", re.M)

    def test_directives_point_at_rendered_files(self) -> None:
        """ssl_certificate and ssl_certificate_key point at tls.crt and tls.key in TLS_DIR."""
        text, refs = render_template("nginx-tls.conf.j2", environ={"TLS_DIR": "/etc/nginx/tls"})
        assert dict(self.SSL.findall(text)) == {
            "ssl_certificate": "/etc/nginx/tls/tls.crt",
            "ssl_certificate_key": "/etc/nginx/tls/tls.key",
        }
        assert refs == names("tls")

    def test_changes_with_the_certificate(self) -> None:
        """The snippet carries the serial, so a new certificate changes it (and its on_change fires)."""
        first, _ = render_template("nginx-tls.conf.j2")
        second, _ = render_template("nginx-tls.conf.j2", {**VALUES, "tls": {**TLS, "serial_number": "4d:5e"}})
        assert first != second

    def test_fullchain(self) -> None:
        """tls-fullchain.pem.j2 writes the certificate, then the CA chain, one PEM block each."""
        text, refs = render_template("tls-fullchain.pem.j2")
        assert re.findall(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n", text, re.S) == [
            CERT + "\n",
            CA + "\n",
        ]
        assert text == f"{CERT}\n{CA}\n"
        assert refs == names("tls")

    def test_fullchain_without_ca_chain(self) -> None:
        """Without ca_chain the issuing CA follows the certificate."""
        text, _ = render_template(
            "tls-fullchain.pem.j2", {**VALUES, "tls": {k: v for k, v in TLS.items() if k != "ca_chain"}}
        )
        assert text == f"{CERT}\n{CA}\n"

    def test_readme_config(self, tmp_path: Path) -> None:
        """The README's nginx config parses, and its three templates share one PKI reference and render."""
        readme = (TEMPLATES / "README.md").read_text(encoding="utf-8")
        snippet = re.search(r"## nginx.*?```yaml\n(.*?)```", readme, re.S)
        assert snippet is not None
        config = parse_config(yaml.safe_load(snippet.group(1)), base_dir=TEMPLATES, environ={})
        renderer = Renderer(secrets=config.secrets, limits=config.limits, environ={})
        compiled = [renderer.compile(template) for template in config.templates]
        refs = frozenset().union(*(renderer.static_refs(c) for c in compiled))
        assert refs == {config.secrets["tls"].base}
        lookup = {config.secrets["tls"].base: Secret(TLS)}.__getitem__
        files = {c.template.destination: renderer.render(c, lookup).content.decode() for c in compiled}
        assert files["tls/tls.crt"] == f"{CERT}\n{CA}\n"
        assert files["tls/tls.key"] == "KEY\n"
        assert dict(self.SSL.findall(files["nginx/tls.conf"]))["ssl_certificate_key"].endswith("/tls.key")
