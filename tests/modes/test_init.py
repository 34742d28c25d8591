"""`injector init`, `validate` and `render --dry-run` as a user runs them: a real process, a real
tmpfs, real exit codes, and a sentinel secret that appears in the output file and nowhere else."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import run, write_config
from tests.fixtures.sentinel import SENTINEL


def snapshot_of(output_dir: Path) -> dict[str, bytes]:
    """Every regular file reachable through the user-visible names, by relative path."""
    out = {}
    for path in sorted(output_dir.rglob("*")):
        rel = path.relative_to(output_dir)
        if rel.parts[0].startswith(".."):
            continue
        if path.is_file():
            out[str(rel)] = path.read_bytes()
    return out


class TestInit:
    def test_renders_into_the_kubelet_layout_on_tmpfs(self, tmp_path: Path, output_dir: Path) -> None:
        """init writes every file through a ..data snapshot, 0440, and exits 0."""
        (tmp_path / "creds.json").write_text(json.dumps({"user": "app", "password": "pw-1"}))
        (tmp_path / "app.env.j2").write_text(
            'USER={{ secret("file:creds.json#user") }}\n'
            'PASSWORD={{ secret("file:creds.json#password") | dotenv_quote }}\n'
        )
        config = write_config(
            tmp_path,
            output_dir,
            [
                {"source": "app.env.j2", "destination": "app.env"},
                {"contents": "{{ env('HOME_REGION') }}\n", "destination": "conf/region"},
            ],
        )
        result = run(["init", "--config", str(config)], env={"HOME_REGION": "eu-west-1"})
        assert result.returncode == 0, result.stderr
        assert (output_dir / "app.env").read_text() == 'USER=app\nPASSWORD="pw-1"\n'
        assert (output_dir / "conf" / "region").read_text() == "eu-west-1\n"
        assert (output_dir / "..data").is_symlink()
        assert os.readlink(output_dir / "app.env") == "..data/app.env"
        assert oct((output_dir / "app.env").stat().st_mode & 0o777) == oct(0o440)
        assert "rendered 2 file(s)" in result.stderr

    def test_second_run_with_same_values_changes_nothing(self, tmp_path: Path, output_dir: Path) -> None:
        """A second init with unchanged values keeps the same snapshot (no swap, no write)."""
        config = write_config(tmp_path, output_dir, [{"contents": "x={{ env('X') }}\n", "destination": "a"}])
        assert run(["init", "-c", str(config)], env={"X": "1"}).returncode == 0
        before = os.readlink(output_dir / "..data")
        result = run(["init", "-c", str(config)], env={"X": "1"})
        assert result.returncode == 0
        assert os.readlink(output_dir / "..data") == before
        assert "(0 changed)" in result.stderr

    def test_output_dir_flag_and_env_override_the_config(self, tmp_path: Path, output_dir: Path) -> None:
        """--output-dir wins over the file's output_dir."""
        config = write_config(tmp_path, Path("/nonexistent"), [{"contents": "ok\n", "destination": "a"}])
        result = run(["init", "-c", str(config), "--output-dir", str(output_dir)])
        assert result.returncode == 0, result.stderr
        assert (output_dir / "a").read_text() == "ok\n"


class TestExitCodes:
    @pytest.mark.parametrize(
        ("templates", "env", "code", "fragment"),
        [
            ([{"contents": "{{ secret('consul:x') }}", "destination": "a"}], {}, 16, "consul:x"),
            ([{"contents": "{{ env('NOPE_NOT_SET') }}", "destination": "a"}], {}, 16, "NOPE_NOT_SET"),
            ([{"contents": "{{ secret('env:NOPE_NOT_SET') }}", "destination": "a"}], {}, 13, "NOPE_NOT_SET"),
            ([{"contents": "{% if %}", "destination": "a"}], {}, 16, "templates[0] (a)"),
            ([{"contents": "{{ secret('file:missing.json') }}", "destination": "a"}], {}, 13, "missing.json"),
            (
                [{"contents": "{{ secret('file:creds.json#pasword') }}", "destination": "a"}],
                {},
                13,
                "key 'pasword' not found (keys: password, user)",
            ),
            ([{"contents": "x", "destination": "../escape"}], {}, 11, "leaves output_dir"),
        ],
        ids=["bad-ref", "unset-env-fn", "unset-env-ref", "syntax", "missing-file", "missing-key", "traversal"],
    )
    def test_each_failure_has_its_code_and_one_clear_line(
        self,
        tmp_path: Path,
        output_dir: Path,
        templates: list[dict[str, Any]],
        env: dict[str, str],
        code: int,
        fragment: str,
    ) -> None:
        """Each kind of failure exits with its own code and names what failed, in one line."""
        (tmp_path / "creds.json").write_text(json.dumps({"user": "u", "password": SENTINEL}))
        config = write_config(tmp_path, output_dir, templates)
        result = run(["init", "-c", str(config)], env=env)
        assert result.returncode == code, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("injector: error:")]
        assert len(errors) == 1, result.stderr
        assert fragment in errors[0]
        assert "Traceback" not in result.stderr
        assert SENTINEL not in result.stderr + result.stdout

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """A missing config is exit 11 and says how to pass one."""
        result = run(["init", "-c", str(tmp_path / "nope.yaml")])
        assert result.returncode == 11
        assert "config file not found" in result.stderr

    def test_output_dir_not_tmpfs_is_refused(self, tmp_path: Path) -> None:
        """A disk-backed output_dir is exit 17 with the fix in the message."""
        out = tmp_path / "disk"
        out.mkdir()
        config = write_config(tmp_path, out, [{"contents": "x", "destination": "a"}])
        result = run(["init", "-c", str(config)])
        assert result.returncode == 17
        assert "not tmpfs" in result.stderr
        assert "allow_non_tmpfs" in result.stderr

    def test_unreachable_backend_gives_up_before_the_deadline(self, tmp_path: Path, output_dir: Path) -> None:
        """An unreachable backend is retried with backoff, then exit 15 shortly after --timeout."""
        config = write_config(
            tmp_path,
            output_dir,
            [{"contents": "{{ secret('aws-sm:app/db') }}", "destination": "a"}],
            aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "max_attempts": 1, "timeout": "1s"},
            refresh={"min_backoff": "100ms", "max_backoff": "400ms"},
        )
        started = time.monotonic()
        result = run(
            ["init", "-c", str(config), "--timeout", "2s"], env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 15, result.stderr
        assert "gave up after" in result.stderr
        assert elapsed < 20


class TestNothingLost:
    @pytest.mark.parametrize(
        "bad",
        [
            {"contents": "{{ secret('file:creds.json#nope') }}", "destination": "a"},
            {"contents": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "destination": "a"},
            {"contents": "{{ undefined_variable }}", "destination": "a"},
            {"contents": "{% for %}", "destination": "a"},
            {"contents": "x", "destination": "/etc/passwd"},
        ],
        ids=["missing-key", "sandbox-escape", "undefined", "syntax", "absolute"],
    )
    def test_bad_input_leaves_good_files_untouched(self, tmp_path: Path, output_dir: Path, bad: dict[str, str]) -> None:
        """After a good init, a bad config fails clearly and every file stays byte-identical."""
        (tmp_path / "creds.json").write_text(json.dumps({"user": "u"}))
        good = write_config(
            tmp_path, output_dir, [{"contents": "{{ secret('file:creds.json#user') }}", "destination": "a"}]
        )
        assert run(["init", "-c", str(good)]).returncode == 0
        before = snapshot_of(output_dir)
        data_before = os.readlink(output_dir / "..data")
        bad_config = write_config(tmp_path, output_dir, [bad, {"contents": "b", "destination": "b"}])
        result = run(["init", "-c", str(bad_config)])
        assert result.returncode != 0
        assert result.stderr.count("injector: error:") == 1
        assert snapshot_of(output_dir) == before
        assert os.readlink(output_dir / "..data") == data_before


class TestValidateAndPreview:
    def test_validate_counts_without_fetching(self, tmp_path: Path) -> None:
        """validate checks templates and references but never calls a backend."""
        config = write_config(
            tmp_path,
            Path("/run/secrets/app"),
            [
                {
                    "contents": "{{ secret('vault:secret/app#a') }}{{ secret('vault:secret/app#b') }}",
                    "destination": "a",
                },
                {"contents": "{{ secret('aws-sm:prod/db#password') }}", "destination": "b"},
            ],
            vault={"address": "http://127.0.0.1:9", "auth": {"method": "token"}},
        )
        result = run(["validate", "-c", str(config)])
        assert result.returncode == 0, result.stderr
        assert "ok: 2 template(s), 2 distinct reference(s) (aws-sm: 1, vault: 1)" in result.stdout

    def test_validate_lists_every_broken_template(self, tmp_path: Path) -> None:
        """validate reports all broken templates at once, one per line."""
        config = write_config(
            tmp_path,
            Path("/out"),
            [{"contents": "{% if %}", "destination": "a"}, {"contents": "{{ secret('nope:x') }}", "destination": "b"}],
        )
        result = run(["validate", "-c", str(config)])
        assert result.returncode == 16
        assert "templates[0] (a)" in result.stderr
        assert "templates[1] (b)" in result.stderr

    def test_validate_checks_env_templates(self, tmp_path: Path) -> None:
        """A broken template string in env: (exec mode) fails validate, naming the variable."""
        config = write_config(tmp_path, Path("/out"), [], env={"GOOD": "env:HOME", "BAD": "{{ oops"})
        result = run(["validate", "-c", str(config)])
        assert result.returncode == 16
        assert "env.BAD" in result.stderr

    def test_vault_references_need_a_vault_section(self, tmp_path: Path) -> None:
        """Using vault: references without a vault: section is a config error."""
        config = write_config(
            tmp_path, Path("/out"), [{"contents": "{{ secret('vault:secret/x#a') }}", "destination": "a"}]
        )
        result = run(["validate", "-c", str(config)])
        assert result.returncode == 11
        assert "no vault: section" in result.stderr

    def test_dry_run_shows_changes_with_values_masked(self, tmp_path: Path, output_dir: Path) -> None:
        """render --dry-run --show says what would change and masks values; it writes nothing."""
        config = write_config(
            tmp_path, output_dir, [{"contents": "PASSWORD={{ secret('env:PW') }}\n", "destination": "a"}]
        )
        result = run(["render", "-c", str(config), "--dry-run", "--show"], env={"PW": SENTINEL})
        assert result.returncode == 0, result.stderr
        assert "new  a" in result.stdout
        assert "PASSWORD=<redacted>" in result.stdout
        assert SENTINEL not in result.stdout + result.stderr
        assert list(output_dir.iterdir()) == []


class TestSentinel:
    @pytest.mark.parametrize("log_format", ["text", "json"])
    def test_value_is_in_the_file_and_nowhere_else(self, tmp_path: Path, output_dir: Path, log_format: str) -> None:
        """At debug level, in both log formats, the sentinel reaches the file only."""
        (tmp_path / "creds.json").write_text(json.dumps({"password": SENTINEL}))
        config = write_config(
            tmp_path,
            output_dir,
            [
                {"contents": "A={{ secret('file:creds.json#password') }}\n", "destination": "a"},
                {"contents": "B={{ secret('env:PW') }}\n", "destination": "b"},
            ],
        )
        result = run(
            ["init", "-c", str(config), "--log-level", "debug", "--log-format", log_format], env={"PW": SENTINEL}
        )
        assert result.returncode == 0, result.stderr
        assert (output_dir / "a").read_text() == f"A={SENTINEL}\n"
        assert (output_dir / "b").read_text() == f"B={SENTINEL}\n"
        assert SENTINEL not in result.stdout
        assert SENTINEL not in result.stderr
        if log_format == "json":
            for line in result.stderr.splitlines():
                if line.startswith("{"):
                    json.loads(line)

    @pytest.mark.parametrize(
        "template",
        [
            "{{ secret('env:PW') | int }}",
            "{{ secret('env:PW') ~ undefined_name }}",
            "{{ secret('file:creds.json')[secret('env:PW')] }}",
            "{{ secret('env:PW').nope() }}",
        ],
        ids=["int", "concat-undefined", "as-key", "method"],
    )
    def test_failure_messages_never_carry_the_value(self, tmp_path: Path, output_dir: Path, template: str) -> None:
        """Errors that would quote the value are redacted, at debug level too."""
        (tmp_path / "creds.json").write_text(json.dumps({"password": "x"}))
        config = write_config(tmp_path, output_dir, [{"contents": template, "destination": "a"}])
        result = run(["init", "-c", str(config), "--log-level", "debug"], env={"PW": SENTINEL})
        assert result.returncode != 0
        assert SENTINEL not in result.stdout + result.stderr
