"""The Argo CD health checks ship twice: as Lua files (the source, run by tests/cluster/test_gitops_health.py in
gopher-lua over real objects) and embedded in manifests/argocd/argocd-cm.yaml, the snippet users merge into
`argocd-cm`. The copy must be the source, under the keys Argo CD reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ARGOCD = Path(__file__).resolve().parents[2] / "manifests" / "argocd"


@pytest.mark.parametrize(
    ("kind", "script"),
    [("YoloTrainJob", "yolotrainjob-health.lua"), ("YoloInferenceService", "yoloinferenceservice-health.lua")],
)
def test_argocd_cm_embeds_the_health_script(kind: str, script: str) -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert cm["data"][f"resource.customizations.health.yolo-operator.io_{kind}"] == (ARGOCD / script).read_text()
