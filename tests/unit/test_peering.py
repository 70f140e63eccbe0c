"""The peering objects the operator creates at start: one ClusterKopfPeering cluster-wide, else one KopfPeering per
watched namespace, all under the operator's own name (never Kopf's shared `default`)."""

from __future__ import annotations

import pytest
from yolo_operator.k8s.peering import peering_objects
from yolo_operator.main import PEERING_NAME, kopf_settings
from yolo_operator.settings import load_settings

pytestmark = pytest.mark.unit


def test_cluster_wide_operator_peers_through_one_cluster_object() -> None:
    [obj] = peering_objects(PEERING_NAME, ())
    assert obj["kind"] == "ClusterKopfPeering" and obj["metadata"]["name"] == "yolo-operator"
    assert "namespace" not in obj["metadata"]


def test_namespaced_operator_peers_in_each_namespace() -> None:
    objs = peering_objects(PEERING_NAME, ("team-a", "team-b"))
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objs] == [
        ("KopfPeering", "team-a"),
        ("KopfPeering", "team-b"),
    ]


def test_kopf_uses_the_name_the_operator_creates() -> None:
    settings = load_settings({"YOLO_OPERATOR_PEERING": "true"})
    assert kopf_settings(settings).peering.name == PEERING_NAME
