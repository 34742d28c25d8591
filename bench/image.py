"""The image: build it as tests/test_image.py does, print its size and what the size is made of.

Usage (root, with podman, runc and mmdebstrap, which `make test` installs)::

    .venv/bin/python bench/image.py              # the image as the Dockerfile builds it
    .venv/bin/python bench/image.py --untrimmed  # and again with every botocore model, to compare

How: tests/helpers/image.py makes (or reuses) the Debian base from this machine's apt sources,
imports it into a podman storage of its own and runs `podman build` on the Dockerfile as it is
(`--no-cache`, so the build time includes fetching the dependencies from PyPI). Sizes: the
image's and the base's `podman image inspect --format {{.Size}}`; inside the image (mounted on
the host with `podman image mount`), the bytes of the files of the whole root, of the venv, of
its largest packages and of botocore's API models. The storage is removed at the end; the base
tarball stays cached in /var/tmp/injector-image-test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import image  # noqa: E402  (the repository root is on the path only from here)


def megabytes(size: int) -> str:
    return f"{size / 1e6:7.1f} MB"


def measure(podman: image.Podman, tag: str, *extra: str) -> int:
    """Builds ``tag`` and prints its numbers; returns the image's size."""
    build = image.build(podman, tag, *extra)
    size, base = podman.size(build.ref), podman.size(build.base)
    print(
        f"\n{build.ref}  (version {build.version}, revision {build.revision[:12]}{', ' if extra else ''}"
        f"{' '.join(extra)})"
    )
    print(
        f"  base tarball {build.tarball_seconds:5.1f} s, import {build.import_seconds:5.1f} s, "
        f"podman build {build.build_seconds:5.1f} s"
    )
    print(f"  base image: {build.base}")
    print(f"  {'image (podman image inspect .Size)':46} {megabytes(size)}")
    print(f"  {'base image (podman image inspect .Size)':46} {megabytes(base)}")
    print(f"  {'image - base':46} {megabytes(size - base)}")
    print("  files in the image (apparent sizes):")
    with podman.mounted(build.ref) as rootfs:
        for name, bytes_ in image.breakdown(rootfs).items():
            print(f"    {name:44} {megabytes(bytes_)}")
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--untrimmed", action="store_true", help="also build with every botocore model kept")
    args = parser.parse_args()
    reason = image.unavailable()
    if reason:
        print(f"cannot build the image here: {reason}", file=sys.stderr)
        return 2
    podman = image.Podman.open()
    try:
        trimmed = measure(podman, "localhost/injector:bench")
        if args.untrimmed:
            untrimmed = measure(podman, "localhost/injector:bench-untrimmed", "--build-arg", "BOTOCORE_SERVICES=all")
            print(f"\nkeeping only secretsmanager, ssm and sts saves {megabytes(untrimmed - trimmed).strip()}")
    finally:
        podman.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
