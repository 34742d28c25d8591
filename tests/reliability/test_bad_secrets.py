"""Awkward secret values through `injector init` (a real process) against moto, the dev Vault and
files: too large, binary, odd keys, and values that look like templates."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.fixtures.sentinel import SENTINEL
from tests.fixtures.vault import VaultServer
from tests.reliability.support import Run, run_injector, visible_files, write_config

pytestmark = pytest.mark.slow

MAX_SECRET = 1024
#: Over limits.max_secret_bytes, and carrying the sentinel: no message may quote any of it.
LARGE = SENTINEL + "-" + "x" * 2000
#: Every byte value, so most of it is not UTF-8.
BINARY = bytes(range(256)) * 4 + b"\xff\xfe\x00\xc3\x28"


def init(
    tmp_path: Path, output_dir: Path, templates: list[dict[str, Any]], _env: dict[str, str] | None = None, **extra: Any
) -> Run:
    config = write_config(tmp_path / "injector.yaml", {"output_dir": str(output_dir), "templates": templates, **extra})
    return run_injector(["init", "-c", str(config)], env=_env)


class Backends:
    """Seeds one value in a backend and returns the reference text and the config sections for it."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp_path = tmp_path
        self.env: dict[str, str] = {}

    def vault(self, key_value: dict[str, str]) -> tuple[str, dict[str, Any]]:
        server: VaultServer = self.request.getfixturevalue("vault_server")
        admin: hvac.Client = self.request.getfixturevalue("vault_admin")
        mount: str = self.request.getfixturevalue("kv2_mount")
        admin.secrets.kv.v2.create_or_update_secret(path="app", secret=key_value, mount_point=mount)
        self.env["VAULT_TOKEN"] = server.root_token
        return f"vault:{mount}/app", {"vault": {"address": server.address, "auth": {"method": "token"}}}

    def aws(self) -> tuple[Any, dict[str, Any]]:
        endpoint: str = self.request.getfixturevalue("aws_endpoint")
        return endpoint, {"aws": {"region": "us-east-1", "endpoint_url": endpoint}}


def seed_large(kind: str, backends: Backends) -> tuple[str, dict[str, Any]]:
    if kind == "aws-sm":
        _, extra = backends.aws()
        backends.request.getfixturevalue("sm_client").create_secret(Name="big", SecretString=LARGE)
        return "aws-sm:big", extra
    if kind == "aws-ssm":
        _, extra = backends.aws()
        backends.request.getfixturevalue("ssm_client").put_parameter(Name="/big", Value=LARGE, Type="SecureString")
        return "aws-ssm:/big", extra
    if kind == "vault":
        ref, extra = backends.vault({"v": LARGE})
        return ref + "#v", extra
    if kind == "file":
        (backends.tmp_path / "big.txt").write_text(LARGE)
        return "file:big.txt", {}
    backends.env["BIG"] = LARGE
    return "env:BIG", {}


class TestLargeValues:
    @pytest.mark.parametrize("kind", ["aws-sm", "aws-ssm", "vault", "file", "env"])
    def test_value_over_max_secret_bytes_is_refused_by_name(
        self, request: pytest.FixtureRequest, tmp_path: Path, output_dir: Path, kind: str
    ) -> None:
        """A value over limits.max_secret_bytes: a non-zero exit naming the reference and the limit, no value."""
        backends = Backends(request, tmp_path)
        ref, extra = seed_large(kind, backends)
        result = init(
            tmp_path,
            output_dir,
            [{"contents": "{{ secret('" + ref + "') }}", "destination": "a"}],
            limits={"max_secret_bytes": MAX_SECRET},
            _env=backends.env,
            **extra,
        )
        assert result.returncode not in (0, None), f"exit {result.returncode}: {sorted(visible_files(output_dir))}"
        assert len(result.errors) == 1, result.stderr
        assert ref.split("#")[0] in result.errors[0]
        assert "max_secret_bytes" in result.errors[0], result.errors[0]
        assert "internal error" not in result.stderr
        assert SENTINEL not in result.output
        assert visible_files(output_dir) == {}


class TestBinary:
    @pytest.mark.parametrize("kind", ["aws-sm-binary", "file-binary"])
    def test_raw_secret_template_writes_the_exact_bytes(
        self, tmp_path: Path, output_dir: Path, request: pytest.FixtureRequest, kind: str
    ) -> None:
        """A non-UTF-8 value (SecretBinary, a binary file) through a `secret:` template: the exact bytes."""
        extra: dict[str, Any] = {}
        if kind == "aws-sm-binary":
            _, extra = Backends(request, tmp_path).aws()
            request.getfixturevalue("sm_client").create_secret(Name="keystore", SecretBinary=BINARY)
            ref = "aws-sm:keystore"
        else:
            (tmp_path / "keystore.p12").write_bytes(BINARY)
            ref = "file:keystore.p12"
        result = init(tmp_path, output_dir, [{"secret": ref, "destination": "keystore.p12"}], **extra)
        assert result.returncode == 0, result.stderr
        assert (output_dir / "keystore.p12").read_bytes() == BINARY

    def test_b64encode_of_a_binary_secret_is_exact(
        self, tmp_path: Path, output_dir: Path, request: pytest.FixtureRequest
    ) -> None:
        """`| b64encode` of SecretBinary gives the base64 of exactly those bytes."""
        _, extra = Backends(request, tmp_path).aws()
        request.getfixturevalue("sm_client").create_secret(Name="keystore", SecretBinary=BINARY)
        result = init(
            tmp_path,
            output_dir,
            [{"contents": "{{ secret('aws-sm:keystore') | b64encode }}", "destination": "k.b64"}],
            **extra,
        )
        assert result.returncode == 0, result.stderr
        assert base64.b64decode((output_dir / "k.b64").read_bytes()) == BINARY

    def test_binary_secret_printed_as_text_fails_with_the_fix(
        self, tmp_path: Path, output_dir: Path, request: pytest.FixtureRequest
    ) -> None:
        """Printing SecretBinary as text: exit 16 saying to use b64encode (or a secret: template)."""
        _, extra = Backends(request, tmp_path).aws()
        request.getfixturevalue("sm_client").create_secret(Name="keystore", SecretBinary=BINARY)
        template = {"contents": "{{ secret('aws-sm:keystore') }}", "destination": "k"}
        result = init(tmp_path, output_dir, [template], **extra)
        assert result.returncode == 16, result.stderr
        assert "b64encode" in result.errors[0]
        assert visible_files(output_dir) == {}


ODD = {"odd key": "space", "ünïcødé": "unicode", "a.b": "dotted", "#hash": "hash", "q?x": "question", "a/b": "slash"}


class TestOddKeys:
    def test_keys_with_odd_characters_are_reachable_by_subscript(
        self, request: pytest.FixtureRequest, tmp_path: Path, output_dir: Path
    ) -> None:
        """Keys with spaces, unicode, dots, #, ? and / read exactly through secrets.NAME[...] and secret(ref)[...]."""
        backends = Backends(request, tmp_path)
        ref, extra = backends.vault(ODD)
        lines = [f"{{{{ secrets.cfg[{json.dumps(key)}] }}}}" for key in ODD]
        lines += [f"{{{{ secret('{ref}')[{json.dumps(key)}] }}}}" for key in ODD]
        result = init(
            tmp_path,
            output_dir,
            [{"contents": "\n".join(lines) + "\n", "destination": "odd"}],
            secrets={"cfg": ref},
            _env=backends.env,
            **extra,
        )
        assert result.returncode == 0, result.stderr
        assert (output_dir / "odd").read_text(encoding="utf-8").splitlines() == list(ODD.values()) * 2

    def test_a_missing_odd_key_names_the_keys_that_exist(
        self, request: pytest.FixtureRequest, tmp_path: Path, output_dir: Path
    ) -> None:
        """A typo in an odd key: exit 13 listing the keys (not the values), nothing written."""
        backends = Backends(request, tmp_path)
        ref, extra = backends.vault(ODD)
        result = init(
            tmp_path,
            output_dir,
            [{"contents": "{{ secret('" + ref + "')['odd  key'] }}", "destination": "odd"}],
            _env=backends.env,
            **extra,
        )
        assert result.returncode == 13, result.stderr
        assert "'odd  key' not found" in result.errors[0]
        assert "ünïcødé" in result.errors[0]
        assert "unicode" not in result.errors[0]


TEMPLATE_LOOKING = "{{ 7*7 }} {% if true %}yes{% endif %} {# c #} ${HOME} $(id) {{ secret('env:HOME') }}"


class TestValuesAreData:
    @pytest.mark.parametrize(
        "render",
        [
            lambda ref: "{{ secret('" + ref + "#v') }}",
            lambda ref: "{{ secret('" + ref + "') | tojson }}",
        ],
        ids=["printed", "tojson"],
    )
    def test_template_syntax_in_a_value_stays_literal(
        self, request: pytest.FixtureRequest, tmp_path: Path, output_dir: Path, render: Callable[[str], str]
    ) -> None:
        """A value holding Jinja syntax is written as is, never evaluated."""
        backends = Backends(request, tmp_path)
        ref, extra = backends.vault({"v": TEMPLATE_LOOKING})
        result = init(tmp_path, output_dir, [{"contents": render(ref), "destination": "v"}], _env=backends.env, **extra)
        assert result.returncode == 0, result.stderr
        text = (output_dir / "v").read_text()
        assert TEMPLATE_LOOKING in text or json.dumps(TEMPLATE_LOOKING) in text, text
        assert "49" not in text
