"""Reads of objects that are not ours, served from watched copies (issue 24): the "claim missing?" check (a claim the
copy shows costs no request, a miss is asked about, and without a listed copy every claim is) and a Job's FailedCreate
Events."""

from __future__ import annotations

from typing import Any

import pytest
from yolo_operator.k8s.workloads import newest_message
from yolo_operator.lifecycle.stalled import claims_to_confirm
from yolo_operator.runtime.cache import (
    FAILED_CREATE,
    FAILED_MOUNT,
    ClusterCache,
    missing_claims,
    trim_claim,
    trim_event,
)

pytestmark = pytest.mark.unit


def test_without_a_listed_copy_every_claim_is_asked_about() -> None:
    assert claims_to_confirm(["data", "out"], None) == ["data", "out"]


def test_claims_the_copy_shows_are_not_asked_about() -> None:
    assert claims_to_confirm(["data", "out"], {"data"}) == ["out"]
    assert claims_to_confirm(["data", "out"], {"data", "out"}) == []
    assert claims_to_confirm([], set()) == []


class StubKube:
    """Answers GETs of claims from `existing`, counting them."""

    def __init__(self, existing: set[tuple[str, str]]) -> None:
        self.existing = existing
        self.gets: list[tuple[str, str]] = []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert (api_version, kind) == ("v1", "PersistentVolumeClaim")
        self.gets.append((namespace or "", name))
        return {"metadata": {"name": name}} if (namespace or "", name) in self.existing else None


def claim(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "7", "managedFields": [{}], "labels": {}},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    }


def test_trimmed_to_its_identity() -> None:
    assert trim_claim(claim("ns", "data")) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns", "resourceVersion": "7"},
    }


def cache_with(kube: StubKube, namespaces: list[str], claims: list[dict[str, Any]], synced: bool) -> ClusterCache:
    cache = ClusterCache(kube, namespaces)  # type: ignore[arg-type]
    for informer in cache.claims:
        for obj in claims:
            if informer.namespace in (None, obj["metadata"]["namespace"]):
                informer.remember(obj)
        if synced:
            informer.synced.set()
    return cache


def test_a_claim_in_the_copy_costs_no_request() -> None:
    kube = StubKube({("ns", "data")})
    cache = cache_with(kube, [], [claim("ns", "data")], synced=True)
    assert missing_claims(kube, cache, "ns", ["data", "data"]) == []  # type: ignore[arg-type]
    assert kube.gets == []


def test_a_miss_is_confirmed_by_the_server() -> None:
    """Created a moment ago (not in the copy yet) reads as present; really absent reads as missing."""
    kube = StubKube({("ns", "new")})
    cache = cache_with(kube, [], [claim("ns", "data")], synced=True)
    assert missing_claims(kube, cache, "ns", ["data", "new", "gone"]) == ["gone"]  # type: ignore[arg-type]
    assert kube.gets == [("ns", "new"), ("ns", "gone")]


def test_before_the_first_list_the_copy_vouches_for_nothing() -> None:
    kube = StubKube({("ns", "data")})
    cache = cache_with(kube, [], [claim("ns", "data")], synced=False)
    assert cache.claims_seen("ns", ["data"]) is None
    assert missing_claims(kube, cache, "ns", ["data", "gone"]) == ["gone"]  # type: ignore[arg-type]
    assert kube.gets == [("ns", "data"), ("ns", "gone")]


def test_per_namespace_copies() -> None:
    kube = StubKube(set())
    cache = cache_with(kube, ["a", "b"], [claim("a", "data")], synced=True)
    assert cache.claims_seen("a", ["data"]) == {"data"}
    assert cache.claims_seen("b", ["data"]) == set()
    assert cache.claims_seen("elsewhere", ["data"]) is None  # not watched: no copy can say it is absent


def test_without_a_cache_every_claim_is_asked_about() -> None:
    kube = StubKube({("ns", "data")})
    assert missing_claims(kube, None, "ns", ["data", "gone"]) == ["gone"]  # type: ignore[arg-type]
    assert kube.gets == [("ns", "data"), ("ns", "gone")]


def failed_create(ns: str, job_uid: str, message: str, at: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"e-{at}", "namespace": ns, "resourceVersion": "3", "managedFields": [{}]},
        "involvedObject": {"kind": "Job", "name": "j-train", "uid": job_uid, "namespace": ns},
        "reason": "FailedCreate",
        "message": message,
        "lastTimestamp": at,
        "source": {"component": "job-controller"},
    }


def test_a_jobs_refusals_come_from_the_watched_copy() -> None:
    """The FailedCreate Events of a Job, by its uid; trimmed to what newest_message reads."""
    cache = ClusterCache(StubKube(set()), [])  # type: ignore[arg-type]
    (informer,) = cache.refusals
    assert informer.fields == FAILED_CREATE
    assert cache.refusals_of("ns", "u1") is None  # not listed yet: the caller asks the server
    informer.remember(failed_create("ns", "u1", "exceeded quota", "2026-12-02T10:00:00Z"))
    informer.remember(failed_create("ns", "u1", "still exceeded", "2026-12-02T10:00:05Z"))
    informer.synced.set()
    assert cache.refusals_of("ns", "u2") == []
    events = cache.refusals_of("ns", "u1")
    assert events is not None
    assert newest_message(events) == "still exceeded"
    assert events[0] == trim_event(failed_create("ns", "u1", "exceeded quota", "2026-12-02T10:00:00Z"))
    assert "source" not in events[0] and "managedFields" not in events[0]["metadata"]


def test_a_pods_mount_failures_come_from_the_watched_copy() -> None:
    """The kubelet's FailedMount Events of the given pods, by pod uid; none before the copy has listed."""
    cache = ClusterCache(StubKube(set()), [])  # type: ignore[arg-type]
    (informer,) = cache.mount_failures
    assert informer.fields == FAILED_MOUNT
    pod = {"metadata": {"name": "p", "uid": "p1"}}
    event = failed_create("ns", "p1", 'secret "k" not found', "2026-12-05T01:00:00Z")
    informer.remember({**event, "involvedObject": {**event["involvedObject"], "kind": "Pod"}, "reason": "FailedMount"})
    assert cache.mount_failures_of("ns", [pod]) == []  # not listed yet
    informer.synced.set()
    assert newest_message(cache.mount_failures_of("ns", [pod])) == 'secret "k" not found'
    assert cache.mount_failures_of("ns", [{"metadata": {"uid": "other"}}]) == []
    # What the controllers read: the newest message of the pods still Pending (a running pod's is stale).
    assert cache.newest_mount_failure("ns", [{**pod, "status": {"phase": "Pending"}}]) == 'secret "k" not found'
    assert cache.newest_mount_failure("ns", [{**pod, "status": {"phase": "Running"}}]) is None
