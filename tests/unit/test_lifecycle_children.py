"""Which rendered children need a write (issue 24): a child whose watched copy still holds what would be applied is
skipped, whatever the API server added to it; one that is absent, being deleted, owned by another uid, rendered
differently, or edited by hand is applied again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.lifecycle.children import (
    APPLIED_HASH_ANNOTATION,
    applied_hash,
    contains,
    drift,
    manifest_hash,
    stamp,
)
from yolo_operator.render.inference_service import ModelMount, RenderOptions, objects

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
UID = "0b6f3c1e-0000-4000-8000-000000000001"


def service(**spec: Any) -> YoloInferenceService:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid=UID, generation=1)
    doc["spec"]["model"] = {"weights": {"claimName": "models", "path": "yolo/best.pt"}}
    doc["spec"].update(spec)
    return YoloInferenceService.model_validate(doc)


def children(**spec: Any) -> dict[str, dict[str, Any]]:
    rendered = objects(service(**spec), ModelMount("models", "yolo/best.pt"), 2, RenderOptions())
    return {o["kind"]: stamp(o) for o in rendered}


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What a watch returns for an applied manifest: server metadata, defaults, status, empty maps dropped."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.update(uid="c-1", resourceVersion="4711", generation=1, creationTimestamp="2026-12-02T10:00:00Z")
    meta["managedFields"] = [{"manager": "yolo-operator", "operation": "Apply"}]
    if out["kind"] == "Deployment":
        spec = out["spec"]
        spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
        pod = spec["template"]["spec"]
        pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always", schedulerName="default-scheduler")
        for container in pod["containers"]:
            container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                container[probe]["successThreshold"] = 1
                container[probe]["httpGet"]["scheme"] = "HTTP"
        for volume in pod["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["defaultMode"] = 420
            if volume.get("emptyDir") == {}:
                volume["emptyDir"] = {}
        out["status"] = {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1}
    if out["kind"] == "Service":
        out["spec"].update(clusterIP="10.96.0.17", clusterIPs=["10.96.0.17"], sessionAffinity="None")
        out["status"] = {"loadBalancer": {}}
    if out["kind"] == "PodDisruptionBudget":
        out["status"] = {"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2}
    return out


# --- the hash -----------------------------------------------------------------------------------------------------


def test_stamp_adds_the_hash_of_the_manifest_and_leaves_the_input_alone() -> None:
    rendered = objects(service(), ModelMount("models", "yolo/best.pt"), 2, RenderOptions())
    cm = rendered[0]
    before = copy.deepcopy(cm)
    stamped = stamp(cm)
    assert cm == before
    assert applied_hash(stamped) == manifest_hash(cm) and len(manifest_hash(cm)) == 32
    assert stamp(stamped) == stamped  # the annotation is not part of its own hash
    assert manifest_hash(stamped) == manifest_hash(cm)
    assert applied_hash(None) is None and applied_hash(cm) is None


def test_any_rendered_change_changes_the_hash() -> None:
    a, b = children(), children(serving={"maxBatchSize": 16})
    assert applied_hash(a["ConfigMap"]) != applied_hash(b["ConfigMap"])
    assert applied_hash(a["Deployment"]) != applied_hash(b["Deployment"])  # the pod template's config hash
    assert applied_hash(a["Service"]) == applied_hash(b["Service"])


# --- skip: the copy holds what would be applied -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"])
def test_a_child_as_the_server_stored_it_is_not_written_again(kind: str) -> None:
    desired = children()[kind]
    assert drift(desired, as_stored(desired)) is None


def test_what_others_add_is_not_drift() -> None:
    desired = children()["Deployment"]
    observed = as_stored(desired)
    observed["metadata"]["labels"]["team"] = "vision"
    observed["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    template = observed["spec"]["template"]["metadata"]
    template["annotations"]["kubectl.kubernetes.io/restartedAt"] = "2026-12-02T10:00:00Z"
    observed["metadata"]["ownerReferences"].append({"kind": "Thing", "name": "x", "uid": "other"})
    assert drift(desired, observed) is None


def test_quantities_compare_by_value_where_they_are_quantities() -> None:
    desired = children(resources={"gpus": 1, "cpu": 0.5, "memory": "1024Mi"})["Deployment"]
    observed = as_stored(desired)
    res = observed["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["cpu"] == "0.5"
    for amounts in res.values():
        amounts.update(cpu="500m", memory="1Gi")  # the server's canonical forms
    assert drift(desired, observed) is None
    assert contains({"limits": {"cpu": "500m"}}, {"limits": {"cpu": "0.5"}}, "resources")
    assert not contains({"limits": {"cpu": "1"}}, {"limits": {"cpu": "0.5"}}, "resources")
    assert contains({"sizeLimit": "1Gi"}, {"sizeLimit": "1024Mi"})
    assert not contains({"value": "1.0"}, {"value": "1"})  # elsewhere a string is a string


def test_empty_maps_the_server_omits_count_as_present() -> None:
    assert contains({"spec": {}}, {"spec": {"emptyDir": {}, "args": [], "x": None}})
    assert contains(None, {})
    assert not contains({}, {"a": 1})
    assert not contains([1, 2], [1])  # lists: same length
    assert not contains("1", 1) and not contains(1, True)


# --- write: absent, deleting, not ours, changed, edited -----------------------------------------------------------


def test_absent_deleting_or_foreign_children_are_applied() -> None:
    desired = children()["Service"]
    assert drift(desired, None) == "absent"
    deleting = as_stored(desired)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    assert drift(desired, deleting) == "being deleted"
    recreated = as_stored(desired)
    recreated["metadata"]["ownerReferences"][0]["uid"] = "an-older-service"
    assert (reason := drift(desired, recreated)) is not None and "not controlled" in reason
    not_controller = as_stored(desired)
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    assert drift(desired, not_controller) is not None


def test_a_child_from_another_rendering_or_without_the_stamp_is_applied() -> None:
    old, new = children(), children(serving={"maxBatchSize": 16})
    assert drift(new["ConfigMap"], as_stored(old["ConfigMap"])) == "changed"
    unstamped = as_stored(old["Service"])
    del unstamped["metadata"]["annotations"]  # written by an operator before issue 24
    assert drift(old["Service"], unstamped) == "changed"


def test_hand_edits_are_undone() -> None:
    c = children()
    edits = {
        "image": ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil:1")),
        "env removed": ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].pop()),
        "replicas": ("Deployment", lambda o: o["spec"].update(replicas=5)),
        "label removed": ("Deployment", lambda o: o["metadata"]["labels"].pop("app.kubernetes.io/component")),
        "hash edited": ("Deployment", lambda o: o["metadata"]["annotations"].update({APPLIED_HASH_ANNOTATION: "x"})),
        "config edited": ("ConfigMap", lambda o: o["data"].update({"config.yaml": "imgsz: 32\n"})),
        "config key removed": ("ConfigMap", lambda o: o["data"].clear()),
        "port": ("Service", lambda o: o["spec"]["ports"][0].update(port=8080)),
        "selector": ("Service", lambda o: o["spec"].update(selector={"app": "other"})),
        "pdb": ("PodDisruptionBudget", lambda o: o["spec"].update(maxUnavailable=0)),
    }
    for what, (kind, edit) in edits.items():
        observed = as_stored(c[kind])
        edit(observed)
        assert drift(c[kind], observed) is not None, what
