"""Config: YAML → frozen dataclasses; every error names the file and the field path."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.config.load import load_config, load_config_text, parse_config
from injector.config.model import CommandNotify, Config, HttpNotify, SignalNotify
from injector.errors import ConfigError
from injector.refs import parse_reference
from tests.fixtures.sentinel import SENTINEL

FULL = """
output_dir: /run/secrets/app
state_dir: /run/injector
vault:
  address: https://vault.vault:8200
  ca_cert: /etc/vault/ca.pem
  auth:
    method: kubernetes
    role: app
aws:
  region: eu-west-1
  endpoint_url: null
secrets:
  db: vault:database/creds/app
templates:
  - source: app.env.j2
    destination: app.env
    mode: "0440"
    on_change:
      - {signal: SIGHUP, process: nginx}
      - {http: "http://127.0.0.1:8080/-/reload", method: POST}
      - {command: ["/bin/sh", "-c", "true"], timeout: 30s}
  - contents: "{{ secret('aws-sm:prod/db#password') }}"
    destination: tls/db-password
refresh: {interval: 5m, jitter: 0.1, wait: {min: 200ms, max: 2s}, max_stale: 15m}
health: {address: "0.0.0.0:8099"}
env: {DB_PASSWORD: "vault:secret/app#password"}
"""


def write(tmp_path: Path, text: str, name: str = "injector.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(raw: dict[str, Any], tmp_path: Path | None = None) -> Config:
    data = {"output_dir": "/out", **raw}
    return parse_config(data, base_dir=tmp_path or Path("/cfg"), environ={})


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return str(info.value)


class TestLoadConfig:
    def test_design_example_loads(self, tmp_path: Path) -> None:
        """The example of DESIGN.md §4 loads into the documented shape."""
        config = load_config(write(tmp_path, FULL), environ={})
        assert config.output_dir == Path("/run/secrets/app")
        assert config.vault is not None and config.vault.auth.method == "kubernetes"
        assert config.vault.auth.mount == "kubernetes"
        assert config.aws.region == "eu-west-1"
        assert config.secrets == {"db": parse_reference("vault:database/creds/app")}
        first, second = config.templates
        assert first.source == tmp_path.resolve() / "app.env.j2"
        assert first.mode == 0o440
        assert first.on_change == (
            SignalNotify(signal=signal.SIGHUP, process="nginx"),
            HttpNotify(url="http://127.0.0.1:8080/-/reload", method="POST"),
            CommandNotify(argv=("/bin/sh", "-c", "true"), timeout=30.0),
        )
        assert second.destination == "tls/db-password"
        assert config.refresh.interval == 300 and config.refresh.wait.min == 0.2 and config.refresh.max_stale == 900
        assert config.env == {"DB_PASSWORD": "vault:secret/app#password"}

    def test_missing_file_says_how_to_pass_one(self, tmp_path: Path) -> None:
        """A missing config file names the path and the flag."""
        with pytest.raises(ConfigError, match=r"config file not found; pass --config"):
            load_config(tmp_path / "nope.yaml")

    def test_malformed_yaml_gives_position_without_quoting_the_file(self, tmp_path: Path) -> None:
        """Invalid YAML reports file:line:column and the problem, not the line's text."""
        path = write(tmp_path, f"output_dir: /out\nvault:\n  address: [{SENTINEL}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={})
        message = str(info.value)
        assert message.startswith(f"{path}:")
        assert "invalid YAML" in message
        assert SENTINEL not in message

    def test_config_must_be_a_mapping(self, tmp_path: Path) -> None:
        """A list at the top level is refused with the file name."""
        with pytest.raises(ConfigError, match=r"must be a mapping"):
            load_config(write(tmp_path, "- a\n- b\n"), environ={})

    def test_every_error_names_the_file(self, tmp_path: Path) -> None:
        """Errors start with the config file's path, then the field path."""
        path = write(tmp_path, "output_dir: /out\ntemplates:\n  - {contents: x, destination: ../x}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={})
        assert str(info.value).startswith(f"{path}: templates[0].destination: '../x' leaves output_dir")

    def test_relative_sources_resolve_against_the_config_folder(self, tmp_path: Path) -> None:
        """A relative template source is relative to the config file, not the working directory."""
        sub = tmp_path / "conf"
        sub.mkdir()
        path = write(sub, "output_dir: /out\ntemplates:\n  - {source: t/app.j2, destination: app}\n")
        assert load_config(path, environ={}).templates[0].source == sub.resolve() / "t/app.j2"

    def test_config_text_resolves_sources_against_the_given_folder(self) -> None:
        """load_config_text (a ConfigMap key): sources resolve against base_dir, errors name the path."""
        text = "output_dir: /out\ntemplates:\n  - {source: t/app.j2, destination: app}\n"
        config = load_config_text(text, path=Path("/etc/injector/injector.yaml"), base_dir=Path("/etc/injector"))
        assert config.templates[0].source == Path("/etc/injector/t/app.j2")
        with pytest.raises(ConfigError, match=r"^/etc/injector/injector.yaml:2:1: invalid YAML"):
            load_config_text("a: 1\n- b\n", path=Path("/etc/injector/injector.yaml"))


class TestFieldErrors:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ({"outptu_dir": "/x"}, "outptu_dir: unknown key; did you mean 'output_dir'?"),
            ({"refresh": {"intervall": "5m"}}, "refresh.intervall: unknown key; did you mean 'interval'?"),
            ({"refresh": {"interval": "5 minutes"}}, "refresh.interval: expected a duration"),
            ({"refresh": {"interval": 0}}, "refresh.interval: must be more than 0"),
            ({"refresh": {"jitter": 2}}, "refresh.jitter: expected a number from 0 to 0.5"),
            ({"refresh": {"wait": {"min": "2s", "max": "1s"}}}, "refresh.wait.max: must be at least wait.min"),
            ({"templates": {"a": 1}}, "templates: expected a list"),
            ({"templates": [{"destination": "a"}]}, "templates[0]: give exactly one of source, contents or secret"),
            (
                {"templates": [{"contents": "x", "source": "y", "destination": "a"}]},
                "templates[0]: give exactly one of source, contents or secret (got source and contents)",
            ),
            ({"templates": [{"contents": "x"}]}, "templates[0].destination: is required"),
            (
                {"templates": [{"contents": "x", "destination": "/etc/x"}]},
                "templates[0].destination: '/etc/x' is absolute",
            ),
            ({"templates": [{"contents": "x", "destination": "a/../../x"}]}, "leaves output_dir"),
            ({"templates": [{"contents": "x", "destination": "..data"}]}, "reserved for the snapshot layout"),
            (
                {"templates": [{"contents": "x", "destination": "a", "mode": "rw"}]},
                "templates[0].mode: expected an octal",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a"}, {"contents": "y", "destination": "a"}]},
                "templates[1].destination: 'a' collides with templates[0]",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a"}, {"contents": "y", "destination": "a/b"}]},
                "collides with templates[0]",
            ),
            (
                {
                    "templates": [
                        {"contents": "x", "destination": "a", "on_change": [{"signal": "SIGNOPE", "process": "x"}]}
                    ]
                },
                "templates[0].on_change[0].signal: expected a signal name",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a", "on_change": [{"signal": "HUP"}]}]},
                "templates[0].on_change[0]: a signal needs exactly one target",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a", "on_change": [{"command": "kill -HUP 1"}]}]},
                "templates[0].on_change[0].command: expected a list",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a", "on_change": [{"http": "ftp://x"}]}]},
                "templates[0].on_change[0].http: expected an http:// or https:// URL",
            ),
            (
                {"templates": [{"contents": "x", "destination": "a", "on_change": [{"hup": True}]}]},
                "templates[0].on_change[0]: give exactly one of signal, http or command",
            ),
            ({"secrets": {"db": "consul:x"}}, "secrets.db: bad reference 'consul:x'"),
            ({"secrets": {"my-db": "env:X"}}, "secrets.my-db: a secret name must be an identifier"),
            ({"vault": {"auth": {}}}, "vault.address: is required"),
            ({"vault": {"address": "vault:8200"}}, "vault.address: expected an http:// or https:// URL"),
            ({"vault": {"address": "http://v", "auth": {"method": "ldap"}}}, "vault.auth.method: expected one of"),
            ({"vault": {"address": "http://v", "auth": {"method": "kubernetes"}}}, "vault.auth.role: is required"),
            (
                {"vault": {"address": "http://v", "auth": {"token": "hvs.x"}}},
                "vault.auth.token: a token is never written",
            ),
            (
                {"vault": {"address": "http://v", "auth": {"method": "approle"}}},
                "vault.auth.role_id_file: approle needs",
            ),
            ({"health": {"address": "8099"}}, "health.address: expected HOST:PORT"),
            ({"output_dir": "relative/out"}, "output_dir: must be an absolute path"),
            ({"state_dir": "/out/state"}, "state_dir: must not be inside output_dir"),
            ({"env": {"1X": "env:A"}}, "env.1X: not an environment variable name"),
            ({"env": {"X": "nope"}}, "env.X: bad reference 'nope'"),
            ({"allow_non_tmpfs": "maybe"}, "allow_non_tmpfs: expected true or false"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_error_names_the_field(self, raw: dict[str, Any], expected: str) -> None:
        """Each bad value is one ConfigError that names the field path and what is expected."""
        assert expected in error_of(raw)

    def test_unknown_top_level_key_lists_known_keys_when_nothing_is_close(self) -> None:
        """An unknown key with no near match lists the keys there are."""
        message = error_of({"zzz": 1})
        assert "zzz: unknown key; known keys:" in message and "templates" in message


class TestDefaultsAndEnvironment:
    def test_defaults(self) -> None:
        """Documented defaults: 0440 files, 5m interval, 10% jitter, 15m max_stale, health on :8099."""
        config = parse({"templates": [{"contents": "x", "destination": "a"}]})
        assert config.templates[0].mode == 0o440
        assert config.refresh.interval == 300 and config.refresh.jitter == 0.1 and config.refresh.max_stale == 900
        assert config.health.address == "0.0.0.0:8099"
        assert config.vault is None and config.state_dir is None and not config.allow_non_tmpfs

    def test_environment_fills_what_the_file_leaves_out(self) -> None:
        """INJECTOR_OUTPUT_DIR and VAULT_ADDR fill missing keys; the file wins when both are set."""
        env = {"INJECTOR_OUTPUT_DIR": "/env-out", "VAULT_ADDR": "http://127.0.0.1:8200"}
        config = parse_config({"vault": {"auth": {}}}, base_dir=Path("/"), environ=env)
        assert config.output_dir == Path("/env-out")
        assert config.vault is not None and config.vault.address == "http://127.0.0.1:8200"
        config = parse_config({"output_dir": "/file-out"}, base_dir=Path("/"), environ=env)
        assert config.output_dir == Path("/file-out")

    def test_overrides_win(self) -> None:
        """CLI flags (overrides) win over the file."""
        config = parse_config(
            {"output_dir": "/file"}, base_dir=Path("/"), environ={}, overrides={"output_dir": "/flag"}
        )
        assert config.output_dir == Path("/flag")

    def test_yaml_octal_mode(self, tmp_path: Path) -> None:
        """An unquoted YAML 0640 is the mode the user meant."""
        path = write(tmp_path, "output_dir: /o\ntemplates:\n  - {contents: x, destination: a, mode: 0640}\n")
        assert load_config(path, environ={}).templates[0].mode == 0o640

    def test_config_is_frozen(self) -> None:
        """Config objects cannot be changed after parsing."""
        config = parse({})
        with pytest.raises(AttributeError):
            config.output_dir = Path("/x")  # type: ignore[misc]

    def test_round_trip_of_the_readme_example(self, tmp_path: Path) -> None:
        """Dumping and reloading a parsed example keeps the same meaning."""
        raw = yaml.safe_load(FULL)
        assert parse_config(raw, base_dir=tmp_path, environ={}) == parse_config(
            yaml.safe_load(yaml.safe_dump(raw)), base_dir=tmp_path, environ={}
        )
