"""Would a newer Python make the image leaner? The same sidecar on each Debian release's python3.

Usage (root, with mmdebstrap, which `make test` installs)::

    .venv/bin/python bench/interpreter.py                    # this machine's suite and trixie
    .venv/bin/python bench/interpreter.py bookworm trixie    # name the suites

How: for each suite, the image's base (tests/helpers/image.py: Debian minbase with python3,
python3-venv and ca-certificates, made by mmdebstrap from this machine's mirrors, cached in
/var/tmp/injector-image-test) is unpacked into a folder, and the commit at HEAD is installed into
``/opt/injector`` there as the Dockerfile does (a venv; its pip installs the package and its
dependencies from PyPI; botocore's data is cut down by ``injector.sources.aws_data``; the venv's
bytecode and the standard library's of the modules the injector imports are compiled again by
``injector.process.bytecode``). Every process
below runs in that root (``chroot``), with /proc, /dev and the bench's /tmp mounted in, against
the bench's dev Vault and moto on 127.0.0.1:

- idle sidecars of 100 values (Vault only, and mixed: Vault + Secrets Manager + SSM), 10 s after
  /readyz, max VmRSS of 10 samples, as in ``make bench``;
- ``bench/libfloor.py --no-yaml`` (the libraries a sidecar needs, imported; 3 runs, medians), on the same
  interpreter;
- the 10-value Vault-only ``injector init`` at 2 ms per request against ``python3 -c pass`` and
  ``libfloor.py vault --clients`` (Jinja2, PyYAML and hvac imported, a client built), 7 alternating
  rounds after a warm-up, medians.

The same Python code runs on both interpreters (the versions pip picked are printed); only the
interpreter and the Debian libraries under it differ. The tests keep running on this machine's
Python; this is a measurement, not a supported-interpreter claim.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from backends import Backends  # noqa: E402
from common import AWS_ENV, kib, median, proc_status, scratch_space  # noqa: E402
from procs import Sidecar  # noqa: E402
from run import SINGLE, SMALL, SMALL_INIT  # noqa: E402

from tests.helpers import image  # noqa: E402

ROOTS = Path("/var/tmp/injector-interpreters")
VENV = "/opt/injector"
CHROOT = shutil.which("chroot", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])) or "chroot"
PACKAGES = ("hvac", "botocore", "jinja2", "pyyaml", "click", "requests", "urllib3")


def run(*argv: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}… exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """No PIP_*, PYTHON* or VIRTUAL_ENV of this machine's inside the root."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", **AWS_ENV}
    env.update(extra)
    return env


def prepare(suite: str) -> Path:
    """The unpacked base of ``suite`` with the commit at HEAD installed in /opt/injector (cached)."""
    tarball = image.base_tarball(suite=suite)
    commit = run("git", "-C", str(REPO), "rev-parse", "HEAD").strip()
    root = ROOTS / f"{tarball.stem}-{commit[:12]}"
    if (root / "ready").is_file():
        return root
    for old in ROOTS.glob(f"base-{suite}-*"):
        shutil.rmtree(old, ignore_errors=True)
    root.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="fully_trusted")  # noqa: S202 - our own mmdebstrap output, device nodes and all
    source = root / "src"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    shutil.copy(BENCH / "libfloor.py", root / "opt" / "libfloor.py")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}
    if image.HOST_CA_BUNDLE.is_file():
        shutil.copy(image.HOST_CA_BUNDLE, root / "opt" / "host-ca.crt")
        env["PIP_CERT"] = "/opt/host-ca.crt"
    install = (
        f"python3 -m venv {VENV} && {VENV}/bin/pip install --quiet '/src[webhook]' "
        # the Dockerfile's step 3: botocore's endpoints and the sources' models cut down
        f"&& {VENV}/bin/python -m injector.sources.aws_data {VENV}/lib/python3*/site-packages/botocore/data "
        # its step 4: the venv's bytecode again (level 2, no column positions), and the standard
        # library's modules the injector imports, here in place (the Dockerfile copies them over)
        f"&& {VENV}/bin/python -m injector.process.bytecode {VENV}/lib "
        f"&& {VENV}/bin/python -m injector.process.bytecode --standard-library"
    )
    subprocess.run([CHROOT, str(root), "sh", "-c", install], env=clean_env(**env), check=True, timeout=900)
    (root / "ready").write_text(commit)
    return root


@contextmanager
def mounted(root: Path, scratch: Path) -> Iterator[None]:
    """/proc, /dev and the bench's scratch folder inside ``root``, unmounted at the end."""
    points = []
    try:
        for source, target, options in (
            ("proc", root / "proc", ["-t", "proc"]),
            ("/dev", root / "dev", ["--bind"]),
            (str(scratch), root / str(scratch).lstrip("/"), ["--rbind"]),
        ):
            target.mkdir(parents=True, exist_ok=True)
            run("mount", *options, source, str(target))
            points.append(target)
        yield
    finally:
        for target in reversed(points):
            subprocess.run(["umount", "--lazy", str(target)], check=False)


def versions(root: Path) -> str:
    out = run(CHROOT, str(root), f"{VENV}/bin/python", "-c", "import sys; print(sys.version.split()[0])")
    listing = json.loads(run(CHROOT, str(root), f"{VENV}/bin/pip", "list", "--format=json"))
    picked = {p["name"].lower().replace("_", "-"): p["version"] for p in listing}
    return f"Python {out.strip()}; " + ", ".join(f"{name} {picked.get(name, '?')}" for name in PACKAGES)


def idle_rss(root: Path, backends: Backends, scratch: Path, tmpfs: bool, label: str) -> float:
    dataset = SMALL if label == "mixed" else SINGLE[label]
    work = Path(tempfile.mkdtemp(prefix=f"idle-{dataset.prefix}-", dir=scratch))
    out = work / "out"
    out.mkdir()
    config = dataset.config(
        backends, folder=work / "config", output_dir=out, tmpfs=tmpfs, extra={"refresh": {"interval": "1h"}}
    )
    launcher = [CHROOT, str(root), f"{VENV}/bin/injector"]
    env = clean_env(VAULT_TOKEN=backends.root_token)  # the root's own bytecode, as the image's
    with Sidecar(config, work / "sidecar.log", env, launcher=launcher, whole_env=True) as sidecar:
        sidecar.wait_ready()
        time.sleep(10)
        samples = []
        for _ in range(10):
            samples.append(kib(proc_status(sidecar.pid)["VmRSS"]))
            time.sleep(1)
    return max(samples) / 1024


def floor_rss(root: Path, backends: Backends, label: str) -> float:
    kinds = ["vault"] if label == "Vault only" else ["vault", "secretsmanager", "ssm"]
    env = clean_env(PYTHONPATH="/opt")
    values = []
    for _ in range(3):
        done = subprocess.run(
            [CHROOT, str(root), f"{VENV}/bin/python", "-m", "libfloor", *kinds, "--no-yaml"],  # as a sidecar
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        values.append(json.loads(done.stdout)["imports_kib"] / 1024)
    return median(values)


def small_init(root: Path, backends: Backends, scratch: Path, tmpfs: bool) -> tuple[float, float, float]:
    work = Path(tempfile.mkdtemp(prefix="small-init-", dir=scratch))
    out, state = work / "out", work / "state"
    config = SMALL_INIT.config(backends, folder=work / "config", output_dir=out, tmpfs=tmpfs, state_dir=state)
    env = clean_env(VAULT_TOKEN=backends.root_token)
    init = [CHROOT, str(root), f"{VENV}/bin/injector", "init", "--config", str(config), "--output-dir", str(out)]
    python = [CHROOT, str(root), f"{VENV}/bin/python", "-c", "pass"]
    floor = [CHROOT, str(root), f"{VENV}/bin/python", "-m", "libfloor", "vault", "--clients", "--paused"]
    inits, pythons, floors = [], [], []
    backends.set_latency(0.002)
    try:
        for n in range(8):
            for folder in (out, state):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
            started = time.perf_counter()
            subprocess.run(init, capture_output=True, env=env, timeout=120, check=True)
            middle = time.perf_counter()
            subprocess.run(python, capture_output=True, env=env, timeout=60, check=True)
            after = time.perf_counter()
            subprocess.run(floor, capture_output=True, env=clean_env(PYTHONPATH="/opt"), timeout=60, check=True)
            if n:  # the first round warms the page cache
                inits.append(middle - started)
                pythons.append(after - middle)
                floors.append(time.perf_counter() - after)
    finally:
        backends.set_latency(0.0)
    return median(inits), median(pythons), median(floors)


def main(suites: list[str]) -> int:
    reason = image.unavailable()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    found = image.apt_sources()
    suites = suites or [found[0] if found else "bookworm", "trixie"]
    os.environ.update(AWS_ENV)
    roots = {}
    for suite in suites:
        print(f"preparing {suite} …", flush=True)
        roots[suite] = prepare(suite)
    rows = []
    backends = Backends()
    try:
        for dataset in (SMALL, SINGLE["Vault only"], SMALL_INIT):
            dataset.seed(backends)
        with scratch_space() as space, ExitStack() as stack:
            for root in roots.values():
                stack.enter_context(mounted(root, space.root))
            for suite, root in roots.items():
                print(f"measuring {suite} …", flush=True)
                row: dict[str, Any] = {"suite": suite, "versions": versions(root)}
                for label in ("Vault only", "mixed"):
                    row[f"idle {label}"] = idle_rss(root, backends, space.root, space.tmpfs, label)
                    row[f"floor {label}"] = floor_rss(root, backends, label)
                row["init"], row["python"], row["floor init"] = small_init(root, backends, space.root, space.tmpfs)
                rows.append(row)
    finally:
        backends.close()
    print()
    print("| Debian | idle sidecar, Vault only | its libraries alone | idle sidecar, mixed | its libraries alone "
          "| `init`, Vault only, 10 values, 2 ms, vs `python3 -c pass` "
          "| its libraries alone (a client built) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['suite']} | {row['idle Vault only']:.1f} MiB | {row['floor Vault only']:.1f} MiB | "
            f"{row['idle mixed']:.1f} MiB | {row['floor mixed']:.1f} MiB | {row['init'] * 1000:.0f} ms vs "
            f"{row['python'] * 1000:.0f} ms: +{(row['init'] - row['python']) * 1000:.0f} ms | "
            f"+{(row['floor init'] - row['python']) * 1000:.0f} ms |"
        )
    print()
    for row in rows:
        print(f"- {row['suite']}: {row['versions']}")
    return 0


if __name__ == "__main__":
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
