"""botocore's data folder cut down, once, to what the AWS sources use: a build step of the image.

``python -m injector.sources.aws_data DATA_FOLDER`` rewrites, in ``DATA_FOLDER`` (botocore's
``data`` folder, or a folder of the same layout):

* ``endpoints.json``: each partition's services cut down to the ones the sources and their
  credential providers call (``_aws.ENDPOINT_SERVICES``);
* ``secretsmanager/*/service-2`` and ``ssm/*/service-2``: only the operations the sources call
  (the methods of ``SecretsManagerClient`` and ``SsmClient``) and the shapes they reach.

Each file is written as plain ``.json``, its gzipped original removed. The result is exactly what
``_botodata.LeanFiles`` keeps of the original at run time, so a client built on it is the same
client; what the rewrite saves is the walk: every client build otherwise reads 1.2 MB of
endpoints and each service's whole model (about 20 ms of each ``init`` and sidecar start, and the
memory pools the walk touched). Running it again changes nothing. Every other file, the
endpoint rule sets and STS's model included, is left as it is.

The Dockerfile runs it on the image's venv; ``bench/common.py`` runs it on a copy for the bench,
which points ``AWS_DATA_PATH`` at that copy.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from injector.errors import ConfigError

__all__ = ["main", "write_lean_data"]


def _kept_calls() -> dict[str, list[str]]:
    from injector.sources._aws import client_methods
    from injector.sources.aws_secretsmanager import SecretsManagerClient
    from injector.sources.aws_ssm import SsmClient

    return {"secretsmanager": client_methods(SecretsManagerClient), "ssm": client_methods(SsmClient)}


def write_lean_data(folder: Path) -> list[Path]:
    """Rewrites ``folder``'s endpoints and the sources' service models as described above; returns
    the files written.

    Raises:
        ConfigError: ``folder`` holds no ``endpoints.json`` (not botocore's data folder).
    """
    from injector.sources._aws import ENDPOINT_SERVICES
    from injector.sources._botodata import LeanFiles

    if not any((folder / f"endpoints{ext}").is_file() for ext in (".json", ".json.gz")):
        raise ConfigError(
            f"{folder}: no endpoints.json here; name botocore's data folder (…/site-packages/botocore/data)"
        )
    files = LeanFiles(ENDPOINT_SERVICES)
    targets = [folder / "endpoints"]
    for service, calls in _kept_calls().items():
        files.keep_calls(service, calls)
        if (folder / service).is_dir():
            targets += sorted(version / "service-2" for version in (folder / service).iterdir() if version.is_dir())
    written = []
    for target in targets:
        data = files.load_file(str(target))
        if data is None:
            continue
        out = target.with_name(target.name + ".json")
        temporary = out.with_name(out.name + ".tmp")
        temporary.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, out)
        target.with_name(target.name + ".json.gz").unlink(missing_ok=True)
        written.append(out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m injector.sources.aws_data DATA_FOLDER``: prints each file written and its size."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m injector.sources.aws_data DATA_FOLDER (botocore's data folder)", file=sys.stderr)
        return 2
    try:
        written = write_lean_data(Path(args[0]))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for path in written:
        print(f"{path}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
