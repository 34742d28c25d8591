"""Process hardening: a same-UID app cannot read the injector's /proc entries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.fixtures.sidecar import wait_for

SCRIPT = (
    "from injector.process.hygiene import make_undumpable; import time; "
    "make_undumpable(); print('ok', flush=True); time.sleep(30)"
)
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to switch UID")
def test_proc_entries_belong_to_root_after_make_undumpable() -> None:
    """After make_undumpable, /proc/PID/environ of a UID-65534 process is owned by root, not 65534."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    plain = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-c", "import time; time.sleep(30)"],
        env=env,
    )
    hardened = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-c", SCRIPT],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert hardened.stdout is not None
        assert hardened.stdout.readline().strip() == "ok"
        wait_for(lambda: os.stat(f"/proc/{plain.pid}/environ").st_uid == 65534, 5, "the plain process to switch UID")
        assert os.stat(f"/proc/{hardened.pid}/environ").st_uid == 0
    finally:
        for proc in (plain, hardened):
            proc.kill()
            proc.wait()


ARENAS = """
import ctypes, sys, threading
from injector.process.hygiene import one_malloc_arena
if sys.argv[1] == "one":
    assert one_malloc_arena()
def allocate():
    kept = [bytes(2000) for _ in range(200)]  # over 512 bytes: glibc's malloc, not Python's pools
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" paragraph per arena, on standard error
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and malloc_stats")
def test_one_malloc_arena_keeps_every_thread_in_the_main_arena() -> None:
    """Threads that allocate get arenas of their own (the control), and none after one_malloc_arena."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def arenas(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", ARENAS, mode], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stderr.count("Arena ")

    assert arenas("default") > 1
    assert arenas("one") == 1


COLLECTOR = """
import gc
from injector.process.hygiene import pause_collector, release_memory, resume_collector
pause_collector()
assert not gc.isenabled()
kept = [[] for _ in range(100)]  # built during start-up, kept
resume_collector()
assert gc.isenabled() and gc.get_freeze_count() >= 100  # start-up's objects set aside
frozen = gc.get_freeze_count()
resume_collector()  # again: already on, nothing more is frozen
assert gc.isenabled() and gc.get_freeze_count() == frozen
release_memory()  # after the first render: every object is the collector's again
assert gc.isenabled() and gc.get_freeze_count() == 0
cycle = []
cycle.append(cycle)
del cycle
assert gc.collect() >= 1
print("ok")
"""


def test_the_collector_is_paused_for_start_up_then_resumed_and_given_everything_back() -> None:
    """pause_collector turns the collector off; resume_collector freezes what start-up built and
    turns it on, once; release_memory unfreezes it all, and cycles are collected again."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", COLLECTOR], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
