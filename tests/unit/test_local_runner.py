"""The local runner's pure pieces: manifest loading and errors, configs moved onto this machine, reports, status."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from yolo_operator.api import SpecError, YoloTrainJob, YoloTrainJobStatus
from yolo_operator.api.train_job import TuningStatus
from yolo_operator.lifecycle import train_job as lifecycle
from yolo_operator.local import report, serving
from yolo_operator.local.backend import JobObservation, LocalJob
from yolo_operator.local.cli import load_manifest
from yolo_operator.local.plots import read_results_csv
from yolo_operator.local.train_job import load_status, retry_status, save_status, step_observation
from yolo_operator.local.workdir import Machine, Workdir, parse_volumes, train_config, tune_config
from yolo_operator.render import train_job as render
from yolo_workloads.contract import TrialResult, TuneResult, default_val_images
from yolo_workloads.tune.space import make_bounds

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "manifests" / "samples" / "quickstart" / "yolotrainjob.yaml"


def _job(**spec: object) -> YoloTrainJob:
    base: dict[str, object] = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 40}},
        "train": {"imgsz": 64, "epochs": 2},
        "resources": {"gpus": 0, "cpu": 16, "memory": "64Gi"},
    }
    base.update(spec)
    return YoloTrainJob.model_validate({"metadata": {"name": "t"}, "spec": base})


def test_quickstart_sample_validates_and_runs_on_cpu(tmp_path: Path) -> None:
    job = load_manifest(QUICKSTART, None)
    assert isinstance(job, YoloTrainJob)
    assert job.spec.resources.gpus == 0
    # Tuning leaves one setting on a CPU (batch and cache fixed, workers 0, AMP off): chosen without a trial.
    assert job.spec.tuning.enabled
    search = tune_config(job, Workdir(tmp_path), {}, Machine(cpus=2, memory_bytes=8 * 2**30, gpu_product="cpu")).search
    bounds = make_bounds(
        search, n_train=400, decoded_bytes=30 * 2**20, memory_budget=4 * 2**30, cpu_budget=2, ranks=1,
        on_gpu=False, memory_probe=None, free_memory=None,
    )  # fmt: skip
    assert [len(bounds.batches), len(bounds.workers), len(bounds.amp), len(bounds.cache)] == [1, 1, 1, 1]
    # An epoch stays cheap (the e2e test trains it on one core): 400 images at 160 px.
    assert job.spec.data.shapes is not None and job.spec.data.shapes.images * job.spec.train.imgsz**2 <= 400 * 160**2
    # What makes it learn in minutes (docs/local.md): an optimizer step every batch, a short warm-up.
    train = job.spec.train
    assert train.extra_args is not None and train.extra_args["nbs"] == train.batch
    assert train.extra_args["warmup_epochs"] <= 1 and train.optimizer == "AdamW"


def test_gpus_flag_overrides_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(QUICKSTART.read_text())
    assert load_manifest(path, 2).spec.resources.gpus == 2


def test_invalid_manifest_lists_each_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["spec"]["train"]["imgsz"] = 65
    doc["spec"]["model"]["architecture"] = "yolov9n.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as err:
        load_manifest(path, None)
    fields = [p.split(":")[0] for p in err.value.problems]
    assert fields == ["spec.model.architecture", "spec.train.imgsz"]


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml", None)
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(SpecError, match="exactly one manifest"):
        load_manifest(tmp_path / "two.yaml", None)


def test_configs_use_the_workdir_and_this_machines_budget(tmp_path: Path) -> None:
    job = _job()
    wd = Workdir(tmp_path / "w")
    machine = Machine(cpus=2, memory_bytes=8 * 2**30, gpu_product="cpu")
    tune = tune_config(job, wd, {}, machine)
    assert tune.cpu_budget == 2 and tune.memory_budget_bytes == 8 * 2**30  # capped from 16 CPUs / 64Gi
    assert tune.output_dir == str(wd.tuning.resolve())
    assert tune.termination_log == str(wd.tune_result.resolve())
    assert tune.data.root == str(wd.shapes.resolve())
    assert tune.gpus == 0 and tune.imgsz == 64
    choice = lifecycle.TrainChoice(batch=32, workers=8, amp=False, cache="ram")
    train = train_config(job, choice, wd, {}, machine)
    assert (train.batch, train.amp, train.cache) == (32, False, "ram")
    assert train.workers == 2  # no more dataloader processes than cores
    assert train.output_dir == str(wd.training.resolve())
    assert train.metrics_port is None


def test_the_shapes_set_is_the_one_render_hands_the_pods(tmp_path: Path) -> None:
    """One validation split on both paths (issue 21): the local runner takes render's synthetic set, only its root
    moved into the workdir; the quickstart's 400 images keep the 80 validation images its figures were measured on."""
    job = load_manifest(QUICKSTART, None)
    assert isinstance(job, YoloTrainJob)
    wd = Workdir(tmp_path / "w")
    local = tune_config(job, wd, {}, Machine(cpus=2, memory_bytes=8 * 2**30, gpu_product="cpu")).data
    rendered = render.tune_config(job).data
    assert local.shapes == rendered.shapes and local.root == str(wd.shapes.resolve())
    assert local.shapes is not None and local.shapes.val_images is None  # the contract's default, on both paths
    assert default_val_images(400) == 80 and default_val_images(8) == 2


def test_volume_claims_need_a_local_folder(tmp_path: Path) -> None:
    job = _job(data={"volume": {"claimName": "datasets", "path": "coco/data.yaml"}})
    wd, machine = Workdir(tmp_path / "w"), Machine(2, None, "cpu")
    with pytest.raises(SpecError, match=r"spec\.data\.volume\.claimName: .*--volume datasets=DIR"):
        tune_config(job, wd, {}, machine)
    (tmp_path / "coco").mkdir()
    with pytest.raises(SpecError, match=r"spec\.data\.volume\.path: .* does not exist"):
        tune_config(job, wd, parse_volumes([f"datasets={tmp_path}"]), machine)
    (tmp_path / "coco" / "data.yaml").write_text("train: x\n")
    config = tune_config(job, wd, parse_volumes([f"datasets={tmp_path}"]), machine)
    assert config.data.yaml == str((tmp_path / "coco" / "data.yaml").resolve())
    with pytest.raises(SpecError, match="expected CLAIM=DIR"):
        parse_volumes(["datasets"])


def test_a_workdir_belongs_to_one_spec(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    wd.prepare()
    wd.claim_spec(_job().spec.to_wire())
    wd.claim_spec(_job().spec.to_wire())  # the same spec again: fine (resume)
    with pytest.raises(SpecError, match=r"spec\.train\.epochs: differs"):
        wd.claim_spec(_job(train={"imgsz": 64, "epochs": 3}).spec.to_wire())


def test_status_round_trips_and_a_failed_run_keeps_only_the_measurement(tmp_path: Path) -> None:
    status = YoloTrainJobStatus(
        phase="Failed",
        message="boom",
        tuning=TuningStatus(batch=16, workers=2, amp=False, cache="none", source="Measured"),
    )
    path = tmp_path / "status.yaml"
    save_status(path, status)
    assert "imagesPerSecond" not in path.read_text()  # unset fields left out, wire names
    loaded = load_status(path)
    assert loaded == status
    retried = retry_status(status)
    assert retried.phase is None and retried.tuning == status.tuning
    path.write_text("phase: [not, a, phase]\n")
    assert load_status(path) is None


def test_step_observation_maps_local_facts() -> None:
    obs = step_observation(JobObservation("training", "failed", 1, "oops", restarts=2), "cpu")
    assert obs.state == lifecycle.StepState.FAILED
    assert obs.failure_reason == "BackoffLimitExceeded" and obs.restarts == 2 and obs.message == "oops"
    assert step_observation(JobObservation("tuning", "absent"), None).state == lifecycle.StepState.ABSENT
    assert obs.failure_message == "exit code 1"
    killed = step_observation(JobObservation("training", "failed", -9, None), "cpu")
    assert killed.failure_message is not None and killed.failure_message.startswith(
        "killed by SIGKILL (what the kernel"
    )
    assert (
        step_observation(JobObservation("training", "failed", -15, None), "cpu").failure_message == "killed by SIGTERM"
    )


def _result() -> TuneResult:
    trials = [
        TrialResult(n=1, batch=8, workers=2, amp=False, cache="none", ips=50.0, state="ok"),
        TrialResult(n=2, batch=16, workers=2, amp=False, cache="none", ips=70.5, state="ok"),
        TrialResult(n=3, batch=64, workers=2, amp=False, cache="none", state="infeasible", error="out of memory"),
    ]
    return TuneResult(
        batch=16, workers=2, amp=False, cache="none", images_per_second=70.5, duration_seconds=33, trials=trials
    )


def test_trials_table_marks_the_chosen_trial() -> None:
    result = _result()
    assert report.chosen_trial(result) == result.trials[1]
    lines = report.trials_table(result).splitlines()
    assert lines[0].split() == ["trial", "batch", "workers", "amp", "cache", "images/s", "state", "note"]
    assert lines[3].split()[-2:] == ["ok", "*"]
    assert "infeasible" in lines[4] and "out of memory" in lines[4] and " - " in lines[4]
    assert "batch 16, workers 2" in report.tuning_summary(result, "Measured")


def test_trials_on_both_augmentation_paths_show_where_each_augmented_and_the_winner() -> None:
    same = {"batch": 16, "workers": 4, "amp": True, "cache": "ram", "state": "ok"}
    trials = [TrialResult(n=1, ips=350.0, **same), TrialResult(n=2, ips=520.0, aug="gpu", **same)]
    result = TuneResult(duration_seconds=40, trials=trials, augmentation="gpu", images_per_second=520.0, **{
        k: v for k, v in same.items() if k != "state"})  # fmt: skip
    assert report.chosen_trial(result) == trials[1]  # the same batch, workers, amp and cache: where it augmented
    lines = report.trials_table(result).splitlines()
    assert lines[0].split()[:7] == ["trial", "batch", "workers", "amp", "cache", "augmentation", "images/s"]
    assert lines[2].split()[5] == "cpu" and lines[3].split()[5] == "gpu" and lines[3].split()[-2:] == ["ok", "*"]
    assert report.tuning_summary(result, "Measured").endswith("cache ram, augmentation gpu -> 520.0 images/s")


def test_a_setting_chosen_without_a_trial_says_so_and_invents_no_figure() -> None:
    why = "batch 8 fixed by the spec; workers 0: Ultralytics trains on a CPU without dataloader workers"
    result = TuneResult(
        batch=8, workers=0, amp=False, cache="ram", duration_seconds=1.2, trials=[],
        reason=f"the only setting the bounds allow, chosen without a trial ({why})",
    )  # fmt: skip
    assert report.trials_table(result) == f"(no trial measured: {result.reason})"
    summary = report.tuning_summary(result, "Measured")
    assert "0 trials" in summary and "chosen without a trial" in summary and "images/s" not in summary
    outcome = report.Outcome("q", "Succeeded", 60, {}, "/w/status.yaml", tuning=result)
    tuning = [line for line in report.final_summary(outcome).splitlines() if "tuning:" in line]
    assert tuning == ["  tuning:     0 trials in 1 s, the only setting allowed, chosen without a trial"]


def test_results_csv_is_read_with_stripped_headers(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("epoch,  train/box_loss,metrics/mAP50-95(B)\n1, 1.5,0.1\n2,1.2,\n")
    columns = read_results_csv(path)
    assert columns["epoch"] == [1.0, 2.0]
    assert columns["train/box_loss"] == [1.5, 1.2]
    assert columns["metrics/mAP50-95(B)"][0] == 0.1 and columns["metrics/mAP50-95(B)"][1] != 0.1


def test_detections_are_described_one_per_line() -> None:
    answer = {"images": [{"detections": [{"box": [1, 2, 30, 40], "score": 0.91, "class_id": 2, "class_name": "x"}]}]}
    assert serving.describe_detections(answer).strip() == "x: 0.91 at [1, 2, 30, 40]"
    assert "no detections" in serving.describe_detections({"images": [{"detections": []}]})


def test_serve_config_for_a_train_job_runs_on_this_machine(tmp_path: Path) -> None:
    weights = tmp_path / "best.pt"
    svc = serving.service_for_train_job(_job(), str(weights))
    config = serving.local_serve_config(svc, weights, 8123)
    assert config.model.weights == str(weights.resolve())
    assert (config.host, config.port, config.device, config.half, config.imgsz) == ("127.0.0.1", 8123, "cpu", False, 64)


def test_local_job_runs_a_process_and_keeps_its_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process: its exit code and termination file become the observation, and a record keeps it."""
    script = tmp_path / "yolo-workload"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, yaml\n"
        "cfg = yaml.safe_load(open(sys.argv[3]))\n"
        "open(cfg['termination_log'], 'w').write('done')\n"
        "sys.exit(cfg['code'])\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr("yolo_operator.local.backend.workload_command", lambda: [str(script)])
    log = tmp_path / "msg"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"termination_log": str(log), "code": 3}))
    job = LocalJob("training", "train", config, log, backoff_limit=2, retry_backoff_s=0.4)
    assert job.observe().state == "absent"
    started = time.monotonic()
    job.start()
    while (obs := job.observe()).state == "running":
        time.sleep(0.05)
    assert (obs.state, obs.exit_code, obs.termination_message, obs.restarts) == ("failed", 3, "done", 2)
    assert time.monotonic() - started >= 0.4 + 0.8, "each restart waits its backoff, doubled (as a Job's pods)"
    again = LocalJob("training", "train", config, log, backoff_limit=2)
    assert again.observe() == obs  # a second run on the same directory sees the outcome
    again.forget()
    assert LocalJob("training", "train", config, log).observe().state == "absent"


def test_an_input_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit code 2 (the workload's "your input is wrong") fails at once, as the Job's podFailurePolicy does."""
    script = tmp_path / "yolo-workload"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(2)\n")
    script.chmod(0o755)
    monkeypatch.setattr("yolo_operator.local.backend.workload_command", lambda: [str(script)])
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    job = LocalJob("training", "train", config, tmp_path / "msg", backoff_limit=3)
    job.start()
    while (obs := job.observe()).state == "running":
        time.sleep(0.05)
    assert (obs.state, obs.exit_code, obs.restarts) == ("failed", 2, 0)


def test_plots_are_png_files(tmp_path: Path) -> None:
    from yolo_operator.local import plots

    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,train/box_loss,metrics/mAP50-95(B)\n1,1.5,0.1\n2,1.2,0.2\n")
    written = [
        plots.plot_training(csv_path, tmp_path / "curves.png"),
        plots.plot_trials(_result().trials, tmp_path / "trials.png", _result().trials[1]),
    ]
    for path in written:
        assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert plots.plot_trials([], tmp_path / "none.png") is None


# --- the result a newcomer reads: the detections picture, the closing summary, the serve command ---------------


def _served_answer() -> dict[str, object]:
    return {
        "images": [
            {
                "detections": [
                    {"box": [8, 8, 40, 40], "score": 0.9, "class_id": 0, "class_name": "circle"},
                    {"box": [10, 10, 38, 38], "score": 0.4, "class_id": 0, "class_name": "circle"},
                    {"box": [50, 50, 60, 60], "score": 0.8, "class_id": 1, "class_name": "square"},
                    {"box": "not a box", "score": 0.8, "class_id": 1},
                ]
            },
            {"detections": []},
        ]
    }


def test_detections_are_counted_against_the_labels(tmp_path: Path) -> None:
    from yolo_operator.local import detections

    image = tmp_path / "shapes" / "images" / "val" / "val_000000.jpg"
    assert detections.label_file_for(image) == tmp_path / "shapes" / "labels" / "val" / "val_000000.txt"
    label = detections.label_file_for(image)
    label.parent.mkdir(parents=True)
    # A circle at (8..40) and a square at (48..64) in a 64 px image, the square's class 1 label missed by a box
    # that overlaps it too little; a triangle nobody found.
    label.write_text("0 0.375 0.375 0.5 0.5\n1 0.875 0.875 0.25 0.25\n2 0.1 0.9 0.1 0.1\nbad line\n")
    labelled = detections.read_labels(label, 64, 64)
    assert [t.class_id for t in labelled] == [0, 1, 2]
    assert labelled[0].box == pytest.approx((8, 8, 40, 40))
    found = detections.parse_detections(_served_answer())
    assert [len(f) for f in found] == [3, 0]  # the malformed row is skipped
    assert detections.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert detections.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    # The circle is found once (the weaker duplicate does not count twice); the square box covers too little.
    assert detections.count_found(labelled, found[0]) == 1
    assert detections.count_found(labelled, []) == 0
    assert detections.read_labels(tmp_path / "missing.txt", 64, 64) == []


def test_the_detections_picture_has_the_boxes_drawn(tmp_path: Path) -> None:
    """Drawn onto a plain grey image, the picture holds the box's colour (matplotlib's C0) only with a detection."""
    import numpy as np
    from PIL import Image
    from yolo_operator.local import detections

    image = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(image)
    box = detections.Detection((8, 8, 56, 56), 0.9, 0, "circle")

    def blue_pixels(found: list[detections.Detection], name: str) -> int:
        out = detections.draw([detections.ImageResult(image, found, [])], tmp_path / name, "title")
        assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.int32)
        near = np.abs(rgb - np.array([31, 119, 180])) < 30  # matplotlib's C0, #1f77b4
        return int(near.all(axis=-1).sum())

    assert blue_pixels([box], "with.png") > 200
    assert blue_pixels([], "without.png") == 0
    assert detections.draw([], tmp_path / "none.png", "title") is None


def test_several_images_go_in_one_multipart_request(tmp_path: Path) -> None:
    import email.parser
    import http.server
    import json
    import threading

    seen: dict[str, object] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            message = email.parser.BytesParser().parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
            )
            seen["path"] = self.path
            seen["files"] = [part.get_payload(decode=True) for part in message.get_payload()]
            answer = json.dumps({"images": [{"detections": []}] * len(seen["files"])}).encode()  # type: ignore[arg-type]
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        answer = serving.detect_many(f"http://127.0.0.1:{server.server_port}", [b"\xff\xd8one", b"\xff\xd8two"])
    finally:
        thread.join(10)
        server.server_close()
    assert seen == {"path": "/v1/detect", "files": [b"\xff\xd8one", b"\xff\xd8two"]}
    assert len(answer["images"]) == 2


def test_validation_images_are_sent_first(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("val", 8)):
        folder = tmp_path / "images" / split
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{split}_{i:06d}.jpg").write_bytes(b"x")
    picked = serving.sample_images(tmp_path, 6)
    assert [p.name for p in picked] == [f"val_{i:06d}.jpg" for i in range(6)]
    assert serving.sample_images(tmp_path / "nothing", 6) == []


def test_the_written_service_manifest_serves_the_jobs_weights(tmp_path: Path) -> None:
    from yolo_operator.api import YoloInferenceService

    job = load_manifest(QUICKSTART, None)
    command = serving.write_service_manifest(job, tmp_path)
    manifest = tmp_path / "yoloinferenceservice.yaml"
    assert command == f"yolo-operator run {manifest} --train-workdir {tmp_path}"
    svc = load_manifest(manifest, None)
    assert isinstance(svc, YoloInferenceService)
    assert svc.spec.model.from_train_job == job.metadata.name
    assert svc.metadata.name != job.metadata.name  # its own work directory: it must not overwrite the job's status
    assert svc.spec.serving.imgsz == job.spec.train.imgsz and svc.spec.resources.gpus == 0


def test_the_closing_summary_reads_like_a_result() -> None:
    from yolo_workloads.contract import FinalMetrics, TrainSummary

    summary = TrainSummary(
        best_weights="/w/training/weights/best.pt",
        last_weights="/w/training/weights/last.pt",
        results_dir="/w/training",
        epochs_completed=12,
        metrics=FinalMetrics(map50=0.712, map50to95=0.5),
        images_per_second=41.5,
    )
    outcome = report.Outcome(
        name="quickstart",
        phase="Succeeded",
        seconds=185.4,
        settings={"batch": 8, "workers": 1, "amp": False, "cache": "ram", "source": "measured"},
        status_path="/w/status.yaml",
        tuning=_result(),
        summary=summary,
        imgsz=160,
        train_seconds=131.0,
        val_images=80,
        served=report.Served(images=6, seconds=0.25, picture="/w/detections.png", found=17, labelled=19),
        serve_command="yolo-operator run /w/yoloinferenceservice.yaml --train-workdir /w",
        plots=["/w/training-curves.png"],
    )
    text = report.final_summary(outcome)
    lines = text.splitlines()
    assert lines[0] == "YoloTrainJob quickstart: Succeeded in 3 min 05 s (this run, set-up excluded)"
    assert "  accuracy:   mAP50 0.712, mAP50-95 0.500 on 80 validation images" in lines
    assert (
        "  training:   12 epochs at 160 px in 2 min 11 s, 41.5 images/s (batch 8, workers 1, amp off, cache ram; "
        "tuned now)" in lines
    )
    assert (
        "  picture:    /w/detections.png (6 validation images: 17 of 19 shapes found, boxes and labels drawn)" in lines
    )
    assert "  serving:    6 images in one request answered in 0.25 s (24.0 images/s)" in lines
    assert "  weights:    /w/training/weights/best.pt" in lines
    assert lines[-3] == "  serve them: yolo-operator run /w/yoloinferenceservice.yaml --train-workdir /w"
    # A failed run says so, without the parts it never reached.
    failed = report.final_summary(report.Outcome("q", "Failed", 12, {}, "/w/status.yaml"))
    assert failed.splitlines() == [
        "YoloTrainJob q: Failed in 12 s (this run, set-up excluded)",
        "  status:     /w/status.yaml",
    ]
    assert report.duration(59.4) == "59 s" and report.duration(60) == "1 min 00 s"


def test_training_time_is_ultralytics_own_clock(tmp_path: Path) -> None:
    from yolo_operator.local.train_job import count_images, training_seconds

    path = tmp_path / "results.csv"
    path.write_text("epoch,time,metrics/mAP50(B)\n1,10.5,0.1\n2,21.25,0.2\n")
    assert training_seconds(path) == 21.25
    path.write_text("epoch,metrics/mAP50(B)\n1,0.1\n")
    assert training_seconds(path) is None
    (tmp_path / "val").mkdir()
    for name in ("a.jpg", "b.png", "c.txt"):
        (tmp_path / "val" / name).write_bytes(b"x")
    assert count_images(tmp_path / "val") == 2 and count_images(tmp_path / "absent") == 0
