"""Benchmark 3: from a change in the backend to (a) the output file changed, (b) the app signalled.

How: a real ``injector sidecar`` whose templates notify ``bench/app.py`` with SIGHUP through a
pidfile; the config's ``refresh.wait`` is the default of the code measured. Each change is timed
from the moment it is committed in the backend (``time.monotonic()`` right after the write
returned, or right after the ``..data`` rename) to

- (a) the output's ``..data`` link pointing at a new snapshot (polled every 1 ms by the bench), and
- (b) the time the app's SIGHUP handler ran, as the app recorded it (CLOCK_MONOTONIC is system-wide).

Two sources, ``changes`` changes each, one at a time (the next starts only after the previous
one's signal, after a random pause so changes fall at random points of the poll cycle):

- polled: a Vault KV v2 value of the 100-secret config, ``refresh.interval: 1s``, backends at 2 ms;
  the budget is ``interval + 100 ms`` (we also give p50/p99 minus the interval);
- files: a ``file:`` reference into a ConfigMap-style folder, updated as kubelet does (new
  timestamped folder, ``..data`` symlink swapped by rename); the budget is 250 ms.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import hvac
import yaml
from backends import Backends
from common import Scratch, percentile, wait_for
from dataset import Dataset
from procs import App, Sidecar, readlink

#: The process name a pidfile notifier expects: the app is this Python interpreter.
APP_NAME = Path(sys.executable).name

#: Polling step of the bench for the output link (its resolution).
STEP = 0.001


@dataclass
class Propagation:
    name: str
    interval: float | None
    budget: float
    to_file: list[float] = field(default_factory=list)
    to_signal: list[float] = field(default_factory=list)

    def p(self, which: str, q: float) -> float:
        return percentile(getattr(self, which), q)

    @property
    def passed(self) -> bool:
        return bool(self.to_signal) and self.p("to_signal", 99) <= self.budget and self.p("to_file", 99) <= self.budget


def _time_one(out: Path, app: App, change: Callable[[], float], timeout: float) -> tuple[float, float]:
    """Applies ``change`` (which returns the monotonic time it was committed), then waits for the
    new snapshot and for the app's next signal; returns both delays."""
    link, seen = readlink(out / "..data"), len(app.signals())
    committed = change()
    deadline = committed + timeout
    while readlink(out / "..data") == link:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new snapshot within {timeout:.0f}s of a change")
        time.sleep(STEP)
    file_at = time.monotonic()

    def signalled() -> list[float] | None:
        times = app.signals()
        return times if len(times) > seen else None

    signals = wait_for(signalled, max(0.0, deadline - time.monotonic()), "the app's SIGHUP", step=STEP)
    return file_at - committed, signals[seen] - committed


def polled(backends: Backends, dataset: Dataset, scratch: Scratch, *, changes: int, latency: float) -> Propagation:
    """A Vault KV v2 value changed ``changes`` times under a sidecar polling every second."""
    work = scratch.root / "propagation-polled"
    out = work / "out"
    out.mkdir(parents=True)
    interval = 1.0
    result = Propagation(name="polled", interval=interval, budget=interval + 0.100)
    vault = hvac.Client(url=backends.vault_address, token=backends.root_token, timeout=10)
    path = dataset.vault_path(0)
    rng = random.Random(3)
    with App(work) as app:
        config = dataset.config(
            backends,
            folder=work / "config",
            output_dir=out,
            tmpfs=scratch.tmpfs,
            extra={"refresh": {"interval": f"{interval:g}s"}},
            on_change=[{"signal": "SIGHUP", "pidfile": str(app.pidfile), "process": APP_NAME}],
        )
        backends.set_latency(latency)
        with Sidecar(config, work / "sidecar.log", {"VAULT_TOKEN": backends.root_token}) as sidecar:
            sidecar.wait_ready()
            for i in range(changes):
                time.sleep(rng.uniform(0.0, interval))

                def change(i: int = i) -> float:
                    vault.secrets.kv.v2.create_or_update_secret(
                        path=path, secret={"user": "rotating", "password": f"pw-{i}"}, mount_point="secret"
                    )
                    return time.monotonic()

                to_file, to_signal = _time_one(out, app, change, timeout=interval * 3 + 5)
                result.to_file.append(to_file)
                result.to_signal.append(to_signal)
    backends.set_latency(0.0)
    return result


def configmap_write(folder: Path, name: str, text: str) -> float:
    """Updates ``folder`` the way kubelet updates a ConfigMap volume; returns the monotonic time
    of the ``..data`` rename (the commit)."""
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    (folder / stamp).mkdir()
    (folder / stamp / name).write_text(text)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    (folder / "..data_tmp").symlink_to(stamp)
    os.replace(folder / "..data_tmp", folder / "..data")
    committed = time.monotonic()
    if not (folder / name).is_symlink():
        (folder / name).symlink_to(f"..data/{name}")
    if old:
        for child in (folder / old).iterdir():
            child.unlink()
        (folder / old).rmdir()
    return committed


def files(scratch: Scratch, *, changes: int) -> Propagation:
    """A ``file:`` value in a ConfigMap-style folder, swapped ``changes`` times."""
    work = scratch.root / "propagation-files"
    out, configmap = work / "out", work / "configmap"
    out.mkdir(parents=True)
    configmap.mkdir()
    configmap_write(configmap, "value", "v-start\n")
    result = Propagation(name="files", interval=None, budget=0.250)
    rng = random.Random(5)
    with App(work) as app:
        raw = {
            "output_dir": str(out),
            "templates": [
                {
                    "contents": f'VALUE={{{{ secret("file:{configmap / "value"}") }}}}',
                    "destination": "app.conf",
                    "on_change": [{"signal": "SIGHUP", "pidfile": str(app.pidfile), "process": APP_NAME}],
                }
            ],
            "refresh": {"interval": "1h"},
            "health": {"address": False},
            **({} if scratch.tmpfs else {"allow_non_tmpfs": True}),
        }
        config = work / "injector.yaml"
        config.write_text(yaml.safe_dump(raw))
        with Sidecar(config, work / "sidecar.log", {}) as sidecar:
            sidecar.wait_ready()
            for i in range(changes):
                time.sleep(rng.uniform(0.05, 0.3))
                to_file, to_signal = _time_one(
                    out, app, partial(configmap_write, configmap, "value", f"v-{i}\n"), timeout=10
                )
                result.to_file.append(to_file)
                result.to_signal.append(to_signal)
    return result
