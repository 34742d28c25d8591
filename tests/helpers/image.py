"""Builds and runs the injector image with podman: shared by tests/test_image.py and bench/image.py.

1. ``base_tarball``: a Debian root filesystem made by mmdebstrap from this machine's own apt sources
   and suite, with what the Dockerfile needs (python3 and its venv module; ca-certificates for
   pip's TLS), cached in ``CACHE`` under a key of its inputs, so only the first run pays for it.
2. ``Podman``: podman with a containers.conf and a storage of its own in a fresh folder under
   ``CACHE`` and a run root in /run (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), removed by ``close``. The config holds
   what this kind of machine needs: runc (crun fails on a cgroup v1 layout), cgroupfs, file events,
   and ulimits no higher than the hard limits (podman's defaults cannot be set here).
3. ``build``: the Dockerfile as it is, with the README's command plus what a test needs: a fresh
   build (``--no-cache``: the cache would ignore the volume), host networking, the local base as
   PYTHON_IMAGE, and the machine's CA bundle lent read-only to pip (never baked into the image).

Outside ``CACHE`` and the run root podman writes only its blob-info cache
(/var/lib/containers/cache, as any root podman does: nothing configures it away).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = Path(os.environ.get("INJECTOR_IMAGE_CACHE", "/var/tmp/injector-image-test"))
TOOLS = ("podman", "runc", "mmdebstrap")
#: The Dockerfile runs `python3 -m venv` and the venv's pip (which needs a CA bundle for PyPI).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Like debian:bookworm-slim: no documentation, manual pages or translations (copyrights stay).
_SLIM = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
#: How a pod runs the injector: read-only root, no tmpfs podman would add, no /etc/passwd entry,
#: the image's numeric user; host networking reaches the test's servers on 127.0.0.1.
POD_LIKE = ("--read-only", "--read-only-tmpfs=false", "--passwd=false", "--user", "65532:65532", "--network", "host")


def unavailable() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "building and running the image needs root (rootful podman, mmdebstrap)"
    missing = [tool for tool in TOOLS if shutil.which(tool, path=_SEARCH_PATH) is None]
    if missing:
        return f"{', '.join(missing)} not installed (`make test` installs them as root on Debian)"
    if apt_sources() is None:
        return "no Debian apt sources (/etc/apt/sources.list.d/debian.sources or sources.list) for mmdebstrap"
    return None


def apt_sources() -> tuple[str, Path] | None:
    """This machine's Debian suite (codename) and the apt sources file its packages come from."""
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return None
    codename = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", release, re.MULTILINE)
    if codename is None:
        return None
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.is_file() and re.search(r"^\s*(deb\s|URIs:)", path.read_text(encoding="utf-8"), re.MULTILINE):
            return codename.group(1), path
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``: two test runs at once make the base tarball once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def base_tarball(cache: Path = CACHE, suite: str | None = None) -> Path:
    """The Debian base as a tarball in ``cache``: reused when its inputs are unchanged, else made.

    The key covers the mmdebstrap arguments and the apt sources' text; a tarball of the same suite
    and another key is deleted when a new one is made. Made into a temporary name and renamed, so an
    interrupted run leaves no half tarball behind under the real name. ``suite`` (e.g. ``trixie``)
    takes another Debian release from the same mirrors: the machine's sources with its codename
    replaced (``bookworm-updates`` becomes ``trixie-updates``).
    """
    found = apt_sources()
    if found is None:
        raise RuntimeError("no Debian apt sources on this machine")
    own, sources = found
    if suite is not None and suite != own:
        text = re.sub(rf"\b{own}(?=[\s-]|$)", suite, sources.read_text(encoding="utf-8"), flags=re.MULTILINE)
        cache.mkdir(parents=True, exist_ok=True)
        sources = cache / f"{suite}{sources.suffix or '.list'}"
        sources.write_text(text, encoding="utf-8")
    suite = suite or own
    options = [
        "--variant=minbase",
        # merged /usr without the usrmerge package (which would pull in perl)
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        *(f"--dpkgopt={option}" for option in _SLIM),
        f"--include={','.join(BASE_PACKAGES)}",
        "--format=tar",
    ]
    key = hashlib.sha256(json.dumps([options, suite, sources.read_text(encoding="utf-8")]).encode()).hexdigest()
    target = cache / f"base-{suite}-{key[:16]}.tar"
    with _locked(cache / "base.lock"):
        if target.is_file():
            return target
        partial = target.with_name(target.stem + ".partial.tar")
        done = subprocess.run(
            ["mmdebstrap", "--quiet", *options, suite, str(partial), str(sources)],
            capture_output=True, text=True, timeout=900, check=False,
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"mmdebstrap exited {done.returncode}:\n{done.stderr[-4000:]}")
        for old in cache.glob(f"base-{suite}-*.tar"):
            if old != partial:
                old.unlink()
        partial.rename(target)
    return target


def base_ref(tarball: Path) -> str:
    """The local image name of a base tarball: its key as the tag."""
    return f"localhost/injector-test-python:{tarball.stem.rpartition('-')[2]}"


class PodmanError(RuntimeError):
    """A podman command exited non-zero; the message holds its argv and output."""


@dataclass
class Podman:
    """podman with a config and a storage of its own: images under ``home``, run state under ``runroot``."""

    home: Path
    #: Short on purpose: with a run root of ~50 characters or more, every attached `podman run`
    #: here waited 20 s for conmon to exit (podman 4.3.1, conmon 2.1.6); /run/injector-image-XXXXXXXX
    #: keeps far from that.
    runroot: Path

    @classmethod
    def open(cls, cache: Path = CACHE) -> Podman:
        """A fresh podman home in ``cache``; homes left by runs that died are removed first."""
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob("podman-*"):
            pid = stale.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                cls.existing(stale).close()
        home = Path(tempfile.mkdtemp(prefix=f"podman-{os.getpid()}-", dir=cache))
        runroot = Path(tempfile.mkdtemp(prefix="injector-image-", dir="/run"))
        (home / "containers.conf").write_text(
            "[containers]\n"
            # podman's defaults (nofile 1048576, nproc 1048576) exceed the hard limits of a CI box
            'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
            "[network]\n"
            f'network_config_dir = "{home}/cni"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{runroot}/libpod"\n',
            encoding="utf-8",
        )
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{home}/graph"\nrunroot = "{runroot}"\n',
            encoding="utf-8",
        )
        return cls(home, runroot)

    @classmethod
    def existing(cls, home: Path) -> Podman:
        """The podman of a home made by ``open`` (its run root is read back from storage.conf)."""
        try:
            found = re.search(r'^runroot = "(.+)"$', (home / "storage.conf").read_text(), re.MULTILINE)
        except OSError:
            found = None
        runroot = Path(found.group(1)) if found else home / "run"
        return cls(home, runroot if runroot.name.startswith("injector-image-") else home / "run")

    def env(self) -> dict[str, str]:
        """The environment of every podman command: our two config files, no CONTAINERS_* from outside."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "BUILDAH_", "REGISTRY_"))}
        env["CONTAINERS_CONF"] = str(self.home / "containers.conf")
        env["CONTAINERS_STORAGE_CONF"] = str(self.home / "storage.conf")
        return env

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs ``podman ARGS``; raises PodmanError when ``check`` and it fails."""
        done = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def close(self) -> None:
        """Removes every container and image, then the storage and config (``podman system reset``)."""
        if (self.home / "storage.conf").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self("system", "reset", "--force", timeout=120, check=False)
        # Anything reset left mounted (after a crash) must go before the files can.
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        ours = [m for m in mounts if m.startswith((f"{self.home}/", f"{self.runroot}/"))]
        for mount in sorted(ours, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)

    @contextlib.contextmanager
    def mounted(self, ref: str) -> Iterator[Path]:
        """The image's root filesystem, mounted read-only on the host for inspection."""
        path = Path(self("image", "mount", ref).stdout.strip())
        try:
            yield path
        finally:
            self("image", "unmount", ref, check=False)

    def size(self, ref: str) -> int:
        """The image's size in bytes, as `podman image inspect --format {{.Size}}` reports it."""
        return int(self("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


@dataclass(frozen=True)
class Build:
    ref: str
    base: str
    version: str
    revision: str
    #: Seconds: making (or finding) the base tarball, importing it, and `podman build`.
    tarball_seconds: float
    import_seconds: float
    build_seconds: float


def revision() -> str:
    """The checkout's commit (`git rev-parse HEAD`), or "unknown" outside a git checkout."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def build_argv(tag: str, version: str, commit: str, base: str, *extra: str) -> list[str]:
    """`podman build` as the README shows it, plus the test's local base, fresh build and CA bundle."""
    argv = ["build", "-t", tag, "--build-arg", f"VERSION={version}", "--build-arg", f"REVISION={commit}"]
    argv += ["--no-cache", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}"]
    if HOST_CA_BUNDLE.is_file():
        argv += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    return [*argv, *extra, str(ROOT)]


def build(podman: Podman, tag: str, *extra: str, cache: Path = CACHE) -> Build:
    """Makes (or reuses) the base, imports it, builds the Dockerfile into ``tag``."""
    from injector import __version__

    t0 = time.monotonic()
    tarball = base_tarball(cache)
    t1 = time.monotonic()
    base = base_ref(tarball)
    if podman("image", "exists", base, check=False).returncode != 0:
        podman("import", "--quiet", str(tarball), base, timeout=300)
    t2 = time.monotonic()
    commit = revision()
    podman(*build_argv(tag, __version__, commit, base, *extra), timeout=900)
    return Build(
        ref=tag,
        base=base,
        version=__version__,
        revision=commit,
        tarball_seconds=t1 - t0,
        import_seconds=t2 - t1,
        build_seconds=time.monotonic() - t2,
    )


def du(path: Path) -> int:
    """Bytes of the regular files under ``path`` (apparent size; hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def site_packages(rootfs: Path) -> Path:
    """The venv's site-packages inside an image's root filesystem."""
    (found,) = rootfs.glob("opt/injector/lib/python3*/site-packages")
    return found


def breakdown(rootfs: Path, top: int = 8) -> dict[str, int]:
    """Sizes in the image: the whole root, the base's big parts, the venv, its largest packages."""
    sizes = {"/ (everything)": du(rootfs)}
    base_parts = ("usr/lib/python3.*", "usr/local/lib/python3.*", "usr/lib/*-linux-gnu", "usr/bin", "usr/share")
    for pattern in base_parts:
        for path in sorted(rootfs.glob(pattern)):
            if size := du(path):
                sizes[f"  /{path.relative_to(rootfs)}"] = size
    packages = site_packages(rootfs)
    sizes["/opt/injector (the venv)"] = du(rootfs / "opt" / "injector")
    by_package = {p.name: du(p) for p in packages.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}
    for name, size in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        sizes[f"  site-packages/{name}"] = size
    sizes["  site-packages/botocore/data (API models)"] = du(packages / "botocore" / "data")
    return sizes
