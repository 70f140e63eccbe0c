"""The watch-fed cache on the real API server: server-side label selection, add/modify/delete reaching the copy and
the hook, the secondary index, a relist after a pause reporting what changed meanwhile, and a write we remember
not undone by an older event. (A 410 Gone cannot be provoked on demand here: tests/unit/test_informer_gone.py.)"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from yolo_operator.k8s.client import Kube, Ref
from yolo_operator.runtime.cache import by_instance
from yolo_operator.runtime.informer import Informer

from .harness import Cluster, wait_until

pytestmark = pytest.mark.cluster

LABELS = {"app.kubernetes.io/managed-by": "yolo-operator"}


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    k = Kube.connect(str(cluster.kubeconfig))
    yield k
    k.close()


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    return cluster.create_namespace(f"informer-{uuid.uuid4().hex[:6]}")


def config_map(ns: str, name: str, instance: str, data: str, labelled: bool = True) -> dict[str, Any]:
    labels = {**LABELS, "app.kubernetes.io/instance": instance} if labelled else {"other": "x"}
    meta = {"name": name, "namespace": ns, "labels": labels}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": data}}


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((kind, obj["metadata"]["name"]))

    def has(self, kind: str, name: str) -> bool:
        with self.lock:
            return (kind, name) in self.events


def test_copies_follow_the_server_and_hooks_hear_every_change(kube: Kube, namespace: str) -> None:
    kube.apply(config_map(namespace, "before", "job-a", "1"))
    seen = Seen()
    informer = Informer(kube, "v1", "ConfigMap", namespace, LABELS, on_change=seen, index=by_instance).start()
    try:
        assert informer.synced.wait(30)
        assert informer.get(namespace, "before") is not None  # from the LIST
        assert "managedFields" not in informer.get(namespace, "before")["metadata"]  # type: ignore[index]

        kube.apply(config_map(namespace, "added", "job-a", "1"))
        kube.apply(config_map(namespace, "unlabelled", "job-a", "1", labelled=False))
        wait_until(lambda: informer.get(namespace, "added"), 30, "the added ConfigMap in the copy")
        assert {o["metadata"]["name"] for o in informer.indexed((namespace, "job-a"))} == {"before", "added"}

        kube.apply(config_map(namespace, "added", "job-a", "2"))
        wait_until(lambda: (informer.get(namespace, "added") or {}).get("data") == {"k": "2"}, 30, "the change")
        assert seen.has("MODIFIED", "added")

        kube.delete(Ref("v1", "ConfigMap", "added", namespace))
        wait_until(lambda: informer.get(namespace, "added") is None, 30, "the deletion")
        assert seen.has("DELETED", "added")
        assert [o["metadata"]["name"] for o in informer.indexed((namespace, "job-a"))] == ["before"]
        assert informer.get(namespace, "unlabelled") is None  # the label selector is applied by the server
        assert not any(name == "unlabelled" for _, name in seen.events)
    finally:
        informer.stop()


def test_a_relist_reports_what_changed_while_not_watching(kube: Kube, namespace: str) -> None:
    kube.apply(config_map(namespace, "stays", "i", "1"))
    kube.apply(config_map(namespace, "goes", "i", "1"))
    seen = Seen()
    informer = Informer(kube, "v1", "ConfigMap", namespace, LABELS, on_change=seen).start()
    assert informer.synced.wait(30)
    informer.stop()
    kube.delete(Ref("v1", "ConfigMap", "goes", namespace))
    kube.apply(config_map(namespace, "new", "i", "1"))
    seen.events.clear()
    informer.start()
    try:
        wait_until(lambda: informer.relists >= 2, 30, "the second LIST")
        assert informer.get(namespace, "goes") is None
        assert informer.get(namespace, "new") is not None
        assert seen.has("DELETED", "goes") and seen.has("ADDED", "new")
        assert not seen.has("MODIFIED", "stays") and not seen.has("ADDED", "stays")  # unchanged: no event
    finally:
        informer.stop()


def test_an_older_event_does_not_undo_a_write_we_remember(kube: Kube, namespace: str) -> None:
    informer = Informer(kube, "v1", "ConfigMap", namespace, LABELS).start()
    try:
        assert informer.synced.wait(30)
        first = kube.apply(config_map(namespace, "cm", "i", "1"))
        second = kube.apply(config_map(namespace, "cm", "i", "2"))
        informer.remember(second)
        informer.remember(first)  # older: ignored
        assert informer.get(namespace, "cm")["data"] == {"k": "2"}  # type: ignore[index]
        wait_until(lambda: informer.get(namespace, "cm")["data"] == {"k": "2"}, 10, "stable")  # type: ignore[index]
    finally:
        informer.stop()
