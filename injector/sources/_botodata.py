"""botocore's data files, loaded lean: a session keeps what the injector's clients use, and the rest
of a file is never held in memory at once.

botocore parses each data file whole, into ``OrderedDict`` objects, and a session keeps the result
for its whole life. ``endpoints.json`` (1.2 MB) describes up to 305 services in each of its 8
partitions; SSM's model (0.9 MB) describes 154 operations, of which the SSM source calls two.
CPython does not give back the memory of a large parse once it is freed (the pools it touched stay
resident), so trimming after parsing saves little. This loader trims *while* it parses:

* Every file is parsed into plain dicts, which keep their order too, in about half the memory and
  half the time.
* ``endpoints.json``: in each partition, only the services named when the loader is made (the
  injector's and those its credential providers call) are kept. The file is walked one member at
  a time: the entry of any other service is parsed and dropped at once.
* A service model (``<service>/<version>/service-2``) whose calls were declared with
  ``keep_calls``: only those operations, and the shapes they reach. Every shape is parsed once,
  one at a time, to find what it refers to; only those reached are parsed again and kept.

Listing the services (botocore checks a client's service against it) reads the data folders'
names only; botocore opens each of ~450 service folders to look for the file type asked for,
~11 ms for each of the two types a client needs.

A file whose layout is not what this walk expects is parsed whole, as botocore would, and kept
whole: correct, only not lean. Measured on idle sidecars of 100 values and on the 1,000-value
sidecar: bench/README.md, "What was taken off".
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

__all__ = ["LeanFiles", "lean_loader", "walk_endpoints", "walk_service_model"]

logger = logging.getLogger(__name__)

_OPENERS: Mapping[str, Callable[..., Any]] = {".json": open, ".json.gz": gzip.open}
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

#: ``member(key, at)`` parses the value at ``text[at]``: (the value or ``_DROP``, the end offset).
Member = Callable[[str, int], tuple[Any, int]]
_DROP = object()


def lean_loader(extra_search_paths: list[str], services: Collection[str]) -> Any:
    """botocore's ``Loader`` over ``LeanFiles(services)``, listing services by folder name."""
    from botocore.loaders import Loader, instance_cache

    class LeanLoader(Loader):  # type: ignore[misc]  # botocore is untyped
        @instance_cache  # type: ignore[untyped-decorator]
        def list_available_services(self, type_name: str) -> list[str]:
            """Every service folder on the search paths, for every ``type_name``: a folder without
            such a file fails when it is loaded (DataNotFoundError) instead of here."""
            names: set[str] = set()
            for path in self.search_paths:
                if os.path.isdir(path):
                    names.update(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
            return sorted(names)

    return LeanLoader(extra_search_paths=extra_search_paths, file_loader=LeanFiles(services))


class LeanFiles:
    """botocore's file loader interface (``exists``, ``load_file``), trimming as described above.

    Given to ``botocore.loaders.Loader(file_loader=…)``; ``keep_calls`` must come before the
    service's model is first loaded (botocore's loader caches what it loaded)."""

    def __init__(self, services: Collection[str]) -> None:
        self._services = frozenset(services)
        self._calls: dict[str, frozenset[str]] = {}

    def keep_calls(self, service: str, calls: Iterable[str]) -> None:
        """Keeps only the operations of ``service`` whose client method (``get_parameters``) is in ``calls``."""
        self._calls[service] = frozenset(calls)

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext in _OPENERS)

    def load_file(self, file_path: str) -> Any:
        for ext, opener in _OPENERS.items():
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as fp:
                    text = fp.read().decode("utf-8")
                return self._parse(file_path, text)
        return None

    def _parse(self, file_path: str, text: str) -> Any:
        parts = file_path.split(os.sep)
        if parts[-1] == "endpoints":
            return _walked(file_path, text, lambda: walk_endpoints(text, self._services))
        calls = self._calls.get(parts[-3]) if len(parts) >= 3 and parts[-1] == "service-2" else None
        if calls is not None:
            return _walked(file_path, text, lambda: walk_service_model(text, calls))
        return json.loads(text)


def _walked(file_path: str, text: str, walk: Callable[[], dict[str, Any]]) -> Any:
    try:
        return walk()
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        logger.debug("%s: %s; parsing it whole", file_path, exc)
        return json.loads(text)


def walk_endpoints(text: str, services: Collection[str]) -> dict[str, Any]:
    """``endpoints.json`` with each partition's ``services`` cut down to ``services``."""

    def service(name: str, at: int) -> tuple[Any, int]:
        return _value(text, at) if name in services else _skip(text, at)

    def partition_member(key: str, at: int) -> tuple[Any, int]:
        return _object(text, at, service) if key == "services" else _value(text, at)

    def top(key: str, at: int) -> tuple[Any, int]:
        if key == "partitions":
            return _array(text, at, lambda item_at: _object(text, item_at, partition_member))
        return _value(text, at)

    data, end = _object(text, 0, top)
    _end(text, end)
    return data


def walk_service_model(text: str, calls: Collection[str]) -> dict[str, Any]:
    """A service model (``service-2.json``) with only the operations whose client method is in
    ``calls``, the shapes they reach, and no top-level documentation."""
    from botocore import xform_name

    shape_at: dict[str, int] = {}
    refers: dict[str, tuple[str, ...]] = {}

    def operation(name: str, at: int) -> tuple[Any, int]:
        return _value(text, at) if xform_name(name) in calls else _skip(text, at)

    def shape(name: str, at: int) -> tuple[Any, int]:
        value, end = _value(text, at)
        shape_at[name] = at
        refers[name] = tuple(_shape_refs(value))
        return _DROP, end

    def top(key: str, at: int) -> tuple[Any, int]:
        if key == "operations":
            return _object(text, at, operation)
        if key == "shapes":
            return _object(text, at, shape)
        if key == "documentation":
            return _skip(text, at)
        return _value(text, at)

    model, end = _object(text, 0, top)
    _end(text, end)
    wanted: set[str] = set()
    pending = [ref for op in model["operations"].values() for ref in _operation_refs(op)]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(refers[name])
    model["shapes"] = {name: _value(text, at)[0] for name, at in shape_at.items() if name in wanted}
    return model


def _operation_refs(operation: Mapping[str, Any]) -> Iterable[str]:
    for key in ("input", "output"):
        if key in operation:
            yield operation[key]["shape"]
    for error in operation.get("errors", ()):
        yield error["shape"]


def _shape_refs(shape: Mapping[str, Any]) -> Iterable[str]:
    for key in ("member", "key", "value"):
        if key in shape:
            yield shape[key]["shape"]
    for member in shape.get("members", {}).values():
        yield member["shape"]


# --- a JSON object, one member at a time -----------------------------------------------------------


_value: Callable[[str, int], tuple[Any, int]] = _DECODER.raw_decode


def _skip(text: str, at: int) -> tuple[Any, int]:
    return _DROP, _value(text, at)[1]


def _space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def _expect(text: str, at: int, char: str) -> int:
    if text[at : at + 1] != char:
        raise ValueError(f"expected {char!r} at offset {at}")
    return _space(text, at + 1)


def _end(text: str, at: int) -> None:
    if _space(text, at) != len(text):
        raise ValueError(f"extra data at offset {at}")


def _object(text: str, at: int, member: Member) -> tuple[dict[str, Any], int]:
    """The JSON object at ``text[at]``, each value parsed (or dropped) by ``member``."""
    result: dict[str, Any] = {}
    at = _expect(text, _space(text, at), "{")
    if text[at : at + 1] == "}":
        return result, at + 1
    while True:
        key, at = _value(text, at)
        if not isinstance(key, str):
            raise ValueError(f"expected a key at offset {at}")
        at = _expect(text, _space(text, at), ":")
        value, at = member(key, at)
        if value is not _DROP:
            result[key] = value
        at = _space(text, at)
        if text[at : at + 1] == "}":
            return result, at + 1
        at = _expect(text, at, ",")


def _array(text: str, at: int, item: Callable[[int], tuple[Any, int]]) -> tuple[list[Any], int]:
    """The JSON array at ``text[at]``, each item parsed by ``item``."""
    result: list[Any] = []
    at = _expect(text, _space(text, at), "[")
    if text[at : at + 1] == "]":
        return result, at + 1
    while True:
        value, at = item(at)
        result.append(value)
        at = _space(text, at)
        if text[at : at + 1] == "]":
            return result, at + 1
        at = _expect(text, at, ",")
