"""``aws-sm:NAME_OR_ARN[#KEY][?stage=S | ?version_id=V]``: AWS Secrets Manager.

A fetch returns, per base reference, ``Secret(SecretString)`` (plain or JSON text; ``#KEY`` is
selected by the caller through ``Secret.select``) or ``Secret(SecretBinary)`` as bytes, with
``Fetched.version`` = the VersionId. The caller compares versions to see a change.

How references are fetched:

1. References to the current version (no ``stage``, or ``stage=AWSCURRENT``) are deduplicated by
   secret id and fetched with ``BatchGetSecretValue(SecretIdList=[≤ 20])``, the chunks concurrently
   (at most ``limits.max_concurrency`` at once). Per-secret failures come back in the response's
   ``Errors`` list and become that reference's error; the others in the batch still succeed.
2. References with ``version_id`` or another ``stage`` (AWSPREVIOUS, AWSPENDING, custom labels)
   cannot be batched — BatchGetSecretValue returns the current version only — so each gets one
   ``GetSecretValue(VersionId=… | VersionStage=…)``, concurrently with the batches.
3. A batch entry that does not carry the AWSCURRENT label, or that cannot be matched to a requested
   id, is re-read with ``GetSecretValue(VersionStage=AWSCURRENT)``. AWS answers with the AWSCURRENT
   version, so this costs nothing there; moto 5.2.5 (and emulators built on it) keeps answering the
   old version to BatchGetSecretValue after ``UpdateSecretVersionStage`` moves AWSCURRENT, and this
   turns that into the right value instead of a silently missed rotation.
4. If BatchGetSecretValue itself is denied (it needs its own ``secretsmanager:BatchGetSecretValue``
   permission, which policies granting only GetSecretValue / DescribeSecret lack), the source logs
   one WARNING and uses ``GetSecretValue(VersionStage=AWSCURRENT)`` per secret from then on.

Change detection, decided by counting calls (tests/sources/test_aws_secretsmanager.py,
``TestCallCounts``: botocore ``before-call`` hooks on the very clients in use, against moto server,
100 secrets, a refresh with nothing changed, then a refresh after 3 secrets changed):

=======================================================  =========  ==========  ===========  =====
strategy                                                 first      unchanged   3 changed    total
=======================================================  =========  ==========  ===========  =====
this source: BatchGetSecretValue every cycle              5 Batch    5 Batch     5 Batch         15
CSI provider / caching libs: DescribeSecret, then        100 Get    100 Desc.   100 Desc.      303
GetSecretValue(VersionId) when AWSCURRENT moved                                 + 3 Get
=======================================================  =========  ==========  ===========  =====

BatchGetSecretValue returns the VersionId with the value, so one call per 20 secrets both detects
a change and delivers it: ``ceil(n/20)`` calls per cycle whatever changed, against ``n`` calls plus
one per change for DescribeSecret polling — 20x fewer requests at n = 100, and a change never costs
a second round trip. What Describe-first would buy is not re-transferring unchanged values
(at most 64 KiB each) and a larger quota: BatchGetSecretValue is limited to 100 TPS per account
(reference/anchors-aws-and-reloaders.md §C), i.e. ~6,000 pods x 100 secrets at the default 5 min
interval, against ~30,000 pods for DescribeSecret polling within its 10,000 TPS. CloudTrail logs
one GetSecretValue event per secret in a batch; whether billing ($0.05 per 10,000 calls) counts a
batch as one call or as one per secret is not documented where we could read it — at worst a batch
costs what 20 GetSecretValue calls cost, and DescribeSecret polling is n billed calls per cycle.
Pinned ``version_id`` references never change (VersionIds are immutable); the scheduler may refresh
them rarely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast

from injector.errors import AccessDeniedError, SourceError
from injector.refs import Reference, Secret
from injector.sources import Fetched
from injector.sources._aws import (
    AwsSource,
    as_records,
    build_client,
    chunked,
    map_error_code,
    relabel,
    run_concurrently,
)

if TYPE_CHECKING:
    from injector.config.model import Config

__all__ = ["BATCH_SIZE", "SecretsManagerClient", "SecretsManagerSource", "build_secretsmanager_source"]

logger = logging.getLogger(__name__)

#: BatchGetSecretValue's limit on SecretIdList.
BATCH_SIZE = 20
CURRENT = "AWSCURRENT"
_MAX_PAGES = 50

_Results = dict[Reference, Fetched | SourceError]
#: A task's results, and the secret ids to re-read with GetSecretValue(VersionStage=AWSCURRENT).
_Outcome = tuple[_Results, list[str]]


class SecretsManagerClient(Protocol):
    """The part of a boto3 ``secretsmanager`` client this source calls."""

    def batch_get_secret_value(self, **kwargs: object) -> Mapping[str, object]: ...

    def get_secret_value(self, **kwargs: object) -> Mapping[str, object]: ...

    def close(self) -> None: ...


class SecretsManagerSource(AwsSource[SecretsManagerClient]):
    """Fetches ``aws-sm:`` references, batched 20 to a call, chunks in parallel."""

    scheme = "aws-sm"
    service = "Secrets Manager"
    #: Set (under ``_lock``) once BatchGetSecretValue is refused: single reads from then on.
    _batch_denied = False

    def describe(self, ref: Reference) -> str:
        """Returns ``aws.sm(NAME)``, with ``?stage=`` / ``?version_id=`` when not the current version."""
        version_id, stage = ref.param("version_id"), ref.param("stage")
        if version_id is not None:
            return f"aws.sm({ref.path}?version_id={version_id})"
        if stage is not None and stage != CURRENT:
            return f"aws.sm({ref.path}?stage={stage})"
        return f"aws.sm({ref.path})"

    def fetch(self, refs: Sequence[Reference]) -> Mapping[Reference, Fetched | SourceError]:
        """Fetches ``refs`` with ceil(current/20) batch calls plus one call per pinned reference."""
        current: dict[str, list[Reference]] = {}
        pinned: list[Reference] = []
        for ref in dict.fromkeys(refs):
            if ref.param("version_id") is None and ref.param("stage") in (None, CURRENT):
                current.setdefault(ref.path, []).append(ref)
            else:
                pinned.append(ref)
        ids = list(current)
        batches = [] if self._batch_denied else chunked(ids, BATCH_SIZE)
        tasks: list[Callable[[], _Outcome]] = [partial(self._batch, chunk, current) for chunk in batches]
        tasks += [partial(self._get, ref.path, [ref], _selector(ref)) for ref in pinned]
        out: _Results = {}
        reread: list[str] = [] if batches else ids
        for results, again in run_concurrently(tasks, self._max_concurrency):
            out.update(results)
            reread += again
        if reread:
            selector = {"VersionStage": CURRENT}
            tasks = [partial(self._get, sid, current[sid], selector) for sid in reread]
            for results, _ in run_concurrently(tasks, self._max_concurrency):
                out.update(results)
        logger.debug(
            "aws.sm: %d references, %d BatchGetSecretValue chunks, %d GetSecretValue",
            len(out),
            len(batches),
            len(pinned) + len(reread),
        )
        return out

    # --- one task each ---------------------------------------------------------------------------

    def _batch(self, ids: Sequence[str], refs_by_id: Mapping[str, list[Reference]]) -> _Outcome:
        try:
            entries, errors = self._batch_call(ids)
        except AccessDeniedError as exc:
            self._fall_back(exc)
            return {}, list(ids)
        except SourceError as exc:
            return {ref: relabel(exc, ref) for sid in ids for ref in refs_by_id[sid]}, []
        out: _Results = {}
        pending = dict.fromkeys(ids)
        for entry in entries:
            sid = _match(entry, pending)
            if sid is None:
                continue
            stages = entry.get("VersionStages")
            if isinstance(stages, list) and CURRENT not in stages:
                logger.debug("aws.sm(%s): batch answered a version without %s; re-reading it", sid, CURRENT)
                continue
            del pending[sid]
            for ref in refs_by_id[sid]:
                out[ref] = self._fetched(ref, entry)
        for error in errors:
            sid = str(error.get("SecretId") or "")
            if sid not in pending:
                continue
            del pending[sid]
            code, message = str(error.get("ErrorCode") or "UnknownError"), str(error.get("Message") or "")
            for ref in refs_by_id[sid]:
                out[ref] = map_error_code(code, message, self._ctx, label=str(ref))
        return out, list(pending)

    def _batch_call(self, ids: Sequence[str]) -> tuple[list[Mapping[str, object]], list[Mapping[str, object]]]:
        entries: list[Mapping[str, object]] = []
        errors: list[Mapping[str, object]] = []
        kwargs: dict[str, object] = {"SecretIdList": list(ids)}
        for _ in range(_MAX_PAGES):
            with self._ctx.errors():
                response = self.client.batch_get_secret_value(**kwargs)
            entries += as_records(response.get("SecretValues"))
            errors += as_records(response.get("Errors"))
            token = response.get("NextToken")
            if not isinstance(token, str) or not token:
                break
            kwargs["NextToken"] = token
        return entries, errors

    def _get(self, secret_id: str, refs: Sequence[Reference], selector: Mapping[str, str]) -> _Outcome:
        try:
            with self._ctx.errors():
                entry = self.client.get_secret_value(SecretId=secret_id, **selector)
        except SourceError as exc:
            return {ref: relabel(exc, ref) for ref in refs}, []
        return {ref: self._fetched(ref, entry) for ref in refs}, []

    def _fall_back(self, exc: AccessDeniedError) -> None:
        with self._lock:
            if self._batch_denied:
                return
            self._batch_denied = True
        logger.warning(
            "aws.sm: BatchGetSecretValue was denied (%s); using one GetSecretValue per secret from now on. "
            "Grant secretsmanager:BatchGetSecretValue on * to fetch 20 secrets per call",
            exc,
        )

    def _fetched(self, ref: Reference, entry: Mapping[str, object]) -> Fetched | SourceError:
        version = entry.get("VersionId")
        text, blob = entry.get("SecretString"), entry.get("SecretBinary")
        value: str | bytes
        if isinstance(text, str):
            value, size = text, len(text.encode("utf-8"))
        elif isinstance(blob, bytes | bytearray):
            value, size = bytes(blob), len(blob)
        else:
            return SourceError(
                f"{ref}: version {version} of the secret has neither SecretString nor SecretBinary", ref=str(ref)
            )
        if size > self._max_bytes:
            return SourceError(
                f"{ref}: the secret is {size} bytes, over limits.max_secret_bytes ({self._max_bytes}); "
                "raise limits.max_secret_bytes if a value this large is expected",
                ref=str(ref),
            )
        try:
            # Before anything parses it: #KEY selection and the redactor read a JSON SecretString.
            self._limits.check_text(str(ref), value, ref=str(ref))
        except SourceError as exc:
            return exc
        return Fetched(value=Secret(value), version=str(version) if version else None)


def _selector(ref: Reference) -> dict[str, str]:
    version_id = ref.param("version_id")
    if version_id is not None:
        return {"VersionId": version_id}
    return {"VersionStage": ref.param("stage") or CURRENT}


def _match(entry: Mapping[str, object], pending: Mapping[str, None]) -> str | None:
    """Returns the requested id ``entry`` answers: its name, its ARN, or a partial ARN of it."""
    name, arn = entry.get("Name"), entry.get("ARN")
    for candidate in (name, arn):
        if isinstance(candidate, str) and candidate in pending:
            return candidate
    if isinstance(arn, str):
        # A partial ARN omits the "-" and six random characters Secrets Manager appends.
        for sid in pending:
            if sid.startswith("arn:") and arn.startswith(sid + "-") and len(arn) == len(sid) + 7:
                return sid
    return None


def build_secretsmanager_source(config: Config) -> SecretsManagerSource:
    """Builds the source from ``config.aws`` (region, endpoint, retries) and ``config.limits``."""
    client, credentials = build_client("secretsmanager", config, SecretsManagerClient)
    return SecretsManagerSource(
        client=cast(SecretsManagerClient, client),
        max_concurrency=config.limits.max_concurrency,
        max_secret_bytes=config.limits.max_secret_bytes,
        max_depth=config.limits.max_depth,
        credentials=credentials,
    )
