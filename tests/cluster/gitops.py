"""The GitOps tools the cluster tests run for real, built by tests/cluster/tools/build.sh and cached by version:
helm, and gitops-check (the kstatus library Flux and kpt use, and the gopher-lua interpreter Argo CD runs health
checks in). A tool that cannot be built fails the test that needs it, with the build's own words.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "cluster" / "tools" / "build.sh"
ARGOCD = REPO / "manifests" / "argocd"
HEALTH_SCRIPTS = {
    "YoloTrainJob": ARGOCD / "yolotrainjob-health.lua",
    "YoloInferenceService": ARGOCD / "yoloinferenceservice-health.lua",
}


@functools.cache
def tool(name: str) -> Path:
    """The path of `helm` or `gitops-check`, built on first use (minutes cold, a stamp check warm)."""
    proc = subprocess.run(["bash", str(BUILD), name], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD} {name} failed (rc {proc.returncode}):\n{proc.stderr[-8000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _check(args: Sequence[str], objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(tool("gitops-check")), *args], input=json.dumps(list(objects)), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"gitops-check {' '.join(args)} failed: {proc.stderr}")
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def kstatus(obj: Mapping[str, Any]) -> dict[str, Any]:
    """kstatus' verdict on one object: {status: InProgress|Current|Failed|Terminating|..., message, conditions}."""
    return _check(["kstatus"], [obj])[0]


def argocd_health(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Argo CD's health of one of our objects, by the shipped Lua script: {status, message}."""
    return _check(["lua", str(HEALTH_SCRIPTS[str(obj["kind"])])], [obj])[0]
