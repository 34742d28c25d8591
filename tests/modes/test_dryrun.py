"""`injector render --dry-run` as a user runs it (a real process): ``--show`` prints no part of a
value however a template encodes it, and dynamic credentials are issued only with ``--issue``, and
then revoked. The stand-in values it renders with are checked directly."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from injector.config.load import parse_config
from injector.errors import SourceError
from injector.modes.dryrun import preview, stand_in
from injector.refs import Reference, Secret
from injector.sources import Fetched
from tests.fixtures.cli import run, write_config
from tests.fixtures.sentinel import encoded_forms
from tests.fixtures.vault import PkiMount, VaultServer, dev_only

ROOT = Path(__file__).resolve().parent.parent.parent
#: Quotes, backslashes, %, URL and dotenv delimiters, unicode and whitespace: what escaping filters change.
PASSWORD = "p@ss\"w0rd/\\x%41$HOME é'ü #:?&=+ tab\there"


def assert_no_part(values: list[str], text: str, length: int = 6) -> None:
    """Fails when ``text`` holds ``length`` consecutive characters of any form of any value."""
    for value in values:
        for form in encoded_forms(value):
            for start in range(len(form) - length + 1):
                part = form[start : start + length]
                assert part.isspace() or part not in text, f"{part!r} (of {form!r}) is in the output"


def dry_run(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    result = run(["render", "-c", str(config), "--dry-run", *args, "--log-level", "debug"], env=env)
    assert result.returncode == 0, result.stderr
    return result


class TestShow:
    def test_shipped_database_url_template(self, tmp_path: Path, output_dir: Path) -> None:
        """templates/database-url.j2 (urlquote): --show prints the URL's shape, no part of the credentials."""
        (tmp_path / "db.json").write_text(json.dumps({"username": "app-user_01", "password": PASSWORD}))
        config = write_config(
            tmp_path,
            output_dir,
            [{"source": str(ROOT / "templates" / "database-url.j2"), "destination": "db.url"}],
            secrets={"db": "file:db.json"},
        )
        result = dry_run(config, "--show")
        assert "    postgresql://<redacted>:<redacted>@postgres:5432/app?sslmode=require" in result.stdout
        assert_no_part([PASSWORD, "app-user_01"], result.stdout + result.stderr)
        assert list(output_dir.iterdir()) == []

    @pytest.mark.parametrize(
        "expression",
        [
            "urlquote",
            "urlencode",
            "b64encode",
            "tojson",
            "dotenv_quote",
            "shell_quote",
            "toyaml",
            "upper",
            "lower",
            "title",
            "capitalize",
            "reverse",
            "escape",
            "replace('a', 'b')",
            "list | join(',')",
            "batch(3) | list",
            "wordwrap(5)",
            "truncate(12)",
            "center(80)",
            "indent(4)",
            "string",
            "pprint",
        ],
    )
    def test_filters_that_reshape_a_value(self, tmp_path: Path, output_dir: Path, expression: str) -> None:
        """A value encoded, escaped or reshaped by a filter, or sliced, is masked in --show."""
        (tmp_path / "s.json").write_text(json.dumps({"pw": PASSWORD}))
        template = (
            (
                f"A={{{{ s.pw | {expression} }}}}\n"
                "B={{ s.pw[3:20] }}\n"
                "C={{ s.pw[::-1] }}\n"
                "D={{ '%s/%s' | format(s.pw, 'x') }}\n"
                "E={{ s | tojson }}\n"
            )
            .replace("s.pw", "secret('file:s.json#pw')")
            .replace("s |", "secret('file:s.json') |")
        )
        config = write_config(tmp_path, output_dir, [{"contents": template, "destination": "a"}])
        result = dry_run(config, "--show")
        assert "    B=<redacted>" in result.stdout
        assert_no_part([PASSWORD], result.stdout + result.stderr)

    def test_lines_without_values_are_shown(self, tmp_path: Path, output_dir: Path) -> None:
        """Text, env() settings, key names and lengths do not depend on values: they are shown."""
        (tmp_path / "s.json").write_text(json.dumps({"pw": PASSWORD}))
        template = (
            "# {{ env('REGION') }}\n"
            "keys={{ secret('file:s.json').keys() | join(',') }} length={{ secret('file:s.json#pw') | length }}\n"
            "pw={{ secret('file:s.json#pw') }}\n"
        )
        config = write_config(tmp_path, output_dir, [{"contents": template, "destination": "a"}])
        result = dry_run(config, "--show", env={"REGION": "eu-west-1"})
        assert f"    # eu-west-1\n    keys=pw length={len(PASSWORD)}\n    pw=<redacted>\n" in result.stdout

    def test_a_template_that_parses_a_value_is_hidden(self, tmp_path: Path, output_dir: Path) -> None:
        """A template that only renders with the real value (fromjson of it) is hidden, saying why."""
        (tmp_path / "s.json").write_text(json.dumps({"blob": json.dumps({"pw": PASSWORD})}))
        template = "{{ (secret('file:s.json#blob') | b64encode | b64decode | fromjson).pw }}\n"
        config = write_config(tmp_path, output_dir, [{"contents": template, "destination": "a"}])
        result = dry_run(config, "--show")
        assert "<contents hidden" in result.stdout or "<redacted>" in result.stdout
        assert_no_part([PASSWORD], result.stdout + result.stderr)


def vault_section(server: VaultServer) -> dict[str, Any]:
    return {"address": server.address, "auth": {"method": "token"}, "timeout": "5s"}


def token_env(server: VaultServer) -> dict[str, str]:
    env = {"VAULT_TOKEN": server.root_token}
    if isinstance(server.verify, str):
        env["VAULT_CACERT"] = server.verify
    return env


@dev_only("database/creds needs a database on a real Vault")
class TestDynamicCredentials:
    def config(self, tmp_path: Path, output_dir: Path, server: VaultServer, lease_role: str, kv2_mount: str) -> Path:
        template = "{{ secrets.db.username }}:{{ secrets.db.password | urlquote }} {{ secrets.app.k }}\n"
        return write_config(
            tmp_path,
            output_dir,
            [{"contents": template, "destination": "db"}],
            vault=vault_section(server),
            secrets={"db": f"vault:{lease_role}", "app": f"vault:{kv2_mount}/app"},
        )

    def test_not_issued_by_default(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: Any,
        lease_role: str,
        kv2_mount: str,
    ) -> None:
        """A dry run issues no credentials: it says which reference it skipped and renders NOT_ISSUED."""
        assert vault_server.dev is not None
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "kv-value"}, mount_point=kv2_mount)
        before = len(vault_server.dev.active_leases("database/"))
        config = self.config(tmp_path, output_dir, vault_server, lease_role, kv2_mount)
        result = dry_run(config, "--show", env=token_env(vault_server))
        assert "not issued (a dry run issues no credentials" in result.stdout
        assert f"vault:{lease_role}" in result.stdout
        assert "  not issued  db" in result.stdout
        assert "    NOT_ISSUED:NOT_ISSUED <redacted>" in result.stdout
        assert len(vault_server.dev.active_leases("database/")) == before

    def test_issue_revokes_what_it_issued(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: Any,
        lease_role: str,
        kv2_mount: str,
    ) -> None:
        """--issue fetches the credentials, masks them in --show, and revokes the lease before it exits."""
        assert vault_server.dev is not None
        vault_admin.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "kv-value"}, mount_point=kv2_mount)
        before = set(vault_server.dev.active_leases("database/"))
        config = self.config(tmp_path, output_dir, vault_server, lease_role, kv2_mount)
        result = dry_run(config, "--show", "--issue", env=token_env(vault_server))
        assert "         new  db" in result.stdout
        assert "    <redacted>:<redacted> <redacted>" in result.stdout
        assert f"issued and revoked: vault:{lease_role}" in result.stdout
        assert set(vault_server.dev.active_leases("database/")) == before


class TestCertificates:
    """A PKI certificate has no lease (Vault's default): --issue revokes it by its serial number."""

    @staticmethod
    def config(tmp_path: Path, output_dir: Path, server: VaultServer, pki: PkiMount) -> Path:
        ref = f"vault:{pki.mount}/issue/{pki.role}?common_name=web.dry.run&ttl=1h"
        return write_config(
            tmp_path,
            output_dir,
            [{"contents": "{{ secrets.cert.certificate }}", "destination": "tls.crt"}],
            vault=vault_section(server),
            secrets={"cert": ref},
        )

    def test_issue_revokes_the_certificate_by_its_serial(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, vault_admin: Any, pki_mount: PkiMount
    ) -> None:
        """The certificate is issued, rendered masked, then revoked: Vault lists its serial as revoked."""
        config = self.config(tmp_path, output_dir, vault_server, pki_mount)
        result = dry_run(config, "--show", "--issue", env=token_env(vault_server))
        assert f"issued and revoked: vault:{pki_mount.mount}/issue/{pki_mount.role}" in result.stdout
        revoked = vault_admin.list(f"{pki_mount.mount}/certs/revoked")
        assert revoked is not None and len(revoked["data"]["keys"]) == 1
        assert "revoked the certificate of vault.pki(" in result.stderr

    def test_a_token_that_may_not_revoke_says_the_certificate_stays_valid(
        self,
        tmp_path: Path,
        output_dir: Path,
        vault_server: VaultServer,
        vault_admin: Any,
        pki_mount: PkiMount,
        policy: Any,
    ) -> None:
        """Without update on {mount}/revoke the dry run still ends well and says what was left valid."""
        name = policy(f'path "{pki_mount.mount}/issue/*" {{ capabilities = ["update"] }}')
        token = vault_admin.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
        config = self.config(tmp_path, output_dir, vault_server, pki_mount)
        result = dry_run(config, "--issue", env={**token_env(vault_server), "VAULT_TOKEN": token})
        line = next(x for x in result.stdout.splitlines() if x.startswith("issued, NOT revoked"))
        assert f"vault:{pki_mount.mount}/issue/{pki_mount.role}" in line
        assert "permission denied" in line
        assert vault_admin.list(f"{pki_mount.mount}/certs/revoked") is None

    def test_a_no_store_certificate_is_revoked_by_presenting_it(
        self, tmp_path: Path, output_dir: Path, vault_server: VaultServer, vault_admin: Any, pki_mount: PkiMount
    ) -> None:
        """A no_store role's certificate is not kept by serial (Vault answers 400 "not found"): the
        dry run presents the certificate itself, and Vault lists it as revoked."""
        vault_admin.write_data(
            f"{pki_mount.mount}/roles/{pki_mount.role}",
            data={"allow_any_name": True, "no_store": True, "max_ttl": "72h", "enforce_hostnames": False},
        )
        config = self.config(tmp_path, output_dir, vault_server, pki_mount)
        result = dry_run(config, "--issue", env=token_env(vault_server))
        assert f"issued and revoked: vault:{pki_mount.mount}/issue/{pki_mount.role}" in result.stdout
        revoked = vault_admin.list(f"{pki_mount.mount}/certs/revoked")
        assert revoked is not None and len(revoked["data"]["keys"]) == 1
        assert "by the certificate itself" in result.stderr

    def test_a_refused_revocation_does_not_print_the_serial(self, tmp_path: Path) -> None:
        """Vault's refusal quotes the serial, a field of the fetched value: the dry run says the
        certificate was not revoked without printing the serial (or any of the value)."""
        serial = "3e:91:5c:07:aa:12:9b:40:d2:6f:88:01:7c:e5:33:19:a4:0b:6d:2f"

        class Refusing:
            scheme = "vault"

            def describe(self, ref: Reference) -> str:
                return f"memory({ref.path})"

            def issues(self, ref: Reference) -> bool:
                return True

            def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
                value = Secret({"certificate": "-----BEGIN CERTIFICATE-----", "serial_number": serial})
                return {ref: Fetched(value=value, serial=serial, not_after=time.monotonic() + 3600) for ref in refs}

            def revoke_issued(self, ref: Reference, fetched: Fetched) -> bool:
                raise SourceError(f"{ref}: Vault refused: certificate with serial {serial} not found.", ref=str(ref))

            def close(self) -> None:
                return None

        config = parse_config(
            {
                "output_dir": "/nonexistent/out",
                "secrets": {"cert": "vault:pki/issue/web?common_name=a.example"},
                "templates": [{"contents": "{{ secrets.cert.certificate }}", "destination": "tls.crt"}],
            },
            base_dir=tmp_path,
            environ={},
        )
        lines = preview(config, timeout=5, issue=True, sources={"vault": Refusing()})
        refused = [line for line in lines if line.startswith("issued, NOT revoked: vault:pki/issue/web")]
        assert len(refused) == 1 and "not found" in refused[0]
        for form in (serial, serial.replace(":", ""), serial.upper()):
            assert form not in "\n".join(lines)


class TestStandIns:
    VALUE: ClassVar[dict[str, Any]] = {
        "user": "app",
        "pw": PASSWORD,
        "port": 5432,
        "on": True,
        "list": ["a1", "B2"],
        "n": None,
    }

    def test_same_shape(self) -> None:
        """A stand-in keeps keys, types, lengths and line breaks."""
        for variant in (0, 1):
            got = stand_in(self.VALUE, variant)
            assert got.keys() == self.VALUE.keys()
            assert len(got["pw"]) == len(PASSWORD) and got["on"] is True and got["n"] is None
            assert len(str(got["port"])) == 4 and isinstance(got["port"], int)
            assert stand_in("a\nb\n", variant).count("\n") == 2

    def test_no_character_of_the_value(self) -> None:
        """A stand-in holds no character of the value (in either case), and the two variants differ everywhere."""
        a, b = stand_in(PASSWORD, 0), stand_in(PASSWORD, 1)
        assert not (set(a) | set(b)) & (set(PASSWORD.lower()) | set(PASSWORD.upper()))
        assert all(x != y for x, y in zip(a, b, strict=True))

    def test_json_string_keeps_its_keys(self) -> None:
        """A JSON-object string (a Secrets Manager secret) stays JSON with the same keys."""
        got = json.loads(stand_in(json.dumps({"password": PASSWORD}), 0))
        assert list(got) == ["password"] and len(got["password"]) == len(PASSWORD)
