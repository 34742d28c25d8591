"""The baseline of benchmark 1: the script a team writes before it has an injector.

Plain, sequential hvac and boto3, one call at a time: ``read_secret_version`` once per KV path
(remembered for the path's other keys), ``get_secret_value`` per secret, ``get_parameter`` per
parameter; then it writes each file (``VAR=value`` lines, mode 0440) into the output directory.
Its output is byte-for-byte the injector's (the bench checks).

Usage: ``python bench/baseline.py PLAN.json`` (``dataset.Dataset.write_plan`` writes the plan).
Prints one JSON line: ``{"import_s": …, "work_s": …, "calls": …}``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402 - the import time of the script is part of what it reports
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: botocore's own data, whole: the bench gives injector processes the image's cut-down copy
#: (common.BOTODATA), which a script like this one would not have.
os.environ.pop("AWS_DATA_PATH", None)

import boto3  # noqa: E402
import hvac  # noqa: E402


def main(plan_path: str) -> None:
    imported = time.perf_counter()
    plan = json.loads(Path(plan_path).read_text())
    vault = hvac.Client(url=plan["vault"]["address"], token=plan["vault"]["token"], timeout=10)
    aws = plan["aws"]
    sm = boto3.client("secretsmanager", region_name=aws["region"], endpoint_url=aws["endpoint_url"])
    ssm = boto3.client("ssm", region_name=aws["region"], endpoint_url=aws["endpoint_url"])
    kv: dict[str, dict[str, Any]] = {}
    calls = 0
    out = Path(plan["output_dir"])
    for file in plan["files"]:
        lines = []
        for var, kind, name, key in file["lines"]:
            if kind == "vault":
                if name not in kv:
                    response = vault.secrets.kv.v2.read_secret_version(
                        path=name, mount_point="secret", raise_on_deleted_version=True
                    )
                    kv[name] = response["data"]["data"]
                    calls += 1
                value = kv[name][key]
            elif kind == "sm":
                value = sm.get_secret_value(SecretId=name)["SecretString"]
                calls += 1
            else:
                value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
                calls += 1
            lines.append(f"{var}={value}\n")
        target = out / file["path"]
        target.write_text("".join(lines))
        os.chmod(target, 0o440)
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - STARTED, "work_s": done - imported, "calls": calls}))


if __name__ == "__main__":
    main(sys.argv[1])
