"""Leaks: a sentinel secret from every backend (dev Vault, moto Secrets Manager, a file, the
environment) must reach the output files and nowhere else — not logs in either format at debug
level, CLI output, exception text, /metrics, process arguments, or a child command's environment —
and files, snapshot folders and state must be created with the modes they are meant to have.

`injector exec` is covered too: there the app is the child, and the values granted through the
config's ``env:`` map are the only secrets its environment may hold.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.sidecar import configmap_write, free_port, wait_for
from tests.fixtures.vault import VaultServer
from tests.reliability.support import run_injector, start_sidecar, visible_files, write_config

pytestmark = pytest.mark.slow

VALUES = {
    "vault": f"{SENTINEL}-vault",
    "aws-sm": f"{SENTINEL}-sm",
    "file": f"{SENTINEL}-file",
    "env": f"{SENTINEL}-env",
}


@dataclass
class World:
    """The four backends seeded with sentinel values, and the config sections to reach them."""

    tmp: Path
    mount: str
    sections: dict[str, Any]
    env: dict[str, str]

    def env_template(self) -> str:
        return (
            "V={{ secret('vault:MOUNT/app#password') }}\n"
            "S={{ secret('aws-sm:app/db#password') }}\n"
            "F={{ secret('file:creds.json#password') }}\n"
            "E={{ secret('env:PW') }}\n"
        ).replace("MOUNT", self.mount)

    def expected_env_file(self) -> str:
        return "".join(f"{k}={VALUES[n]}\n" for k, n in (("V", "vault"), ("S", "aws-sm"), ("F", "file"), ("E", "env")))


@pytest.fixture
def world(
    tmp_path: Path,
    vault_server: VaultServer,
    vault_admin: hvac.Client,
    kv2_mount: str,
    sm_client: Any,
    aws_endpoint: str,
) -> World:
    vault_admin.secrets.kv.v2.create_or_update_secret(
        path="app", secret={"password": VALUES["vault"], "user": "app"}, mount_point=kv2_mount
    )
    sm_client.create_secret(Name="app/db", SecretString=json.dumps({"password": VALUES["aws-sm"]}))
    (tmp_path / "creds.json").write_text(json.dumps({"password": VALUES["file"]}))
    return World(
        tmp=tmp_path,
        mount=kv2_mount,
        sections={
            "vault": {"address": vault_server.address, "auth": {"method": "token"}},
            "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
        },
        env={"VAULT_TOKEN": vault_server.root_token, "PW": VALUES["env"]},
    )


def config_for(world: World, output_dir: Path, **extra: Any) -> Path:
    templates = extra.pop("templates", None) or [
        {"contents": world.env_template(), "destination": "app.env"},
        {"contents": "{{ secret('vault:" + world.mount + "/app') | tojson }}\n", "destination": "conf/app.json"},
    ]
    data = {"output_dir": str(output_dir), **world.sections, "templates": templates, **extra}
    return write_config(world.tmp / "injector.yaml", data)


LOG_FORMATS = ["text", "json"]


def assert_clean(text: str, where: str) -> None:
    assert SENTINEL not in text, f"the sentinel is in {where}"


class TestEveryMode:
    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_init(self, world: World, output_dir: Path, log_format: str) -> None:
        """init at debug level: every value in its file, none in stdout or stderr."""
        config = config_for(world, output_dir)
        result = run_injector(
            ["init", "-c", str(config), "--log-level", "debug", "--log-format", log_format], env=world.env
        )
        assert result.returncode == 0, result.stderr
        assert (output_dir / "app.env").read_text() == world.expected_env_file()
        assert_clean(result.output, f"init's output ({log_format})")

    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_render_dry_run_masks_values(self, world: World, output_dir: Path, log_format: str) -> None:
        """render --dry-run --show at debug level: masked contents, no value anywhere, nothing written."""
        config = config_for(world, output_dir)
        result = run_injector(
            ["render", "-c", str(config), "--dry-run", "--show", "--log-level", "debug", "--log-format", log_format],
            env=world.env,
        )
        assert result.returncode == 0, result.stderr
        assert "V=<redacted>" in result.stdout
        assert_clean(result.output, f"render --dry-run's output ({log_format})")
        assert os.listdir(output_dir) == []

    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_validate(self, world: World, output_dir: Path, log_format: str) -> None:
        """validate at debug level: no value in its output (it fetches nothing)."""
        config = config_for(world, output_dir)
        result = run_injector(
            ["validate", "-c", str(config), "--log-level", "debug", "--log-format", log_format], env=world.env
        )
        assert result.returncode == 0, result.stderr
        assert_clean(result.output, f"validate's output ({log_format})")

    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_failing_init_error_text(self, world: World, output_dir: Path, log_format: str) -> None:
        """A template failing on each value (int of a secret): the error line and logs carry no value."""
        template = "{{ secret('vault:%s/app#password') | int }}{{ secret('aws-sm:app/db#password') | int }}"
        config = config_for(world, output_dir, templates=[{"contents": template % world.mount, "destination": "a"}])
        result = run_injector(
            ["init", "-c", str(config), "--log-level", "debug", "--log-format", log_format], env=world.env
        )
        assert result.returncode == 16, result.stderr
        assert_clean(result.output, f"a failing init's output ({log_format})")

    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_sidecar(self, world: World, output_dir: Path, log_format: str) -> None:
        """sidecar at debug level through a rotation and a failing template: logs, probes, /metrics, argv clean."""
        source = world.tmp / "app.env.j2"
        source.write_text(world.env_template())
        config = config_for(
            world,
            output_dir,
            templates=[{"source": str(source), "destination": "app.env"}],
            refresh={"interval": "300ms", "jitter": 0.0, "min_backoff": "200ms", "max_backoff": "1s"},
        )
        sidecar = start_sidecar(
            world.tmp, config, free_port(), "--log-level", "debug", "--log-format", log_format, env=world.env
        )
        try:
            sidecar.wait_ready()
            rotated = f"{SENTINEL}-vault-2"
            admin = hvac.Client(url=world.sections["vault"]["address"], token=world.env["VAULT_TOKEN"])
            admin.secrets.kv.v2.create_or_update_secret(
                path="app", secret={"password": rotated, "user": "app"}, mount_point=world.mount
            )
            wait_for(lambda: f"V={rotated}\n" in (output_dir / "app.env").read_text(), 10, "the rotated value")
            source.write_text("{{ secret('vault:" + world.mount + "/app#password') | int }}\n")
            wait_for(lambda: "template app.env failed" in sidecar.logs(), 10, "the template failure in the log")
            for path in ("/metrics", "/readyz", "/healthz"):
                assert_clean(sidecar.get(path)[1], path)
            assert_clean(Path(f"/proc/{sidecar.proc.pid}/cmdline").read_bytes().decode(errors="replace"), "argv")
        finally:
            sidecar.stop()
        assert_clean(sidecar.logs(), f"the sidecar's log ({log_format})")
        if log_format == "json":
            for line in sidecar.logs().splitlines():
                json.loads(line)


@pytest.fixture
def child_dump(tmp_path: Path) -> tuple[list[str], Path]:
    """A command notifier that writes its own environment and argv (from /proc) to files."""
    env_out, argv_out = tmp_path / "child.environ", tmp_path / "child.cmdline"
    script = f"cat /proc/$$/environ > {env_out}.tmp; cat /proc/$$/cmdline > {argv_out}; mv {env_out}.tmp {env_out}"
    return ["/bin/sh", "-c", script], tmp_path


class TestChildCommands:
    @pytest.mark.parametrize("kind", ["vault", "aws-sm", "file", "env"])
    def test_a_command_notifier_never_receives_a_secret(
        self, world: World, output_dir: Path, child_dump: tuple[list[str], Path], kind: str
    ) -> None:
        """The command a change runs gets no secret value of any backend in its environment or argv."""
        argv, folder = child_dump
        cm = world.tmp / "cm"
        configmap_write(cm, {"v": "1"})
        reference = {
            "vault": f"vault:{world.mount}/app#password",
            "aws-sm": "aws-sm:app/db#password",
            "file": "file:creds.json#password",
            "env": "env:PW",
        }[kind]
        template = "{{ secret('" + reference + "') }} {{ secret('file:" + str(cm / "v") + "') }}\n"
        config = config_for(
            world,
            output_dir,
            templates=[{"contents": template, "destination": "a", "on_change": [{"command": argv, "timeout": "5s"}]}],
            refresh={"interval": "1s", "wait": {"min": "50ms", "max": "500ms"}},
        )
        # The environment holds PW only when a template reads it (env:PW): then it is a secret injector knows.
        env = world.env if kind == "env" else {k: v for k, v in world.env.items() if k != "PW"}
        sidecar = start_sidecar(world.tmp, config, free_port(), env=env)
        try:
            sidecar.wait_ready()
            configmap_write(cm, {"v": "2"})
            wait_for(lambda: (folder / "child.environ").exists(), 10, "the command to run")
            assert_clean((folder / "child.cmdline").read_bytes().decode(errors="replace"), "the command's argv")
            environ = (folder / "child.environ").read_bytes().decode(errors="replace").split("\0")
            leaked = [item.split("=", 1)[0] for item in environ if SENTINEL in item]
            assert leaked == [], f"the command's environment holds a secret in {leaked}"
        finally:
            sidecar.stop()

    def test_a_command_notifier_never_receives_the_vault_token(
        self,
        world: World,
        output_dir: Path,
        child_dump: tuple[list[str], Path],
        vault_admin: hvac.Client,
    ) -> None:
        """The token injector reads from VAULT_TOKEN stays with injector (as exec does for its child)."""
        argv, folder = child_dump
        token = vault_admin.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        cm = world.tmp / "cm"
        configmap_write(cm, {"v": "1"})
        template = "{{ secret('vault:" + world.mount + "/app#user') }} {{ secret('file:" + str(cm / "v") + "') }}\n"
        config = config_for(
            world,
            output_dir,
            templates=[{"contents": template, "destination": "a", "on_change": [{"command": argv, "timeout": "5s"}]}],
            refresh={"interval": "1s", "wait": {"min": "50ms", "max": "500ms"}},
        )
        sidecar = start_sidecar(world.tmp, config, free_port(), env={"VAULT_TOKEN": token})
        try:
            sidecar.wait_ready()
            configmap_write(cm, {"v": "2"})
            wait_for(lambda: (folder / "child.environ").exists(), 10, "the command to run")
            environ = (folder / "child.environ").read_bytes().decode(errors="replace").split("\0")
            leaked = [item.split("=", 1)[0] for item in environ if token in item]
            assert leaked == [], f"the command's environment holds the Vault token in {leaked}"
        finally:
            sidecar.stop()


class TestExec:
    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_exec_grants_only_the_env_map_to_the_child(self, world: World, output_dir: Path, log_format: str) -> None:
        """exec at debug level: values in the files and in the child's env: variables only; none in
        the logs, injector's argv, the child's argv or any other variable of the child."""
        dump = world.tmp / "dump"
        script = (
            f"cat /proc/$$/environ > {dump}.environ; cat /proc/$$/cmdline > {dump}.cmdline; "
            f"cat /proc/$PPID/cmdline > {dump}.parent"
        )
        config = config_for(
            world,
            output_dir,
            templates=[{"contents": "{{ secret('file:creds.json#password') }}\n", "destination": "f"}],
            env={"DB_PASSWORD": f"vault:{world.mount}/app#password", "API_KEY": "aws-sm:app/db#password"},
            health={"address": False},
        )
        env = {k: v for k, v in world.env.items() if k != "PW"}
        result = run_injector(
            [
                "exec",
                "-c",
                str(config),
                "--log-level",
                "debug",
                "--log-format",
                log_format,
                "--",
                "/bin/sh",
                "-c",
                script,
            ],
            env=env,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert (output_dir / "f").read_text() == VALUES["file"] + "\n"
        environ = dict(
            item.split("=", 1) for item in Path(f"{dump}.environ").read_bytes().decode().split("\0") if "=" in item
        )
        assert (environ.get("DB_PASSWORD"), environ.get("API_KEY")) == (VALUES["vault"], VALUES["aws-sm"])
        leaked = sorted(name for name, value in environ.items() if SENTINEL in value)
        assert leaked == ["API_KEY", "DB_PASSWORD"], leaked
        assert "VAULT_TOKEN" not in environ
        for suffix in ("cmdline", "parent"):
            assert_clean(Path(f"{dump}.{suffix}").read_bytes().decode(errors="replace"), f"the {suffix} argv")
        assert_clean(result.output, f"exec's output ({log_format})")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


class TestModes:
    def test_files_folders_and_state_have_their_modes_even_with_umask_0(self, tmp_path: Path, output_dir: Path) -> None:
        """With umask 000: files get their configured modes, snapshot folders are closed to others,
        state_dir is 0700 and its state file 0600."""
        state = tmp_path / "state" / "injector"
        config = write_config(
            tmp_path / "injector.yaml",
            {
                "output_dir": str(output_dir),
                "state_dir": str(state),
                "templates": [
                    {"contents": "default\n", "destination": "default"},
                    {"contents": "owner-only\n", "destination": "owner-only", "mode": "0400"},
                    {"contents": "group\n", "destination": "conf/group", "mode": "0640"},
                ],
            },
        )
        result = run_injector(["init", "-c", str(config)], umask=0)
        assert result.returncode == 0, result.stderr
        snapshot = output_dir / os.readlink(output_dir / "..data")
        modes = {name: mode_of(snapshot / name) for name in ("default", "owner-only", "conf/group")}
        expected = {"default": 0o440, "owner-only": 0o400, "conf/group": 0o640}
        assert modes == expected, {k: oct(v) for k, v in modes.items()}
        for folder in (snapshot, snapshot / "conf"):
            assert mode_of(folder) & 0o007 == 0, f"{folder.name} is {oct(mode_of(folder))}: open to others"
        assert mode_of(state) == 0o700
        assert mode_of(state / "state.json") == 0o600

    def test_a_state_dir_open_to_others_is_made_private(self, tmp_path: Path, output_dir: Path) -> None:
        """An existing state_dir of ours with mode 0755 is tightened to 0700 before anything is written."""
        state = tmp_path / "state"
        state.mkdir()
        os.chmod(state, 0o755)  # noqa: S103 - the permissive mode is the point of the test
        config = write_config(
            tmp_path / "injector.yaml",
            {
                "output_dir": str(output_dir),
                "state_dir": str(state),
                "templates": [{"contents": "x", "destination": "a"}],
            },
        )
        result = run_injector(["init", "-c", str(config)], umask=0)
        assert result.returncode == 0, result.stderr
        assert mode_of(state) == 0o700
        assert mode_of(state / "state.json") == 0o600


def part_of(value: str, text: str, length: int = 6) -> str | None:
    """The first ``length`` consecutive characters of ``value`` found in ``text``, or None."""
    for start in range(len(value) - length + 1):
        if value[start : start + length] in text:
            return value[start : start + length]
    return None


#: Templates that fail while evaluating a value: each exception's own text would quote (part of) it.
FAILING = [
    ("slice-int", "{{ secret('file:s.json#pw')[3:15] | int }}"),
    ("upper-float", "{{ secret('file:s.json#pw') | upper | float }}"),
    ("format-keyerror", "{{ ('{' ~ secret('file:s.json#pw')[:10] ~ '}').format(a=1) }}"),
    ("dict-key", "{{ {'a': 1}[secret('file:s.json#pw')] }}"),
    ("key-is-value", "{{ secret('file:s.json')[secret('file:s.json#pw')] }}"),
    ("built-reference", "{{ secret('file:' ~ secret('file:s.json#pw')) }}"),
]


class TestTemplateErrors:
    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    @pytest.mark.parametrize("template", [t for _, t in FAILING], ids=[i for i, _ in FAILING])
    def test_init_error_names_template_line_and_class_only(
        self, tmp_path: Path, output_dir: Path, template: str, log_format: str
    ) -> None:
        """init failing inside a template: its error line and debug logs hold no 6 characters of the value."""
        (tmp_path / "s.json").write_text(json.dumps({"pw": SENTINEL}))
        config = write_config(
            tmp_path / "injector.yaml",
            {"output_dir": str(output_dir), "templates": [{"contents": "x\n" + template, "destination": "a"}]},
        )
        result = run_injector(["init", "-c", str(config), "--log-level", "debug", "--log-format", log_format])
        assert result.returncode in (13, 16), result.stderr
        assert result.errors and result.errors[0].startswith("injector: error: templates[0] (a): line 2: ")
        assert part_of(SENTINEL, result.output) is None, result.output


class TestCredentials:
    def test_env_function_cannot_read_the_vault_token(self, tmp_path: Path, output_dir: Path) -> None:
        """env('VAULT_TOKEN') in a template: exit 16, the error names the variable, never its value."""
        config = write_config(
            tmp_path / "injector.yaml",
            {
                "output_dir": str(output_dir),
                "templates": [{"contents": "{{ env('VAULT_TOKEN') }}", "destination": "a"}],
            },
        )
        result = run_injector(["init", "-c", str(config)], env={"VAULT_TOKEN": SENTINEL})
        assert result.returncode == 16, result.stderr
        assert "VAULT_TOKEN holds the injector's own credentials" in result.errors[0]
        assert_clean(result.output, "init's output")
        assert visible_files(output_dir) == {}

    @pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "INJECTOR_EXTRA"])
    def test_env_reference_cannot_read_credentials(self, tmp_path: Path, output_dir: Path, name: str) -> None:
        """secret('env:NAME') of an injector credential: access denied (14), the variable named, no value."""
        config = write_config(
            tmp_path / "injector.yaml",
            {
                "output_dir": str(output_dir),
                "templates": [{"contents": f"{{{{ secret('env:{name}') }}}}", "destination": "a"}],
            },
        )
        result = run_injector(["init", "-c", str(config)], env={name: SENTINEL})
        assert result.returncode == 14, result.stderr
        assert f"{name} holds the injector's own credentials" in result.errors[0]
        assert_clean(result.output, "init's output")


FORGED = "2026-01-01T00:00:00Z ERROR   injector.forged: FORGED"


class TestLogInjection:
    @pytest.mark.parametrize("log_format", LOG_FORMATS)
    def test_key_names_cannot_forge_log_lines(self, tmp_path: Path, output_dir: Path, log_format: str) -> None:
        """A secret's key names holding a newline, a carriage return and ANSI escapes, quoted in the sidecar's
        log of a failing template: every log line is one record, no forged line, no escape character."""
        (tmp_path / "s.json").write_text(json.dumps({f"ok\n{FORGED}\r{FORGED}": 1, "\x1b[2J\x9b31m": 2}))
        source = tmp_path / "a.j2"
        source.write_text("{{ secret('file:s.json') | length }}\n")
        config = write_config(
            tmp_path / "injector.yaml",
            {"output_dir": str(output_dir), "templates": [{"source": str(source), "destination": "a"}]},
        )
        sidecar = start_sidecar(tmp_path, config, free_port(), "--log-level", "debug", "--log-format", log_format)
        try:
            sidecar.wait_ready()
            source.write_text("{{ secret('file:s.json#nope') }}\n")
            wait_for(lambda: "template a failed" in sidecar.logs(), 10, "the template failure in the log")
        finally:
            sidecar.stop()
        logs = sidecar.logs()
        assert "\x1b" not in logs and "\x9b" not in logs and "\r" not in logs
        for line in logs.splitlines():
            assert not line.startswith(FORGED), line
            if log_format == "json":
                json.loads(line)

    def test_the_error_line_cannot_forge_lines(self, tmp_path: Path, output_dir: Path) -> None:
        """A template path holding a newline, a carriage return and an ANSI escape, named in init's one
        error line: still one line, with the characters written as escapes."""
        source = tmp_path / f"missing\ninjector: error: {FORGED}\r\x1b[2J.j2"
        config = write_config(
            tmp_path / "injector.yaml",
            {"output_dir": str(output_dir), "templates": [{"source": str(source), "destination": "a"}]},
        )
        result = run_injector(["init", "-c", str(config)])
        assert result.returncode == 11, result.stderr
        assert len(result.errors) == 1, result.stderr
        assert "\r" not in result.stderr and "\x1b" not in result.stderr
        assert "missing\\ninjector: error: " in result.errors[0]
        assert not [line for line in result.stderr.splitlines() if FORGED in line and "missing" not in line]
