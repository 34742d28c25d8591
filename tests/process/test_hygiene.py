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
