"""Serving weights locally: start `yolo-workload serve`, wait until it is ready, send it a request.

Used by `yolo-operator run` for a YoloInferenceService (serve until Ctrl-C) and after a YoloTrainJob with `--serve`
(serve the best weights, send one real request with an image of the data set, print the detections, stop). The
ServeConfig comes from the controller's own builder (`render.inference_service.serve_config`); only the weights'
path, the address and the device move onto this machine.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yolo_workloads.contract import DETECT_PATH, READY_PATH, DetectAnswer, ServeConfig

from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.local import detections
from yolo_operator.local.backend import LocalJob
from yolo_operator.local.workdir import write_config
from yolo_operator.render import inference_service as render_svc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_for_train_job(job: YoloTrainJob, best_weights: str) -> YoloInferenceService:
    """The YoloInferenceService a user would write to serve this job's weights (imgsz and GPUs carried over)."""
    return YoloInferenceService.model_validate(
        {
            "apiVersion": job.api_version,
            "kind": "YoloInferenceService",
            "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace},
            "spec": {
                "task": job.spec.effective_task(),
                "model": {"weights": {"claimName": "local", "path": Path(best_weights).name}},
                "serving": {"imgsz": job.spec.train.imgsz, "maxBatchSize": 8},
                "resources": {"gpus": min(job.spec.resources.gpus, 1)},
            },
        }
    )


def service_manifest(job: YoloTrainJob) -> dict[str, Any]:
    """A YoloInferenceService serving this job's weights (`fromTrainJob`), as a user would apply it: the same
    manifest serves them locally (`yolo-operator run`) and on a cluster (`kubectl apply`). Its name differs from the
    job's, so its local work directory does too."""
    task = job.spec.effective_task()
    return {
        "apiVersion": job.api_version,
        "kind": "YoloInferenceService",
        "metadata": {"name": f"{job.metadata.name}-detector"},
        "spec": {
            **({"task": task} if task != "detect" else {}),  # the weights' task, said where a reader sees it
            "model": {"fromTrainJob": job.metadata.name},
            "serving": {"imgsz": job.spec.train.imgsz},
            "resources": {"gpus": min(job.spec.resources.gpus, 1)},
        },
    }


def write_service_manifest(job: YoloTrainJob, workdir: Path) -> str:
    """Write `yoloinferenceservice.yaml` into the work directory; return the command that serves the weights."""
    path = workdir / "yoloinferenceservice.yaml"
    path.write_text(
        "# Serves the weights of the YoloTrainJob run in this folder; written by `yolo-operator run`.\n"
        + yaml.safe_dump(service_manifest(job), sort_keys=False)
    )
    return f"yolo-operator run {path} --train-workdir {workdir}"


def local_serve_config(svc: YoloInferenceService, weights: Path, port: int) -> ServeConfig:
    """The controller's ServeConfig with the weights' local path, a loopback address and a free port."""
    base = render_svc.serve_config(svc, render_svc.ModelMount("local", weights.name))
    update: dict[str, Any] = {
        "model": {"weights": str(weights.resolve())},
        "host": "127.0.0.1",
        "port": port,
    }
    if svc.spec.resources.gpus == 0:
        update["half"] = False  # fp16 is a GPU feature
        update["device"] = "cpu"
    return ServeConfig.model_validate({**base.model_dump(), **update})


def start_server(config: ServeConfig, folder: Path, log_path: Path | None, env: dict[str, str]) -> LocalJob:
    said = folder / "serve.termination-log"  # LocalJob.start clears an earlier run's
    path = write_config(folder / "serve.yaml", config.model_copy(update={"termination_log": str(said)}))
    job = LocalJob("serve", "serve", path, said, log_path=log_path, env=env)
    job.start()
    return job


def base_url(config: ServeConfig) -> str:
    return f"http://{config.host}:{config.port}"


def wait_ready(url: str, server: LocalJob, timeout: float = 300.0, stopped: Callable[[], bool] = lambda: False) -> bool:
    """Poll the readiness endpoint (as the Deployment's probe does) until it answers 200, the server exits or
    the user interrupts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running() or stopped():
            return False
        try:
            with urllib.request.urlopen(url + READY_PATH, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def detect(url: str, jpeg: bytes, timeout: float = 120.0) -> DetectAnswer:
    """POST a raw JPEG to /v1/detect and return the JSON answer."""
    request = urllib.request.Request(
        url + DETECT_PATH, data=jpeg, method="POST", headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: DetectAnswer = json.loads(response.read())
    return answer


def detect_many(url: str, jpegs: list[bytes], timeout: float = 120.0) -> DetectAnswer:
    """POST several JPEGs in one multipart request to /v1/detect; the answer lists them in upload order."""
    boundary = f"yolo-operator-{uuid.uuid4().hex}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + jpeg
        + b"\r\n"
        for i, jpeg in enumerate(jpegs)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url + DETECT_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: DetectAnswer = json.loads(response.read())
    return answer


def sample_images(shapes_root: Path, count: int = 1) -> list[Path]:
    """The first images of the data set to send: validation images (the model never trained on them) when
    there are any."""
    for split in ("val", "train"):
        images = sorted((shapes_root / "images" / split).glob("*.jpg"))
        if images:
            return images[:count]
    return []


def describe_detections(answer: DetectAnswer) -> str:
    """One line per detection of the answer's first image (class, score, box), read as the contract's
    DetectAnswer; the answer's JSON when it holds no detections to describe."""
    images = answer.get("images")
    first = images[0] if isinstance(images, list) and images else None
    rows: Any = first.get("detections") if isinstance(first, dict) else None
    if not isinstance(rows, list):
        return json.dumps(answer)[:2000]
    if not rows:
        return "  (no detections above the confidence threshold: the model has not learnt enough; train longer)"
    found = detections.image_detections({"detections": rows})
    if not found:
        return json.dumps(answer)[:2000]
    lines = [f"  {d.label}: {d.score:.2f} at [{', '.join(f'{v:.0f}' for v in d.box)}]" for d in found[:20]]
    if len(found) > 20:
        lines.append(f"  ... and {len(found) - 20} more")
    return "\n".join(lines)
