"""injector.sink under SIGKILL: a reader never sees a partial file or a mix of two snapshots, and
prepare() recovers from a writer killed at any point of a publish.

The writer (tests/helpers_sink_writer.py) publishes generation after generation; this test kills it
at random moments while a reader thread reads the files through the paths an app uses. Set
SINK_CRASH_SEED to replay a seed printed by a failing run (the kill moments replay; the thread
interleaving cannot).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from injector.sink import Sink
from tests.helpers_sink_writer import content, files

ROOT = Path(__file__).resolve().parent.parent
KILLS = 30
MAX_DELAY = 0.030
HEAD = re.compile(rb"(\S+) gen (\d{12})\n")


def generation_of(path: str, data: bytes) -> int:
    """Returns the generation of a whole file; fails on a partial or garbled one."""
    match = HEAD.match(data)
    assert match is not None, f"{path}: no header, {len(data)} bytes: {data[:40]!r}"
    assert match.group(1).decode() == path, f"{path}: holds {match.group(1).decode()}"
    generation = int(match.group(2))
    assert data == content(path, generation), f"{path}: partial file of generation {generation} ({len(data)} bytes)"
    return generation


def read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class Reader(threading.Thread):
    """Reads a.txt, b/c.txt and odd.txt like an app, checking every read, until stopped."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.stopped = threading.Event()
        self.errors: list[str] = []
        self.consistent = 0  # reads during which ..data did not move: must be one generation
        self.moved = 0  # reads across a swap: each file must still be whole
        self.last = -1

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.read_once()
            except AssertionError as exc:
                self.errors.append(str(exc))
                return

    def read_once(self) -> None:
        before = os.readlink(self.out / "..data")
        try:
            a = (self.out / "a.txt").read_bytes()
            c = (self.out / "b" / "c.txt").read_bytes()
            odd = read_optional(self.out / "odd.txt")
        except FileNotFoundError:
            # Resolved through a snapshot that was then removed: only possible across a swap.
            assert os.readlink(self.out / "..data") != before, f"a file vanished from live snapshot {before}"
            self.moved += 1
            return
        after = os.readlink(self.out / "..data")
        generation = generation_of("a.txt", a)
        other = generation_of("b/c.txt", c)
        if odd is not None:
            generation_of("odd.txt", odd)
        if before != after:
            self.moved += 1
            return
        assert generation == other, f"mixed snapshot {before}: a.txt is generation {generation}, b/c.txt {other}"
        assert (odd is not None) == (generation % 2 == 1), f"odd.txt wrong in generation {generation}"
        assert odd is None or generation_of("odd.txt", odd) == generation, f"odd.txt mixed in {generation}"
        assert generation >= self.last, f"went back from generation {self.last} to {generation}"
        self.last = generation
        self.consistent += 1


def leftovers(out: Path) -> list[str]:
    """Entries beyond ..data, its folder and one correct link per entry of that folder."""
    live = os.readlink(out / "..data")
    entries = set(os.listdir(out / live))
    wrong = {name for name in entries if os.readlink(out / name) != f"..data/{name}"} if entries else set()
    return sorted(set(os.listdir(out)) - {"..data", live, *entries} | wrong)


@pytest.mark.timeout(60)
def test_sigkill_never_exposes_a_partial_or_mixed_snapshot(output_dir: Path) -> None:
    """Readers see whole, same-generation files while a writer is SIGKILLed mid-publish; prepare() recovers."""
    seed = int(os.environ.get("SINK_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed {seed} (replay with SINK_CRASH_SEED={seed})")
    rng = random.Random(seed)
    Sink(output_dir).publish(files(0))
    reader = Reader(output_dir)
    reader.start()
    littered = 0
    try:
        for kill in range(1, KILLS + 1):
            first = kill * 1_000_000
            writer = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers_sink_writer", str(output_dir), str(first)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert writer.stdout is not None
            ready = writer.stdout.readline()
            time.sleep(rng.uniform(0, MAX_DELAY))  # the kill's random moment, not a wait for a condition
            writer.kill()
            _, err = writer.communicate(timeout=10)
            assert ready == b"ready\n", f"seed {seed}: writer {kill} failed: {err.decode()}"
            assert writer.returncode == -9, f"seed {seed}: writer {kill} exited by itself: {err.decode()}"

            littered += bool(leftovers(output_dir))
            sink = Sink(output_dir)
            sink.prepare()
            assert leftovers(output_dir) == [], f"seed {seed}: prepare() after kill {kill} left litter"
            generations = {generation_of(path, data) for path, data in sink.current().items()}
            assert len(generations) == 1, f"seed {seed}: live snapshot after kill {kill} mixes {generations}"
            assert sink.publish(files(first + 999_999)).snapshot is not None
            assert reader.is_alive() or reader.errors, "the reader stopped"
            if reader.errors:
                break
    finally:
        reader.stopped.set()
        reader.join(timeout=10)
    assert reader.errors == [], f"seed {seed}: {reader.errors[0]}"
    print(f"{reader.consistent} consistent reads, {reader.moved} across a swap, {littered} kills left litter")
    assert reader.consistent > KILLS
