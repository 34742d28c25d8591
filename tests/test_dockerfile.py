"""The Dockerfile and .dockerignore: the image's invariants, and its install steps run for real.

No container engine is needed. A small line parser reads the Dockerfile (continuations, comments,
exec and shell forms); the tests assert what the pod manifests rely on (numeric non-root user,
exec-form entrypoint, nothing to write at run time) and what a registry shows (OCI labels). The slow
test repeats the builder stage's steps in a fresh virtualenv and runs the installed `injector`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import injector
from injector.config.model import HealthConfig

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_LOOKING = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def flags(self) -> dict[str, str]:
        """The ``--from=builder`` style flags at the start of the arguments (COPY, ADD, RUN)."""
        flags = {}
        for token in self.args.split():
            if not token.startswith("--"):
                break
            name, _, value = token[2:].partition("=")
            flags[name] = value
        return flags


def parse_dockerfile(text: str) -> list[Instruction]:
    """Returns the instructions, with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as Docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Splits the instructions at each FROM; the global ARGs before the first FROM are dropped."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def key_values(args: str) -> dict[str, str]:
    """``A=1 B="two words"`` (ENV, LABEL, ARG) as a mapping; a bare ``NAME`` maps to ''."""
    pairs = {}
    for token in shlex.split(args):
        name, _, value = token.partition("=")
        pairs[name] = value
    return pairs


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (the last matching pattern wins).

    Like Docker's patternmatcher, a pattern that matches one of the path's parent folders matches
    the path too; ``**`` crosses folders, ``*`` and ``?`` do not.
    """
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = ""
        for piece in re.split(r"(\*\*/?|\*|\?|\[[^]]+\])", body.strip("/")):
            if piece.startswith("[") and piece.endswith("]"):
                regex += piece  # a character class, e.g. *.py[co]
            else:
                regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
STAGES = stages(INSTRUCTIONS)
FINAL = STAGES[-1]
IGNORE = [
    line.strip()
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


def _final(keyword: str) -> list[Instruction]:
    return [ins for ins in FINAL if ins.keyword == keyword]


def _global_args() -> dict[str, str]:
    out = {}
    for ins in INSTRUCTIONS:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            out.update(key_values(ins.args))
    return out


# --- the parser ----------------------------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments() -> None:
    """The line parser reads continued lines as one instruction and drops comment lines."""
    text = '# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nENTRYPOINT ["p", "q"]\n'
    parsed = parse_dockerfile(text)
    assert [(i.keyword, i.args) for i in parsed] == [
        ("FROM", "a AS b"),
        ("RUN", "x && y"),
        ("ENTRYPOINT", '["p", "q"]'),
    ]
    assert parsed[2].exec_form() == ["p", "q"]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """Parent folders match, the last pattern wins, ** crosses folders, [..] is a class."""
    patterns = ["*", "!src", "**/__pycache__", "**/*.py[co]"]
    assert dockerignore_excludes("other.txt", patterns)
    assert not dockerignore_excludes("src/a/b.py", patterns)
    assert dockerignore_excludes("src/a/__pycache__/b.py", patterns)
    assert dockerignore_excludes("src/a/b.pyc", patterns)


# --- the image's invariants -----------------------------------------------------------------------


def test_build_is_multi_stage_from_one_python_image() -> None:
    """A builder stage and a final stage, both FROM the same image, so the venv's interpreter path holds."""
    assert len(STAGES) >= 2
    bases = {stage[0].args.split()[0] for stage in STAGES}
    assert len(bases) == 1, f"stages use different images: {bases}"
    (base,) = bases
    image = _global_args().get(base.strip("${}"), base)
    assert re.match(r"python:3\.11[.-]", image), image
    copies = [ins for ins in FINAL if ins.keyword == "COPY"]
    assert copies and all(ins.flags().get("from") == "builder" for ins in copies), "copy only the built venv"


def test_final_stage_runs_nothing_and_adds_nothing() -> None:
    """The final stage has no RUN (no shell needed) and no ADD; nothing in the Dockerfile fetches URLs."""
    assert not _final("RUN")
    for ins in INSTRUCTIONS:
        assert ins.keyword != "ADD", f"line {ins.line}: use COPY; ADD fetches URLs and unpacks archives"
        assert not re.search(r"\b(curl|wget)\b", ins.args), f"line {ins.line}: nothing is downloaded by hand"


def test_final_user_is_numeric_and_not_root() -> None:
    """USER is uid:gid in numbers (kubelet can only check runAsNonRoot for a numeric user), never 0."""
    users = _final("USER")
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and gid.isdigit(), users[-1].args
    assert int(uid) != 0 and int(gid) != 0
    assert int(uid) == 65532, "deploy/ runs the injector as 65532"


def test_entrypoint_is_exec_form_injector_on_path() -> None:
    """ENTRYPOINT is the exec form of the venv's injector: no shell between kubelet's signals and it."""
    (entrypoint,) = _final("ENTRYPOINT")
    argv = entrypoint.exec_form()
    assert argv is not None, "ENTRYPOINT must be a JSON array (exec form)"
    assert argv[0] in ("injector", "/opt/injector/bin/injector")
    env = {k: v for ins in _final("ENV") for k, v in key_values(ins.args).items()}
    assert env["PATH"].split(":")[0] == "/opt/injector/bin"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "the root filesystem is read-only in the pod"
    (cmd,) = _final("CMD")
    assert cmd.exec_form() is not None


def test_oci_labels() -> None:
    """The final image carries the OCI labels, with the package's version and license."""
    labels = {k: v for ins in _final("LABEL") for k, v in key_values(ins.args).items()}
    for name in ("title", "description", "source", "licenses", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{name}"), f"missing label org.opencontainers.image.{name}"
    args = {k: v for ins in _final("ARG") for k, v in key_values(ins.args).items()}
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == injector.__version__, "bump the Dockerfile's VERSION with injector.__version__"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]


def test_no_secret_looking_args_or_env() -> None:
    """No ARG or ENV carries a secret: both end up readable in the image's history."""
    for ins in INSTRUCTIONS:
        if ins.keyword in ("ARG", "ENV"):
            for name in key_values(ins.args):
                assert not SECRET_LOOKING.search(name), f"line {ins.line}: {name} looks like a secret"


def test_exposes_the_health_port() -> None:
    """EXPOSE documents the default health.address port."""
    port = int(str(HealthConfig().address).rpartition(":")[2])
    assert [ins.args for ins in _final("EXPOSE")] == [str(port)]


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    """Every COPY source is in the context; the venv, .git, tests, deploy and caches are not."""
    sources = []
    for stage in STAGES:
        for ins in stage:
            if ins.keyword == "COPY" and "from" not in ins.flags():
                sources += shlex.split(ins.args)[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, IGNORE), f"COPY {source}: excluded by .dockerignore"
    for inside in ("injector/cli.py", "injector/sources/vault.py"):
        assert not dockerignore_excludes(inside, IGNORE), inside
    for outside in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_config.py",
        "deploy/base/injector.yaml",
        "injector/__pycache__/cli.cpython-311.pyc",
        ".env",
        "bench/run.py",
    ):
        assert dockerignore_excludes(outside, IGNORE), outside


# --- the install steps, for real ------------------------------------------------------------------


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_builder_steps_install_a_working_injector(tmp_path: Path) -> None:
    """The builder stage's steps, run in a fresh venv, give an `injector` that runs from its own files.

    Same steps, same order: copy exactly the Dockerfile's COPY sources into a context; `pip wheel
    --no-deps` (here without build isolation and without an index: setuptools and wheel come from
    the test extras, so nothing leaves the machine); `python -m venv`; `pip install` the wheel;
    uninstall pip and setuptools. Two differences, to stay fast and offline-friendly: the wheel is
    installed with --no-deps, and the dependencies come from this test run's environment through a
    .pth file placed AFTER the venv's own site-packages (the project's editable install there is not
    on that path: .pth files of an added folder are not processed). The test then checks that
    `injector` is imported from the new venv.
    """
    context = tmp_path / "src"
    for stage in STAGES[:-1]:
        for ins in stage:
            if ins.keyword == "COPY" and "from" not in ins.flags():
                *sources, _dest = shlex.split(ins.args)
                for source in sources:
                    target = context / source
                    if (ROOT / source).is_dir():
                        _copy_tree(ROOT / source, target)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes((ROOT / source).read_bytes())
    wheels = tmp_path / "wheels"
    # Bounded, so that an index that cannot be reached fails the test instead of hanging it.
    pip_env = {**os.environ, "PIP_DEFAULT_TIMEOUT": "15", "PIP_RETRIES": "1"}
    # --no-build-isolation --no-index: the build backend comes from the test extras, so the test
    # never reaches the network (the Dockerfile's isolated build fetches it from the index).
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(wheels), str(context)],
        env=pip_env,
    )
    (wheel,) = wheels.glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "injector").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert str(path.relative_to(ROOT)) in packaged, f"{path.relative_to(ROOT)} is missing from the wheel"

    venv = tmp_path / "opt" / "injector"
    _run([sys.executable, "-m", "venv", str(venv)])  # venv builds on the base interpreter, not on ours
    _run([str(venv / "bin" / "pip"), "install", "--no-deps", "--no-index", str(wheel)])
    _run([str(venv / "bin" / "pip"), "uninstall", "--yes", "pip", "setuptools"])
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    (site_packages / "zz_test_dependencies.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n", encoding="utf-8"
    )

    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    version = _run(["injector", "--version"], env=env, cwd=tmp_path)
    assert injector.__version__ in version.stdout
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import injector; print(injector.__file__)"], env=env, cwd=tmp_path
    )
    assert where.stdout.strip().startswith(str(site_packages)), where.stdout
    commands = _run(["injector", "--help"], env=env, cwd=tmp_path).stdout
    assert "init" in commands and "sidecar" in commands
    assert not list(site_packages.glob("pip")), "pip stays out of the image"
    assert os.access(venv / "bin" / "injector", os.X_OK)


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if dockerignore_excludes(str(path.relative_to(ROOT)), IGNORE):
            continue
        if path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_bytes(path.read_bytes())
