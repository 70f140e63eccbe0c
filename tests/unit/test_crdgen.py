"""The committed CRDs are exactly what the models generate, and the schema is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.crdgen import render_crds, write_crds

pytestmark = pytest.mark.unit

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    assert write_crds(CRDS, check=True) == 0, "run `make crds` and commit the result"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("name", sorted(render_crds()))
def test_schema_is_structural(name: str) -> None:
    crd = yaml.safe_load(render_crds()[name])
    version = crd["spec"]["versions"][0]
    for path, node in _walk(version["schema"]["openAPIV3Schema"]):
        assert "$ref" not in node and "title" not in node and "$defs" not in node, path
        assert (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        if path.startswith(".spec") and "properties" in node:
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_printer_columns_and_subresources() -> None:
    crds = {yaml.safe_load(t)["spec"]["names"]["kind"]: yaml.safe_load(t) for t in render_crds().values()}
    train = crds["YoloTrainJob"]["spec"]
    service = crds["YoloInferenceService"]["spec"]
    assert [c["name"] for c in train["versions"][0]["additionalPrinterColumns"]] == [
        "Phase", "Task", "Epoch", "Batch", "Img/s", "mAP", "Accuracy", "Age"
    ]  # fmt: skip
    assert [c["name"] for c in service["versions"][0]["additionalPrinterColumns"]] == [
        "Phase", "Ready", "Desired", "GPU%", "URL", "Age"
    ]  # fmt: skip
    assert train["names"]["shortNames"] == ["ytj"] and service["names"]["shortNames"] == ["yis"]
    assert train["names"]["categories"] == ["yolo"]
    assert service["versions"][0]["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "scale" not in train["versions"][0]["subresources"]


def test_cross_field_rules_become_cel() -> None:
    text = render_crds()["yolo-operator.io_yoloinferenceservices.yaml"]
    assert "self.minReplicas <= self.maxReplicas" in text
    train = render_crds()["yolo-operator.io_yolotrainjobs.yaml"]
    assert "self.model == oldSelf.model" in train
    assert "multipleOf: 32" in train


@pytest.mark.parametrize("name", sorted(render_crds()))
def test_printer_columns_point_at_schema_fields(name: str) -> None:
    version = yaml.safe_load(render_crds()[name])["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        node = root
        for part in column["jsonPath"].strip(".").split("."):
            if part == "metadata":
                break
            assert part in node.get("properties", {}), f"{column['name']}: {column['jsonPath']} is not in the schema"
            node = node["properties"][part]
