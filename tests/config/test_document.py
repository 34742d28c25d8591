"""The config file's YAML read in a child process (``read_tree_elsewhere``): the same values and the
same errors as in this process, and a sidecar that never imports PyYAML."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

from injector.config.document import read_tree, read_tree_elsewhere
from injector.errors import ConfigError
from tests.fixtures.sidecar import Harness

#: Documents whose values PyYAML's safe constructors make of every type they know.
DOCUMENTS = {
    "scalars": "a: 1\nb: [1, 2.5, true, null, ~, 0o17, 0x1f, 1_000, .inf, -.inf]\nc: 'x: y'\n",
    "dates": (
        "day: 2024-01-02\nutc: 2024-01-02T03:04:05Z\nzone: 2024-01-02 03:04:05.25 +02:00\nnaive: 2024-01-02 03:04:05\n"
    ),
    "binary and sets": "bin: !!binary aGVsbG8=\nset: !!set {a, b}\n",
    "pairs": "omap: !!omap [{a: 1}, {b: [x, 2024-01-02]}]\npairs: !!pairs [{a: 1}, {a: 2}]\n",
    "keys": "1: int\n~: none\n2024-01-02: date\ntrue: bool\n1.5: float\n",
    "anchors": "base: &b {k: v, n: [1, 2]}\nmerged: {<<: *b, own: 1}\nlist: [*b, *b]\n",
    "unicode": 'name: "\\u00e9t\\u00e9"\nlit: |\n  line one\n  line two\n',
    "empty": "",
}


def _types(value: object) -> object:
    """``value``'s shape with every leaf's type: equal values of other types (1 and True, a date and
    a string) would compare equal otherwise."""
    if isinstance(value, dict):
        return {repr(_types(key)): _types(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_types(item) for item in value]]
    return type(value).__name__


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_the_child_gives_the_values_this_process_parses(tmp_path: Path, text: str) -> None:
    """Every type of value (dates, times with zones, bytes, sets, pairs, keys that are not strings)
    comes back from the child equal, and of the same type, to what ``read_tree`` parses here."""
    path = tmp_path / "injector.yaml"
    path.write_text(text)
    here, there = read_tree(path), read_tree_elsewhere(path)
    assert there == here
    assert _types(there) == _types(here)


def test_dates_keep_their_zone(tmp_path: Path) -> None:
    """A timestamp with an offset comes back with that offset, a plain date as a date."""
    path = tmp_path / "injector.yaml"
    path.write_text(DOCUMENTS["dates"])
    tree = read_tree_elsewhere(path)
    assert tree["day"] == datetime.date(2024, 1, 2)
    assert type(tree["day"]) is datetime.date
    assert tree["zone"].utcoffset() == datetime.timedelta(hours=2)


ERRORS = {
    "missing": None,
    "not YAML": "a: [1, 2\nb: 3\n",
    "tabs": "a:\n\t- 1\n",
    "too deep": "a: " + "[" * 70 + "]" * 70 + "\n",
    "inside itself": "templates: &t [*t]\n",
    "billion laughs": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join([f'*{chr(97 + n)}'] * 10)}]\n" for n in range(5)),
}


@pytest.mark.parametrize("text", ERRORS.values(), ids=ERRORS.keys())
def test_the_child_reports_the_error_this_process_reports(tmp_path: Path, text: str | None) -> None:
    """A missing file, text that is not YAML, a document too deep or too large: the same
    ``ConfigError``, word for word, from the child as from ``read_tree``."""
    path = tmp_path / "injector.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as here:
        read_tree(path)
    with pytest.raises(ConfigError) as there:
        read_tree_elsewhere(path)
    assert str(there.value) == str(here.value)
    assert str(path) in str(there.value)


def test_a_file_that_is_not_utf8_is_the_same_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8: the same ``cannot read config file`` error either way."""
    path = tmp_path / "injector.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError) as here:
        read_tree(path)
    with pytest.raises(ConfigError) as there:
        read_tree_elsewhere(path)
    assert str(there.value) == str(here.value)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("import sys; sys.stderr.write('Traceback: boom'); sys.exit(3)", "failed (exit 3): Traceback: boom"),
        ("import sys; sys.stdout.write('not marshal')", "sent no config"),
        ("import time; time.sleep(30)", "took over 0.5s"),
    ],
    ids=["crash", "garbage", "hang"],
)
def test_a_child_that_fails_otherwise_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, expected: str
) -> None:
    """A child that crashes, answers something that is not a config, or hangs: one
    ``ConfigError`` naming the file, after at most the timeout."""
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    path = tmp_path / "injector.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(ConfigError) as error:
        read_tree_elsewhere(path, timeout=0.5)
    assert expected in str(error.value)
    assert str(error.value).startswith(f"{path}: ")


def test_an_interpreter_that_cannot_start_is_one_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No interpreter at ``sys.executable``: a ``ConfigError`` that says so."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "missing-python"))
    path = tmp_path / "injector.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="cannot start"):
        read_tree_elsewhere(path)


def test_the_child_gets_no_credential_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child, which is not undumpable, gets Python's settings, the locale and PATH, and no
    token, AWS key or injector setting: a same-user app could read its environment."""
    from tests.fixtures.sentinel import SENTINEL

    seen = tmp_path / "environ"
    fake = tmp_path / "python"
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\nopen({str(seen)!r}, 'w').write(repr(dict(os.environ)))\nsys.exit(3)\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    for name in ("VAULT_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "INJECTOR_OUTPUT_DIR", "GITHUB_TOKEN"):
        monkeypatch.setenv(name, SENTINEL)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/on/the/path")
    monkeypatch.setenv("LANG", "C.UTF-8")
    path = tmp_path / "injector.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="exit 3"):
        read_tree_elsewhere(path)
    environ = seen.read_text()
    assert SENTINEL not in environ
    assert "'PYTHONPATH': '/somewhere/on/the/path'" in environ
    assert "'LANG': 'C.UTF-8'" in environ


def _maps_yaml(pid: int) -> bool:
    """Whether the process maps PyYAML's C extension: it is loaded once ``yaml`` is imported."""
    return "_yaml" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_the_sidecar_runs_without_pyyaml_until_a_template_needs_it(harness: Harness, output_dir: Path) -> None:
    """A sidecar reads its config's YAML in a child and never loads PyYAML, until a template
    calls ``toyaml``: then it renders as before."""
    plain = harness.config(
        {"output_dir": str(output_dir), "templates": [{"contents": "plain", "destination": "plain.txt"}]},
        name="plain.yaml",
    )
    sidecar = harness.sidecar(plain)
    sidecar.wait_ready()
    assert (output_dir / "plain.txt").read_text() == "plain"
    assert not _maps_yaml(sidecar.proc.pid), "the sidecar imported PyYAML"
    assert sidecar.stop() == 0

    with_yaml = harness.config(
        {
            "output_dir": str(output_dir),
            "templates": [{"contents": "{{ {'a': [1, 2]} | toyaml }}", "destination": "data.yaml"}],
        },
        name="with-yaml.yaml",
    )
    sidecar = harness.sidecar(with_yaml)
    sidecar.wait_ready()
    assert (output_dir / "data.yaml").read_text() == "a:\n- 1\n- 2"
    assert _maps_yaml(sidecar.proc.pid)
    assert sidecar.stop() == 0


def test_the_sidecar_reports_a_config_error_as_init_does(harness: Harness, tmp_path: Path) -> None:
    """A config that is not YAML: the sidecar, which reads it in a child, exits with the same line
    and code as ``init``, which reads it itself."""
    import subprocess

    path = tmp_path / "broken.yaml"
    path.write_text("output_dir: [unclosed\n")
    results = [
        subprocess.run(
            [sys.executable, "-m", "injector", command, "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for command in ("init", "sidecar")
    ]
    init, sidecar = results
    assert init.returncode == sidecar.returncode == ConfigError.exit_code
    assert sidecar.stderr == init.stderr
    assert f"{path}:2:1: invalid YAML" in sidecar.stderr
