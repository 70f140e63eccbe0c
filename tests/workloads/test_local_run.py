"""`yolo-operator run` end to end, as a user runs it: a subprocess, real workloads on the CPU, no network.

A tiny YoloTrainJob (16 images at 64 px, one epoch, two tuning trials) goes through tuning, training and serving;
then a Ctrl-C during training and a second run on the same work directory resume from the checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from tiny_jobs import train_job
from yolo_operator.api import YoloInferenceServiceStatus, YoloTrainJobStatus
from yolo_workloads.contract import TrainSummary

pytestmark = pytest.mark.workloads

OPERATOR = str(Path(sys.executable).with_name("yolo-operator"))
# Non-Python tools and the children's own imports reach no network: a fresh network namespace (loopback only)
# when the kernel allows it, else a guard inherited by every Python child that refuses non-loopback connects.
GUARD = """
import socket
_connect = socket.socket.connect
def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else ""
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError("network blocked by the test")
    return _connect(self, address)
socket.socket.connect = _loopback_only
"""


def _offline_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare:
        probe = subprocess.run(
            [unshare, "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return [unshare, "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
    return []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return offline_env(tmp_path_factory.mktemp("env"))


def offline_env(root: Path) -> dict[str, str]:
    """The environment of a run: the network guard first on PYTHONPATH, caches and home under `root`."""
    (root / "guard").mkdir()
    (root / "guard" / "sitecustomize.py").write_text(GUARD)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "guard"), os.environ.get("PYTHONPATH")])),
        "YOLO_OPERATOR_CACHE": str(root / "cache"),
        "YOLO_CONFIG_DIR": str(root / "ultralytics"),
        "HOME": str(root / "home"),
    }


def _manifest(path: Path, name: str, **spec: object) -> Path:
    doc = train_job(name, **{"resources": {"gpus": 0, "cpu": 2, "memory": "4Gi"}, **spec})
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_offline_prefix(), OPERATOR, "run", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _phases(output: str) -> list[str]:
    return [line.split(" phase ")[1].split(":")[0] for line in output.splitlines() if line.startswith("==> ")]


def test_tunes_trains_and_serves_a_train_job(tmp_path: Path, env: dict[str, str]) -> None:
    manifest = _manifest(
        tmp_path / "job.yaml",
        "tiny",
        train={"imgsz": 64, "epochs": 1, "extraArgs": {"plots": False}},
        tuning={
            "maxTrials": 2,
            "timeBudgetSeconds": 30,
            "batch": {"min": 4, "max": 8},
            "amp": [False],
            "cache": ["none", "ram"],  # two settings: on a CPU the workers are 0 whatever the range
        },
    )
    work = tmp_path / "work"
    done = _run([str(manifest), "--workdir", str(work), "--serve"], env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert _phases(done.stdout) == ["Pending", "Tuning", "Training", "Succeeded", "Serving"]
    assert "trial  batch  workers" in done.stdout  # the trials table

    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.phase == "Succeeded"
    assert status.tuning is not None and status.tuning.source == "Measured" and status.tuning.trials == 2
    assert status.artifacts is not None and Path(status.artifacts.best_weights or "").is_file()
    assert {c.type: c.status for c in status.conditions or []}["Complete"] == "True"
    assert "kind: YoloTrainJob" in done.stdout and "phase: Succeeded" in done.stdout  # printed as YAML too

    for png in ("training-curves.png", "tuning-trials.png"):
        assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    answer = yaml.safe_load((work / "detections.json").read_text())
    assert len(answer["images"]) == 3  # one real request of every validation image (3 of 16 images here)
    assert all(isinstance(image["detections"], list) for image in answer["images"])
    assert "answered in" in done.stdout

    # The picture of the served detections, and a closing summary that names it and how to serve the weights.
    picture = work / "detections.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"--> detections drawn: {picture}" in done.stdout.splitlines()
    summary = done.stdout[done.stdout.rindex("YoloTrainJob tiny: Succeeded in ") :].splitlines()
    assert summary[0].endswith("(this run, set-up excluded)")
    labels = [line.split(":")[0].strip() for line in summary[1:]]
    assert labels == [
        "accuracy",
        "training",
        "tuning",
        "picture",
        "serving",
        "weights",
        "serve them",
        "plots",
        "status",
    ]
    assert f"  picture:    {picture} (3 validation images: " in done.stdout
    service = work / "yoloinferenceservice.yaml"
    assert f"  serve them: yolo-operator run {service} --train-workdir {work}" in summary

    # The same command again: the finished run is reported, nothing is tuned or trained again.
    again = _run([str(manifest), "--workdir", str(work)], env, tmp_path, timeout=60)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert _phases(again.stdout) == ["Succeeded"] and "trial 1/" not in again.stderr

    # The command the summary printed: the YoloInferenceService it wrote serves this job's weights until Ctrl-C.
    _serve_until_ready_then_interrupt(service, work, env, tmp_path)


def _serve_until_ready_then_interrupt(svc: Path, train_work: Path, env: dict[str, str], cwd: Path) -> None:
    work = cwd / "svc-work"
    # No network namespace here: the test must reach the server; the inherited guard still blocks the network.
    server = subprocess.Popen(
        [OPERATOR, "run", str(svc), "--train-workdir", str(train_work), "--workdir", str(work)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if "phase Ready" in line:
                break
        url = next(line.split("POST a JPEG to ")[1].strip() for line in [server.stdout.readline()])
        image = sorted((train_work / "data" / "shapes" / "images" / "val").glob("*.jpg"))[0]
        request = urllib.request.Request(url, data=image.read_bytes(), headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert "detections" in json.loads(response.read())["images"][0]
        server.send_signal(signal.SIGINT)
        rest, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 130, "".join(lines) + rest
    status = YoloInferenceServiceStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.phase == "Ready" and status.ready_replicas == 1
    assert status.model_path and status.model_path.endswith("training/weights/best.pt")


def test_a_job_augmenting_on_the_gpu_trains_through_the_same_path(tmp_path: Path, env: dict[str, str]) -> None:
    """spec.train.augmentation reaches the training pod's config and its trainer (here on the CPU: the same torch)."""
    manifest = _manifest(
        tmp_path / "job.yaml",
        "gpu-augmented",
        train={
            "imgsz": 64, "epochs": 2, "batch": 8, "workers": 0, "augmentation": "gpu",
            "extraArgs": {"plots": False, "close_mosaic": 1},
        },
        tuning={"enabled": False},
    )  # fmt: skip
    work = tmp_path / "work"
    done = _run([str(manifest), "--workdir", str(work)], env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert _phases(done.stdout)[-1] == "Succeeded"
    logs = "".join(p.read_text(errors="replace") for p in work.rglob("*.log"))
    assert "mosaic closed (augmentation on the GPU)" in logs + output
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.progress is not None and status.progress.epoch == 2


def test_a_job_tuned_inside_training_runs_one_step_and_reports_the_choice(tmp_path: Path, env: dict[str, str]) -> None:
    """spec.tuning.inTraining: no tuning step; the training process tunes, and the status shows its choice."""
    manifest = _manifest(
        tmp_path / "job.yaml",
        "in-training",
        data={"shapes": {"images": 48}},
        train={"imgsz": 64, "epochs": 12, "extraArgs": {"plots": False}},
        tuning={"inTraining": True, "maxTrials": 2, "timeBudgetSeconds": 30, "amp": [False], "cache": ["none", "ram"]},
    )
    work = tmp_path / "work"
    done = _run([str(manifest), "--workdir", str(work)], env, tmp_path, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert _phases(done.stdout) == ["Training", "Succeeded"]  # no tuning pod
    assert "tuning inside the training process first" in done.stdout
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.tuning is not None and status.tuning.source == "Measured"
    assert status.tuning.trials is not None and 1 <= status.tuning.trials <= 2
    assert {c.type: (c.status, c.reason) for c in status.conditions or []}["Tuned"] == ("True", "Measured")
    assert status.progress is not None and status.progress.epoch == 12
    assert "trial  batch  workers" in done.stdout  # the trials table, from the training's summary
    summary = yaml.safe_load((work / "training" / "summary.json").read_text())
    assert summary["tuning"]["batch"] == status.tuning.batch


def test_bad_manifest_names_the_fields(tmp_path: Path, env: dict[str, str]) -> None:
    manifest = _manifest(tmp_path / "bad.yaml", "bad", train={"imgsz": 65, "epochs": 0})
    done = _run([str(manifest)], env, tmp_path, timeout=60)
    assert done.returncode == 2
    assert "spec.train.epochs: Input should be greater than or equal to 1" in done.stderr.splitlines()
    assert any(line.startswith("spec.train.imgsz: ") for line in done.stderr.splitlines())


def test_a_service_whose_weights_are_no_checkpoint_fails_naming_them(tmp_path: Path, env: dict[str, str]) -> None:
    """The server refuses the file before opening its socket (exit 2) and the status is what the operator writes
    from that pod: Failed, InvalidInput, the server's words; the message lands in the work directory, not
    /dev/termination-log."""
    import torch

    models = tmp_path / "models"
    models.mkdir()
    torch.save({"conv.weight": torch.zeros(3)}, models / "junk.pt")
    doc = {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloInferenceService",
        "metadata": {"name": "junk"},
        "spec": {
            "model": {"weights": {"claimName": "models", "path": "junk.pt"}},
            "resources": {"gpus": 0, "cpu": 2, "memory": "4Gi"},
        },
    }
    manifest = tmp_path / "junk.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    work = tmp_path / "work"
    done = _run([str(manifest), "--volume", f"models={models}", "--workdir", str(work)], env, tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    status = YoloInferenceServiceStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.phase == "Failed"
    said = f"model weights {models / 'junk.pt'}: not a checkpoint Ultralytics can load"
    assert status.message is not None and status.message.startswith(f"the server refused: serve: {said}")
    failed = next(c for c in status.conditions or [] if c.type == "Failed")
    assert failed.reason == "InvalidInput" and said in failed.message
    assert said in (work / "serve.termination-log").read_text()


def _children_of(work: Path) -> list[int]:
    """Processes still running with this work directory in their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(work).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_ctrl_c_stops_training_and_the_next_run_resumes(tmp_path: Path, env: dict[str, str]) -> None:
    manifest = _manifest(
        tmp_path / "job.yaml",
        "resume",
        train={"imgsz": 64, "epochs": 12, "batch": 8, "workers": 0, "extraArgs": {"plots": False}},
        tuning={"enabled": False},
    )
    work = tmp_path / "work"
    runner = subprocess.Popen(
        [*_offline_prefix(), OPERATOR, "run", str(manifest), "--workdir", str(work)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        last = work / "training" / "weights" / "last.pt"
        deadline = time.monotonic() + 180
        while not last.exists() and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.exists(), "no checkpoint was written"
        os.kill(runner.pid, signal.SIGINT)  # unshare and sh exec: the pid is the runner's
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, output[-3000:]
    assert "interrupted" in output
    assert _children_of(work) == []  # the training process and its workers are gone
    interrupted = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert interrupted.phase == "Training"

    done = _run([str(manifest), "--workdir", str(work)], env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from" in done.stdout
    summary = TrainSummary.model_validate_json((work / "training" / "termination-log").read_text())
    assert summary.resumed and summary.epochs_completed == 12
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.phase == "Succeeded"
