"""One AdmissionReview in, its answer out: allow (with a JSONPatch or without) or deny, and why.

Transport-free (``server`` does HTTPS), so tests and the bench call it directly. A malformed
envelope raises ``BadReview`` (the server answers 400); everything about the pod itself is an
AdmissionReview answer. Answers use the request's apiVersion (``admission.k8s.io/v1`` or
``v1beta1``; the two share these fields).

Decisions, in order: not a Pod (or a subresource) → deny; not CREATE → allow unchanged (denying an
UPDATE or DELETE could leave a pod undeletable); an excluded namespace → allow unchanged; already
``status: injected`` → allow unchanged; not selected or ``inject: false`` → allow unchanged;
otherwise compile the annotations and mutate, and any ``ConfigError`` denies with its message.

Logs name the namespace, the pod (or its generateName), its owner, the decision and the annotation
keys a denial names; never annotation values (references, templates).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from injector.errors import ConfigError
from injector.metrics import Counter, Histogram, Registry
from injector.webhook.annotations import Plan, compile_annotations
from injector.webhook.keys import INJECT_LABEL, INJECTED, PREFIX, STATUS
from injector.webhook.patch import Settings, json_patch, mutate

__all__ = ["API_VERSIONS", "DEFAULT_EXCLUDED", "Admission", "BadReview", "Outcome", "WebhookMetrics"]

logger = logging.getLogger(__name__)

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
DEFAULT_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")
#: Latency buckets (seconds): the budget is p99 < 20 ms.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class BadReview(ValueError):
    """The body is not an AdmissionReview this webhook can answer (HTTP 400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    allowed: bool
    #: injected | already-injected | excluded-namespace | not-selected | opted-out | operation,
    #: or for a denial: annotations | pod | not-a-pod | internal.
    reason: str
    patch: list[dict[str, Any]] | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookMetrics:
    requests: Counter
    injections: Counter
    denials: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: Registry) -> WebhookMetrics:
        return cls(
            requests=Counter(
                "injector_webhook_requests_total",
                "Admission reviews answered, by decision.",
                ("decision",),
                registry=registry,
            ),
            injections=Counter("injector_webhook_injections_total", "Pods injected.", registry=registry),
            denials=Counter(
                "injector_webhook_denials_total", "Pods denied, by reason.", ("reason",), registry=registry
            ),
            latency=Histogram(
                "injector_webhook_review_duration_seconds",
                "Time to answer one admission review (parsed body to answer).",
                buckets=_BUCKETS,
                registry=registry,
            ),
        )


class Admission:
    """Answers AdmissionReviews for pods.

    Args:
        settings: the image and cluster version every patch uses.
        defaults: pod-wide annotation defaults (the ``--defaults`` file).
        excluded: namespaces never injected (the system ones and the webhook's own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        defaults: Mapping[str, str] | None = None,
        excluded: Iterable[str] = DEFAULT_EXCLUDED,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.defaults = dict(defaults or {})
        self.excluded = frozenset(excluded)
        self.registry = registry or Registry()
        self.metrics = WebhookMetrics.create(self.registry)

    def handle(self, body: bytes) -> dict[str, Any]:
        """Parses ``body`` and returns the AdmissionReview answer.

        Raises:
            BadReview: not JSON, or not an AdmissionReview request.
        """
        try:
            review = json.loads(body)
        except (ValueError, RecursionError):
            raise BadReview("the body is not JSON") from None
        return self.answer(review)

    def answer(self, review: object) -> dict[str, Any]:
        """Returns the AdmissionReview answering ``review`` (already parsed JSON)."""
        start = time.perf_counter()
        api_version, request = _envelope(review)
        try:
            outcome, who = self.decide(request)
        except Exception:
            logger.exception("admission uid=%s: internal error; denying", request.get("uid"))
            outcome, who = (
                Outcome(allowed=False, reason="internal", message="internal error in the injector webhook"),
                "?",
            )
        response: dict[str, Any] = {"uid": request["uid"], "allowed": outcome.allowed}
        if outcome.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(outcome.patch, separators=(",", ":")).encode()).decode()
        if not outcome.allowed:
            response["status"] = {"code": 403, "reason": "Forbidden", "message": outcome.message}
        if outcome.warnings:
            response["warnings"] = list(outcome.warnings)
        elapsed = time.perf_counter() - start
        self._count(outcome, elapsed)
        named = sorted({line.split(": ", 1)[0] for line in outcome.message.splitlines()}) if not outcome.allowed else []
        logger.info(
            "admission %s decision=%s reason=%s%s duration_ms=%.1f",
            who,
            "allow" if outcome.allowed else "deny",
            outcome.reason,
            f" annotations={','.join(named)}" if named else "",
            elapsed * 1000,
        )
        return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}

    def _count(self, outcome: Outcome, elapsed: float) -> None:
        self.metrics.latency.observe(elapsed)
        decision = "inject" if outcome.reason == "injected" else "allow" if outcome.allowed else "deny"
        self.metrics.requests.labels(decision=decision).inc()
        if outcome.reason == "injected":
            self.metrics.injections.inc()
        if not outcome.allowed:
            self.metrics.denials.labels(reason=outcome.reason).inc()

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Admission per process, kept for its lifetime
    def _plan(self, annotations: tuple[tuple[str, str], ...]) -> Plan | str:
        """The plan of one set of annotations, or the denial message; cached.

        The replicas of one Deployment carry the same annotations: the config is parsed, validated
        and dumped once for them all, not once a pod.
        """
        try:
            return compile_annotations(dict(annotations), self.defaults)
        except ConfigError as exc:
            return str(exc)

    def decide(self, request: Mapping[str, Any]) -> tuple[Outcome, str]:
        """Returns the outcome and a log-safe description of the pod (namespace, name, owner)."""
        kind = request.get("kind") or {}
        pod = request.get("object")
        namespace = str(request.get("namespace") or "")
        who = _describe(namespace, request, pod)
        if (
            not isinstance(kind, dict)
            or (kind.get("group"), kind.get("kind")) != ("", "Pod")
            or request.get("subResource")
        ):
            return Outcome(allowed=False, reason="not-a-pod", message="the injector webhook only handles pods"), who
        if request.get("operation") != "CREATE":
            return Outcome(allowed=True, reason="operation"), who
        if not isinstance(pod, dict) or not isinstance(pod.get("spec"), dict):
            return Outcome(allowed=False, reason="pod", message="request.object is not a pod"), who
        if namespace in self.excluded:
            return Outcome(allowed=True, reason="excluded-namespace"), who
        metadata = pod.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        if not _strings(annotations) or not _strings(labels):
            return Outcome(
                allowed=False, reason="pod", message="metadata.annotations/labels must map strings to strings"
            ), who
        if annotations.get(STATUS) == INJECTED:
            return Outcome(allowed=True, reason="already-injected"), who
        ours = any(k.startswith(PREFIX) for k in annotations)
        if labels.get(INJECT_LABEL) != "true":
            if ours:
                message = f'{PREFIX}…: the pod has injector annotations but not the label {INJECT_LABEL}: "true"'
                return Outcome(allowed=False, reason="annotations", message=message), who
            return Outcome(allowed=True, reason="not-selected"), who
        opt = annotations.get(PREFIX + "inject", "true").strip().lower()
        if opt not in ("true", "false"):
            message = f"{PREFIX}inject: expected true or false, got {opt[:40]!r}"
            return Outcome(allowed=False, reason="annotations", message=message), who
        if opt == "false":
            return Outcome(allowed=True, reason="opted-out"), who
        keys = tuple(sorted((k, v) for k, v in annotations.items() if k.startswith(PREFIX)))
        return self._inject(keys, json.dumps(pod, sort_keys=True, separators=(",", ":"))), who

    @functools.lru_cache(maxsize=128)  # noqa: B019 - one Admission per process, kept for its lifetime
    def _inject(self, annotations: tuple[tuple[str, str], ...], pod_text: str) -> Outcome:
        """The outcome for one pod (as canonical JSON); cached.

        A ReplicaSet's new pods are identical at admission (no name yet, the same template): a
        scale-up of 100 replicas is one mutation and one diff, and 99 look-ups.
        """
        plan = self._plan(annotations)
        if isinstance(plan, str):
            return Outcome(allowed=False, reason="annotations", message=plan)
        pod = json.loads(pod_text)
        try:
            mutated, warnings = mutate(pod, plan, self.settings)
        except ConfigError as exc:
            return Outcome(allowed=False, reason="pod", message=str(exc))
        patch = json_patch(pod, mutated)
        return Outcome(allowed=True, reason="injected", patch=patch, warnings=(*plan.warnings, *warnings))


def _envelope(review: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(review, dict):
        raise BadReview("expected a JSON object (an AdmissionReview)")
    if review.get("kind") != "AdmissionReview":
        raise BadReview(f"expected kind AdmissionReview, got {str(review.get('kind'))[:60]!r}")
    api_version = review.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise BadReview(f"expected apiVersion {' or '.join(API_VERSIONS)}, got {str(api_version)[:60]!r}")
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        raise BadReview("the AdmissionReview has no request with a uid")
    return str(api_version), request


def _strings(mapping: object) -> bool:
    return isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


def _describe(namespace: str, request: Mapping[str, Any], pod: object) -> str:
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name = (
        metadata.get("name")
        or request.get("name")
        or (f"{metadata.get('generateName')}*" if metadata.get("generateName") else "?")
    )
    owners = metadata.get("ownerReferences")
    owner = "-"
    if isinstance(owners, list) and owners and isinstance(owners[0], dict):
        owner = f"{owners[0].get('kind')}/{owners[0].get('name')}"
    return f"uid={request.get('uid')} namespace={namespace or '-'} pod={name} owner={owner}"
