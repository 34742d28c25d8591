"""The writer of tests/test_sink_crash.py: publishes generation after generation until it is killed.

Every file of generation N carries N, so a reader can tell a mix of snapshots from a consistent one,
and its exact bytes follow from its path and N, so a reader can tell a partial file from a whole one.
Odd generations add ``odd.txt``, so that links are created and removed as well.

Run as ``python -m tests.helpers_sink_writer OUTPUT_DIR FIRST_GENERATION``; prints ``ready`` once
prepared, then publishes as fast as it can.
"""

from __future__ import annotations

import sys
from pathlib import Path

from injector.sink import OutputFile, Sink

SIZES = {"a.txt": 4096, "b/c.txt": 8192}


def content(path: str, generation: int) -> bytes:
    """The exact bytes of ``path`` in ``generation``: a header line, then the number repeated."""
    head = f"{path} gen {generation:012d}\n".encode()
    size = SIZES.get(path, 1024)
    filler = f"{generation:012d}\n".encode() * (size // 13 + 1)
    return (head + filler)[:size]


def files(generation: int) -> list[OutputFile]:
    """Generation ``generation``'s full set of files."""
    paths = [*SIZES, "odd.txt"] if generation % 2 else list(SIZES)
    return [OutputFile(path=path, content=content(path, generation)) for path in paths]


def main() -> None:
    out, generation = Path(sys.argv[1]), int(sys.argv[2])
    sink = Sink(out)
    sink.prepare()
    print("ready", flush=True)
    while True:
        sink.publish(files(generation))
        generation += 1


if __name__ == "__main__":
    main()
