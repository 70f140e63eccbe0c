"""`yolo-operator run` with sources by URI, as a user runs it: data as a zip in MinIO (S3, signed requests), initial
weights over HTTPS with a private CA and a sha256, fine-tuned on the CPU, then served; the newer architectures
(YOLO11, YOLO26) go through tuning, training and serving. A wrong checksum ends in Failed, naming the source.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from remote_servers import ACCESS_KEY, SECRET_KEY, Https, Minio, Tls, make_ca, start_https, start_minio
from yolo_operator.api import YoloTrainJobStatus

pytestmark = pytest.mark.workloads

OPERATOR = str(Path(sys.executable).with_name("yolo-operator"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Minio, Https, Tls]]:
    tls = make_ca(tmp_path_factory.mktemp("ca"))
    minio = start_minio(tmp_path_factory.mktemp("minio"))
    https = start_https(tls)
    yield minio, https, tls
    https.stop()
    minio.stop()


@pytest.fixture(scope="module")
def shapes_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """16 train and 4 validation shapes images at 64 px, zipped under one top folder as Ultralytics' sets are."""
    from yolo_workloads.datasets.shapes import generate

    root = generate(tmp_path_factory.mktemp("shapes") / "shapes", n=16, imgsz=64, val=4, seed=3, processes=1).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"shapes/{path.relative_to(root)}")
    return buf.getvalue()


def pretrained(arch: str, folder: Path) -> bytes:
    """Weights of `arch` with 80 classes, saved as Ultralytics saves checkpoints (the shapes set has 6)."""
    from ultralytics import YOLO

    path = folder / f"{arch}.pt"
    YOLO(f"{arch}.yaml", task="detect").save(str(path))
    return path.read_bytes()


def run(manifest: Path, work: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [OPERATOR, "run", str(manifest), "--workdir", str(work), *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)


def manifest(path: Path, model: dict[str, Any], data: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloTrainJob",
        "metadata": {"name": path.stem},
        "spec": {
            "model": model,
            "data": data,
            "train": {"imgsz": 64, "epochs": 1, "extraArgs": {"plots": False}},
            "tuning": {
                "maxTrials": 1,
                "timeBudgetSeconds": 120,  # the first trial's warm-up alone may take 20 s on a loaded 2-core machine
                "batch": {"min": 8, "max": 8},
                "workers": {"min": 0, "max": 0},
                "amp": [False],
                "cache": ["none"],
            },
            "resources": {"gpus": 0, "cpu": 2, "memory": "4Gi"},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def environment(tmp_path: Path, tls: Tls) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "SSL_CERT_FILE": str(tls.ca),  # the local stand-in for spec caBundle
        "YOLO_OPERATOR_CACHE": str(tmp_path / "cache"),
        "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.parametrize("arch", ["yolo11n", "yolo26n"])
def test_fine_tunes_https_weights_on_s3_data_then_serves(
    arch: str, servers: tuple[Minio, Https, Tls], shapes_zip: bytes, tmp_path: Path
) -> None:
    minio, https, tls = servers
    minio.bucket("datasets")
    minio.put("datasets", "shapes.zip", shapes_zip)
    weights = pretrained(arch, tmp_path)
    https.files[f"{arch}.pt"] = weights
    model = {"source": {"uri": f"{https.url}/files/{arch}.pt", "sha256": hashlib.sha256(weights).hexdigest(),
                        "caBundle": {"configMapName": "private-ca"}}}  # fmt: skip
    data = {"source": {"uri": "s3://datasets/shapes.zip", "endpoint": minio.endpoint, "credentialsSecret": "keys"}}
    work = tmp_path / "work"
    env = environment(tmp_path, tls)
    done = run(manifest(tmp_path / f"ft-{arch}.yaml", model, data), work, env, "--serve")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.phase == "Succeeded" and status.artifacts is not None

    import torch

    best = torch.load(status.artifacts.best_weights or "", map_location="cpu", weights_only=False)
    names = yaml.safe_load((work / "sources" / "data" / "data.yaml").read_text())["names"]
    assert best["model"].names == names, "the fine-tuned model's classes are the data's, not the checkpoint's 80"
    assert arch[:6] in str(best["model"].yaml.get("yaml_file")), "the architecture is the checkpoint's"
    answer = yaml.safe_load((work / "detections.json").read_text())
    assert answer["images"], "the fine-tuned weights were served and answered"
    # Both steps fetched through one per-content cache: one entry per source.
    assert len(list((work / "sources" / "cache").iterdir())) == 2
    assert https.hits[f"/files/{arch}.pt"] == 1, "the training step found the weights in the cache"


def test_wrong_checksum_fails_the_job_naming_the_source(servers: tuple[Minio, Https, Tls], tmp_path: Path) -> None:
    _, https, tls = servers
    https.files["bad.pt"] = b"not the weights you declared"
    uri = f"{https.url}/files/bad.pt"
    model = {"source": {"uri": uri, "sha256": "0" * 64}}
    work = tmp_path / "work"
    done = run(manifest(tmp_path / "bad.yaml", model, {"shapes": {"images": 16}}), work, environment(tmp_path, tls))
    assert done.returncode == 1
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    failed = {c.type: c for c in status.conditions or []}["Failed"]
    assert status.phase == "Failed" and failed.status == "True"
    assert f"spec.model.source ({uri}): wrong checksum" in failed.message
    assert not (work / "sources" / "weights.pt").exists()
