"""The Dockerfile and .dockerignore, read as text: the image's invariants, checked everywhere.

No container engine is needed. A small line parser reads the Dockerfile (continuations, comments,
exec and shell forms); the tests assert what the pod manifests rely on (numeric non-root user,
exec-form entrypoint, nothing to write at run time) and what a registry shows (OCI labels).
tests/test_image.py builds the Dockerfile for real and runs the image (root, podman).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from injector.config.model import HealthConfig
from tests.helpers.image import build_argv

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
    """The final image carries the OCI labels; version and revision come from build args, never a URL of nowhere."""
    labels = {k: v for ins in _final("LABEL") for k, v in key_values(ins.args).items()}
    for name in ("title", "description", "licenses", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{name}"), f"missing label org.opencontainers.image.{name}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert not any(".invalid" in value for value in labels.values())
    args = {k: v for ins in _final("ARG") for k, v in key_values(ins.args).items()}
    assert {"VERSION", "REVISION"} <= set(args)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]


def test_no_healthcheck() -> None:
    """No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself."""
    assert not [ins for ins in INSTRUCTIONS if ins.keyword == "HEALTHCHECK"]


def test_base_is_an_overridable_arg_and_pinning_is_documented() -> None:
    """The base image is an ARG before the first FROM, and a comment says how to pin its digest."""
    assert "PYTHON_IMAGE" in _global_args()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^#.*PYTHON_IMAGE=python:[\w.-]+@sha256:", text, re.MULTILINE)


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


def test_readme_shows_the_build_command_the_image_test_runs() -> None:
    """The README's build step is the command tests/test_image.py runs, minus the test's own flags."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    argv = build_argv("injector:$VERSION", "$VERSION", "$(git rev-parse HEAD)", "localhost/base")
    shown = " ".join(["podman", *argv[: argv.index("--no-cache")], "."])
    assert shown in readme, shown
