"""Helpers every benchmark shares: statistics, /proc readers, a tmpfs, subprocess environments.

Nothing here measures anything by itself. Timings use ``time.monotonic()`` (CLOCK_MONOTONIC, which
is system-wide on Linux, so a time taken in another process can be compared with ours) or
``time.perf_counter()`` for intervals measured in this process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
#: What the bench keeps between runs: the bytecode, botocore's data and the install (below).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "injector-bench"


def _installed_layout(venv: Path) -> Path:
    """A virtualenv with this one's libraries and none of its ``.pth`` start-up code: ``venv``.

    The development virtualenv (``make venv``) installs the injector and devvault in editable mode,
    and the finder of an editable install runs in every process of it: it imports ``pathlib``,
    ``urllib.parse``, ``ipaddress`` and ~30 more modules before any code of ours, about 13 ms and
    2 MiB at each start. The image installs the injector as a package, so its processes pay none of
    it, and ``python -c pass`` there is that much cheaper. The bench's processes run here: a
    virtualenv of the same interpreter (``python -m venv``, no pip) whose site-packages lists this
    virtualenv's in a plain ``.pth`` line (a path, no code), and the ``injector`` console script as
    pip writes it. The injector itself comes from ``PYTHONPATH`` (``child_env``)."""
    python, done = venv / "bin" / "python", venv / "libraries.pth.done"
    libraries = Path(sysconfig.get_path("purelib"))
    if not python.exists() or not done.exists() or done.read_text() != str(libraries):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(site, "libraries.pth").write_text(f"{libraries}\n")
        script = venv / "bin" / "injector"
        script.write_text(
            f"#!{python}\nimport sys\nfrom injector.__main__ import main\n"
            "if __name__ == '__main__':\n    sys.exit(main())\n"
        )
        script.chmod(0o755)
        done.write_text(str(libraries))
    return python


#: The interpreter of every process the bench measures (``_installed_layout``).
PYTHON = str(_installed_layout(CACHE / "venv"))
#: The ``injector`` console script, next to it.
INJECTOR = str(Path(PYTHON).with_name("injector"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: Dummy AWS settings: boto3's chain stops at the environment, and nothing can lead it to AWS.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


# --- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# --- environment -------------------------------------------------------------------------------


#: Where the measured ``injector`` package is imported from (a snapshot of HEAD, see
#: ``snapshot_head``); None: the working tree.
CODE_PATH: Path | None = None

#: Where the bench keeps the bytecode its processes read (``byte_compile``; PYTHONPYCACHEPREFIX):
#: ``pycache-lean`` for a package that has ``injector.process.bytecode`` (the image rewrites the
#: bytecode of every module the injector imports), ``pycache`` for an earlier one (the image kept
#: the standard library's as it ships). Two trees, so that measuring an earlier commit never
#: reads bytecode the later build step wrote.
PYCACHE = CACHE / "pycache"
#: Parts of the standard library no process of the bench imports.
_NOT_COMPILED = re.compile(r"/(site-packages|dist-packages|test|tests|idle_test|idlelib|tkinter|turtledemo|lib2to3)/")
_compiled_libraries: set[Path] = set()
#: botocore's data as the image has it (``lean_botocore_data``), given to every process the bench
#: starts as ``AWS_DATA_PATH``; the baseline script and the libraries' floors take botocore's own.
BOTODATA = CACHE / "botodata"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process the bench starts: ours without INJECTOR_*, VAULT_*, AWS_*
    and PYTHONPATH (so nothing on this machine changes what is measured), plus the dummy AWS
    settings, plus the bench's bytecode (``byte_compile``), plus ``CODE_PATH`` (or the working
    tree) on the path: the bench's interpreter (``PYTHON``) has no other injector to import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INJECTOR_", "VAULT_", "AWS_", "PYTHONPATH"))}
    env.update(AWS_ENV)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if BOTODATA.is_dir():
        env["AWS_DATA_PATH"] = str(BOTODATA)
    env["PYTHONPATH"] = str(CODE_PATH if CODE_PATH is not None else REPO)
    env.update(extra or {})
    return env


def snapshot_head(dest: Path, rev: str = "HEAD") -> str:
    """Extracts ``injector/`` as committed at ``rev`` into ``dest`` (``git archive``, read-only),
    byte-compiles it and returns the commit. The working tree may change while the bench runs;
    measuring a commit keeps every benchmark on one version of the code."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "injector"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    byte_compile(dest / "injector")
    return commit


def byte_compile(package: Path) -> None:
    """Writes the bytecode the bench's processes read, as the image build does, to ``PYCACHE``,
    which every process the bench starts reads (``child_env``), so the virtualenv itself is left
    as it is.

    First ``package``'s and, once per run, the virtualenv's libraries' at optimization level 2 (no
    docstrings, no asserts: the Dockerfile's step 4), the standard library's as it is. Then, for a
    package that has it, ``python -m injector.process.bytecode --imported`` (the Dockerfile's step
    4 and the standard library's step of its last stage): every module the injector imports
    again, at level 2 and without column positions. With ``PYTHONDONTWRITEBYTECODE`` set (some
    machines set it for every process) a module nobody compiled is compiled again, in memory, by
    every process that imports it: about 50 ms more for each ``injector`` start, which no
    installed copy pays. The first run compiles the libraries (about 20 s); later runs find them
    current."""
    global PYCACHE
    lean = (package / "process" / "bytecode.py").is_file()
    PYCACHE = CACHE / ("pycache-lean" if lean else "pycache")
    previous, sys.pycache_prefix = sys.pycache_prefix, str(PYCACHE)
    try:
        if not _compile_tree(package, optimize=2):
            raise RuntimeError(f"byte-compiling {package} failed")
        if PYCACHE not in _compiled_libraries:
            # A library's file that does not compile (test data in Python 2) is never imported.
            _compile_tree(Path(sysconfig.get_path("stdlib")), optimize=0, skip=_NOT_COMPILED)
            _compile_tree(Path(sysconfig.get_path("purelib")), optimize=2)
            _compiled_libraries.add(PYCACHE)
    finally:
        sys.pycache_prefix = previous
    if lean:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
        env.update(PYTHONPATH=str(package.parent), PYTHONPYCACHEPREFIX=str(PYCACHE))
        done = subprocess.run(
            [PYTHON, "-m", "injector.process.bytecode", "--imported"], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"injector.process.bytecode failed: {done.stderr.strip()}")
    lean_botocore_data(package)


def lean_botocore_data(package: Path) -> None:
    """Writes ``BOTODATA``: botocore's endpoints and the AWS sources' service models cut down by
    ``package``'s ``injector.sources.aws_data``, as the Dockerfile does to the image's botocore (in
    place there; here a folder on ``AWS_DATA_PATH``, which botocore searches before its own)."""
    import botocore

    data = Path(botocore.__file__).parent / "data"
    shutil.rmtree(BOTODATA, ignore_errors=True)
    BOTODATA.mkdir(parents=True)
    shutil.copy(data / "endpoints.json", BOTODATA)
    for model in [*data.glob("secretsmanager/*/service-2.json*"), *data.glob("ssm/*/service-2.json*")]:
        target = BOTODATA / model.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    env["PYTHONPATH"] = str(package.parent)
    done = subprocess.run(
        [sys.executable, "-m", "injector.sources.aws_data", str(BOTODATA)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"injector.sources.aws_data failed: {done.stderr.strip()}")


def _compile_tree(tree: Path, *, optimize: int, skip: re.Pattern[str] | None = None) -> bool:
    """Compiles every ``.py`` under ``tree`` whose ``.pyc`` (the level-0 name, under
    ``sys.pycache_prefix``) is missing or older than it; False if one did not compile."""
    import importlib.util
    import py_compile

    compiled = True
    for source in tree.rglob("*.py"):
        if skip is not None and skip.search(str(source)):
            continue
        target = Path(importlib.util.cache_from_source(str(source)))
        info = source.stat()
        try:
            with target.open("rb") as pyc:
                header = pyc.read(16)[8:16]
        except OSError:
            header = b""
        if header == struct.pack("<II", int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF):
            continue
        try:
            py_compile.compile(str(source), cfile=str(target), optimize=optimize, doraise=True)
        except py_compile.PyCompileError:
            compiled = False
    return compiled


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, step: float = 0.005) -> T:
    """Polls ``condition`` until it returns something truthy; raises TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def http_status(url: str) -> int:
    """The status of a GET on a loopback URL, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


# --- tmpfs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    """Where the output goes: ``root`` is on a tmpfs when ``tmpfs`` is True."""

    root: Path
    tmpfs: bool


@contextmanager
def scratch_space() -> Iterator[Scratch]:
    """A fresh tmpfs mounted on a temp dir when we are root (as in a pod), else a plain temp dir
    (then configs say ``allow_non_tmpfs: true``). Unmounted and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="injector-bench-") as tmp:
        root = Path(tmp) / "tmpfs"
        root.mkdir()
        mounted = False
        if os.geteuid() == 0:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", str(root)],
                capture_output=True,
                check=False,
            )
            mounted = result.returncode == 0
        try:
            yield Scratch(root=root, tmpfs=mounted)
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(root)], check=False)


# --- /proc ---------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a mapping (values as text, units included)."""
    return proc_status_path(f"/proc/{pid}/status")


def kib(value: str) -> int:
    """``"12345 kB"`` → 12345."""
    return int(value.split()[0])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def context_switches(pid: int) -> tuple[int, int, int]:
    """(voluntary, involuntary, threads) summed over every thread of ``pid``.

    ``/proc/PID/status`` counts the main thread only; each thread's own status has its counters.
    """
    voluntary = involuntary = threads = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = proc_status_path(f"/proc/{pid}/task/{task}/status")
        except OSError:
            continue
        voluntary += int(status.get("voluntary_ctxt_switches", "0"))
        involuntary += int(status.get("nonvoluntary_ctxt_switches", "0"))
        threads += 1
    return voluntary, involuntary, threads


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def memory_map(pid: int) -> dict[str, int]:
    """Resident KiB of ``pid`` by kind of mapping, from ``/proc/PID/smaps``: ``anonymous`` (the
    heap, Python's arenas, thread stacks), ``python`` (the interpreter binary and libpython),
    ``extension modules`` (``.so`` files of packages and of the standard library), ``system
    libraries`` (libc, libssl, libcrypto …), ``other``."""
    out: dict[str, int] = {}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(maxsplit=6)
            if "-" in first[0] and len(first) >= 5 and ":" in first[3]:  # a mapping's header line
                name = first[5].strip() if len(first) > 5 else ""
                base = os.path.basename(name)
                if not name or name in ("[heap]", "[stack]") or name.startswith("[anon"):
                    kind = "anonymous"
                elif "python3" in base or base.startswith("libpython"):
                    kind = "python"
                elif "site-packages" in name or "lib-dynload" in name:
                    kind = "extension modules"
                elif base.startswith("lib") and ".so" in base:
                    kind = "system libraries"
                else:
                    kind = "other"
            elif line.startswith("Rss:"):
                out[kind] = out.get(kind, 0) + int(line.split()[1])
    return out


def proc_status_path(path: str) -> dict[str, str]:
    """A ``status`` file of /proc as a mapping."""
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def machine() -> dict[str, str]:
    """What the README records about the machine: cores, memory, Python, kernel, load."""
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{total_kib / 1024 / 1024:.1f} GiB",
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def code_fingerprint(root: Path) -> str:
    """A digest of every file under ``root/injector``: compared at the start and the end of a run,
    it tells whether the measured code changed while it was being measured."""
    digest = hashlib.sha256()
    for path in sorted((root / "injector").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass
class LibraryFloor:
    """What ``libfloor.py`` measured for a set of backends: medians over the runs."""

    backends: tuple[str, ...]
    clients: bool
    #: VmRSS before any import, after the imports, at the end (KiB).
    python_kib: int
    imports_kib: int
    rss_kib: int
    #: whole-process wall time (interpreter start to exit), and the imports alone.
    wall: float
    imports_s: float


def dataset_backends(vault_paths: int, sm: int, ssm: int) -> tuple[str, ...]:
    """The ``libfloor.py`` backends of a data set."""
    return tuple(name for name, n in (("vault", vault_paths), ("secretsmanager", sm), ("ssm", ssm)) if n)


def library_floor(
    backends: Sequence[str],
    *,
    clients: bool,
    runs: int,
    vault: str = "",
    aws: str = "",
    paused: bool = False,
    with_yaml: bool = True,
) -> LibraryFloor:
    """Runs ``bench/libfloor.py`` ``runs`` times (``-m``, so from its .pyc like every other module);
    ``paused``: without the cyclic garbage collector, as ``injector init`` starts up (the floor of a
    timed ``init``); ``with_yaml=False``: without PyYAML, as a sidecar runs (its config's YAML is
    read by a child process)."""
    command = [PYTHON, "-m", "libfloor", *backends, *(["--clients"] if clients else [])]
    command += ["--paused"] if paused else []
    command += [] if with_yaml else ["--no-yaml"]
    command += ["--vault", vault] if vault else []
    command += ["--aws", aws] if aws else []
    env = child_env({"PYTHONPATH": str(BENCH)})
    reports, walls = [], []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=True)
        walls.append(time.perf_counter() - started)
        reports.append(json.loads(out.stdout))

    def mid(key: str) -> float:
        return median([float(r[key]) for r in reports])

    return LibraryFloor(
        backends=tuple(backends),
        clients=clients,
        python_kib=int(mid("python_kib")),
        imports_kib=int(mid("imports_kib")),
        rss_kib=int(mid("rss_kib")),
        wall=median(walls),
        imports_s=mid("imports_s"),
    )
