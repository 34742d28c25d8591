"""botocore's data loaded lean (sources/_botodata.py): the same data as a whole parse trimmed after
it, without ever holding the whole file."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import botocore
import pytest
from botocore.model import ServiceModel

from injector.sources._aws import ENDPOINT_SERVICES
from injector.sources._botodata import LeanFiles, lean_loader, walk_endpoints, walk_service_model

DATA = Path(botocore.__file__).parent / "data"
SSM_CALLS = {"get_parameters", "get_parameters_by_path", "close"}


def model_text(service: str) -> str:
    (version,) = sorted(p.name for p in (DATA / service).iterdir() if (p / "service-2.json.gz").exists())[-1:]
    with gzip.open(DATA / service / version / "service-2.json.gz", "rb") as fp:
        return fp.read().decode("utf-8")


def trimmed_after(data: dict[str, Any], services: set[str] | frozenset[str]) -> dict[str, Any]:
    partitions = [
        {**p, "services": {k: v for k, v in p["services"].items() if k in services}} for p in data["partitions"]
    ]
    return {**data, "partitions": partitions}


def reached(model: dict[str, Any]) -> set[str]:
    """Every shape botocore resolves from the model's operations, walked through botocore's own model classes."""
    service = ServiceModel(model, "ssm")
    seen: set[str] = set()
    stack = []
    for name in service.operation_names:
        operation = service.operation_model(name)
        stack += [s for s in (operation.input_shape, operation.output_shape, *operation.error_shapes) if s]
    while stack:
        shape = stack.pop()
        if shape.name in seen:
            continue
        seen.add(shape.name)
        stack += [getattr(shape, attr) for attr in ("member", "key", "value") if hasattr(shape, attr)]
        stack += list(getattr(shape, "members", {}).values())
    return seen


def test_endpoints_equal_the_whole_file_trimmed() -> None:
    """On botocore's own endpoints.json, the walk gives what parsing it whole and trimming gives."""
    text = (DATA / "endpoints.json").read_text()
    assert walk_endpoints(text, ENDPOINT_SERVICES) == trimmed_after(json.loads(text), ENDPOINT_SERVICES)


@pytest.mark.parametrize("indent", [None, 0, 4])
def test_any_json_layout_walks_the_same(indent: int | None) -> None:
    """Whitespace, escapes, empty objects and member order do not change the result."""
    data = {
        "version": 3,
        "partitions": [
            {"services": {'a\u00e9\\"': {"x": [1, {}]}, "ssm": {"endpoints": {}}, "s3": {}}, "partition": "aws"},
            {"partition": "aws-cn", "services": {}},
        ],
        "extra": {"nested": [[], {}]},
    }
    text = json.dumps(data, indent=indent, ensure_ascii=indent is None)
    assert walk_endpoints(text, {"ssm", 'a\u00e9\\"'}) == trimmed_after(data, {"ssm", 'a\u00e9\\"'})


def test_a_service_model_keeps_its_calls_and_every_shape_they_reach() -> None:
    """SSM's model keeps the two operations the source calls, and exactly the shapes botocore resolves from them."""
    model = walk_service_model(model_text("ssm"), SSM_CALLS)
    assert set(model["operations"]) == {"GetParameters", "GetParametersByPath"}
    assert set(model["shapes"]) == reached(model)
    assert "PutParameterRequest" not in model["shapes"]
    assert "documentation" not in model
    full = json.loads(model_text("ssm"))
    assert all(model["shapes"][name] == full["shapes"][name] for name in model["shapes"])
    assert model["metadata"] == full["metadata"]


def test_the_walk_never_holds_the_whole_file() -> None:
    """Peak traced memory of the walk stays a small part of what parsing the whole file takes."""
    text = (DATA / "endpoints.json").read_text()
    model = model_text("ssm")

    def peak(work: Any) -> int:
        tracemalloc.start()
        try:
            work()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(lambda: walk_endpoints(text, ENDPOINT_SERVICES)) * 8 < peak(lambda: json.loads(text))
    assert peak(lambda: walk_service_model(model, SSM_CALLS)) * 3 < peak(lambda: json.loads(model))


@pytest.mark.parametrize(
    "text",
    [
        '{"partitions": {"not": "a list"}, "version": 3}',
        '{"partitions": [{"services": ["not", "an object"]}]}',
        '{"partitions": [] , "version": 3} ',
    ],
)
def test_an_unexpected_layout_is_parsed_whole(tmp_path: Path, text: str) -> None:
    """A file the walk cannot follow is parsed as botocore would parse it: whole, nothing lost."""
    (tmp_path / "endpoints.json").write_text(text)
    assert LeanFiles(ENDPOINT_SERVICES).load_file(str(tmp_path / "endpoints")) == json.loads(text)


def test_a_model_with_a_dangling_shape_is_parsed_whole(tmp_path: Path) -> None:
    """A model whose operation names a shape it does not define is kept whole, for botocore to report."""
    model = {"metadata": {}, "operations": {"GetParameters": {"input": {"shape": "Missing"}}}, "shapes": {}}
    folder = tmp_path / "ssm" / "2014-11-06"
    folder.mkdir(parents=True)
    with gzip.open(folder / "service-2.json.gz", "wt") as fp:
        json.dump(model, fp)
    files = LeanFiles(ENDPOINT_SERVICES)
    files.keep_calls("ssm", SSM_CALLS)
    assert files.exists(str(folder / "service-2"))
    assert files.load_file(str(folder / "service-2")) == model


def test_a_missing_file_is_none(tmp_path: Path) -> None:
    """As botocore's loader: None, so the next search path is tried."""
    assert LeanFiles(ENDPOINT_SERVICES).load_file(str(tmp_path / "endpoints")) is None
    assert not LeanFiles(ENDPOINT_SERVICES).exists(str(tmp_path / "endpoints"))


def test_a_model_without_declared_calls_is_whole(tmp_path: Path) -> None:
    """Only services built through build_client are cut down: any other client (STS for IRSA) gets its whole model."""
    folder = tmp_path / "ssm" / "2014-11-06"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(model_text("ssm"))
    loaded = LeanFiles(ENDPOINT_SERVICES).load_file(str(folder / "service-2"))
    assert loaded == json.loads(model_text("ssm"))


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_services_are_listed_by_folder(type_name: str) -> None:
    """The folder names give botocore's own list for its data, without opening each folder."""
    from botocore.loaders import Loader

    names = lean_loader([], ENDPOINT_SERVICES).list_available_services(type_name)
    assert {"ssm", "secretsmanager", "sqs"} <= set(names)
    assert names == Loader().list_available_services(type_name)


def test_an_unknown_service_is_refused_as_botocore_refuses_it() -> None:
    """A service with no folder is unknown, with botocore's error."""
    from botocore.exceptions import UnknownServiceError

    with pytest.raises(UnknownServiceError):
        lean_loader([], ENDPOINT_SERVICES).load_service_model("no-such-service", "service-2")
