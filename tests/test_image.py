"""The image, built from the Dockerfile as it is and run the way a pod runs it.

tests/helpers/image.py makes a Debian base with mmdebstrap from this machine's apt sources (cached
between runs), imports it into a podman storage of this module's own, and builds the Dockerfile
with the README's command (VERSION and REVISION build args) on that base; the storage is removed
at the end. Every container runs read-only, with no tmpfs podman would add, no /etc/passwd entry,
as 65532:65532, on the host network, so the injector inside reaches the dev Vault and moto the
fixtures start on 127.0.0.1. The output volume is a tmpfs mounted on the host (as kubelet mounts
an emptyDir of medium Memory) and bound into the container, so the test reads what a pod's app
would; state_dir is a tmpfs of the container's own.

The module prints what it measured (base, build, image size, whole module) at its end.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import cache_from_source
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml

from tests.fixtures.sidecar import free_port, wait_for
from tests.fixtures.tmpfs import unmount
from tests.fixtures.vault import PkiMount, VaultServer
from tests.helpers import image
from tests.helpers.image import POD_LIKE, Build, Podman

REASON = image.unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
    # the first run makes the base with mmdebstrap and fetches the dependencies from PyPI
    pytest.mark.timeout(1200),
]

UID = 65532
CONFIG = "/etc/injector/injector.yaml"
IMPORT_EVERY_MODULE = (
    "import importlib, pkgutil, injector\n"
    "for m in pkgutil.walk_packages(injector.__path__, 'injector.'):\n"
    "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
)


@dataclass
class Measured:
    """What the module measured, printed at its end."""

    started: float = field(default_factory=time.monotonic)
    build: Build | None = None
    size: int = 0
    base_size: int = 0
    venv_bytes: int = 0


@pytest.fixture(scope="module")
def measured(request: pytest.FixtureRequest) -> Iterator[Measured]:
    """Collects the numbers; prints them when the module is done."""
    numbers = Measured()
    yield numbers
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or numbers.build is None:
        return
    b = numbers.build
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\nimage {b.ref}: {numbers.size / 1e6:.1f} MB (podman image inspect .Size; base "
            f"{numbers.base_size / 1e6:.1f} MB, venv {numbers.venv_bytes / 1e6:.1f} MB of files); "
            f"base tarball {b.tarball_seconds:.1f} s, import {b.import_seconds:.1f} s, podman build "
            f"{b.build_seconds:.1f} s; module {time.monotonic() - numbers.started:.1f} s"
        )


@pytest.fixture(scope="module")
def podman(measured: Measured) -> Iterator[Podman]:
    """podman with a storage of this module's own, reset and removed at the end."""
    world = Podman.open()
    try:
        yield world
    finally:
        world.close()


@pytest.fixture(scope="module")
def built(podman: Podman, measured: Measured) -> Build:
    """The image, built once for the module from the Dockerfile as it is."""
    from injector import __version__

    result = image.build(podman, f"localhost/injector:{__version__}")
    measured.build = result
    measured.size = podman.size(result.ref)
    measured.base_size = podman.size(result.base)
    return result


@pytest.fixture(scope="module")
def rootfs(podman: Podman, built: Build, measured: Measured) -> Iterator[Path]:
    """The image's root filesystem, mounted on the host."""
    with podman.mounted(built.ref) as path:
        measured.venv_bytes = image.du(path / "opt" / "injector")
        yield path


@dataclass
class Pod:
    """What a pod gives the injector: a read-only config folder, the output tmpfs, the state tmpfs."""

    config_dir: Path
    output: Path

    def file(self, name: str, text: str) -> str:
        """Writes a file into the config folder (readable by the container's user); returns its path there."""
        path = self.config_dir / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o444)
        return f"/etc/injector/{name}"

    def config(self, data: dict[str, Any]) -> None:
        """Writes injector.yaml: output_dir and state_dir where ``volumes`` mounts them, plus ``data``."""
        base = {"output_dir": "/run/secrets/app", "state_dir": "/run/injector"}
        self.file("injector.yaml", yaml.safe_dump({**base, **data}))

    def volumes(self) -> list[str]:
        return [
            "-v", f"{self.config_dir}:/etc/injector:ro",
            "-v", f"{self.output}:/run/secrets/app",
            "--tmpfs", "/run/injector:rw,size=1m,mode=0700,U",
        ]

    def read(self, name: str) -> str:
        return (self.output / name).read_text(encoding="utf-8")


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    """The volumes of one pod; the output is a host tmpfs owned by 65532, as an fsGroup'd emptyDir."""
    config_dir = tmp_path / "config"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)
    output = tmp_path / "out"
    output.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=1m,mode=0750,uid={UID},gid={UID}", "tmpfs", str(output)],
                   check=True)
    try:
        yield Pod(config_dir=config_dir, output=output)
    finally:
        unmount(output)


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[str]]:
    """Names for containers that outlive a `podman run`; each is removed after the test."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


def vault_section(server: VaultServer, pod: Pod) -> dict[str, Any]:
    """The config's vault: the test Vault, token auth from a file in the config folder."""
    section: dict[str, Any] = {
        "address": server.address,
        "auth": {"method": "token", "token_file": pod.file("vault-token", server.root_token)},
    }
    if isinstance(server.verify, str):  # a real Vault with VAULT_CACERT
        section["ca_cert"] = pod.file("vault-ca.pem", Path(server.verify).read_text(encoding="utf-8"))
    return section


def run(
    podman: Podman, built: Build, pod: Pod | None, *args: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` the image as a pod would, with ``pod``'s volumes; returns the result."""
    volumes = pod.volumes() if pod else []
    return podman("run", "--rm", *POD_LIKE, *volumes, *flags, built.ref, *args, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have exited 0."""
    assert done.returncode == 0, f"exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --- what the image says about itself -------------------------------------------------------------


def test_entrypoint_is_injector_as_numeric_non_root(podman: Podman, built: Build) -> None:
    """`injector` is the entrypoint, --help the default argument, 65532:65532 the user; no HEALTHCHECK."""
    (config,) = json.loads(podman("image", "inspect", built.ref).stdout)
    assert config["Config"]["Entrypoint"] == ["injector"]
    assert config["Config"]["Cmd"] == ["--help"]
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert not config["Config"].get("Healthcheck")
    assert "init" in ok(run(podman, built, None))


def test_labels_carry_the_version_and_commit(podman: Podman, built: Build) -> None:
    """The OCI labels hold the build args: the package's version and the checkout's commit."""
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", built.ref).stdout)
    assert labels["org.opencontainers.image.version"] == built.version
    assert labels["org.opencontainers.image.revision"] == built.revision
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert not any("example.invalid" in value for value in labels.values())


def test_version_runs_read_only_as_65532(podman: Podman, built: Build) -> None:
    """`injector --version` runs in a read-only container as 65532 and prints the version."""
    assert built.version in ok(run(podman, built, None, "--version"))


def test_the_webhook_runs_from_the_same_image(podman: Podman, built: Build) -> None:
    """`injector webhook` has what it needs in the image (the webhook extra is installed)."""
    assert "--tls-cert" in ok(run(podman, built, None, "webhook", "--help"))


# --- init and sidecar -----------------------------------------------------------------------------


@pytest.mark.vault
def test_init_writes_into_a_tmpfs_volume(
    podman: Podman, built: Build, pod: Pod, vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str
) -> None:
    """`init` renders a Vault secret into the output tmpfs: the right bytes, mode 0440, owner 65532."""
    vault_admin.secrets.kv.v2.create_or_update_secret(mount_point=kv2_mount, path="app", secret={"password": "pw-1"})
    pod.config({
        "vault": vault_section(vault_server, pod),
        "templates": [{"contents": f"password={{{{ secret('vault:{kv2_mount}/app#password') }}}}\n",
                       "destination": "app.env"}],
    })
    ok(run(podman, built, pod, "init", "-c", CONFIG))
    assert pod.read("app.env") == "password=pw-1\n"
    info = (pod.output / "app.env").stat()
    assert stat.S_IMODE(info.st_mode) == 0o440
    assert (info.st_uid, info.st_gid) == (UID, UID)
    assert (pod.output / "..data").is_symlink()


@pytest.mark.vault
def test_init_issues_a_pki_certificate(
    podman: Podman, built: Build, pod: Pod, vault_server: VaultServer, pki_mount: PkiMount
) -> None:
    """`init` writes a certificate from Vault's PKI (reading its validity needs cryptography in the image)."""
    ref = f"vault:{pki_mount.mount}/issue/{pki_mount.role}?common_name=app.local&ttl=1h"
    pod.config({
        "vault": vault_section(vault_server, pod),
        "templates": [{"contents": f"{{{{ secret('{ref}#certificate') }}}}", "destination": "tls.crt"}],
    })
    ok(run(podman, built, pod, "init", "-c", CONFIG))
    assert pod.read("tls.crt").startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.aws
def test_init_reads_aws_through_irsa(
    podman: Podman, built: Build, pod: Pod, aws_endpoint: str, sm_client: Any, ssm_client: Any
) -> None:
    """With only botocore's secretsmanager, ssm and sts models left, `init` logs in by IRSA and reads both."""
    sm_client.create_secret(Name="app/db", SecretString=json.dumps({"password": "sm-pw"}))
    ssm_client.put_parameter(Name="/app/api-key", Value="ssm-key", Type="SecureString")
    token = pod.file("aws-token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2ln")
    pod.config({
        "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
        "templates": [{"contents": "{{ secret('aws-sm:app/db#password') }} {{ secret('aws-ssm:/app/api-key') }}\n",
                       "destination": "aws.txt"}],
    })
    # No keys anywhere: the only credential source is AssumeRoleWithWebIdentity (STS, here moto).
    irsa = (
        "-e", "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/injector",
        "-e", f"AWS_WEB_IDENTITY_TOKEN_FILE={token}",
        "-e", f"AWS_ENDPOINT_URL_STS={aws_endpoint}",
        "-e", "AWS_EC2_METADATA_DISABLED=true",
    )
    ok(run(podman, built, pod, "init", "-c", CONFIG, flags=irsa))
    assert pod.read("aws.txt") == "sm-pw ssm-key\n"


@pytest.mark.vault
def test_sidecar_serves_readyz_follows_vault_and_stops_on_sigterm(
    podman: Podman, built: Build, pod: Pod, containers: list[str],
    vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str,
) -> None:
    """The sidecar answers /readyz on the host, writes a changed Vault value, exits 0 on SIGTERM."""
    kv = vault_admin.secrets.kv.v2
    kv.create_or_update_secret(mount_point=kv2_mount, path="app", secret={"password": "before"})
    port = free_port()
    pod.config({
        "vault": vault_section(vault_server, pod),
        "templates": [{"contents": f"{{{{ secret('vault:{kv2_mount}/app#password') }}}}", "destination": "pw"}],
        "refresh": {"interval": "1s", "jitter": 0},
        "health": {"address": f"127.0.0.1:{port}"},
    })
    name = f"injector-sidecar-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    podman("run", "--detach", "--name", name, *POD_LIKE, *pod.volumes(), built.ref, "sidecar", "-c", CONFIG)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            state = podman("container", "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state not in ("created", "running"):
                pytest.fail(f"the sidecar container is {state}:\n{podman('logs', name).stderr}")
            return False

    wait_for(ready, 30, "the sidecar's /readyz from the host")
    assert pod.read("pw") == "before"
    kv.create_or_update_secret(mount_point=kv2_mount, path="app", secret={"password": "after"})
    wait_for(lambda: pod.read("pw") == "after", 15, "the changed value in the output file")

    podman("kill", "--signal", "TERM", name)
    exit_code = podman("wait", name, timeout=30).stdout.strip()
    logs = podman("logs", name)
    assert exit_code == "0", logs.stdout + logs.stderr
    assert "Traceback" not in logs.stderr


# --- the root filesystem --------------------------------------------------------------------------


def test_root_filesystem_is_read_only(podman: Podman, built: Build) -> None:
    """Writing anywhere outside the volumes fails with EROFS, /tmp included (no tmpfs is added)."""
    probe = (
        "import json, os\n"
        "out = {}\n"
        "for d in ('/', '/tmp', '/var/tmp', '/run', '/etc', '/opt/injector', '/opt/injector/bin'):\n"
        "    try:\n"
        "        open(os.path.join(d, 'probe'), 'w').close(); out[d] = 'written'\n"
        "    except OSError as exc:\n"
        "        out[d] = exc.errno\n"
        "print(json.dumps(out))\n"
    )
    results = json.loads(ok(run(podman, built, None, "-c", probe, flags=("--entrypoint", "python"))))
    assert len(results) == 7
    assert results == dict.fromkeys(results, errno.EROFS)


def test_no_dev_server_in_the_image(podman: Podman, built: Build, rootfs: Path) -> None:
    """Neither injector/devserver nor the devvault distribution is in the image, nor importable."""
    found = []
    for folder, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            if name.startswith("devvault") or (name == "devserver" and Path(folder).name == "injector"):
                found.append(str(Path(folder, name).relative_to(rootfs)))
    assert not found
    probe = "import importlib.util as u; print(u.find_spec('devvault'), u.find_spec('injector.devserver'))"
    assert ok(run(podman, built, None, "-c", probe, flags=("--entrypoint", "python"))).split() == ["None", "None"]


def test_the_package_in_the_image_is_the_checkout(rootfs: Path) -> None:
    """The image's injector package has exactly the files of the checkout's injector/ (bytecode aside)."""

    def files(folder: Path) -> set[str]:
        return {
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }

    assert files(image.site_packages(rootfs) / "injector") == files(image.ROOT / "injector")


def test_no_compiler_in_the_image(rootfs: Path) -> None:
    """No C compiler on any bin folder: nothing in the image can build native code."""
    compiler = re.compile(r"((x86_64|aarch64)-linux-gnu-)?(cc|c\+\+|gcc|g\+\+|clang|clang\+\+|tcc)(-[\d.]+)?")
    found = [
        f"{folder}/{entry.name}"
        for folder in ("usr/bin", "usr/local/bin", "usr/sbin", "opt/injector/bin")
        if (rootfs / folder).is_dir()
        for entry in (rootfs / folder).iterdir()
        if compiler.fullmatch(entry.name)
    ]
    assert not found


def test_no_pip_or_setuptools_in_the_venv(rootfs: Path) -> None:
    """The venv has neither pip nor setuptools (nor their scripts): nothing installs at run time; nor
    charset-normalizer, which the injector never loads."""
    packages = image.site_packages(rootfs)
    installers = re.compile(r"(pip|setuptools|_distutils_hack|pkg_resources|charset_normalizer)(-.*\.dist-info)?")
    assert not [p.name for p in packages.iterdir() if installers.fullmatch(p.name)]
    assert not [p.name for p in (rootfs / "opt/injector/bin").iterdir() if p.name.startswith(("pip", "easy_install"))]
    assert (rootfs / "opt/injector/bin/injector").is_file()


def test_botocore_keeps_only_the_models_the_injector_calls(rootfs: Path) -> None:
    """botocore/data holds the secretsmanager, ssm and sts models and its shared files, nothing else."""
    data = image.site_packages(rootfs) / "botocore" / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["secretsmanager", "ssm", "sts"]
    assert (data / "endpoints.json").is_file()


def test_every_module_has_a_current_pyc(rootfs: Path) -> None:
    """Every .py in the venv has a .pyc whose header matches its source, so none is compiled at run time."""
    stale = []
    count = 0
    for source in (rootfs / "opt" / "injector").rglob("*.py"):
        count += 1
        compiled = Path(cache_from_source(str(source)))
        if not compiled.is_file():
            stale.append(f"{source.relative_to(rootfs)}: no .pyc")
            continue
        header = compiled.read_bytes()[:16]
        (flags,) = struct.unpack("<I", header[4:8])
        if flags & 1:
            continue  # a hash-based .pyc: checked against the source's hash, not its time
        info = source.stat()
        if struct.unpack("<II", header[8:16]) != (int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF):
            stale.append(f"{source.relative_to(rootfs)}: .pyc out of date")
    assert count > 100
    assert not stale


def test_the_bytecode_has_no_docstrings_or_columns_and_help_still_works(podman: Podman, built: Build) -> None:
    """The modules the injector imports (its own, botocore's, the standard library's json) load without
    docstrings or column positions; a standard library module it never imports (colorsys) as the
    base ships it; Python runs at its default level; `--help` still says what each command does."""
    script = (
        "import sys, json, colorsys, injector.__main__, botocore.session\n"
        "def columns(f): return any(p[2] is not None for p in f.__code__.co_positions())\n"
        "print(sys.flags.optimize, injector.__main__.__doc__ is None, botocore.session.Session.__doc__ is None,"
        " json.__doc__ is None, colorsys.__doc__ is None, columns(injector.__main__.main), columns(json.dumps),"
        " columns(botocore.session.Session.create_client), columns(colorsys.rgb_to_hsv))"
    )
    flags = ok(run(podman, built, None, "-c", script, flags=("--entrypoint", "python3")))
    assert flags.split() == ["0", "True", "True", "True", "False", "False", "False", "False", "True"]
    assert "Render every template once into output_dir" in ok(run(podman, built, None, "init", "--help"))


def _section_names(library: Path) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (its section header table)."""
    data = library.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", f"{library}: not a 64-bit little-endian ELF file"
    (table,) = struct.unpack_from("<Q", data, 0x28)
    entry, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, table + i * entry) for i in range(count)]
    names_at = headers[names_index][4]
    return {data[names_at + name : data.index(b"\0", names_at + name)].decode() for name, *_ in headers}


def test_the_compiled_extensions_carry_no_debugging_symbols(rootfs: Path) -> None:
    """Every extension module in the venv was stripped (libyaml's binding shipped 2.7 MB of them)."""
    libraries = sorted(image.site_packages(rootfs).rglob("*.so"))
    assert any(library.name.startswith("_yaml") for library in libraries)
    symbols = {".debug_info", ".symtab"}
    assert not [str(lib.relative_to(rootfs)) for lib in libraries if symbols & _section_names(lib)]


@pytest.mark.vault
@pytest.mark.aws
def test_a_run_writes_no_bytecode(
    podman: Podman, built: Build, pod: Pod, containers: list[str],
    vault_server: VaultServer, vault_admin: hvac.Client, kv2_mount: str, aws_endpoint: str, sm_client: Any,
) -> None:
    """Even as root on a writable root with bytecode writing on, `init` and every module write no .pyc."""
    vault_admin.secrets.kv.v2.create_or_update_secret(mount_point=kv2_mount, path="app", secret={"k": "v"})
    sm_client.create_secret(Name="app", SecretString="s")
    pod.config({
        "vault": vault_section(vault_server, pod),
        "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
        "templates": [{"contents": f"{{{{ secret('vault:{kv2_mount}/app#k') }}}}{{{{ secret('aws-sm:app') }}}}",
                       "destination": "f"}],
    })
    name = f"injector-bytecode-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    script = (
        f"injector init -c {CONFIG} && python -c \"$IMPORT_ALL\""
        # the control: a module without a .pyc gets one, so writing was really on
        " && cd /tmp && echo 'x = 1' > control.py && python -c 'import control'"
    )
    done = podman(
        "run", "--name", name, "--user", "0:0", "--network", "host", *pod.volumes(),
        "-e", "PYTHONDONTWRITEBYTECODE=", "-e", f"IMPORT_ALL={IMPORT_EVERY_MODULE}",
        "-e", "AWS_ACCESS_KEY_ID=testing", "-e", "AWS_SECRET_ACCESS_KEY=testing",
        "--entrypoint", "/bin/sh", built.ref, "-c", script, check=False,
    )
    ok(done)
    assert pod.read("f") == "vs"
    diff = json.loads(podman("diff", "--format", "json", name).stdout)
    written = [p for p in diff.get("added", []) + diff.get("changed", []) if p.endswith(".pyc")]
    assert any(p.startswith("/tmp/__pycache__/control.") for p in written), "the control wrote no .pyc"
    assert [p for p in written if not p.startswith("/tmp/")] == []

