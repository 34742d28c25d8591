"""botocore's data folder cut down at image build (sources/aws_data.py): what the run-time walk keeps,
written once, and clients built on it that work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore
import pytest

from injector.refs import parse_reference
from injector.sources._aws import ENDPOINT_SERVICES, _shared_session, client_methods
from injector.sources._botodata import LeanFiles
from injector.sources.aws_data import main, write_lean_data
from injector.sources.aws_secretsmanager import SecretsManagerClient, build_secretsmanager_source
from injector.sources.aws_ssm import SsmClient, build_ssm_source

DATA = Path(botocore.__file__).parent / "data"


def copy_of_botocore_data(folder: Path) -> Path:
    """endpoints.json and the Secrets Manager and SSM folders of botocore's data, copied."""
    folder.mkdir()
    shutil.copy(DATA / "endpoints.json", folder)
    for service in ("secretsmanager", "ssm", "sts"):
        shutil.copytree(DATA / service, folder / service)
    return folder


def lean_files() -> LeanFiles:
    files = LeanFiles(ENDPOINT_SERVICES)
    files.keep_calls("secretsmanager", client_methods(SecretsManagerClient))
    files.keep_calls("ssm", client_methods(SsmClient))
    return files


def test_each_file_holds_what_the_run_time_walk_keeps_of_the_original(tmp_path: Path) -> None:
    """endpoints.json and both service models become plain JSON of exactly what LeanFiles keeps of
    botocore's originals; the gzipped originals are gone; STS's model is left as it was."""
    folder = copy_of_botocore_data(tmp_path / "data")
    sts_before = sorted(p.relative_to(folder) for p in (folder / "sts").rglob("*"))
    written = write_lean_data(folder)
    models = sorted(p for p in folder.glob("*/*/service-2.json"))
    assert sorted(written) == sorted([folder / "endpoints.json", *models])
    assert {p.parent.parent.name for p in models} == {"secretsmanager", "ssm"}
    for path in written:
        relative = path.relative_to(folder).with_suffix("")
        assert json.loads(path.read_text()) == lean_files().load_file(str(DATA / relative)), relative
        assert not path.with_name(path.name + ".gz").exists()
    assert sorted(p.relative_to(folder) for p in (folder / "sts").rglob("*")) == sts_before
    assert sum(p.stat().st_size for p in written) < 100_000


def test_running_it_again_changes_nothing(tmp_path: Path) -> None:
    folder = copy_of_botocore_data(tmp_path / "data")
    first = {p: p.read_bytes() for p in write_lean_data(folder)}
    second = {p: p.read_bytes() for p in write_lean_data(folder)}
    assert first == second


@pytest.mark.aws
def test_clients_built_on_it_read_it_and_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_config: Any, sm_client: Any, ssm_client: Any
) -> None:
    """With the folder on AWS_DATA_PATH (what the bench does; the image rewrites botocore's own), the
    session loads the cut-down files and both sources fetch from moto as before."""
    folder = copy_of_botocore_data(tmp_path / "data")
    write_lean_data(folder)
    monkeypatch.setenv("AWS_DATA_PATH", str(folder))
    sm_client.create_secret(Name="app/db", SecretString='{"password": "pw-1"}')
    ssm_client.put_parameter(Name="/app/key", Value="k-1", Type="SecureString")
    config = aws_config()
    sm, ssm = build_secretsmanager_source(config), build_ssm_source(config)
    loader = _shared_session(config).get_component("data_loader")
    for name in ("endpoints", "secretsmanager/2017-10-17/service-2", "ssm/2014-11-06/service-2"):
        assert loader.load_data_with_path(name)[1].startswith(str(folder)), name
    db, key = parse_reference("aws-sm:app/db"), parse_reference("aws-ssm:/app/key")
    got = {**sm.fetch([db]), **ssm.fetch([key])}
    assert "pw-1" in json.dumps(got[db].value.reveal())  # type: ignore[union-attr]
    assert got[key].value.reveal() == "k-1"  # type: ignore[union-attr]


def test_a_folder_that_is_not_botocores_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ssm").mkdir()
    assert main([str(tmp_path)]) == 11
    assert "no endpoints.json here" in capsys.readouterr().err
    assert list(tmp_path.rglob("*")) == [tmp_path / "ssm"]


def test_the_command_line(tmp_path: Path) -> None:
    """``python -m injector.sources.aws_data FOLDER`` prints each file written; no folder is a usage error."""
    folder = copy_of_botocore_data(tmp_path / "data")
    command = [sys.executable, "-m", "injector.sources.aws_data"]
    done = subprocess.run([*command, str(folder)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{folder / 'endpoints.json'}: " in done.stdout and done.stdout.count(" bytes") == 3
    usage = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
