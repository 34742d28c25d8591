"""AdmissionReview decisions that are not about the patch: who is answered how, and what is counted."""

from __future__ import annotations

import copy

import pytest

from injector.webhook.admission import BadReview
from injector.webhook.keys import INJECT_LABEL, PREFIX
from tests.webhook.support import admission, deployment_pod, patch_of, review


def test_not_a_pod_is_denied() -> None:
    """A review for another resource (a misconfigured webhook) is denied, not passed through."""
    body = review(deployment_pod())
    body["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    answer = admission().answer(body)
    assert answer["response"]["allowed"] is False and "only handles pods" in answer["response"]["status"]["message"]


def test_update_and_delete_are_allowed_unchanged() -> None:
    """Only CREATE is mutated; an UPDATE is allowed with no patch (denying could leave pods undeletable)."""
    body = review(deployment_pod())
    body["request"]["operation"] = "UPDATE"
    answer = admission().answer(body)
    assert answer["response"]["allowed"] is True and patch_of(answer) == []


def test_unlabelled_pod_without_annotations_is_left_alone() -> None:
    """A pod the selector would not send (no label, no annotations) is allowed unchanged."""
    pod = deployment_pod({})
    del pod["metadata"]["labels"][INJECT_LABEL]
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is True and patch_of(answer) == []


def test_annotations_without_the_label_deny() -> None:
    """Injector annotations on a pod without the label would be silently ignored: denied instead."""
    pod = deployment_pod()
    del pod["metadata"]["labels"][INJECT_LABEL]
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is False and INJECT_LABEL in answer["response"]["status"]["message"]


@pytest.mark.parametrize(("value", "allowed"), [("false", True), ("False", True), ("maybe", False)])
def test_inject_annotation(value: str, allowed: bool) -> None:
    """inject: false opts a labelled pod out unchanged; anything but true/false denies."""
    pod = deployment_pod()
    pod["metadata"]["annotations"][PREFIX + "inject"] = value
    answer = admission().answer(review(pod))
    assert answer["response"]["allowed"] is allowed
    assert patch_of(answer) == []


def test_envelope_errors_raise_bad_review() -> None:
    """Not an AdmissionReview, no request or no uid: BadReview (the server answers 400)."""
    good = review(deployment_pod())
    for broken in ({**good, "kind": "Pod"}, {**good, "apiVersion": "admission.k8s.io/v2"}, {**good, "request": {}}):
        with pytest.raises(BadReview):
            admission().answer(broken)
    with pytest.raises(BadReview):
        admission().handle(b"\xff")


def test_identical_pods_get_the_same_patch_from_the_cache() -> None:
    """A second replica (same template, another uid) gets an equal patch and its own uid."""
    handler = admission()
    first = handler.answer(review(deployment_pod(), uid="a"))
    second = handler.answer(review(deployment_pod(), uid="b"))
    assert second["response"]["uid"] == "b"
    assert patch_of(first) == patch_of(second)


def test_a_pod_differing_only_in_spec_is_not_served_from_the_cache() -> None:
    """The outcome cache keys on the whole pod: a changed container gets its own patch."""
    handler = admission()
    first = handler.answer(review(deployment_pod()))
    pod = copy.deepcopy(deployment_pod())
    pod["spec"]["containers"].pop()
    second = handler.answer(review(pod))
    assert patch_of(first) != patch_of(second)


def test_internal_error_denies() -> None:
    """An unexpected exception while deciding denies the pod (fail closed) and counts as internal."""
    handler = admission()
    handler.settings = None  # type: ignore[assignment]  # makes mutate fail with AttributeError
    answer = handler.answer(review(deployment_pod()))
    assert answer["response"]["allowed"] is False
    assert handler.registry.get_sample_value("injector_webhook_denials_total", {"reason": "internal"}) == 1
