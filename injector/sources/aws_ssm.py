"""``aws-ssm:NAME`` and ``aws-ssm:/PATH/``: AWS Systems Manager Parameter Store.

* ``aws-ssm:NAME`` (a name or a bare ``arn:aws:ssm:…:parameter/NAME``): ``GetParameters(Names=[≤ 10],
  WithDecryption=True)``, the chunks concurrently. The value is the parameter's text as AWS returns
  it — a StringList stays the comma-joined string, a SecureString comes decrypted — and
  ``Fetched.version`` is its Version. Names in ``InvalidParameters`` become NotFoundError for their
  references only. ARNs are sent as they are (GetParameters accepts them, and they are required for
  parameters shared from another account); the answer is matched back by ARN, or by the name inside
  the ARN (``parameter/x`` → ``x``, ``parameter/app/x`` → ``/app/x``).
* ``aws-ssm:/PATH/``: ``GetParametersByPath(Recursive=True, WithDecryption=True, MaxResults=10)``,
  following NextToken. The value is a mapping keyed by the name relative to the path
  (``/app/prod/db/host`` under ``/app/prod/`` → ``db/host``); the version is a digest of the sorted
  (name, Version) pairs — never of values — so it changes when a parameter is added, removed or
  updated. A path with no parameters is a NotFoundError (most often a typo or the wrong region).

Calls for 100 parameters: 10 GetParameters; a path holding 25: 3 GetParametersByPath pages
(tests/sources/test_aws_ssm.py, ``TestCallCounts``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast

from injector.errors import NotFoundError, SourceError
from injector.refs import Reference, Secret
from injector.sources import Fetched
from injector.sources._aws import (
    AwsSource,
    as_records,
    build_client,
    chunked,
    relabel,
    run_concurrently,
)

if TYPE_CHECKING:
    from injector.config.model import Config

__all__ = ["BATCH_SIZE", "PAGE_SIZE", "SsmClient", "SsmSource", "build_ssm_source", "name_from_arn"]

logger = logging.getLogger(__name__)

#: GetParameters' limit on Names, and GetParametersByPath's on MaxResults.
BATCH_SIZE = 10
PAGE_SIZE = 10
#: 10,000 parameters: the standard tier's limit per region.
_MAX_PAGES = 1000

_Results = dict[Reference, Fetched | SourceError]


class SsmClient(Protocol):
    """The part of a boto3 ``ssm`` client this source calls."""

    def get_parameters(self, **kwargs: object) -> Mapping[str, object]: ...

    def get_parameters_by_path(self, **kwargs: object) -> Mapping[str, object]: ...

    def close(self) -> None: ...


class SsmSource(AwsSource[SsmClient]):
    """Fetches ``aws-ssm:`` references: names 10 to a call, paths page by page, all in parallel."""

    scheme = "aws-ssm"
    service = "SSM Parameter Store"

    def describe(self, ref: Reference) -> str:
        """Returns ``aws.ssm(NAME)`` or ``aws.ssm(/PATH/)``."""
        return f"aws.ssm({ref.path})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        """Fetches ``refs`` with ceil(names/10) GetParameters calls plus the pages of each path."""
        by_name: dict[str, list[Reference]] = {}
        paths: list[Reference] = []
        for ref in dict.fromkeys(refs):
            if ref.by_path:
                paths.append(ref)
            else:
                by_name.setdefault(ref.path, []).append(ref)
        chunks = chunked(list(by_name), BATCH_SIZE)
        tasks: list[Callable[[], _Results]] = [partial(self._get_parameters, chunk, by_name) for chunk in chunks]
        tasks += [partial(self._by_path, ref) for ref in paths]
        out: _Results = {}
        for results in run_concurrently(tasks, self._max_concurrency):
            out.update(results)
        logger.debug("aws.ssm: %d references, %d GetParameters chunks, %d paths", len(out), len(chunks), len(paths))
        return out

    def _get_parameters(self, names: Sequence[str], refs_by_name: Mapping[str, list[Reference]]) -> _Results:
        try:
            with self._ctx.errors():
                response = self.client.get_parameters(Names=list(names), WithDecryption=True)
        except SourceError as exc:
            return {ref: relabel(exc, ref) for name in names for ref in refs_by_name[name]}
        found: dict[str, Mapping[str, object]] = {}
        for record in as_records(response.get("Parameters")):
            for key in (record.get("Name"), record.get("ARN")):
                if isinstance(key, str):
                    found[key] = record
        invalid = {str(name) for name in _strings(response.get("InvalidParameters"))}
        out: _Results = {}
        for name in names:
            parameter = found.get(name) or (found.get(name_from_arn(name)) if name.startswith("arn:") else None)
            for ref in refs_by_name[name]:
                if parameter is not None:
                    out[ref] = self._fetched(ref, parameter)
                elif name in invalid:
                    out[ref] = self._not_found(ref, f"parameter {name} not found")
                else:
                    out[ref] = SourceError(f"{ref}: {name} is missing from the GetParameters answer", ref=str(ref))
        return out

    def _by_path(self, ref: Reference) -> _Results:
        prefix = ref.path.rstrip("/") + "/"
        kwargs: dict[str, object] = {
            "Path": prefix.rstrip("/") or "/",
            "Recursive": True,
            "WithDecryption": True,
            "MaxResults": PAGE_SIZE,
        }
        values: dict[str, str] = {}
        versions: list[tuple[str, str]] = []
        try:
            for _ in range(_MAX_PAGES):
                with self._ctx.errors(str(ref)):
                    response = self.client.get_parameters_by_path(**kwargs)
                for parameter in as_records(response.get("Parameters")):
                    name, value = parameter.get("Name"), parameter.get("Value")
                    if isinstance(name, str) and name.startswith(prefix) and isinstance(value, str):
                        values[name[len(prefix) :]] = value
                        versions.append((name, str(parameter.get("Version"))))
                token = response.get("NextToken")
                if not isinstance(token, str) or not token:
                    break
                kwargs["NextToken"] = token
            else:
                return {ref: SourceError(f"{ref}: more than {_MAX_PAGES} pages under {prefix}", ref=str(ref))}
        except SourceError as exc:
            return {ref: exc}
        if not values:
            return {ref: self._not_found(ref, f"no parameters under {prefix}")}
        size = sum(len(v.encode("utf-8")) for v in values.values())
        if size > self._max_bytes:
            return {ref: self._too_large(ref, size, f"the {len(values)} parameters under {prefix} total")}
        try:
            self._limits.check(str(ref), values, ref=str(ref))
        except SourceError as exc:
            return {ref: exc}
        digest = hashlib.sha256("\n".join(f"{n}\t{v}" for n, v in sorted(versions)).encode("utf-8"))
        return {ref: Fetched(value=Secret(values), version=digest.hexdigest()[:16])}

    def _fetched(self, ref: Reference, parameter: Mapping[str, object]) -> Fetched | SourceError:
        value, version = parameter.get("Value"), parameter.get("Version")
        if not isinstance(value, str):
            return SourceError(f"{ref}: the parameter has no Value in the answer", ref=str(ref))
        size = len(value.encode("utf-8"))
        if size > self._max_bytes:
            return self._too_large(ref, size, "the parameter is")
        try:
            # Before anything parses it: #KEY selection and the redactor read a JSON value.
            self._limits.check_text(str(ref), value, ref=str(ref))
        except SourceError as exc:
            return exc
        return Fetched(value=Secret(value), version=None if version is None else str(version))

    def _not_found(self, ref: Reference, what: str) -> NotFoundError:
        return NotFoundError(
            f"{ref}: {what} in {self._ctx.service} in {self._ctx.region or 'the default region'}; check the "
            "name (case-sensitive; hierarchies start with /) and aws.region",
            ref=str(ref),
        )

    def _too_large(self, ref: Reference, size: int, what: str) -> SourceError:
        return SourceError(
            f"{ref}: {what} {size} bytes, over limits.max_secret_bytes ({self._max_bytes}); "
            "raise limits.max_secret_bytes if a value this large is expected",
            ref=str(ref),
        )


def name_from_arn(arn: str) -> str:
    """Returns the parameter name in ``arn:aws:ssm:REGION:ACCOUNT:parameter/NAME``.

    A hierarchical name keeps its leading slash (``parameter/app/x`` → ``/app/x``); a flat one has
    none (``parameter/x`` → ``x``): AWS requires names containing ``/`` to start with one.
    """
    _, _, name = arn.partition(":parameter/")
    return "/" + name if "/" in name else name


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def build_ssm_source(config: Config) -> SsmSource:
    """Builds the source from ``config.aws`` (region, endpoint, retries) and ``config.limits``."""
    client, credentials = build_client("ssm", config, SsmClient)
    return SsmSource(
        client=cast(SsmClient, client),
        max_concurrency=config.limits.max_concurrency,
        max_secret_bytes=config.limits.max_secret_bytes,
        max_depth=config.limits.max_depth,
        credentials=credentials,
    )
