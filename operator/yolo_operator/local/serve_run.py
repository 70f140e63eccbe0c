"""`yolo-operator run` for serving: a YoloInferenceService until Ctrl-C, or a finished train job's weights once.

A YoloInferenceService goes through `lifecycle.inference_service` as on a cluster: `resolve_model` finds the
weights (a volume mapped with `--volume`, or a YoloTrainJob run locally before, whose work directory stands in for
its output volume), and `status` turns the one local server (a Deployment of one replica) into the phase and
conditions the operator would write.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from yolo_workloads.contract import DETECT_PATH, READY_PATH, DetectAnswer, FetchConfig

from yolo_operator.api.common import SpecError
from yolo_operator.api.inference_service import YoloInferenceService, YoloInferenceServiceStatus
from yolo_operator.api.sources import WeightsSource
from yolo_operator.api.train_job import YoloTrainJob, YoloTrainJobStatus
from yolo_operator.lifecycle import inference_service as lifecycle
from yolo_operator.local import detections, report, serving
from yolo_operator.local.backend import LocalJob
from yolo_operator.local.train_job import EXIT_INTERRUPTED, RunOptions, Stop, child_env, load_status
from yolo_operator.local.workdir import Workdir, fetch_source, local_sources
from yolo_operator.render.inference_service import ModelMount

if TYPE_CHECKING:
    from yolo_operator.local.train_job import TrainJobRunner

LOCAL_OUTPUT_CLAIM = "local-workdir"
PICTURE_IMAGES = 6
"""Validation images sent in the one request after training, and drawn with their detections."""


def serve_trained(runner: TrainJobRunner) -> tuple[int, report.Served | None]:
    """--serve: serve the best weights, send a few validation images in one request, print the detections, draw
    them, stop. Returns the exit code and what was served."""
    status = runner.job.status
    best = status.artifacts.best_weights if status and status.artifacts else None
    if not best or not Path(best).exists():
        runner.say(report.note_line(f"--serve: no best weights to serve (status.artifacts.bestWeights: {best})"))
        return 1, None
    svc = serving.service_for_train_job(runner.job, best)
    config = serving.local_serve_config(svc, Path(best), serving.free_port())
    url = serving.base_url(config)
    log = runner.workdir.root / "serve.log"
    runner.say(report.phase_line("Serving", f"{best} at {url} (log: {log})"))
    server = serving.start_server(config, runner.workdir.root, log, child_env(runner.job.spec.resources.gpus))
    try:
        if not serving.wait_ready(url, server, stopped=lambda: runner.stop.requested):
            if runner.stop.requested:
                return EXIT_INTERRUPTED, None
            runner.say(report.note_line(f"the server did not become ready; see {log}:\n{_tail(log)}"))
            return 1, None
        _, data = local_sources(runner.job, runner.workdir, runner.options.volumes)
        root = Path(data.yaml).parent if data.yaml else runner.workdir.shapes  # a fetched or mounted set, or shapes
        images = serving.sample_images(root, PICTURE_IMAGES)
        if not images:
            runner.say(report.note_line(f"serving at {url}; no image of the data set to send"))
            return 0, None
        start = time.monotonic()
        answer = serving.detect_many(url, [image.read_bytes() for image in images])
        took = time.monotonic() - start
        runner.say(
            report.note_line(
                f"POST {url}{DETECT_PATH} with {len(images)} validation images answered in "
                f"{took * 1000:.0f} ms; {images[0].name}:"
            )
        )
        runner.say(serving.describe_detections(answer))
        (runner.workdir.root / "detections.json").write_text(json.dumps(answer, indent=1) + "\n")
        return 0, _picture(runner, images, answer, took, Path(best), config.conf)
    except OSError as exc:
        runner.say(report.note_line(f"the request to {url} failed: {exc}; see {log}"))
        return 1, None
    finally:
        server.stop()
        runner.say(report.note_line("server stopped"))


def _picture(
    runner: TrainJobRunner, images: list[Path], answer: DetectAnswer, seconds: float, weights: Path, conf: float
) -> report.Served:
    """Draw the answer onto its images (`detections.png`); a drawing error is a note, never a failed run."""
    served = report.Served(images=len(images), seconds=seconds)
    try:
        results = [
            detections.ImageResult(image, found, _labels(image))
            for image, found in zip(images, detections.parse_detections(answer), strict=False)
        ]
        served = replace(served, found=sum(r.found for r in results), labelled=sum(len(r.labelled) for r in results))
        title = f"{weights.name} served (/v1/detect): detections above conf {conf:g}; labelled shapes dashed"
        picture = detections.draw(results, runner.workdir.root / "detections.png", title)
    except Exception as exc:  # a picture is a convenience: never fail a finished run over it
        runner.say(report.note_line(f"could not draw the detections: {exc}"))
        return served
    if picture is None:
        return served
    runner.say(report.note_line(f"detections drawn: {picture}"))
    return replace(served, picture=str(picture))


def _labels(image: Path) -> list[detections.Labelled]:
    from PIL import Image

    with Image.open(image) as img:
        width, height = img.size
    return detections.read_labels(detections.label_file_for(image), width, height)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def local_train_job(name: str, folder: Path) -> YoloTrainJob | None:
    """A YoloTrainJob run locally before, as the operator would read it: its spec, with its work directory as
    the output volume, and its status with the weights' path relative to that volume."""
    wd = Workdir(folder)
    if not wd.spec.exists():
        return None
    status: YoloTrainJobStatus | None = load_status(wd.status)
    if status is not None and status.artifacts and status.artifacts.best_weights:
        best = Path(status.artifacts.best_weights)
        relative = best.relative_to(folder.resolve()) if best.is_absolute() else best
        status = status.model_copy(
            update={"artifacts": status.artifacts.model_copy(update={"best_weights": str(relative)})}
        )
    spec = json.loads(wd.spec.read_text())
    spec["output"] = {"claimName": LOCAL_OUTPUT_CLAIM}
    return YoloTrainJob.model_validate(
        {"metadata": {"name": name}, "spec": spec, "status": status.to_wire() if status else None}
    )


def run_inference_service(svc: YoloInferenceService, options: RunOptions, train_workdir: Path | None) -> int:
    """Serve until Ctrl-C (or until the server exits), writing the status the operator would write."""
    out = options.out
    volumes = dict(options.volumes)
    svc = _with_uid(svc)
    train_job = None
    if svc.spec.model.from_train_job:
        folder = train_workdir or Path(".work") / svc.spec.model.from_train_job
        train_job = local_train_job(svc.spec.model.from_train_job, folder)
        volumes[LOCAL_OUTPUT_CLAIM] = folder.resolve()
    model = lifecycle.resolve_model(svc, train_job)
    if model.mount is None:
        where = (
            f" (looked in {train_workdir or Path('.work') / str(svc.spec.model.from_train_job)}; "
            "run the YoloTrainJob there first or pass --train-workdir)"
            if svc.spec.model.from_train_job
            else ""
        )
        print(report.phase_line("Failed" if model.failed else "Pending", model.message + where), file=out)
        return 1
    wd = Workdir(options.workdir)
    wd.root.mkdir(parents=True, exist_ok=True)
    source = model.mount.source
    weights = fetch_weights(source, wd) if source is not None else _volume_weights(model.mount, volumes)
    if isinstance(weights, str):
        print(report.phase_line("Failed", f"fetching the weights failed: {weights}"), file=out)
        return 1

    port = svc.spec.serving.port if _port_free(svc.spec.serving.port) else serving.free_port()
    config = serving.local_serve_config(svc, weights, port)
    url = serving.base_url(config)
    log = wd.root / "serve.log"
    stop = Stop()
    stop.install()
    server = serving.start_server(config, wd.root, log, child_env(svc.spec.resources.gpus))
    print(report.note_line(f"serving {weights} at {url} (log: {log}); Ctrl-C stops it"), file=out, flush=True)
    try:
        svc, code = _watch(svc, model, server, url, wd, log, stop, out)
    finally:
        server.stop()
    print(report.status_yaml(svc.kind, svc.metadata.name, _clean(svc.status.to_wire() if svc.status else {})), file=out)
    return code


def _with_uid(svc: YoloInferenceService) -> YoloInferenceService:
    """The service with the uid the API server would assign (the status's selector is derived from it)."""
    if svc.metadata.uid:
        return svc
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"local/{svc.metadata.namespace}/{svc.metadata.name}"))
    return svc.model_copy(update={"metadata": svc.metadata.model_copy(update={"uid": uid})})


def _watch(
    svc: YoloInferenceService,
    model: lifecycle.ModelResolution,
    server: LocalJob,
    url: str,
    wd: Workdir,
    log: Path,
    stop: Stop,
    out: TextIO,
) -> tuple[YoloInferenceService, int]:
    """Write the status the operator would write, once a second, until Ctrl-C or the server exits; returns the
    service with its last status and the exit code."""
    phase: str | None = None
    while not stop.requested:
        running = server.running()
        ready = running and _ready(url)
        deployment: dict[str, Any] = {
            "spec": {"replicas": 1},
            "status": {"replicas": int(running), "readyReplicas": int(ready)},
        }
        ended = None if running else server.observe()  # what the controller reads from the pod's last state
        refused = lifecycle.refusal(ended.exit_code, ended.termination_message) if ended else None
        status = lifecycle.status(svc, model, deployment, datetime.now(UTC), input_refused=refused)
        svc = svc.model_copy(update={"status": YoloInferenceServiceStatus.model_validate(status)})
        (wd.root / "status.yaml").write_text(yaml.safe_dump(_clean(status), sort_keys=False))
        if status["phase"] != phase:
            phase = status["phase"]
            print(report.phase_line(str(phase), str(status.get("message") or "")), file=out, flush=True)
            if phase == "Ready":
                print(report.note_line(f"ready: POST a JPEG to {url}{DETECT_PATH}"), file=out, flush=True)
        if not running:
            print(report.note_line(f"the server exited; see {log}:\n{_tail(log)}"), file=out, flush=True)
            return svc, 1
        time.sleep(1.0)
    return svc, EXIT_INTERRUPTED


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _ready(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _volume_weights(mount: ModelMount, volumes: dict[str, Path]) -> Path:
    if mount.claim_name not in volumes:
        raise SpecError(
            [
                f"spec.model.weights.claimName: PersistentVolumeClaim {mount.claim_name!r} has no local "
                f"folder; pass --volume {mount.claim_name}=DIR"
            ]
        )
    weights = volumes[mount.claim_name] / mount.path
    if not weights.exists():
        raise SpecError([f"spec.model.weights.path: {weights} does not exist"])
    return weights


def fetch_weights(source: WeightsSource, wd: Workdir) -> Path | str:
    """Weights by URI into the work directory's per-content cache (`sources/cache`), as a replica's init container
    fetches them; the failure's message (field, URI, cause) when they cannot be had."""
    from yolo_workloads.fetch.cli import FetchFailed, fetch_all

    link = wd.sources.resolve() / "weights.pt"
    config = FetchConfig(
        sources=[fetch_source("spec.model.source", source, source.uri, link)],
        cache_dir=str(wd.sources.resolve() / "cache"),
    )
    try:
        fetch_all(config)
    except FetchFailed as exc:
        return str(exc)
    return link


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
